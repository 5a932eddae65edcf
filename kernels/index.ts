/**
 * The kernels of each IR op, one family per file: the one entry point lowering uses. A missing
 * op is a type error (the table is keyed by every op of the IR).
 */
import type { Node, Op } from "../compiler/ir/types.ts";
import type { NodeKernel } from "../compiler/wgsl/kernel.ts";
import type { KernelRequest } from "./common.ts";
import { elementwiseKernels, randomKernels } from "./elementwise.ts";
import { reduceKernels, rowwiseKernels } from "./rowwise.ts";
import { matmulKernels } from "./matmul.ts";
import { scatterKernels } from "./scatter.ts";
import { topkKernels } from "./topk.ts";
import { setRowsKernels } from "./rows.ts";
import { attentionKernels } from "./attention.ts";
import { scanKernels } from "./scan.ts";
import { causalKernels } from "./causal.ts";
import { mixKernels } from "./streams.ts";

export type { KernelRequest } from "./common.ts";
export { attentionWithRows } from "./attention.ts";
export { type Region, regionCost, type RegionKernel, regionKernel } from "./region.ts";
export { type SplitKernels, splitKernels } from "./split.ts";
export { elementTrips, withTrips } from "./trips.ts";

type Family = (node: Node, req: KernelRequest) => NodeKernel[];

/** Nodes that need no kernel: inputs and loop bookkeeping. */
const none: Family = () => [];

/** Ops lowering rewrites into others first (compiler/lower/expand.ts). */
const expanded: Family = (n) => {
  throw new Error(`internal: ${n.op.op} reaches the kernels (expand it before lowering)`);
};

const FAMILIES: Record<Op["op"], Family> = {
  input: none,
  loop: none,
  carry: none,
  loop_result: none,
  const: elementwiseKernels,
  dim: elementwiseKernels,
  lead: elementwiseKernels,
  iota: elementwiseKernels,
  fill: elementwiseKernels,
  eye: elementwiseKernels,
  unary: elementwiseKernels,
  binary: elementwiseKernels,
  where: elementwiseKernels,
  cast: elementwiseKernels,
  broadcast: elementwiseKernels,
  transpose: elementwiseKernels,
  reshape: elementwiseKernels,
  gather: elementwiseKernels,
  reduce: reduceKernels,
  dot: reduceKernels,
  bits: reduceKernels,
  segment_mean: reduceKernels,
  logsumexp: expanded,
  softmax: rowwiseKernels,
  normalize: rowwiseKernels,
  cumsum: scanKernels,
  causal_contract: causalKernels,
  matmul: matmulKernels,
  scatter_add: scatterKernels,
  topk: topkKernels,
  random: randomKernels,
  set_rows: setRowsKernels,
  attention: attentionKernels,
  attention_lse: none, // written by its attention's kernel
  attention_rowsum: none, // written by its attention's kernel
  probs: attentionKernels,
  attention_mix: mixKernels,
};

/**
 * The kernel(s) computing `node`. `req.inline` holds the nodes lowering chose not to
 * materialize; their expressions are generated inside this kernel wherever it reads them.
 * Returns an empty list for nodes that need no kernel (inputs, loop bookkeeping).
 */
export function nodeKernels(node: Node, req: KernelRequest): NodeKernel[] {
  return FAMILIES[node.op.op](node, req);
}
