/**
 * The execution plan lowering makes and the runtime runs: buffers, dispatches in order, and
 * for each dispatch what it binds, reads, writes and how it is launched.
 */
import type { Dim, InputDecl, Node } from "../ir/types.ts";
import type { NodeKernel } from "../wgsl/kernel.ts";
import type { SymbolSlots, ThreadDim } from "../wgsl/syntax.ts";
import type { BindingKey } from "../wgsl/keys.ts";
import type { Feature, Launch } from "../wgsl/kernel.ts";

export type { Feature, Launch } from "../wgsl/kernel.ts";
export type { SymbolSlots, ThreadDim } from "../wgsl/syntax.ts";

/** Invocations per slice of `threads` at the given sizes (the host side of WGSL `size`). */
export function invocations(threads: ThreadDim[], sz: (d: Dim) => number): number {
  return threads.reduce<number>(
    (p, d) =>
      p *
      (typeof d !== "object"
        ? sz(d)
        : "max" in d
        ? Math.max(sz(d.max[0]), d.max[1])
        : Math.ceil(sz(d.ceilDiv[0]) / d.ceilDiv[1])),
    1,
  );
}

/**
 * A dispatch of the plan: one kernel, or several merged (see schedule.ts), with the buffers it
 * binds and how it is launched. Whether it is a region, a merged dispatch and its invocations
 * per slice all follow from `launch` and `io`.
 */
export interface PlannedKernel {
  /** `op_nodeid` (merged: the parts' names joined by `+`), for explain and timings. */
  name: string;
  /** The WGSL source (for specialized kernels, shown for placeholder head sizes). */
  wgsl: string;
  /** For kernels specialized on head sizes: the WGSL for the run's actual sizes. */
  specialize?: (size: (d: Dim) => number) => string;
  /** How it is launched (the only launch description). */
  launch: Launch;
  /** Device features its WGSL needs. */
  features?: Feature[];
  /**
   * Buffers at bindings 1, 2, ... (binding 0 is the sizes table). A single grid kernel binds its
   * output first, then the buffers behind its reads.
   */
  bindings: number[];
  /** Buffers it writes: first a single kernel's output (a region's: its arena). */
  writes: number[];
  /**
   * What a single kernel's code reads as a0, a1, ... (binding keys; a grid kernel's come after
   * its output). None for a merged dispatch, whose parts' reads are renamed to its bindings.
   */
  reads: BindingKey[];
  /**
   * What each part of the dispatch reads and writes (buffers; one entry for a single kernel).
   * A part's reads are the buffers it needs written before it starts (a region's own arena and
   * outputs, written and read inside it, are writes only). `checkPlan` verifies these.
   */
  io: KernelIO[];
  /** What the kernel decided that its node does not say (for explain): key blocks it skips. */
  notes?: string[];
  /** Loop iterations one invocation makes at the given sizes (see kernels/trips.ts). */
  trips: (size: (d: Dim) => number) => number;
  /**
   * Loop trips one invocation makes per element of a grid kernel (see `elementTrips`), where
   * known: a merged dispatch with a region runs HYBRID_ELEMENTS elements per invocation.
   */
  elementTrips?: (size: (d: Dim) => number) => number;
  /** For kernels built from the generic template: what merging needs (see `NodeKernel.part`). */
  part?: NodeKernel["part"];
}

/** Whether `k` merges several kernels (each part states its own reads and writes). */
export const isMerged = (k: PlannedKernel) => k.io.length > 1;

/** A host-side loop over a range of a plan's dispatches. */
export interface PlanLoop {
  /** First dispatch of the body. */
  start: number;
  /** One past its last dispatch. */
  end: number;
  /** Iterations. */
  count: number;
}

/**
 * The outermost loops of `plan` inside dispatches [start, end) (inside `parent`, when given), in
 * order. `o` holds `l` when its range covers l's; on equal ranges (a body with no dispatches of
 * its own) the one listed later is the outer.
 */
export function loopsIn(
  plan: Pick<ExecPlan, "loops">,
  start: number,
  end: number,
  parent?: PlanLoop,
): PlanLoop[] {
  const { loops } = plan;
  const holds = (o: PlanLoop, l: PlanLoop) =>
    o !== l && o.start <= l.start && l.end <= o.end &&
    (o.end - o.start > l.end - l.start || loops.indexOf(o) > loops.indexOf(l));
  const within = (l: PlanLoop) =>
    l !== parent && start <= l.start && l.end <= end && (!parent || holds(parent, l));
  return loops.filter((l) => within(l) && !loops.some((o) => within(o) && holds(o, l)))
    .sort((a, b) => a.start - b.start || a.end - b.end);
}

/** Dispatches one run of `plan` makes: loop bodies count once per iteration. */
export function dispatchesPerRun(plan: Pick<ExecPlan, "kernels" | "loops">): number {
  // A dispatch runs once per iteration of every loop around it.
  const times = (i: number) =>
    plan.loops.filter((l) => l.start <= i && i < l.end).reduce((t, l) => t * l.count, 1);
  return plan.kernels.reduce((t, _, i) => t + times(i), 0);
}

/** The buffers one part of a dispatch reads and writes. */
export interface KernelIO {
  /** The part's kernel. */
  name: string;
  /** Buffers it reads that must be written before the dispatch. */
  reads: number[];
  /** Buffers it writes. */
  writes: number[];
}

/** Everything the runtime needs to run a program. Buffer shapes are per (batch, head) slice. */
export interface ExecPlan {
  /** Every buffer with its per-slice shape (an arena: the arrays it holds back to back). */
  buffers: { id: number; shape: Dim[]; parts?: ThreadDim[][] }[];
  /** Dispatches in order. */
  kernels: PlannedKernel[];
  /**
   * `repeat` loops run on the host: the dispatches `kernels[start..end)` run `count` times in
   * order (a body ends with the copies of its results into the carried buffers). Ranges nest or
   * are disjoint; a loop is listed after every loop in its body (see `loopsIn`).
   */
  loops: PlanLoop[];
  /** Which buffer each input is uploaded to. */
  inputs: { decl: InputDecl; buffer: number }[];
  /** The buffers holding the results, in the order the program returns them. */
  outputs: number[];
  /**
   * The plan for a run whose sizes push some kernel's `trips` past LOOPS.budget: lowered for
   * those sizes, long loops split (see kernels/split.ts). Absent on such plans themselves.
   */
  long?: (size: (d: Dim) => number) => ExecPlan;
  /**
   * The plan for a run with inputs at their own leading shape (`LowerOptions.inputSlices`).
   * Absent on such plans themselves.
   */
  inputSlices?: () => ExecPlan;
  /** On such a plan: each input's first slot of its slice map (keep, group, first; `sliceOf`). */
  inputSlots?: Map<string, number>;
  /** Conditions on sizes checked before a run (the interpreter checks the same while running). */
  guards: { node: Node; rows: Dim; min: number; what: string; hint: string }[];
  /**
   * Random draws whose arguments are constants and whose size does not grow with the sequence
   * (projection matrices like YOSO's hyperplanes): values of the seed alone, drawn on the host
   * with the same Philox bits as the interpreter and uploaded with the inputs, not dispatched.
   */
  hostDraws: { buffer: number; node: Node; seed: number; hi?: number }[];
  /**
   * Int values kernels store (float32 buffers: exact within ±2^24), each with a bound on its
   * magnitude at the run's sizes (lower/intrange.ts); a run where one may pass 2^24 is refused.
   */
  storedInts: { node: Node; magnitude: Magnitude }[];
  /**
   * Slot of each size symbol in the sizes buffer. Slots 0–3 hold the slices in this run, the
   * seed-override flag, the seed, and the index of the first slice (runs may be split).
   */
  slots: SymbolSlots;
}

/** The smallest and largest element of each int input a run binds (undefined: not given). */
export type InputRanges = (name: string) => [number, number] | undefined;

/**
 * A bound on an int value's magnitude at given sizes and int inputs; undefined: untracked
 * (lower/intrange.ts).
 */
export type Magnitude = (size: (d: Dim) => number, inputs?: InputRanges) => number | undefined;

/** Options of `lowerGraph`. */
export interface LowerOptions {
  /** Inline elementwise producers into their consumers' kernels (default true). */
  fuseElementwise?: boolean;
  /**
   * Merge independent kernels of the same dependency level into one dispatch (default true).
   */
  mergeKernels?: boolean;
  /**
   * Storage buffers one dispatch may bind, the sizes table included (default 16; Program plans
   * with the device's own limit when it is lower, e.g. WebGPU's guaranteed 8).
   */
  maxStorageBuffers?: number;
  /**
   * Fused attention computes q·k in half precision (`shader-f16`; opt-in, default false). The
   * softmax and the P·V accumulation stay f32. Needs an adapter with `shader-f16`.
   */
  f16?: boolean;
  /**
   * Compute connected sets of small values (and the `repeat` loops over them) as one
   * single-workgroup dispatch each (default true; see regions.ts).
   */
  regions?: boolean;
  /**
   * Lower for a run at these sizes whose loops pass LOOPS.budget (`ExecPlan.long`): heavy values
   * with loops over LOOPS.chunk are stored, kernels over the budget split, regions over it and
   * long kernels left unmerged.
   */
  runSizes?: (d: Dim) => number;
  /**
   * Read every input's slice through its own slots (`sliceOf` in wgsl/syntax.ts), so that an
   * input whose leading dims are smaller than the run's (grouped-query k and v, a mask reused
   * over heads) is uploaded once at its own shape, not copied to every slice that reads it.
   */
  inputSlices?: boolean;
}
