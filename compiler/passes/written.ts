/**
 * A softmax written out: with `w = exp(x - max(x, axis=1, keepdims=true))` and
 * `z = sum(w, axis=1, keepdims=true)`, the products `(w / z) @ v` and `(w @ v) / z` are
 * `softmax(x) @ v` row for row, except where no score of a row is finite: there `x - max(x)` is
 * NaN, so the written form is NaN where `softmax` gives zeros. Written out, the product stored
 * the n×m score matrix twice and took five dispatches; as an attention marked `emptyNaN` (NaN
 * for a row with no finite score) it is one flash pass with the written form's values.
 *
 * With a sink logit, `z = exp(c - max(x)) + sum(w)` (softmax-one, c = 0: attention that may
 * attend to nothing), it is that attention times σ(logsumexp(x) - c), the lse from the same pass.
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
  // x and the max node when w is exp(x - max(x, axis=1, keepdims=true)) over a 2-D float x.
  const shifted = (w: Node): { x: Node; m: Node } | undefined => {
    if (w.op.op !== "unary" || w.op.fn !== "exp" || w.type.shape.length !== 2) return undefined;
    const d = node(w.args[0]);
    if (d.op.op !== "binary" || d.op.fn !== "sub") return undefined;
    const [x, m] = d.args.map(node);
    const ok = x.type.shape.length === 2 && x.type.dtype === "float" &&
      rowReduce(m, "max", x.id);
    return ok ? { x, m } : undefined;
  };
  // A sink logit c when e is exp(c - m) (softmax-one's exp(-m): c = 0), c a finite constant.
  const sink = (e: Node, m: Node): number | undefined => {
    if (e.op.op !== "unary" || e.op.fn !== "exp") return undefined;
    const a = node(e.args[0]);
    if (a.op.op === "unary" && a.op.fn === "neg" && a.args[0] === m.id) return 0;
    if (a.op.op !== "binary" || a.op.fn !== "sub" || a.args[1] !== m.id) return undefined;
    const c = node(a.args[0]);
    return c.op.op === "const" && Number.isFinite(c.op.value) ? c.op.value : undefined;
  };
  // The normalizer z of w: its row sum (c undefined), or that plus exp(c - m) (a sink logit c).
  const normalizer = (z: Node, w: Node, m: Node): { c?: number } | undefined => {
    if (rowReduce(z, "sum", w.id)) return {};
    if (z.op.op !== "binary" || z.op.fn !== "add") return undefined;
    const [a, b] = z.args.map(node);
    const [sum, e] = rowReduce(a, "sum", w.id) ? [a, b] : [b, a];
    const c = rowReduce(sum, "sum", w.id) ? sink(e, m) : undefined;
    return c === undefined ? undefined : { c };
  };
  // The written softmax's x, v and sink in `n`, if n is (w / z) @ v or (w @ v) / z.
  const written = (n: Node): { x: Node; v: number; c?: number } | undefined => {
    if (n.type.shape.length !== 2) return undefined;
    const parts = (w: Node, z: Node, v: number) => {
      const sh = shifted(w), norm = sh && normalizer(z, w, sh.m);
      return norm && { x: sh.x, v, c: norm.c };
    };
    if (n.op.op === "matmul") {
      const p = node(n.args[0]);
      if (p.op.op !== "binary" || p.op.fn !== "div") return undefined;
      const [w, z] = p.args.map(node);
      return parts(w, z, n.args[1]);
    }
    if (n.op.op === "binary" && n.op.fn === "div") {
      const [mm, z] = n.args.map(node);
      if (mm.op.op !== "matmul") return undefined;
      return parts(node(mm.args[0]), z, mm.args[1]);
    }
    return undefined;
  };
  return mapNodes(graph, (n): Node[] => {
    const found = written(n);
    if (!found) return [n];
    const { x, v, c } = found;
    // The attention builder reads a softmax and a matmul: this one's, made for it.
    const softmax: Node = {
      id: next++,
      op: { op: "softmax", axis: 1 },
      args: [x.id],
      type: x.type,
      span: n.span,
    };
    const id = c === undefined ? n.id : next++;
    const matmul: Node = { ...n, id, op: { op: "matmul" }, args: [softmax.id, v] };
    const a = fusedMatmul(matmul, new Map([...byId, [softmax.id, softmax]]), typical);
    if (!a || a.op.op !== "attention" || a.op.weights !== undefined) return [n];
    const attention: Node = { ...a, type: n.type, op: { ...a.op, emptyNaN: true } };
    if (c === undefined) return [attention];
    // With a sink logit c: Σ e^(s-m) v / (e^(c-m) + Σ e^(s-m)) = softmax(s) @ v · σ(lse(s) - c),
    // the lse from the same flash pass (passes/lse.ts). A row with no finite score is NaN through
    // the attention, as in the written form.
    const rows = [x.type.shape[0], 1];
    const at = (op: Node["op"], args: number[], shape: Node["type"]["shape"]): Node => ({
      id: next++,
      op,
      args,
      type: { dtype: "float", shape },
      span: n.span,
    });
    const lse = at({ op: "logsumexp", axis: 1, keepdims: true }, [x.id], rows);
    const sinkLogit = at({ op: "const", value: c }, [], []);
    const shift = at({ op: "binary", fn: "sub" }, [lse.id, sinkLogit.id], rows);
    const gate = at({ op: "unary", fn: "sigmoid" }, [shift.id], rows);
    const out: Node = { ...n, op: { op: "binary", fn: "mul" }, args: [attention.id, gate.id] };
    return [attention, lse, sinkLogit, shift, gate, out];
  });
}
