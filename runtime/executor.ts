/**
 * Runs an execution plan on a WebGPU device: uploads inputs, encodes every dispatch of the run in
 * one command buffer and one submit, reads the outputs back. A run whose buffers pass the binding
 * limit is split into chunks of batch/head slices, one submit each. Shader and validation errors
 * surface as `DeviceError`s quoting the WGSL line.
 */
import { bindInputs } from "../compiler/bind.ts";
import { fillRandom } from "../compiler/rng.ts";
import { CompileError, DeviceError, LimitError } from "../compiler/errors.ts";
import type { Dim, Graph } from "../compiler/ir/types.ts";
import {
  dispatchesPerRun,
  type ExecPlan,
  invocations,
  type PlannedKernel,
} from "../compiler/lower/plan.ts";
import { F32_EXACT_INT, sizeOf, type Tensor } from "../compiler/tensor.ts";
import { LOOPS } from "../compiler/limits.ts";
import { type AcquiredDevice, type DeviceFacts, getDevice } from "./device.ts";
import {
  buildPipelines,
  type CompileProgress,
  encodeDispatches,
  prepareDispatches,
  type Step,
} from "./encoder.ts";
import { ChunkBuffers, HostBytes } from "./pool.ts";
import { chunkSlices, type SliceMap, sliceMap } from "./slices.ts";

export type { CompileProgress } from "./encoder.ts";

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
  /** Called after each shader pipeline the run compiles (cached ones are not compiled again). */
  onProgress?: (e: CompileProgress) => void;
}

/** What one run did. */
export interface RunStats {
  /** Compute dispatches encoded for the run. */
  dispatches: number;
  /** Bytes of the GPU buffers of the largest chunk (inputs, intermediates, output, sizes). */
  peakBytes: number;
  /**
   * The most bytes of host-side typed arrays held at once during the run: the caller's input
   * arrays (as given, float64), the output, and the executor's own arrays (upload staging, host
   * draws, readback blocks, NaN fill, sizes table). Not counted: GPU buffers (on a software
   * adapter they are host memory too; see `peakBytes`) and the driver's own copies.
   */
  peakHostBytes: number;
  /** The adapter's description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  adapter: string;
  /** Per-kernel GPU time from timestamp queries, when `timing` was asked for and supported. */
  kernels?: { name: string; ms: number }[];
}

/** Largest block of the output read back from a mapped buffer at once (floats). */
const READ_BLOCK = 1 << 20;
/** Largest block of NaN written at once to poison a buffer (floats). */
const NAN_BLOCK = 1 << 16;

/** The one place runtime/ reads a planned kernel's fields: the kernel at this run's sizes. */
function stepOf(k: PlannedKernel, size: (d: Dim) => number): Step {
  const code = k.specialize ? k.specialize(size) : k.wgsl;
  return { name: k.name, code, launch: k.launch, features: k.features, bindings: k.bindings };
}

/** Loop trips one invocation of `k` makes at these sizes (Infinity when unknown). */
const tripsOf = (k: PlannedKernel, size: (d: Dim) => number) => k.trips(size);

/** Which slices of an input a chunk uploads (`chunkSlices`). */
type Reads = ReturnType<typeof chunkSlices>;

/** A run being executed: what every chunk shares. */
interface Run {
  graph: Graph;
  plan: ExecPlan;
  options: ExecuteOptions;
  device: GPUDevice;
  facts: DeviceFacts;
  size: (d: Dim) => number;
  perInput: Map<string, (slice: number) => Tensor>;
  /** Inputs read at their own leading shape (`ExecPlan.inputSlots`): each one's map and data. */
  own: Map<string, { map?: SliceMap; data: Float64Array }>;
  /** The run's heads dim. */
  heads: number;
  /** The binding limit (bytes). */
  limit: number;
  steps: Step[];
  pipelines: GPUComputePipeline[];
  host: HostBytes;
  /** Float32 upload staging, reused by every input and host draw of every chunk. */
  staging: Float32Array<ArrayBuffer>;
  /** The outputs, every chunk's slices read back into their place; `per`: elements a slice. */
  outputs: { data: Float64Array; per: number }[];
}

/**
 * Execute `plan` (lowered from `graph`) on the inputs; returns the outputs in the order the
 * program returns them (`output`: the first), and run statistics.
 */
export async function execute(
  graph: Graph,
  plan: ExecPlan,
  inputs: Record<string, Tensor>,
  options: ExecuteOptions = {},
): Promise<{ output: Tensor; outputs: Tensor[]; stats: RunStats }> {
  const { bound, batch, perInput, leads, intRanges } = bindInputs(graph, inputs);
  const { device, facts } = options.device ?? (await getDevice());
  const size = (d: Dim) => (typeof d === "number" ? d : bound.get(d)!);
  checkGuards(graph, plan, size);
  const maps = new Map(graph.inputs.map((d) => [d.name, sliceMap(leads.get(d.name) ?? [], batch)]));
  // Inputs smaller than the run (grouped k and v, a mask reused over heads) are read at their
  // own leading shape, through the plan that reads every input through its slice map.
  if (plan.inputSlices && [...maps.values()].some((m) => m)) plan = plan.inputSlices();
  plan = choosePlan(plan, size);
  const own = new Map(
    plan.inputSlots
      ? graph.inputs.map((d) => [d.name, {
        map: maps.get(d.name),
        data: inputs[d.name]?.data ?? perInput.get(d.name)!(0).data,
      }])
      : [],
  );
  checkLoopBudget(plan, size, facts.description);
  checkStoredInts(graph, plan, size, intRanges);
  const limit = options.maxBindingBytes ?? facts.limits.maxStorageBufferBindingSize;
  const slices = sizeOf(batch);
  const chunk = slicesPerChunk(plan, size, slices, limit);
  const outNodes = graph.outputs.map((o) => graph.nodes.find((n) => n.id === o)!);
  const outShapes = outNodes.map((n) => n.type.shape.map(size));
  // The caller's arrays count as held (a defaulted input holds one slice's fill).
  const given = graph.inputs.reduce(
    (t, d) => t + (inputs[d.name]?.data ?? perInput.get(d.name)!(0).data).byteLength,
    0,
  );
  const host = new HostBytes(given);
  const outputs = outShapes.map((s) => {
    const per = sizeOf(s);
    return { data: host.hold(new Float64Array(slices * per)), per };
  });
  const stats: RunStats = {
    dispatches: 0,
    peakBytes: 0,
    peakHostBytes: 0,
    adapter: facts.description,
  };
  if (slices > 0) {
    checkHostDraws(graph, plan);
    const steps = plan.kernels.map((k) => stepOf(k, size));
    const pipelines = await buildPipelines(device, facts.description, steps, options.onProgress);
    const uploads = [
      ...plan.inputs.map((i) => i.decl.type.shape),
      ...plan.hostDraws.map((d) => d.node.type.shape),
    ];
    const staged = Math.max(4, chunk * Math.max(0, ...uploads.map((s) => sizeOf(s.map(size)))));
    const staging = host.hold(new Float32Array(staged));
    const run: Run = {
      ...{ graph, plan, options, device, facts, size, perInput, limit, steps, pipelines, host },
      ...{ staging, outputs, own, heads: batch.at(-1) ?? 1 },
    };
    for (let first = 0; first < slices; first += chunk) {
      const r = await runChunk(run, first, Math.min(chunk, slices - first));
      stats.dispatches += r.dispatches;
      stats.peakBytes = Math.max(stats.peakBytes, r.peakBytes);
      if (r.kernels) stats.kernels = [...(stats.kernels ?? []), ...r.kernels];
    }
    host.free(staging);
  }
  stats.peakHostBytes = host.peak;
  const results = outNodes.map((n, k): Tensor => ({
    shape: [...batch, ...outShapes[k]],
    data: outputs[k].data,
    dtype: n.type.dtype,
  }));
  return { output: results[0], outputs: results, stats };
}

/**
 * An int value a kernel stores may pass ±2^24 at these sizes: its float32 buffer would drop the
 * low bits (the interpreter's ints are exact), so the run is refused rather than wrong.
 */
function checkStoredInts(
  graph: Graph,
  plan: ExecPlan,
  size: (d: Dim) => number,
  ranges: Map<string, [number, number]>,
) {
  for (const { node, magnitude } of plan.storedInts) {
    let ranged = false;
    const m = magnitude(size, (name) => {
      ranged ||= ranges.has(name);
      return ranges.get(name);
    });
    if (m === undefined || m <= F32_EXACT_INT) continue;
    const what = node.name ? `${node.name} (%${node.id})` : `%${node.id}`;
    throw new CompileError(
      `the int value ${what} is ${
        node.op.op === "matmul" || node.op.op === "reduce"
          ? "summed in float32 on the GPU"
          : "stored between kernels"
      }, and at these sizes${ranged ? " and inputs" : ""} it may ${
        m >= 2 ** 31 ? "take any 32-bit value (its arithmetic wraps)" : `reach ${m}`
      }, past ±2^24, where float32 drops its low bits`,
      node.span ?? { start: 0, end: 0 },
      graph.source,
      graph.file,
      "compute it in the expression that reads it (a hash read in a score or a mask is fused " +
        'there), or reduce it first (`% B`); backend: "interp" computes it exactly',
    );
  }
}

/** Conditions on sizes the plan states (`ExecPlan.guards`), as the interpreter's errors. */
function checkGuards(graph: Graph, plan: ExecPlan, size: (d: Dim) => number) {
  for (const g of plan.guards) {
    const rows = size(g.rows);
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
}

/**
 * lavapipe silently ends an invocation's loops after LOOPS.budget iterations in total. Every
 * kernel states its trips; sizes that push one past the budget run the plan's long form, its
 * long loops split across invocations (kernels/split.ts), on every adapter alike.
 */
function choosePlan(plan: ExecPlan, size: (d: Dim) => number): ExecPlan {
  const over = plan.kernels.some((k) => tripsOf(k, size) > LOOPS.budget);
  return plan.long && over ? plan.long(size) : plan;
}

/** On lavapipe, a kernel still over the loop budget (one that cannot split) is refused. */
function checkLoopBudget(plan: ExecPlan, size: (d: Dim) => number, adapter: string) {
  if (!/llvmpipe|lavapipe/i.test(adapter)) return;
  for (const k of plan.kernels) {
    const trips = tripsOf(k, size);
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

/** Elements of one slice of plan buffer `b`. */
function elementsOf(b: ExecPlan["buffers"][number], size: (d: Dim) => number): number {
  return b.parts
    ? b.parts.reduce((t, p) => t + invocations(p, size), 0)
    : sizeOf(b.shape.map(size));
}

/**
 * Slices per chunk: a run whose buffers would pass the binding limit is split along batch/heads,
 * as many slices per chunk as fit, each chunk one submit, outputs in order.
 */
function slicesPerChunk(
  plan: ExecPlan,
  size: (d: Dim) => number,
  slices: number,
  limit: number,
): number {
  const perSlice = Math.max(4, ...plan.buffers.map((b) => elementsOf(b, size) * 4));
  if (perSlice > limit) {
    const worst = plan.buffers.reduce((w, b) => elementsOf(b, size) > elementsOf(w, size) ? b : w);
    throw new LimitError(
      `one slice's [${worst.shape.join(", ")}] value needs ${perSlice} bytes, over this device's ` +
        `maxStorageBufferBindingSize of ${limit} bytes; use a shorter sequence or smaller sizes`,
    );
  }
  return Math.max(1, Math.min(slices, Math.floor(limit / perSlice)));
}

/** Host draws' arguments the plan leaves to run time (randint's bound). */
function checkHostDraws(graph: Graph, plan: ExecPlan) {
  for (const { node, hi } of plan.hostDraws) {
    if (node.op.op === "random" && hi !== undefined && !(hi >= 1)) {
      throw new CompileError(
        `randint: hi must be at least 1, got ${hi}`,
        node.span ?? { start: 0, end: 0 },
        graph.source,
        graph.file,
      );
    }
  }
}

/** Runs slices [first, first + slices) in one submit, their outputs read into `run.outputs`. */
async function runChunk(run: Run, first: number, slices: number) {
  const { device, plan, host } = run;
  const gpu = new ChunkBuffers(device, run.limit);
  try {
    const storage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    const reads = new Map(
      [...run.own].map(([name, o]) => [name, chunkSlices(o.map, run.heads, first, slices)]),
    );
    const sizes = host.hold(sizesTable(run, first, slices, reads));
    const sizesBuf = gpu.take(sizes.byteLength, storage, "the sizes table");
    device.queue.writeBuffer(sizesBuf, 0, sizes);
    host.free(sizes);
    const held = new Map(plan.inputs.map((i) => [i.buffer, reads.get(i.decl.name)?.count]));
    const buffers = plan.buffers.map((b, i) => {
      const count = held.get(i) ?? slices;
      return gpu.take(
        count * elementsOf(b, run.size) * 4,
        storage,
        `a [${b.shape.join(", ")}] value × ${count} slices`,
      );
    });
    if (run.options.poison) poison(run, buffers);
    upload(run, buffers, first, slices, reads);
    const ready = prepareDispatches(
      device,
      run.facts,
      run.steps,
      run.pipelines,
      { sizes: sizesBuf, plan: buffers },
      slices,
      run.size,
    );
    const timing = run.options.timing === true && device.features.has("timestamp-query");
    device.pushErrorScope("validation");
    const encoded = encodeDispatches(
      device,
      plan,
      run.steps,
      ready,
      dispatchesPerRun(plan),
      timing,
    );
    const { encoder, timed, querySet } = encoded;
    let stamps: GPUBuffer | undefined;
    if (querySet && timed.length) {
      const bytes = 16 * timed.length;
      const usage = GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC;
      const resolved = gpu.take(bytes, usage, "timestamps");
      stamps = gpu.take(bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, "timestamps");
      encoder.resolveQuerySet(querySet, 0, 2 * timed.length, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, stamps, 0, bytes);
    }
    const usage = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;
    const readbacks = plan.outputs.map((b, k) => {
      const count = slices * run.outputs[k].per;
      const read = gpu.take(count * 4, usage, "the readback");
      encoder.copyBufferToBuffer(buffers[b], 0, read, 0, Math.max(16, count * 4));
      return { read, count };
    });
    device.queue.submit([encoder.finish()]);
    const err = await device.popErrorScope();
    if (err) throw new DeviceError(`WebGPU rejected the run: ${err.message}`);
    for (const [k, { read, count }] of readbacks.entries()) {
      await read.mapAsync(GPUMapMode.READ);
      readBack(run, run.outputs[k].data, read, first * run.outputs[k].per, count);
      read.unmap();
    }
    let kernels: RunStats["kernels"];
    if (stamps) {
      await stamps.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(stamps.getMappedRange());
      kernels = timed.map((name, i) => ({ name, ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6 }));
      stamps.unmap();
    }
    querySet?.destroy();
    return { dispatches: encoded.dispatches, peakBytes: gpu.bytes, kernels };
  } finally {
    gpu.release();
  }
}

/**
 * The sizes table: slices in this chunk, seed override, seed, first slice, then each symbol, and
 * each input's slice map (`ExecPlan.inputSlots`).
 */
function sizesTable(
  run: Run,
  first: number,
  slices: number,
  reads: Map<string, Reads>,
): Uint32Array<ArrayBuffer> {
  const sizes = new Uint32Array(4 + run.plan.slots.size);
  sizes[0] = slices;
  sizes[3] = first;
  if (run.options.seed !== undefined) [sizes[1], sizes[2]] = [1, run.options.seed >>> 0];
  for (const [sym, slot] of run.plan.slots) sizes[slot] = run.size(sym as Dim) ?? 0;
  for (const [name, slot] of run.plan.inputSlots ?? []) sizes.set(reads.get(name)!.table, slot);
  return sizes;
}

/** Fill every buffer with NaN, a block at a time. */
function poison(run: Run, buffers: GPUBuffer[]) {
  const most = Math.max(...buffers.map((b) => b.size)) / 4;
  const nan = run.host.hold(new Float32Array(Math.min(most, NAN_BLOCK)).fill(NaN));
  for (const buf of buffers) {
    for (let at = 0; at < buf.size; at += nan.byteLength) {
      run.device.queue.writeBuffer(
        buf,
        at,
        nan.subarray(0, Math.min(nan.length, (buf.size - at) / 4)),
      );
    }
  }
  run.host.free(nan);
}

/** The chunk's slices of each input and host draw, as float32 through the shared staging array. */
function upload(
  run: Run,
  buffers: GPUBuffer[],
  first: number,
  slices: number,
  reads: Map<string, Reads>,
) {
  const { staging, size, device } = run;
  // Writes `per` floats for each slice; at least 4 (the smallest buffer), zeros past the values.
  const write = (
    buffer: number,
    per: number,
    slice: (s: number) => ArrayLike<number>,
    from = first,
    count = slices,
  ) => {
    for (let s = 0; s < count; s++) staging.set(slice(from + s), s * per);
    const n = per * count;
    if (n < 4) staging.fill(0, n, 4);
    device.queue.writeBuffer(buffers[buffer], 0, staging.subarray(0, Math.max(n, 4)));
  };
  for (const { decl, buffer } of run.plan.inputs) {
    const view = run.perInput.get(decl.name)!, per = sizeOf(decl.type.shape.map(size));
    const own = reads.get(decl.name), data = run.own.get(decl.name)?.data;
    if (!own || own.copied || !data) write(buffer, per, (s) => view(s).data);
    else write(buffer, per, (i) => data.subarray(i * per, i * per + per), own.first, own.count);
  }
  for (const { buffer, node, seed, hi } of run.plan.hostDraws) {
    if (node.op.op !== "random") continue;
    const { kind, stream } = node.op;
    const one = run.host.hold(new Float64Array(sizeOf(node.type.shape.map(size))));
    const draw = (slice: number) =>
      fillRandom(one, kind, { seed: run.options.seed ?? seed, stream, slice }, hi);
    write(buffer, one.length, draw);
    run.host.free(one);
  }
}

/** Copies `count` floats of the mapped readback into `output` at `at`, a block at a time. */
function readBack(run: Run, output: Float64Array, read: GPUBuffer, at: number, count: number) {
  for (let done = 0; done < count; done += READ_BLOCK) {
    const n = Math.min(READ_BLOCK, count - done);
    const block = run.host.hold(new Float32Array(read.getMappedRange(done * 4, n * 4)));
    output.set(block, at + done);
    run.host.free(block);
  }
}
