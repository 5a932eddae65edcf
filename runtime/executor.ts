/**
 * Runs an execution plan on a WebGPU device: uploads inputs, encodes every dispatch of the run in
 * one command buffer and one submit, reads the output back. Pipelines are cached by WGSL per
 * device. Shader and validation errors surface as `DeviceError`s quoting the WGSL line.
 */
import { bindInputs } from "../compiler/bind.ts";
import { fillRandom } from "../compiler/rng.ts";
import { CompileError, DeviceError, LimitError } from "../compiler/errors.ts";
import type { Dim, Graph } from "../compiler/ir/types.ts";
import {
  dispatchesPerRun,
  type ExecPlan,
  invocations,
  loopsIn,
  type PlanLoop,
  type PlannedKernel,
} from "../compiler/lower/plan.ts";
import { sizeOf, type Tensor } from "../compiler/tensor.ts";
import { LOOPS, POOL_BYTES, SUBMIT_EVERY, TIMED } from "../compiler/limits.ts";
import { type AcquiredDevice, getDevice } from "./device.ts";

/** Options of `execute`. */
export interface ExecuteOptions {
  /** Overrides the seed of every random draw. */
  seed?: number;
  /** Fill every non-input buffer with NaN first, so unwritten elements show (tests do). */
  poison?: boolean;
  /** The device to use; by default the process-wide one. */
  device?: AcquiredDevice;
  /** Time each kernel with timestamp queries (one compute pass per kernel), when supported. */
  timing?: boolean;
  /** Pretend the binding limit is this many bytes (tests use it to force splitting). */
  maxBindingBytes?: number;
}

/** What one run did. */
export interface RunStats {
  /** Compute dispatches encoded for the run. */
  dispatches: number;
  /** Bytes of all buffers allocated for the run (inputs, intermediates, output, sizes). */
  peakBytes: number;
  /** The adapter's description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  adapter: string;
  /** Per-kernel GPU time from timestamp queries, when `timing` was asked for and supported. */
  kernels?: { name: string; ms: number }[];
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/**
 * Buffers kept between runs, by size and usage (up to POOL_BYTES): creating (and zero-filling) a
 * run's buffers anew cost ~0.4 s per run on lavapipe at n = 4096. Kernels never rely on
 * zero-initialized memory (each writes every element it owns; scatter targets are zeroed by a
 * kernel), so a reused buffer is as good as a new one.
 */
const pools = new WeakMap<GPUDevice, { free: Map<string, GPUBuffer[]>; bytes: number }>();

/** Execute `plan` (lowered from `graph`) on the inputs; returns the output and run statistics. */
export async function execute(
  graph: Graph,
  plan: ExecPlan,
  inputs: Record<string, Tensor>,
  options: ExecuteOptions = {},
): Promise<{ output: Tensor; stats: RunStats }> {
  const { bound, batch, perInput } = bindInputs(graph, inputs);
  const { device, facts } = options.device ?? (await getDevice());
  const slices = sizeOf(batch);
  const resolve = (shape: Dim[]) => shape.map((d) => (typeof d === "number" ? d : bound.get(d)!));
  const elements = (b: ExecPlan["buffers"][number]) =>
    b.parts ? b.parts.reduce((t, p) => t + sizeOf(resolve(p)), 0) : sizeOf(resolve(b.shape));
  for (const g of plan.guards) {
    const rows = resolve([g.rows])[0];
    if (rows < g.min) {
      throw new CompileError(
        g.what.replace("{rows}", String(rows)),
        g.node.span ?? { start: 0, end: 0 },
        graph.source,
        graph.file,
        g.hint.replace("{rows}", String(rows)),
      );
    }
  }
  // lavapipe silently ends an invocation's loops after LOOPS.budget iterations in total. Every
  // kernel states its trips; sizes that push one past the budget run the plan's long form, its
  // long loops split across invocations (kernels/split.ts), on every adapter alike.
  const runSize = (d: Dim) => resolve([d])[0];
  const tripsOf = (k: PlannedKernel) => k.trips ? k.trips(runSize) : Infinity;
  if (plan.long && plan.kernels.some((k) => tripsOf(k) > LOOPS.budget)) plan = plan.long(runSize);
  if (/llvmpipe|lavapipe/i.test(facts.description)) {
    for (const k of plan.kernels) {
      const trips = tripsOf(k);
      if (trips > LOOPS.budget) {
        throw new LimitError(
          `${k.name} would run ${trips} loop iterations in one invocation at these sizes, over ` +
            `this adapter's loop budget of ${LOOPS.budget} per invocation (past it, loops end ` +
            "early and results are wrong), and this kind of kernel cannot be split: use shorter " +
            "sequences or smaller sizes, or an adapter without this limit",
        );
      }
    }
  }
  // A run whose buffers would pass the binding limit is split along batch/heads: as many
  // slices per chunk as fit, each chunk one submit, outputs concatenated in order.
  const limit = options.maxBindingBytes ?? facts.limits.maxStorageBufferBindingSize;
  const perSlice = Math.max(
    4,
    ...plan.buffers.map((b) => elements(b) * 4),
  );
  if (perSlice > limit) {
    const worst = plan.buffers.reduce((w, b) => elements(b) > elements(w) ? b : w);
    throw new LimitError(
      `one slice's [${worst.shape.join(", ")}] value needs ${perSlice} bytes, over this device's ` +
        `maxStorageBufferBindingSize of ${limit} bytes; use a shorter sequence or smaller sizes`,
    );
  }
  const chunk = Math.max(1, Math.min(slices, Math.floor(limit / perSlice)));
  const outNode = graph.nodes.find((n) => n.id === graph.output)!;
  const outShape = resolve(outNode.type.shape);
  const outPer = sizeOf(outShape);
  const data = new Float64Array(slices * outPer);
  const stats: RunStats = { dispatches: 0, peakBytes: 0, adapter: facts.description };
  for (let first = 0; first < slices || (slices === 0 && first === 0); first += chunk) {
    const count = Math.min(chunk, slices - first);
    if (count <= 0) break;
    const r = await runChunk(first, count);
    data.set(r.data, first * outPer);
    stats.dispatches += r.dispatches;
    stats.peakBytes = Math.max(stats.peakBytes, r.peakBytes);
    if (r.kernels) stats.kernels = [...(stats.kernels ?? []), ...r.kernels];
  }
  return { output: { shape: [...batch, ...outShape], data, dtype: outNode.type.dtype }, stats };

  async function runChunk(first: number, slices: number) {
    const sizes = new Uint32Array(4 + plan.slots.size);
    sizes[0] = slices;
    sizes[3] = first;
    if (options.seed !== undefined) [sizes[1], sizes[2]] = [1, options.seed >>> 0];
    for (const [sym, slot] of plan.slots) sizes[slot] = bound.get(sym) ?? 0;

    const created: GPUBuffer[] = [];
    const pool = pools.get(device) ?? { free: new Map(), bytes: 0 };
    pools.set(device, pool);
    let peakBytes = 0;
    const make = (bytes: number, usage: number, what: string): GPUBuffer => {
      const size = Math.max(16, Math.ceil(bytes / 4) * 4);
      if (size > limit) {
        throw new LimitError(
          `${what} needs ${size} bytes, over this device's maxStorageBufferBindingSize of ${limit} ` +
            "bytes; use a shorter sequence or fewer batch/head slices per run",
        );
      }
      const free = pool.free.get(`${size}:${usage}`);
      const reused = free?.pop();
      if (reused) pool.bytes -= size;
      const b = reused ?? device.createBuffer({ size, usage });
      created.push(b);
      peakBytes += size;
      return b;
    };
    try {
      const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
      const sizesBuf = make(sizes.byteLength, storage, "the sizes table");
      device.queue.writeBuffer(sizesBuf, 0, sizes);
      const buffers = plan.buffers.map((b) => {
        const count = slices * elements(b);
        const buf = make(count * 4, storage, `a [${b.shape.join(", ")}] value × ${slices} slices`);
        if (options.poison) {
          device.queue.writeBuffer(buf, 0, new Float32Array(Math.max(4, count)).fill(NaN));
        }
        return buf;
      });
      for (const { decl, buffer } of plan.inputs) {
        const per = sizeOf(resolve(decl.type.shape));
        const data = new Float32Array(Math.max(per * slices, 4));
        const view = perInput.get(decl.name)!;
        for (let s = 0; s < slices; s++) data.set(view(first + s).data, s * per);
        device.queue.writeBuffer(buffers[buffer], 0, data);
      }
      for (const { buffer, node, seed, hi } of plan.hostDraws) {
        if (node.op.op !== "random") continue;
        const per = sizeOf(resolve(node.type.shape));
        const data = new Float32Array(Math.max(per * slices, 4));
        const one = new Float64Array(per);
        if (hi !== undefined && !(hi >= 1)) {
          throw new CompileError(
            `randint: hi must be at least 1, got ${hi}`,
            node.span ?? { start: 0, end: 0 },
            graph.source,
            graph.file,
          );
        }
        for (let s = 0; s < slices; s++) {
          const stream = { seed: options.seed ?? seed, stream: node.op.stream, slice: first + s };
          data.set(fillRandom(one, node.op.kind, stream, hi), s * per);
        }
        device.queue.writeBuffer(buffers[buffer], 0, data);
      }
      const cache = pipelines.get(device) ?? new Map<string, GPUComputePipeline>();
      pipelines.set(device, cache);
      let encoder = device.createCommandEncoder();
      // Timestamps for the first TIMED dispatches (a host loop may make millions).
      const timing = options.timing === true && device.features.has("timestamp-query");
      const querySet = timing
        ? device.createQuerySet({
          type: "timestamp",
          count: 2 * Math.max(1, Math.min(TIMED, dispatchesPerRun(plan))),
        })
        : undefined;
      const timed: string[] = [];
      // Each dispatch's pipeline, bindings and workgroup grid, made once (loop bodies repeat).
      const ready: (
        | { pipeline: GPUComputePipeline; group: GPUBindGroup; x: number; y: number }
        | undefined
      )[] = [];
      for (const k of plan.kernels) {
        const code = k.specialize ? k.specialize((d) => resolve([d])[0]) : k.wgsl;
        if (k.features?.includes("shader-f16") && !device.features.has("shader-f16")) {
          throw new DeviceError(
            `kernel ${k.name} computes in half precision but the adapter ${facts.description} ` +
              "has no shader-f16; compile without { f16: true }",
          );
        }
        const pipeline = cache.get(code) ?? (await buildPipeline(device, k, code));
        cache.set(code, pipeline);
        // The kernel's own launch: one workgroup per slice, or its parts' invocations laid end
        // to end (after the workgroups of any regions merged in).
        const launch = k.launch;
        const regions = launch.kind === "grid" ? launch.regions : 0;
        const total = launch.kind === "slice"
          ? slices
          : launch.parts.reduce((sum, p) => sum + invocations(p, runSize), 0) * slices;
        if (total === 0 && !regions) {
          ready.push(undefined);
          continue;
        }
        const groups = launch.kind === "slice"
          ? slices
          : regions * slices + Math.ceil(total / (launch.workgroup * launch.elements));
        const x = Math.min(groups, facts.limits.maxComputeWorkgroupsPerDimension);
        const entries: GPUBindGroupEntry[] = [
          { binding: 0, resource: { buffer: sizesBuf } },
          ...k.bindings.map((b, i) => ({
            binding: i + 1,
            resource: { buffer: buffers[b] },
          })),
        ];
        const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
        ready.push({ pipeline, group, x, y: Math.ceil(groups / x) });
      }
      let pass = timing ? undefined : encoder.beginComputePass();
      let dispatches = 0;
      const dispatch = (i: number) => {
        const r = ready[i];
        if (!r) return;
        const stamp = querySet && timed.length < TIMED;
        if (stamp) {
          // One pass per kernel, so each can carry its own begin/end timestamps.
          pass = encoder.beginComputePass({
            timestampWrites: {
              querySet,
              beginningOfPassWriteIndex: 2 * timed.length,
              endOfPassWriteIndex: 2 * timed.length + 1,
            },
          });
          timed.push(plan.kernels[i].name);
        } else if (querySet) pass = encoder.beginComputePass();
        pass!.setPipeline(r.pipeline);
        pass!.setBindGroup(0, r.group);
        pass!.dispatchWorkgroups(r.x, r.y);
        if (querySet) pass!.end();
        if (++dispatches % SUBMIT_EVERY === 0 && !querySet) {
          // Long host loops: submit in batches so one command buffer stays bounded.
          pass!.end();
          device.queue.submit([encoder.finish()]);
          encoder = device.createCommandEncoder();
          pass = encoder.beginComputePass();
        }
      };
      // Dispatches [start, end) in order, each host loop's body `count` times.
      const encode = (start: number, end: number, parent?: PlanLoop) => {
        let at = start;
        for (const l of loopsIn(plan, start, end, parent)) {
          for (let i = at; i < l.start; i++) dispatch(i);
          for (let c = 0; c < l.count; c++) encode(l.start, l.end, l);
          at = l.end;
        }
        for (let i = at; i < end; i++) dispatch(i);
      };
      device.pushErrorScope("validation");
      encode(0, plan.kernels.length);
      if (!querySet) pass!.end();
      let stamps: GPUBuffer | undefined;
      if (querySet && timed.length) {
        const resolved = make(
          16 * timed.length,
          GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
          "timestamps",
        );
        stamps = make(
          16 * timed.length,
          GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
          "timestamps",
        );
        encoder.resolveQuerySet(querySet, 0, 2 * timed.length, resolved, 0);
        encoder.copyBufferToBuffer(resolved, 0, stamps, 0, 16 * timed.length);
      }
      const outCount = slices * outPer;
      const read = make(
        outCount * 4,
        GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        "the readback",
      );
      encoder.copyBufferToBuffer(
        buffers[plan.output],
        0,
        read,
        0,
        Math.max(16, Math.ceil(outCount) * 4),
      );
      device.queue.submit([encoder.finish()]);
      const err = await device.popErrorScope();
      if (err) throw new DeviceError(`WebGPU rejected the run: ${err.message}`);
      await read.mapAsync(GPUMapMode.READ);
      const data = Float64Array.from(new Float32Array(read.getMappedRange(), 0, outCount));
      read.unmap();
      let kernels: RunStats["kernels"];
      if (stamps) {
        await stamps.mapAsync(GPUMapMode.READ);
        const t = new BigUint64Array(stamps.getMappedRange());
        kernels = timed.map((name, i) => ({ name, ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6 }));
        stamps.unmap();
      }
      querySet?.destroy();
      return { data, dispatches, peakBytes, kernels };
    } finally {
      for (const b of created) {
        if (b.mapState !== "unmapped" || pool.bytes + b.size > POOL_BYTES) {
          b.destroy();
          continue;
        }
        const key = `${b.size}:${b.usage}`;
        pool.free.set(key, [...(pool.free.get(key) ?? []), b]);
        pool.bytes += b.size;
      }
    }
  }
}

async function buildPipeline(
  device: GPUDevice,
  k: PlannedKernel,
  code: string,
): Promise<GPUComputePipeline> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length) {
    await device.popErrorScope();
    const lines = code.split("\n");
    const m = errors[0];
    throw new DeviceError(
      `kernel ${k.name} does not compile: ${m.message} at WGSL line ${m.lineNum}: ` +
        `${(lines[m.lineNum - 1] ?? "").trim()}`,
    );
  }
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const err = await device.popErrorScope();
  if (err) {
    throw new DeviceError(`kernel ${k.name} was rejected: ${err.message}\n${code}`);
  }
  return pipeline;
}
