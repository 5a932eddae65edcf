/**
 * Algebraic simplification: rewrites that make later fusion decisions see the real cost.
 * Index notation like `qs[i, c] = q[i, c] * ...` elaborates to `gather(q, iota, iota)`, an
 * identity that would otherwise count as a gather (expensive to recompute) everywhere it is
 * inlined; and `transpose(transpose(x))` is `x`.
 */
import { type Dim, type Graph, type Node, nodesById, substitute } from "../ir.ts";

/** `graph` with identity gathers and double transposes replaced by their operands. */
export function simplify(graph: Graph): Graph {
  const byId = nodesById(graph);
  const map = new Map<number, number>();
  for (const n of byId.values()) {
    const same = identityOf(n, byId);
    if (same !== undefined) map.set(n.id, same);
  }
  return substitute(graph, map);
}

const sameShape = (a: Dim[], b: Dim[]) => a.length === b.length && a.every((d, i) => d === b[i]);

function identityOf(n: Node, byId: Map<number, Node>): number | undefined {
  if (n.op.op === "transpose") {
    const x = byId.get(n.args[0])!;
    if (x.op.op === "transpose") return x.args[0];
  }
  if (n.op.op !== "gather") return undefined;
  // gather(x, idx_0, ..., idx_{k-1}) is x when idx_a is iota along axis a over the full range.
  const x = byId.get(n.args[0])!;
  const out = n.type.shape;
  if (!sameShape(out, x.type.shape) || n.type.dtype !== x.type.dtype) return undefined;
  const idx = n.args.slice(1).map((a) => byId.get(a)!);
  const ok = idx.every((ix, a) =>
    ix.op.op === "iota" && ix.op.axis === a && ix.type.shape.length === idx.length &&
    ix.type.shape[a] === out[a]
  );
  return ok ? x.id : undefined;
}
