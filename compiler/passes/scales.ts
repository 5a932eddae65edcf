/**
 * A scale on the left of `@ v`: `c * softmax(s, axis=1) @ v` parses as `(c * softmax(s)) @ v`,
 * whose weights are not a softmax, so the n×m probabilities were stored (2 dispatches; 4 in a
 * differential mix written `softmax(s1) @ v - 0.5 * softmax(s2) @ v`, probe 7). Written as
 * `c * (softmax(s) @ v)` instead, the attention pass fuses the product and the streams pass takes
 * the term into a mix. `c` is a scalar or one value per row, so Σ_j (c·p_j)·v_j = c·Σ_j p_j·v_j in
 * the reals; in IEEE arithmetic too where c is never ±inf (an infinite c meets a zero weight as NaN
 * on one side only; passes/finite.ts), which its form must show. Only rounding moves.
 */
import type { Dim, Graph, Node } from "../ir/types.ts";
import { mapNodes, nodesById, useCounts } from "../ir/walks.ts";
import { ScoreBuilder } from "./attention.ts";
import { neverInf } from "./finite.ts";

/** `graph` with each `(c * P) @ V` of a row softmax P and a finite per-row c as `c * (P @ V)`. */
export function hoistScales(graph: Graph): Graph {
  const byId = nodesById(graph), users = useCounts(graph);
  let next = Math.max(...byId.keys()) + 1;
  let changed = false;
  const out = mapNodes(graph, (n) => {
    const m = n.op.op === "matmul" ? byId.get(n.args[0])! : undefined;
    if (!m || m.op.op !== "binary" || m.op.fn !== "mul" || users.get(m.id) !== 1) return n;
    if (n.type.shape.length !== 2 || m.type.shape.length !== 2) return n;
    const [rows, cols] = m.type.shape;
    const [x, y] = m.args.map((a) => byId.get(a)!);
    const p = [x, y].find((z) => z.op.op === "softmax" && z.op.axis === 1 && sameShape(z, m));
    const c = p === x ? y : x;
    if (!p || !perRow(c, rows) || !finite(c, rows, cols, byId)) return n;
    const product: Node = { ...n, id: next++, args: [p.id, n.args[1]] };
    changed = true;
    return [product, {
      ...n,
      op: { op: "binary", fn: "mul" },
      args: p === x ? [product.id, c.id] : [c.id, product.id],
    }];
  });
  return changed ? out : graph;
}

const sameShape = (a: Node, b: Node) =>
  a.type.shape.length === b.type.shape.length &&
  a.type.shape.every((d, k) => d === b.type.shape[k]);

/** A float scalar, or one value per row ([rows, 1]), broadcast along the keys. */
function perRow(c: Node, rows: Dim): boolean {
  const s = c.type.shape;
  return c.type.dtype === "float" && s.length <= 2 && (s.length === 0 || s.at(-1) === 1) &&
    (s.length < 2 || s[0] === 1 || s[0] === rows);
}

/** Whether `c`'s form shows it is never ±inf (as a score term over the rows). */
function finite(c: Node, rows: Dim, cols: Dim, byId: Map<number, Node>): boolean {
  const layout = c.type.shape.map((d, k) =>
    d === 1 ? null : k === c.type.shape.length - 2 ? "i" as const : null
  );
  const x = new ScoreBuilder(rows, cols, byId).build(c.id, layout);
  return x !== undefined && neverInf(x);
}
