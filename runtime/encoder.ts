/**
 * The GPU side of a run's dispatches: pipelines (cached by WGSL per device), bind groups and
 * workgroup grids, and the encoding of every dispatch in order with host loops repeated and
 * optional timestamps. Works on `Step`s, kernels as they are at this run's sizes.
 */
import { DeviceError, LimitError } from "../compiler/errors.ts";
import { type ExecPlan, invocations, loopsIn, type PlanLoop } from "../compiler/lower/plan.ts";
import type { Dim } from "../compiler/ir/types.ts";
import type { Launch } from "../compiler/lower/plan.ts";
import { PIPELINE_CACHE, SUBMIT_EVERY, TIMED } from "../compiler/limits.ts";
import type { DeviceFacts } from "./device.ts";

/** A dispatch at this run's sizes: what runtime/ reads of a planned kernel. */
export interface Step {
  name: string;
  /** WGSL, specialized to the run's sizes where the kernel asks. */
  code: string;
  launch: Launch;
  features?: string[];
  /** Buffers bound at bindings 1, 2, ... (binding 0 is the sizes table). */
  bindings: number[];
}

/** A pipeline being compiled (`ExecuteOptions.onProgress`): `done` of `total` not yet cached. */
export interface CompileProgress {
  phase: "compile";
  /** Pipelines compiled so far in this run, this one included. */
  done: number;
  /** Pipelines this run compiles (those not cached on the device). */
  total: number;
  /** The kernel compiled. */
  kernel: string;
  /** Milliseconds its compilation took. */
  ms: number;
}

const cached = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

/** How many compiled pipelines `device` keeps (for tests of the PIPELINE_CACHE bound). */
export function cachedPipelines(device: GPUDevice): number {
  return cached.get(device)?.size ?? 0;
}

/** Each step's pipeline, compiling those not cached; `onProgress` after each compilation. */
export async function buildPipelines(
  device: GPUDevice,
  adapter: string,
  steps: Step[],
  onProgress?: (e: CompileProgress) => void,
): Promise<GPUComputePipeline[]> {
  const cache = cached.get(device) ?? new Map<string, GPUComputePipeline>();
  cached.set(device, cache);
  const total = new Set(steps.map((s) => s.code).filter((c) => !cache.has(c))).size;
  let done = 0;
  const out: GPUComputePipeline[] = [];
  for (const s of steps) {
    // Binding 0 (the sizes) is a storage buffer too.
    const storage = s.bindings.length + 1, limit = device.limits.maxStorageBuffersPerShaderStage;
    if (storage > limit) {
      throw new LimitError(
        `kernel ${s.name} binds ${storage} storage buffers, over this adapter's ` +
          `maxStorageBuffersPerShaderStage of ${limit}: it reads that many separate values at ` +
          "once. Combine inputs first (stack biases into one tensor), or compile with " +
          "{ fuse: false } (one kernel per operation)",
      );
    }
    if (s.features?.includes("shader-f16") && !device.features.has("shader-f16")) {
      throw new DeviceError(
        `kernel ${s.name} computes in half precision but the adapter ${adapter} has no ` +
          "shader-f16; compile without { f16: true }",
      );
    }
    let pipeline = cache.get(s.code);
    if (pipeline) {
      cache.delete(s.code); // most recently used last (a Map keeps insertion order)
      cache.set(s.code, pipeline);
    } else {
      const t = performance.now();
      pipeline = await buildPipeline(device, s);
      cache.set(s.code, pipeline);
      while (cache.size > PIPELINE_CACHE.count) cache.delete(cache.keys().next().value!);
      onProgress?.({
        phase: "compile",
        done: ++done,
        total,
        kernel: s.name,
        ms: performance.now() - t,
      });
    }
    out.push(pipeline);
  }
  return out;
}

async function buildPipeline(device: GPUDevice, s: Step): Promise<GPUComputePipeline> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: s.code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length) {
    await device.popErrorScope();
    const lines = s.code.split("\n");
    const m = errors[0];
    throw new DeviceError(
      `kernel ${s.name} does not compile: ${m.message} at WGSL line ${m.lineNum}: ` +
        `${(lines[m.lineNum - 1] ?? "").trim()}`,
    );
  }
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const err = await device.popErrorScope();
  if (err) {
    throw new DeviceError(`kernel ${s.name} was rejected: ${err.message}\n${s.code}`);
  }
  return pipeline;
}

/** A dispatch ready to encode: pipeline, bindings and workgroup grid (none: nothing to run). */
export type Ready = { pipeline: GPUComputePipeline; group: GPUBindGroup; x: number; y: number };

/** Each step's bind group and grid for `slices` slices, made once (loop bodies repeat). */
export function prepareDispatches(
  device: GPUDevice,
  facts: DeviceFacts,
  steps: Step[],
  pipelines: GPUComputePipeline[],
  buffers: { sizes: GPUBuffer; plan: GPUBuffer[] },
  slices: number,
  size: (d: Dim) => number,
): (Ready | undefined)[] {
  return steps.map((s, i) => {
    // The kernel's own launch: one workgroup per slice, or its parts' invocations laid end
    // to end (after the workgroups of any regions merged in).
    const launch = s.launch;
    const regions = launch.kind === "grid" ? launch.regions : 0;
    const total = launch.kind === "slice"
      ? slices
      : launch.parts.reduce((sum, p) => sum + invocations(p, size), 0) * slices;
    if (total === 0 && !regions) return undefined;
    const groups = launch.kind === "slice"
      ? slices
      : regions * slices + Math.ceil(total / (launch.workgroup * launch.elements));
    const x = Math.min(groups, facts.limits.maxComputeWorkgroupsPerDimension);
    const entries: GPUBindGroupEntry[] = [
      { binding: 0, resource: { buffer: buffers.sizes } },
      ...s.bindings.map((b, i) => ({ binding: i + 1, resource: { buffer: buffers.plan[b] } })),
    ];
    const layout = pipelines[i].getBindGroupLayout(0);
    const group = device.createBindGroup({ layout, entries });
    return { pipeline: pipelines[i], group, x, y: Math.ceil(groups / x) };
  });
}

/** What `encodeDispatches` left to finish: the open encoder and the timestamps asked for. */
export interface Encoded {
  encoder: GPUCommandEncoder;
  dispatches: number;
  /** Names of the timed dispatches, in order; their begin/end stamps are in `querySet`. */
  timed: string[];
  querySet?: GPUQuerySet;
}

/**
 * Encodes every dispatch of `plan` in order, each host loop's body `count` times, submitting
 * every SUBMIT_EVERY dispatches. With `timing`, the first TIMED dispatches get a compute pass
 * each with begin/end timestamps (a host loop may make millions).
 */
export function encodeDispatches(
  device: GPUDevice,
  plan: Pick<ExecPlan, "loops" | "kernels">,
  steps: Step[],
  ready: (Ready | undefined)[],
  dispatchesPerRun: number,
  timing: boolean,
): Encoded {
  let encoder = device.createCommandEncoder();
  const querySet = timing
    ? device.createQuerySet({
      type: "timestamp",
      count: 2 * Math.max(1, Math.min(TIMED, dispatchesPerRun)),
    })
    : undefined;
  const timed: string[] = [];
  let pass = timing ? undefined : encoder.beginComputePass();
  let dispatches = 0;
  const dispatch = (i: number) => {
    const r = ready[i];
    if (!r) return;
    if (querySet && timed.length < TIMED) {
      // One pass per kernel, so each can carry its own begin/end timestamps.
      pass = encoder.beginComputePass({
        timestampWrites: {
          querySet,
          beginningOfPassWriteIndex: 2 * timed.length,
          endOfPassWriteIndex: 2 * timed.length + 1,
        },
      });
      timed.push(steps[i].name);
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
  // The loops directly inside each loop (and at the top), found once: a body runs `count` times.
  const inside = new Map<PlanLoop | undefined, PlanLoop[]>();
  const loopsOf = (start: number, end: number, parent?: PlanLoop) => {
    if (!inside.has(parent)) inside.set(parent, loopsIn(plan, start, end, parent));
    return inside.get(parent)!;
  };
  // Dispatches [start, end) in order, each host loop's body `count` times.
  const encode = (start: number, end: number, parent?: PlanLoop) => {
    let at = start;
    for (const l of loopsOf(start, end, parent)) {
      for (let i = at; i < l.start; i++) dispatch(i);
      for (let c = 0; c < l.count; c++) encode(l.start, l.end, l);
      at = l.end;
    }
    for (let i = at; i < end; i++) dispatch(i);
  };
  encode(0, plan.kernels.length);
  if (!querySet) pass!.end();
  return { encoder, dispatches, timed, querySet };
}
