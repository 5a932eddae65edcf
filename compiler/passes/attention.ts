/**
 * Online-softmax fusion. Finds `softmax(X, axis=1) @ V` where every element X[i, j] is a scalar
 * expression of one dot product a_i · b_j, the indices i and j, scalars, and vectors indexed by
 * i or j (masks, biases, ALiBi, causal or sliding windows), and replaces the matmul with one
 * `attention` node. That node is an associative row reduction with carrier state (running max,
 * running sum, accumulator), so it lowers to a single flash-attention pass that never forms the
 * n×m matrix. Whatever fed only the replaced expression becomes dead and is removed by DCE.
 */
import { type Dim, type Graph, type Node, type Score, typicalSizes } from "../ir.ts";

/** Fuse every eligible `softmax(scores) @ v` of the graph (loop bodies included). */
export function fuseAttention(graph: Graph): Graph {
  const byId = new Map<number, Node>();
  const users = new Map<number, number>();
  const index = (nodes: Node[]) => {
    for (const n of nodes) {
      byId.set(n.id, n);
      for (const a of n.args) users.set(a, (users.get(a) ?? 0) + 1);
      if (n.op.op === "loop") {
        index(n.op.body);
        for (const r of n.op.results) users.set(r, (users.get(r) ?? 0) + 1);
      }
    }
  };
  index(graph.nodes);
  users.set(graph.output, (users.get(graph.output) ?? 0) + 1);
  const rewrite = (nodes: Node[]): Node[] =>
    nodes.map((n) => {
      if (n.op.op === "loop") return { ...n, op: { ...n.op, body: rewrite(n.op.body) } };
      return tryFuse(n, byId, users) ?? n;
    });
  return { ...graph, nodes: rewrite(graph.nodes) };
}

function tryFuse(n: Node, byId: Map<number, Node>, users: Map<number, number>): Node | undefined {
  if (n.op.op !== "matmul") return undefined;
  const p = byId.get(n.args[0])!, v = byId.get(n.args[1])!;
  if (p.op.op !== "softmax" || p.type.shape.length !== 2 || p.op.axis !== 1) return undefined;
  if (v.type.shape.length !== 2 || (users.get(p.id) ?? 0) !== 1) return undefined;
  const [rows, cols] = p.type.shape;
  const builder = new ScoreBuilder(rows, cols, byId);
  const score = builder.build(p.args[0]);
  if (!score || builder.a === undefined || builder.b === undefined) return undefined;
  return {
    ...n,
    op: { op: "attention", score },
    args: [builder.a, builder.b, v.id, ...builder.leaves],
  };
}

/**
 * A softmax over a score that is not multiplied into V (Skeinformer's pilot rows, whose
 * probabilities feed column norms) still never needs its score matrix: `probs` computes the
 * probabilities in one flash-style pass (scores kept in the output, normalized at the end).
 * Runs after `fuseAttention`, so softmaxes that fuse into attention are gone by then.
 */
export function fuseProbabilities(graph: Graph): Graph {
  const typical = typicalSizes(graph);
  const byId = new Map<number, Node>();
  const index = (nodes: Node[]) =>
    nodes.forEach((n) => {
      byId.set(n.id, n);
      if (n.op.op === "loop") index(n.op.body);
    });
  index(graph.nodes);
  const rewrite = (nodes: Node[]): Node[] =>
    nodes.map((n) => {
      if (n.op.op === "loop") return { ...n, op: { ...n.op, body: rewrite(n.op.body) } };
      if (n.op.op !== "softmax" || n.op.axis !== 1 || n.type.shape.length !== 2) return n;
      const [rows, cols] = n.type.shape;
      // Small matrices (Nyström's landmark kernel) stay with the region that holds them.
      if (typical(rows) < 4096 && typical(cols) < 4096) return n;
      const builder = new ScoreBuilder(rows, cols, byId, 2);
      const score = builder.build(n.args[0]);
      if (!score || builder.a === undefined || builder.b === undefined) return n;
      return { ...n, op: { op: "probs", score }, args: [builder.a, builder.b, ...builder.leaves] };
    });
  return { ...graph, nodes: rewrite(graph.nodes) };
}

class ScoreBuilder {
  a?: number;
  b?: number;
  leaves: number[] = [];
  constructor(
    readonly rows: Dim,
    readonly cols: Dim,
    readonly byId: Map<number, Node>,
    readonly leafBase = 3,
  ) {}

  /** Where a value of this shape varies over the (i, j) grid, or undefined if it is not a grid value. */
  axes(shape: Dim[]): "ij" | "i" | "j" | "scalar" | undefined {
    const { rows, cols } = this;
    if (shape.length === 0) return "scalar";
    if (shape.length === 1) return shape[0] === cols ? "j" : shape[0] === 1 ? "scalar" : undefined;
    if (shape.length !== 2) return undefined;
    const [r, c] = shape;
    if ((r !== rows && r !== 1) || (c !== cols && c !== 1)) return undefined;
    if (r === rows && c === cols) return "ij";
    return r === rows ? "i" : c === cols ? "j" : "scalar";
  }

  leaf(id: number, at: "i" | "j" | "scalar"): Score {
    let k = this.leaves.indexOf(id);
    if (k < 0) k = this.leaves.push(id) - 1;
    return { kind: "leaf", arg: this.leafBase + k, at };
  }

  /** Set the dot-product operands, or fail if a different pair was already chosen. */
  core(a: number, b: number): Score | undefined {
    if (this.a === undefined) [this.a, this.b] = [a, b];
    return this.a === a && this.b === b ? { kind: "qk" } : undefined;
  }

  build(id: number): Score | undefined {
    const n = this.byId.get(id)!;
    const where = this.axes(n.type.shape);
    if (!where) return undefined;
    const op = n.op;
    const sub = (k: number) => this.build(n.args[k]);
    switch (op.op) {
      case "const":
        return { kind: "const", value: op.value };
      case "dim":
        return { kind: "size", name: op.name };
      case "iota":
        if (where === "i") return { kind: "i" };
        if (where === "j") return { kind: "j" };
        return { kind: "const", value: 0 };
      case "unary": {
        const x = sub(0);
        return x && { kind: "unary", fn: op.fn, x };
      }
      case "binary": {
        const a = sub(0), b = sub(1);
        return a && b && { kind: "binary", fn: op.fn, a, b };
      }
      case "where": {
        const c = sub(0), a = sub(1), b = sub(2);
        return c && a && b && { kind: "where", c, a, b };
      }
      case "cast": {
        const x = sub(0);
        return x && { kind: "cast", to: n.type.dtype, x };
      }
      case "broadcast":
      case "reshape":
        return this.axes(this.byId.get(n.args[0])!.type.shape) ? sub(0) : undefined;
      case "matmul": {
        // a @ b^T with a [rows, d] and b [cols, d].
        const a = this.byId.get(n.args[0])!, t = this.byId.get(n.args[1])!;
        if (where !== "ij" || t.op.op !== "transpose" || a.type.shape.length !== 2) {
          return undefined;
        }
        const b = this.byId.get(t.args[0])!;
        if (b.type.shape.length !== 2 || a.type.shape[1] !== b.type.shape[1]) return undefined;
        return this.core(a.id, b.id);
      }
      case "dot": {
        // q[i] . k[j]: gathers of whole rows by the grid's own indices.
        const ga = this.byId.get(n.args[0])!, gb = this.byId.get(n.args[1])!;
        const rowOf = (g: Node, axis: 0 | 1) => {
          if (g.op.op !== "gather" || g.args.length !== 2) return undefined;
          const src = this.byId.get(g.args[0])!, idx = this.byId.get(g.args[1])!;
          if (src.type.shape.length !== 2 || idx.op.op !== "iota" || idx.op.axis !== axis) {
            return undefined;
          }
          if (src.type.shape[0] !== (axis === 0 ? this.rows : this.cols)) return undefined;
          return src;
        };
        const a = rowOf(ga, 0), b = rowOf(gb, 1);
        if (where !== "ij" || !a || !b || a.type.shape[1] !== b.type.shape[1]) return undefined;
        return this.core(a.id, b.id);
      }
      case "gather": {
        // x[i] or x[j] of a vector whose length is the grid's axis.
        const src = this.byId.get(n.args[0])!, idx = this.byId.get(n.args[1])!;
        if (
          n.args.length === 2 && src.type.shape.length === 1 && idx.op.op === "iota" &&
          (where === "i" || where === "j") &&
          src.type.shape[0] === (where === "i" ? this.rows : this.cols)
        ) return this.leaf(src.id, where);
        break;
      }
    }
    // Anything else computed elsewhere: fine as long as it is a row, column or scalar value.
    if (where === "ij") return undefined;
    if (where === "scalar") return this.leaf(id, "scalar");
    return this.leaf(id, where);
  }
}
