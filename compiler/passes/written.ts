/**
 * A softmax written out: with `w = exp(x - max(x, axis=1, keepdims=true))` and
 * `z = sum(w, axis=1, keepdims=true)`, the products `(w / z) @ v` and `(w @ v) / z` are
 * `softmax(x) @ v` row for row, except where no score of a row is finite: there `x - max(x)` is
 * NaN, so the written form is NaN where `softmax` gives zeros. Written out, the product stored
 * the n×m score matrix twice and took five dispatches; as an attention marked `emptyNaN` (NaN
 * for a row with no finite score) it is one flash pass with the written form's values.
 *
 * With a sink logit, `z = exp(c - max(x)) + sum(w)` (softmax-one, c = 0: attention that may
 * attend to nothing; gpt-oss's learned per-head `sink[head()]`), it is that attention times
 * σ(logsumexp(x) - c), the lse from the same pass; c is any value constant along the keys. The
 * stable form shifts by `max(max(x), c)` instead: there a row with no finite score is 0, not NaN,
 * and c = +inf makes the row NaN, which the gate keeps (`min` with a NaN there).
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
  // A value constant along the keys (a sink logit): a scalar, or one value per row.
  const perRow = (c: Node) =>
    c.type.dtype === "float" &&
    (c.type.shape.length === 0 || (c.type.shape.length <= 2 && c.type.shape.at(-1) === 1));
  // x and the shift m when w is exp(x - m) over a 2-D float x, m = max(x, axis=1, keepdims=true)
  // or the stable max(m, c) with a sink logit c (`floor`).
  const shifted = (w: Node): { x: Node; m: Node; floor?: number } | undefined => {
    if (w.op.op !== "unary" || w.op.fn !== "exp" || w.type.shape.length !== 2) return undefined;
    const d = node(w.args[0]);
    if (d.op.op !== "binary" || d.op.fn !== "sub") return undefined;
    const [x, m] = d.args.map(node);
    if (x.type.shape.length !== 2 || x.type.dtype !== "float") return undefined;
    if (rowReduce(m, "max", x.id)) return { x, m };
    if (m.op.op !== "binary" || m.op.fn !== "max") return undefined;
    const [a, b] = m.args.map(node);
    const [r, c] = rowReduce(a, "max", x.id) ? [a, b] : [b, a];
    return rowReduce(r, "max", x.id) && perRow(c) ? { x, m, floor: c.id } : undefined;
  };
  // A sink logit when e is exp(c - m): c's node, or "zero" (softmax-one's exp(-m)).
  const sink = (e: Node, m: Node): number | "zero" | undefined => {
    if (e.op.op !== "unary" || e.op.fn !== "exp") return undefined;
    const a = node(e.args[0]);
    if (a.op.op === "unary" && a.op.fn === "neg" && a.args[0] === m.id) return "zero";
    if (a.op.op !== "binary" || a.op.fn !== "sub" || a.args[1] !== m.id) return undefined;
    return perRow(node(a.args[0])) ? a.args[0] : undefined;
  };
  // The normalizer z of w: its row sum, or that plus exp(c - m) (a sink logit c, the floor's
  // own when the shift has one).
  const normalizer = (
    z: Node,
    w: Node,
    m: Node,
    floor?: number,
  ): { c?: number | "zero" } | undefined => {
    if (rowReduce(z, "sum", w.id)) return floor === undefined ? {} : undefined;
    if (z.op.op !== "binary" || z.op.fn !== "add") return undefined;
    const [a, b] = z.args.map(node);
    const [sum, e] = rowReduce(a, "sum", w.id) ? [a, b] : [b, a];
    const c = rowReduce(sum, "sum", w.id) ? sink(e, m) : undefined;
    return c === undefined || (floor !== undefined && c !== floor) ? undefined : { c };
  };
  // The written softmax's x, v and sink in `n`, if n is (w / z) @ v or (w @ v) / z.
  const written = (
    n: Node,
  ): { x: Node; v: number; c?: number | "zero"; stable: boolean } | undefined => {
    if (n.type.shape.length !== 2) return undefined;
    const parts = (w: Node, z: Node, v: number) => {
      const sh = shifted(w), norm = sh && normalizer(z, w, sh.m, sh.floor);
      return norm && { x: sh.x, v, c: norm.c, stable: sh.floor !== undefined };
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
    const { x, v, c, stable } = found;
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
    // A row with no finite score: NaN through x - max(x), or 0 where the stable shift is finite.
    const attention: Node = {
      ...a,
      type: n.type,
      op: stable ? a.op : { ...a.op, emptyNaN: true },
    };
    if (c === undefined) return [attention];
    // With a sink logit c: Σ e^(s-m) v / (e^(c-m) + Σ e^(s-m)) = softmax(s) @ v · σ(lse(s) - c),
    // the lse from the same flash pass (passes/lse.ts).
    const rows = [x.type.shape[0], 1];
    const at = (op: Node["op"], args: number[], shape: Node["type"]["shape"]): Node => ({
      id: next++,
      op,
      args,
      type: { dtype: "float", shape },
      span: n.span,
    });
    const lse = at({ op: "logsumexp", axis: 1, keepdims: true }, [x.id], rows);
    const added: Node[] = [attention, lse];
    const add = (op: Node["op"], args: number[], shape = rows) => {
      const made = at(op, args, shape);
      added.push(made);
      return made.id;
    };
    const logit = c === "zero" ? add({ op: "const", value: 0 }, [], []) : c;
    const sigma = add({ op: "unary", fn: "sigmoid" }, [
      add({ op: "binary", fn: "sub" }, [lse.id, logit]),
    ]);
    // The stable form is NaN where c = +inf (its shift is then +inf: exp(c - M) = exp(inf - inf)):
    // min(σ, exp(c - M) + 1) is σ elsewhere (the bound is at least 1) and NaN there, as min
    // propagates NaN (docs/language.md). One use per node keeps the gate one kernel.
    const gate = stable
      ? add({ op: "binary", fn: "min" }, [
        sigma,
        add({ op: "binary", fn: "add" }, [
          add({ op: "unary", fn: "exp" }, [
            add({ op: "binary", fn: "sub" }, [
              logit,
              add({ op: "binary", fn: "max" }, [lse.id, logit]),
            ]),
          ]),
          add({ op: "const", value: 1 }, [], []),
        ]),
      ])
      : sigma;
    const out: Node = { ...n, op: { op: "binary", fn: "mul" }, args: [attention.id, gate] };
    return [...added, out];
  });
}
