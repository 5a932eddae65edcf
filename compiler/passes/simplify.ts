/**
 * Algebraic simplification and constant folding: rewrites that make later fusion decisions see
 * the real cost. Scalar arithmetic on constants is folded with the interpreter's own scalar
 * functions (ir/scalar.ts, so folding cannot change a result).
 * Index notation like `qs[i, c] = q[i, c] * ...` elaborates to `gather(q, iota, iota)`, an
 * identity that would otherwise count as a gather (expensive to recompute) everywhere it is
 * inlined; and `transpose(transpose(x))` is `x`.
 */
import type { Dim, Graph, Node } from "../ir/types.ts";
import { binaryOf, toInt32, unaryOf } from "../ir/scalar.ts";
import { mapNodes, nodesById, substitute } from "../ir/walks.ts";

/** `graph` with identity gathers and double transposes replaced by their operands. */
export function simplify(graph: Graph): Graph {
  const byId = nodesById(graph);
  const map = new Map<number, number>();
  for (const n of byId.values()) {
    const same = identityOf(n, byId);
    if (same !== undefined) map.set(n.id, same);
  }
  const rewritten = mapNodes(graph, (n) => {
    const folded = fold(n, byId) ?? asReshape(n, byId) ?? n;
    byId.set(n.id, folded); // later folds see this one
    return folded;
  });
  return substitute(rewritten, map);
}

const sameShape = (a: Dim[], b: Dim[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** A scalar unary or binary op on constants, as a constant. */
function fold(n: Node, byId: Map<number, Node>): Node | undefined {
  if ((n.op.op !== "unary" && n.op.op !== "binary") || n.type.shape.length !== 0) return undefined;
  const args = n.args.map((a) => byId.get(a)!);
  if (!args.every((a) => a.op.op === "const")) return undefined;
  const v = args.map((a) => (a.op.op === "const" ? a.op.value : 0));
  const t = n.type.dtype;
  let value = n.op.op === "unary" ? unaryOf(n.op.fn, t)(v[0]) : binaryOf(n.op.fn, t)(v[0], v[1]);
  if (t === "bool") value = +(value !== 0);
  if (t === "int") value = toInt32(value);
  return { ...n, op: { op: "const", value }, args: [] };
}

/**
 * gather(x, idx_0, ..., idx_{k-1}) where idx_a is iota along axis a over all of x's axis a: with
 * `prefix`, k may be less than x's rank (`q[i]` over rows: the unindexed axes follow as they are).
 */
function isIdentity(n: Node, byId: Map<number, Node>, prefix = false): boolean {
  const x = byId.get(n.args[0])!.type.shape;
  const idx = n.args.slice(1).map((a) => byId.get(a)!);
  const rank = prefix ? idx.length : n.type.shape.length;
  return (prefix ? idx.length <= x.length : idx.length === x.length) &&
    idx.every((ix, a) =>
      ix.op.op === "iota" && ix.op.axis === a && ix.type.shape.length === rank &&
      ix.type.shape[a] === x[a] && n.type.shape[a] === x[a]
    );
}

/**
 * `mask[i]` in an [n, 1]-shaped context elaborates to gather(mask, iota [n, 1]): the same
 * elements with trailing unit axes, i.e. a reshape (free to inline, unlike a gather).
 */
function asReshape(n: Node, byId: Map<number, Node>): Node | undefined {
  if (n.op.op !== "gather") return undefined;
  const x = byId.get(n.args[0])!;
  const out = n.type.shape;
  if (out.length <= x.type.shape.length || n.type.dtype !== x.type.dtype) return undefined;
  if (!out.slice(x.type.shape.length).every((d) => d === 1)) return undefined;
  if (!isIdentity(n, byId)) return undefined;
  return { ...n, op: { op: "reshape" }, args: [x.id] };
}

function identityOf(n: Node, byId: Map<number, Node>): number | undefined {
  if (n.op.op === "transpose") {
    const x = byId.get(n.args[0])!;
    if (x.op.op === "transpose") return x.args[0];
  }
  if (n.op.op !== "gather") return undefined;
  // gather(x, idx_0, ..., idx_{k-1}) is x when idx_a is iota along axis a over the full range
  // and the output is x's shape (the iotas then have rank k: no axis is inserted).
  const x = byId.get(n.args[0])!;
  const out = n.type.shape;
  if (!sameShape(out, x.type.shape) || n.type.dtype !== x.type.dtype) return undefined;
  if (!isIdentity(n, byId, true)) return undefined;
  return x.id;
}
