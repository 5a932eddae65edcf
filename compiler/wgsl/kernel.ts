/** A node's kernel as WGSL, and the generic wrapper of a grid kernel (one invocation per element). */
import type { Dim, Node } from "../ir/types.ts";
import { WORKGROUP } from "../limits.ts";
import { size, SIZES_BINDING, storage, type SymbolSlots, type ThreadDim } from "./syntax.ts";
import { helpersFor } from "./ops.ts";
import type { Reader } from "./reader.ts";
import { type BindingKey, decodeKey } from "./keys.ts";

/**
 * How a kernel is launched, declared by the kernel itself (the executor derives nothing):
 * - `slice`: one workgroup per slice (a region, running a whole loop in one workgroup);
 * - `grid`: per slice the invocation counts of `parts` laid end to end, `elements` grid elements
 *   per invocation, in workgroups of `workgroup`, after `regions` workgroups per slice (the
 *   regions of a merged dispatch).
 */
export type Launch =
  | { kind: "slice"; workgroup: number }
  | { kind: "grid"; parts: ThreadDim[][]; workgroup: number; elements: number; regions: number };

/** The launch of a grid kernel of `threads` invocations per slice, one element each. */
export function gridLaunch(threads: ThreadDim[]): Launch {
  return { kind: "grid", parts: [threads], workgroup: WORKGROUP, elements: 1, regions: 0 };
}

/** Device features a kernel needs (WebGPU feature names). */
export type Feature = "shader-f16";

/** A kernel for one node: WGSL source and how many invocations to launch (per slice). */
export interface NodeKernel {
  /** `op_nodeid`, for explain and timings. */
  name: string;
  /** The WGSL source (for specialized kernels, shown for placeholder head sizes). */
  wgsl: string;
  /** Sizes whose product is the number of invocations per slice. */
  threads: ThreadDim[];
  /** What the code reads at bindings 2, 3, ... (a region's: at 1, 2, ...). */
  reads: BindingKey[];
  /** How the kernel is launched. */
  launch: Launch;
  /** Device features its WGSL needs. */
  features?: Feature[];
  /** For kernels specialized on head sizes: the WGSL for the run's actual sizes. */
  specialize?: (size: (d: Dim) => number) => string;
  /**
   * For kernels built from the generic template, the parts `mergeKernels` needs: the body run
   * per invocation (writing `out`, reading `a0`, `a1`, ...), the functions of inlined heavy
   * nodes it calls, and whether `out` is atomic.
   */
  part?: { body: string; fns: string[]; atomicOut: boolean };
  /**
   * Set on a kernel that writes, as `out`, a scratch buffer of these parts (per slice, back to
   * back) instead of its node's buffer; the node's later kernels read it as PARTIAL.
   */
  scratch?: ThreadDim[][];
  /** Loop iterations one invocation makes at the given sizes, where that can be large (regions). */
  trips?: (size: (d: Dim) => number) => number;
  /** What the kernel decided that its node does not say (for explain): key blocks it skips. */
  notes?: string[];
}

/** Wrap a kernel body: bindings, the slice/element split, and a bounds check. */
export function kernel(
  node: Node,
  from: BindingKey[] | Reader,
  threads: ThreadDim[],
  slots: SymbolSlots,
  body: string,
  atomicOut = false,
): NodeKernel {
  const reads = Array.isArray(from) ? from : from.bindings;
  const fns = Array.isArray(from) ? [] : [...from.fns.values()];
  if (!Array.isArray(from) && from.hoisted.size) body = `${from.prologue()}\n  ${body}`;
  const binds = reads.map((key, i) =>
    storage(i + 2, `a${i}`, "vec4" in decodeKey(key) ? "vec4<f32>" : "f32")
  );
  const helpers = helpersFor([body, ...fns].join("\n"));
  const wgsl = `// %${node.id} ${node.op.op}${node.name ? ` (${node.name})` : ""}
${SIZES_BINDING}
${storage(1, "out", atomicOut ? "atomic<u32>" : "f32", true)}
${binds.join("\n")}
${[...helpers, ...fns].join("\n")}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let per = ${size(threads, slots)};
  let t = gid.x + gid.y * nwg.x * ${WORKGROUP}u;
  let slices = sizes[0];
  if (t >= per * slices) { return; }
  let s = t / per;
  let r = t % per;
  ${body}
}
`;
  return {
    name: `${node.op.op}_${node.id}`,
    wgsl,
    threads,
    reads,
    part: { body, fns, atomicOut },
    launch: gridLaunch(threads),
  };
}
