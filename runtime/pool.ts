/**
 * Memory of a run: the GPU buffers of each chunk (reused between runs through a per-device pool)
 * and a count of the host-side typed arrays the run holds (`RunStats.peakHostBytes`).
 */
import { LimitError } from "../compiler/errors.ts";
import { POOL_BYTES } from "../compiler/limits.ts";

/**
 * Buffers kept between runs, by size and usage (up to POOL_BYTES): creating (and zero-filling) a
 * run's buffers anew cost ~0.4 s per run on lavapipe at n = 4096. Kernels never rely on
 * zero-initialized memory (each writes every element it owns; scatter targets are zeroed by a
 * kernel), so a reused buffer is as good as a new one.
 */
const pools = new WeakMap<GPUDevice, { free: Map<string, GPUBuffer[]>; bytes: number }>();

/** The GPU buffers of one chunk: taken from the device's pool or created; `release` returns them. */
export class ChunkBuffers {
  private readonly taken: GPUBuffer[] = [];
  private readonly pool;
  /** Bytes of every buffer taken (`RunStats.peakBytes`). */
  bytes = 0;

  constructor(private readonly device: GPUDevice, private readonly limit: number) {
    this.pool = pools.get(device) ?? { free: new Map(), bytes: 0 };
    pools.set(device, this.pool);
  }

  /** A buffer of at least `bytes` (16 or more, a multiple of 4); `what` names it in the error. */
  take(bytes: number, usage: number, what: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 4) * 4);
    if (size > this.limit) {
      throw new LimitError(
        `${what} needs ${size} bytes, over this device's maxStorageBufferBindingSize of ` +
          `${this.limit} bytes; use a shorter sequence or fewer batch/head slices per run`,
      );
    }
    const reused = this.pool.free.get(`${size}:${usage}`)?.pop();
    if (reused) this.pool.bytes -= size;
    const b = reused ?? this.device.createBuffer({ size, usage });
    this.taken.push(b);
    this.bytes += size;
    return b;
  }

  /** Back to the pool while it has room (mapped buffers and the rest are destroyed). */
  release(): void {
    const pool = this.pool;
    for (const b of this.taken) {
      if (b.mapState !== "unmapped" || pool.bytes + b.size > POOL_BYTES) {
        b.destroy();
        continue;
      }
      const key = `${b.size}:${b.usage}`;
      pool.free.set(key, [...(pool.free.get(key) ?? []), b]);
      pool.bytes += b.size;
    }
    this.taken.length = 0;
  }
}

/**
 * Bytes of host-side typed arrays a run holds, and the most held at once. The executor counts
 * what it allocates as it allocates and frees it; the caller's input arrays count from the start
 * (see `execute`).
 */
export class HostBytes {
  peak: number;
  constructor(private held: number) {
    this.peak = held;
  }
  /** Count `a` as held from now on; returns it. */
  hold<T extends ArrayBufferView>(a: T): T {
    this.held += a.byteLength;
    this.peak = Math.max(this.peak, this.held);
    return a;
  }
  /** `a` is no longer held. */
  free(a: ArrayBufferView): void {
    this.held -= a.byteLength;
  }
}
