/** What every kernel family is given, and the locals most of them start from. */
import type { Dim, Node } from "../compiler/ir/types.ts";
import { size, type SymbolSlots } from "../compiler/wgsl/syntax.ts";
import { Reader } from "../compiler/wgsl/reader.ts";

/** A request for a node's kernels. */
export interface KernelRequest {
  byId: Map<number, Node>;
  slots: SymbolSlots;
  /** Nodes lowering chose not to materialize: their expressions are generated where read. */
  inline: Set<number>;
  /** The scatter_adds lowering stores as partial tables: how many tables each. */
  chunks: ReadonlyMap<number, number>;
  /** Fused attention computes q·k in half precision. */
  f16?: boolean;
  /** The split form of a long loop (see kernels/split.ts). */
  split?: boolean;
}

/** The node's operands, output shape and size, a reader, and coordinate names. */
export function setup(node: Node, req: KernelRequest) {
  const { byId, slots, inline, chunks } = req;
  const reader = new Reader(byId, inline, chunks, slots);
  const out = node.type.shape;
  return {
    args: node.args.map((a) => byId.get(a)!),
    out,
    rank: out.length,
    outSize: size(out, slots),
    cs: (shape: Dim[], prefix = "c") => shape.map((_, i) => `${prefix}${i}`),
    op: node.op,
    reader,
    rd: (k: number, c: string[]) => reader.at(node.args[k], c),
    slots,
  };
}
