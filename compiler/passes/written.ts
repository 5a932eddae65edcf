/**
 * A softmax written out: with `w = exp(x - max(x, axis=1, keepdims=true))` and
 * `z = sum(w, axis=1, keepdims=true)`, the products `(w / z) @ v` and `(w @ v) / z` are
 * `softmax(x) @ v` row for row, except where no score of a row is finite: there `x - max(x)` is
 * NaN, so the written form is NaN where `softmax` gives zeros. Written out, the product stored
 * the n×m score matrix twice and took five dispatches; as an attention marked `emptyNaN` (NaN
 * for a row with no finite score) it is one flash pass with the written form's values.
 *
 * Only the values matter, so the rewrite holds whatever else reads `w`, `z` or the max (they
 * stay, and are then computed as before). It needs the max and the shift of the same node `x`,
 * along the keys of a 2-D score, and a score the attention builder fuses; otherwise nothing
 * changes. Runs before attention fusion.
 */
import type { Graph, Node } from "../ir/types.ts";
import { typicalSizes } from "../ir/cost.ts";
import { mapNodes, nodesById } from "../ir/walks.ts";
import { fusedMatmul } from "./attention.ts";

/** `graph` with each written-out softmax times v computed by one attention. */
export function fuseWrittenSoftmax(graph: Graph): Graph {
  const byId = nodesById(graph), typical = typicalSizes(graph);
  let next = Math.max(...byId.keys()) + 1;
  const node = (id: number) => byId.get(id)!;
  const rowReduce = (r: Node, fn: "max" | "sum", of: number) =>
    r.op.op === "reduce" && r.op.fn === fn && r.op.axis === 1 && r.op.keepdims &&
    r.args[0] === of;
  // x when w is exp(x - max(x, axis=1, keepdims=true)) over a 2-D float x.
  const shifted = (w: Node): Node | undefined => {
    if (w.op.op !== "unary" || w.op.fn !== "exp" || w.type.shape.length !== 2) return undefined;
    const d = node(w.args[0]);
    if (d.op.op !== "binary" || d.op.fn !== "sub") return undefined;
    const [x, m] = d.args.map(node);
    const ok = x.type.shape.length === 2 && x.type.dtype === "float" &&
      rowReduce(m, "max", x.id);
    return ok ? x : undefined;
  };
  // The written softmax's x and v in `n`, if n is (w / z) @ v or (w @ v) / z.
  const written = (n: Node): { x: Node; v: number } | undefined => {
    if (n.type.shape.length !== 2) return undefined;
    if (n.op.op === "matmul") {
      const p = node(n.args[0]);
      if (p.op.op !== "binary" || p.op.fn !== "div") return undefined;
      const [w, z] = p.args.map(node);
      const x = rowReduce(z, "sum", w.id) ? shifted(w) : undefined;
      return x && { x, v: n.args[1] };
    }
    if (n.op.op === "binary" && n.op.fn === "div") {
      const [mm, z] = n.args.map(node);
      if (mm.op.op !== "matmul") return undefined;
      const w = node(mm.args[0]);
      const x = rowReduce(z, "sum", w.id) ? shifted(w) : undefined;
      return x && { x, v: mm.args[1] };
    }
    return undefined;
  };
  return mapNodes(graph, (n): Node[] => {
    const found = written(n);
    if (!found) return [n];
    const { x, v } = found;
    // The attention builder reads a softmax and a matmul: this one's, made for it.
    const softmax: Node = {
      id: next++,
      op: { op: "softmax", axis: 1 },
      args: [x.id],
      type: x.type,
      span: n.span,
    };
    const matmul: Node = { ...n, op: { op: "matmul" }, args: [softmax.id, v] };
    const a = fusedMatmul(matmul, new Map([...byId, [softmax.id, softmax]]), typical);
    if (!a || a.op.op !== "attention" || a.op.weights !== undefined) return [n];
    return [{ ...a, op: { ...a.op, emptyNaN: true } }];
  });
}
