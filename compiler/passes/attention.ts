/**
 * Online-softmax fusion. Finds `softmax(X, axis=1) @ V` where every element X[i, j] is a scalar
 * expression of one dot product a_i · b_j, the indices i and j, scalars, and vectors indexed by
 * i or j (masks, biases, ALiBi, causal or sliding windows), and replaces the matmul with one
 * `attention` node. That node is an associative row reduction with carrier state (running max,
 * running sum, accumulator), so it lowers to a single flash-attention pass that never forms the
 * n×m matrix. Whatever fed only the replaced expression becomes dead and is removed by DCE.
 */
import type { Dim, Graph, Node, Score } from "../ir/types.ts";
import { typicalSizes } from "../ir/cost.ts";
import { mapNodes, nodesById, scoreChildren, useCounts } from "../ir/walks.ts";
import { LONG_SEQUENCE } from "../limits.ts";
import { readOf } from "./views.ts";
import { neverInf, neverZero } from "./finite.ts";

/**
 * Fuse every eligible `softmax(scores) @ v` of the graph (loop bodies included), and every
 * `f(scores) @ v` without normalization (sigmoid attention, relu²) over long sequences, where
 * the whole weight matrix is one pointwise score expression.
 */
export function fuseAttention(graph: Graph): Graph {
  const byId = nodesById(graph);
  const users = useCounts(graph);
  const typical = typicalSizes(graph);
  return mapNodes(graph, (n) => tryFuse(n, byId, users, typical) ?? n);
}

function tryFuse(
  n: Node,
  byId: Map<number, Node>,
  users: Map<number, number>,
  typical: (d: Dim) => number,
): Node | undefined {
  if (n.op.op !== "matmul" || (users.get(n.args[0]) ?? 0) !== 1) return undefined;
  return fusedMatmul(n, byId, typical);
}

/**
 * The attention node that computes matmul `n` (weights @ v) in one pass, if its weights are a
 * softmax of a fused score or (over long sequences) a fused score itself; whether the weights
 * have other users is the caller's question.
 */
export function fusedMatmul(
  n: Node,
  byId: Map<number, Node>,
  typical: (d: Dim) => number,
): Node | undefined {
  if (n.op.op !== "matmul") return undefined;
  const p = byId.get(n.args[0])!, v = byId.get(n.args[1])!;
  if (p.type.shape.length !== 2 || v.type.shape.length !== 2) return undefined;
  const [rows, cols] = p.type.shape;
  const softmax = p.op.op === "softmax";
  if (p.op.op === "softmax" && p.op.axis !== 1) return undefined;
  // Unnormalized weights: only over long sequences, where the n×m matrix is what costs (small
  // products, Nyström's landmark kernels, stay with their regions).
  if (!softmax && typical(rows) < LONG_SEQUENCE && typical(cols) < LONG_SEQUENCE) {
    return undefined;
  }
  const builder = new ScoreBuilder(rows, cols, byId);
  const score = builder.build(softmax ? p.args[0] : p.id);
  if (!score || builder.a === undefined || builder.b === undefined) return undefined;
  return {
    ...n,
    op: softmax ? { op: "attention", score } : { op: "attention", score, weights: "score" },
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
  const byId = nodesById(graph);
  return mapNodes(graph, (n) => {
    if (n.op.op !== "softmax" || n.op.axis !== 1 || n.type.shape.length !== 2) return n;
    const [rows, cols] = n.type.shape;
    // Small matrices (Nyström's landmark kernel) stay with the region that holds them.
    if (typical(rows) < LONG_SEQUENCE && typical(cols) < LONG_SEQUENCE) return n;
    const builder = new ScoreBuilder(rows, cols, byId, 2);
    const score = builder.build(n.args[0]);
    if (!score || builder.a === undefined || builder.b === undefined) return n;
    return { ...n, op: { op: "probs", score }, args: [builder.a, builder.b, ...builder.leaves] };
  });
}

/**
 * Which grid axis each dimension of a value runs along: "i" (the softmax's rows), "j" (its
 * columns), or null for a dimension of size 1. A layout is derived from how a value is used,
 * starting at the softmax operand (["i", "j"]) and following each op to its operands, never from
 * comparing sizes: with self-attention both grid axes have the same size symbol.
 */
type Axis = "i" | "j" | null;

/** The layout of an operand broadcast (right-aligned) to a value of layout `out` and `shape`. */
function broadcastLayout(arg: Dim[], shape: Dim[], out: Axis[]): Axis[] | undefined {
  const off = shape.length - arg.length;
  if (off < 0) return undefined;
  return arg.map((d, k) => (d === 1 ? null : d === shape[off + k] ? out[off + k] : undefined))
      .every((a) => a !== undefined)
    ? arg.map((d, k) => (d === 1 ? null : out[off + k]))
    : undefined;
}

/** The one grid axis a value varies along ("scalar" for none), if it varies along at most one. */
function single(layout: Axis[]): "i" | "j" | "scalar" | undefined {
  const live = layout.filter((a) => a !== null);
  if (live.length === 0) return "scalar";
  return live.length === 1 ? live[0]! : undefined;
}

// Ops whose result jumps where an operand crosses a value (a comparison, a floor): there a one-ulp
// difference between two float32 computations of one value can change the result.
const STEP_BINARY = new Set(["lt", "le", "gt", "ge", "eq", "ne", "idiv", "mod"]);
const STEP_UNARY = new Set(["floor", "ceil", "sign", "not"]);

/**
 * Whether a step (a comparison, floor, //, %, a cast to int or bool) reads both the score's q·k
 * and a leaf numbered in `args`: there the recomputed q·k meets a value computed elsewhere.
 * Continuous uses are safe, and so is a step of the leaf alone (`pick[i] == j // B`), or of each
 * alone (`qk > -100 and top[i] > -100`: a where's condition or a table's index is its steps).
 */
function steps(x: Score, args: Set<number>): boolean {
  const reads = (y: Score, f: (z: Score) => boolean): boolean =>
    f(y) || scoreChildren(y).some((z) => reads(z, f));
  const both = (y: Score) =>
    reads(y, (z) => z.kind === "qk") &&
    reads(y, (z) => (z.kind === "leaf" || z.kind === "table") && args.has(z.arg));
  const step = (x.kind === "unary" && STEP_UNARY.has(x.fn)) ||
    (x.kind === "cast" && x.to !== "float") || (x.kind === "binary" && STEP_BINARY.has(x.fn));
  return (step && both(x)) || scoreChildren(x).some((y) => steps(y, args));
}

/** Whether a score is index arithmetic alone: no q·k, data, tables or draws. */
function indexOnly(x: Score): boolean {
  return !["qk", "leaf", "table", "draw"].includes(x.kind) && scoreChildren(x).every(indexOnly);
}

/** `x` with every `i` replaced by `by`. */
function atIndex(x: Score, by: Score): Score {
  if (x.kind === "i") return by;
  const mapped = Object.entries(x).map((
    [key, y],
  ) => [key, Array.isArray(y) ? y.map((z) => atIndex(z, by)) : y?.kind ? atIndex(y, by) : y]);
  return Object.fromEntries(mapped) as Score;
}

/**
 * An int vector computed from positions (`hv = arange(m) * 1103515245 + 12345`) read at a
 * per-slice index (`hv[head()]`): its expression at that index, in i32 (stored as float32 it
 * would lose bits past 2^24), and 0 outside the vector, as a gather reads.
 */
function intVectorAt(src: Node, index: Score, outer: ScoreBuilder): Score | undefined {
  if (src.type.dtype !== "int" || src.op.op === "input" || src.type.shape.length !== 1) {
    return undefined;
  }
  const builder = new ScoreBuilder(outer.rows, outer.cols, outer.byId);
  const x = builder.build(src.id, ["i"]);
  if (!x || !indexOnly(x) || builder.leaves.length > 0) return undefined;
  const len = src.type.shape[0];
  const length: Score = typeof len === "number"
    ? { kind: "const", value: len }
    : { kind: "size", name: len };
  const inside: Score = {
    kind: "binary",
    fn: "and",
    a: { kind: "binary", fn: "ge", a: index, b: { kind: "const", value: 0 } },
    b: { kind: "binary", fn: "lt", a: index, b: length },
  };
  return {
    kind: "where",
    c: inside,
    a: atIndex(x, index),
    b: { kind: "const", value: 0 },
    int: true,
  };
}

/** Whether a score reads a table. */
function hasTable(x: Score): boolean {
  return x.kind === "table" || scoreChildren(x).some(hasTable);
}

export class ScoreBuilder {
  a?: number;
  b?: number;
  leaves: number[] = [];
  /** Why the score is not a fused form: the first (innermost) reason found. */
  failure?: string;
  constructor(
    readonly rows: Dim,
    readonly cols: Dim,
    readonly byId: Map<number, Node>,
    readonly leafBase = 3,
  ) {}

  /** The operand number of node `id` among the fused node's arguments. */
  arg(id: number): number {
    let k = this.leaves.indexOf(id);
    if (k < 0) k = this.leaves.push(id) - 1;
    return this.leafBase + k;
  }

  leaf(id: number, at: "i" | "j" | "scalar"): Score {
    return { kind: "leaf", arg: this.arg(id), at };
  }

  /** Set the dot-product operands, or fail if a different pair was already chosen. */
  core(a: number, b: number): Score | undefined {
    if (this.a === undefined) [this.a, this.b] = [a, b];
    if (this.a === a && this.b === b) return { kind: "qk" };
    this.failure ??= `it holds two dot products (%${this.a}·%${this.b} and %${a}·%${b}); ` +
      "one pass streams one q·k";
    return undefined;
  }

  /**
   * A row `g` (leading dims along `lead`, last axis the dot's) as factors constant along the row
   * times the row itself: `-`, `c * r`, `r * c`, `r / c`. A factor is taken out only where that
   * is exact (`neverInf`; a divisor `neverZero`, compiler/passes/finite.ts); `wrap` applies the
   * factors to the dot product of the rows.
   */
  factored(g: Node, lead: Axis[]): { row: Node; wrap: (x: Score) => Score } {
    const outer: ((x: Score) => Score)[] = [];
    let row = g;
    const whole = (x: Node) =>
      x.type.shape.length === row.type.shape.length &&
      x.type.shape.at(-1) === row.type.shape.at(-1);
    const flat = (x: Node) => x.type.shape.length === 0 || x.type.shape.at(-1) === 1;
    for (;;) {
      const op = row.op;
      if (op.op === "unary" && op.fn === "neg" && row.type.dtype === "float") {
        outer.push((x) => ({ kind: "unary", fn: "neg", x }));
        row = this.byId.get(row.args[0])!;
        continue;
      }
      if (op.op !== "binary" || (op.fn !== "mul" && op.fn !== "div")) break;
      if (row.type.dtype !== "float") break;
      const [a, b] = row.args.map((id) => this.byId.get(id)!);
      const pick = op.fn === "mul" && flat(a) && whole(b)
        ? [a, b]
        : flat(b) && whole(a)
        ? [b, a]
        : undefined;
      if (!pick) break;
      const [c, r] = pick;
      const layout = broadcastLayout(c.type.shape, row.type.shape, [...lead, null]);
      const f = this.tentative(() => {
        const f = layout && this.build(c.id, layout);
        return f && (op.fn === "mul" ? neverInf(f) : neverZero(f) && neverInf(f)) ? f : undefined;
      });
      if (!f) break;
      outer.push(
        op.fn === "mul"
          ? (x) => ({ kind: "binary", fn: "mul", a: f, b: x })
          : (x) => ({ kind: "binary", fn: "div", a: x, b: f }),
      );
      row = r;
    }
    return { row, wrap: (x) => outer.reduceRight((acc, w) => w(acc), x) };
  }

  /**
   * An int vector computed from positions and data (`h = arange(n) * 1103515245 + 12345`) read
   * at one grid axis, as its expression there: computed in i32 by the score rather than stored,
   * where float32 would drop its bits past 2^24 (probe 3). Undefined (nothing read) otherwise.
   */
  intVector(src: Node, at: "i" | "j"): Score | undefined {
    if (src.type.dtype !== "int" || src.op.op === "input") return undefined;
    return this.tentative(() => {
      const x = this.build(src.id, [at]);
      // Built as a leaf of itself, it is stored after all.
      return x && !(x.kind === "leaf" && x.arg === this.leafBase + this.leaves.indexOf(src.id))
        ? x
        : undefined;
    });
  }

  /** f's score, or, when it refuses (undefined), nothing read: its leaves and failure undone. */
  tentative<T>(f: () => T | undefined): T | undefined {
    const leaves = this.leaves.length, failure = this.failure;
    const x = f();
    if (x === undefined) [this.leaves.length, this.failure] = [leaves, failure];
    return x;
  }

  /**
   * Element `at` of random node `r`, drawn where the score reads it (a `draw`), when its seed is
   * a scalar the score can read; randint (whose bound its op checks) stays stored.
   */
  draw(r: Node, at: Score[]): Score | undefined {
    if (r.op.op !== "random" || r.op.kind === "randint") return undefined;
    const seed = this.tentative(() => this.build(r.args[0], []));
    if (!seed) return undefined;
    const shape = r.type.shape.map((d): Score =>
      typeof d === "number" ? { kind: "const", value: d } : { kind: "size", name: d }
    );
    return { kind: "draw", rand: r.op.kind, stream: r.op.stream, seed, shape, at };
  }

  /** The grid size of an axis. */
  extent(axis: "i" | "j"): Dim {
    return axis === "i" ? this.rows : this.cols;
  }

  /**
   * The rows of a matrix read at one grid axis: `x[i]` written as a gather of the whole row by
   * an iota, or a plain matrix whose rows are indexed by the axis. Undefined if unproven.
   */
  rowsAt(g: Node, layout: Axis[]): { src: Node; at: "i" | "j" } | undefined {
    // g: [..., d] whose leading dims have `layout`.
    if (g.op.op !== "gather" || g.args.length !== 2) return undefined;
    const src = this.byId.get(g.args[0])!, idx = this.byId.get(g.args[1])!;
    const at = this.iotaAxis(idx, layout);
    if (!at || src.type.shape.length !== 2 || src.type.shape[0] !== this.extent(at)) {
      return undefined;
    }
    return { src, at };
  }

  /** The grid axis an iota node of the given layout counts along, if it is one. */
  iotaAxis(n: Node, layout: Axis[]): "i" | "j" | undefined {
    if (n.op.op !== "iota" || layout.length !== n.type.shape.length) return undefined;
    const at = layout[n.op.axis];
    return at && single(layout) === at ? at : undefined;
  }

  /**
   * The score expression of node `id`, whose dimensions run along the grid axes `layout`.
   * Refused when a step compares the score's q·k with a leaf computed from q and k (a row max or a
   * top-k threshold of a stored `q @ k^T`): the fused kernel's q·k, summed in another order, can
   * differ from the stored one by an ulp, and `s >= max(s)` then drops the row's best key.
   */
  build(id: number, layout: Axis[] = ["i", "j"]): Score | undefined {
    this.depth++;
    let score: Score | undefined;
    try {
      score = this.buildNode(id, layout);
    } finally {
      this.depth--;
    }
    if (this.depth > 0 || !score) return score;
    // A leaf from both q and k, or from the data of both, may hold another kernel's q·k (the stored
    // q @ k^T the score reads, its transpose, a gathered dot, the diagonal sum(q * k), of q and k
    // or of what they are made from), whatever form the score writes: unproven. Data both are
    // made from (a padding mask in `q * mask` and `k * mask`) tells nothing.
    const data = (id: number) => [...this.ancestors(id)].filter((x) => this.isData(x));
    const [qData, kData] = this.a === undefined ? [[], []] : [data(this.a), data(this.b!)];
    const qOnly = qData.filter((x) => !kData.includes(x));
    const kOnly = kData.filter((x) => !qData.includes(x));
    const risky = new Set(this.leaves.flatMap((l, k) => {
      const up = this.ancestors(l);
      const fromBoth = (up.has(this.a!) && up.has(this.b!)) ||
        (qOnly.some((x) => up.has(x)) && kOnly.some((x) => up.has(x)));
      return fromBoth ? [this.leafBase + k] : [];
    }));
    if (!steps(score, risky)) return score;
    const from = this.leaves[[...risky][0] - this.leafBase];
    this.failure ??= `its leaf %${from} is computed from the data of q and k (%${this.a}, ` +
      `%${this.b}), as a q·k the pass would recompute may be: summed in another order the two ` +
      "can differ by an ulp, and a comparison between them could flip";
    return undefined;
  }

  private depth = 0;
  private upstream = new Map<number, Set<number>>();

  /** Whether node `id` is data: an input or a random draw. */
  private isData(id: number): boolean {
    const op = this.byId.get(id)!.op.op;
    return op === "input" || op === "random";
  }

  /** Node `id` and every node it depends on (memoized). */
  private ancestors(id: number): Set<number> {
    const known = this.upstream.get(id);
    if (known) return known;
    const all = new Set([id]);
    this.upstream.set(id, all); // a cycle cannot occur; this bounds the walk
    const n = this.byId.get(id)!;
    const body = n.op.op === "loop" ? n.op.results : [];
    for (const a of [...n.args, ...body]) {
      if (this.byId.has(a)) { for (const x of this.ancestors(a)) all.add(x); }
    }
    return all;
  }

  private buildNode(id: number, layout: Axis[]): Score | undefined {
    const n = this.byId.get(id)!;
    const shape = n.type.shape;
    if (layout.length !== shape.length) return undefined;
    const op = n.op;
    const int = n.type.dtype === "int" ? { int: true as const } : {};
    const operand = (k: number) => {
      const arg = this.byId.get(n.args[k])!;
      const l = broadcastLayout(arg.type.shape, shape, layout);
      return l && this.build(arg.id, l);
    };
    switch (op.op) {
      case "const":
        return { kind: "const", value: op.value };
      case "fill":
        return { kind: "const", value: op.value };
      case "dim":
        return { kind: "size", name: op.name };
      case "lead":
        return { kind: "lead", of: op.of };
      case "iota": {
        const at = layout[op.axis];
        return at ? { kind: at } : { kind: "const", value: 0 };
      }
      case "unary": {
        const x = operand(0);
        return x && { kind: "unary", fn: op.fn, x, ...int };
      }
      case "binary": {
        const a = operand(0), b = operand(1);
        return a && b && { kind: "binary", fn: op.fn, a, b, ...int };
      }
      case "where": {
        const c = operand(0), a = operand(1), b = operand(2);
        return c && a && b && { kind: "where", c, a, b, ...int };
      }
      case "cast": {
        const x = operand(0);
        return x && { kind: "cast", to: n.type.dtype, x };
      }
      case "broadcast":
        return operand(0);
      case "reshape": {
        // Only reshapes that add or drop unit dims keep each element's grid position.
        const arg = this.byId.get(n.args[0])!;
        const keep = (s: Dim[]) => s.map((d, k) => [d, k] as const).filter(([d]) => d !== 1);
        const from = keep(arg.type.shape), to = keep(shape);
        if (from.length !== to.length || from.some(([d], k) => d !== to[k][0])) break;
        const l: Axis[] = arg.type.shape.map(() => null);
        from.forEach(([, k], x) => (l[k] = layout[to[x][1]]));
        return this.build(arg.id, l);
      }
      case "transpose": {
        if (shape.length < 2) break;
        const l = [...layout];
        [l[l.length - 2], l[l.length - 1]] = [l[l.length - 1], l[l.length - 2]];
        return this.build(n.args[0], l);
      }
      case "matmul": {
        // a @ b^T: element (r, c) is a_r · b_c, with r and c along the grid axes of the layout.
        const a = this.byId.get(n.args[0])!, t = this.byId.get(n.args[1])!;
        if (shape.length !== 2 || t.op.op !== "transpose" || a.type.shape.length !== 2) break;
        const b = this.byId.get(t.args[0])!;
        if (b.type.shape.length !== 2 || a.type.shape[1] !== b.type.shape[1]) break;
        const [r, c] = layout;
        if (r === "i" && c === "j") return this.core(a.id, b.id);
        if (r === "j" && c === "i") return this.core(b.id, a.id); // a_j · b_i = b_i · a_j
        break;
      }
      case "dot": {
        // x[i] . y[j]: gathers of whole rows by the grid's own indices (the dot commutes).
        const ga = this.byId.get(n.args[0])!, gb = this.byId.get(n.args[1])!;
        const lead = (g: Node) =>
          broadcastLayout(g.type.shape.slice(0, -1), shape, layout) ?? undefined;
        const la = lead(ga), lb = lead(gb);
        // Factors constant along the rows come out: (c * q[i]) . k[j] = c * (q[i] . k[j]).
        const sa = la && this.factored(ga, la), sb = lb && this.factored(gb, lb);
        const x = sa && this.rowsAt(sa.row, la!), y = sb && this.rowsAt(sb.row, lb!);
        if (!x || !y || x.at === y.at || x.src.type.shape[1] !== y.src.type.shape[1]) break;
        const qk = x.at === "i" ? this.core(x.src.id, y.src.id) : this.core(y.src.id, x.src.id);
        return qk && sb!.wrap(sa!.wrap(qk));
      }
      case "reduce": {
        // sum[c](x[i, c] * y[j, c]): the dot product written in index notation, over whole
        // rows of two matrices (views.ts proves each factor reads its matrix at (i or j, c)).
        const mul = this.byId.get(n.args[0])!, grid = mul.type.shape, c = layout.length;
        if (
          op.fn !== "sum" || op.keepdims || op.axis !== c || grid.length !== c + 1 ||
          mul.op.op !== "binary" || mul.op.fn !== "mul" || mul.type.dtype !== "float"
        ) break;
        const rows = mul.args.map((a) => {
          const r = readOf(a, grid, this.byId);
          const at = r && r.axes[0] !== undefined ? layout[r.axes[0]] : null;
          return r && at && r.base.type.dtype === "float" && r.base.type.shape.length === 2 &&
              r.axes[1] === c && r.base.type.shape[0] === this.extent(at)
            ? { src: r.base, at }
            : undefined;
        });
        const [x, y] = rows;
        if (!x || !y || x.at === y.at) break;
        return x.at === "i" ? this.core(x.src.id, y.src.id) : this.core(y.src.id, x.src.id);
      }
      case "gather": {
        // v[i] or v[j] of a vector whose length is the grid's axis.
        const src = this.byId.get(n.args[0])!, idx = this.byId.get(n.args[1])!;
        const at = n.args.length === 2 && src.type.shape.length === 1
          ? this.iotaAxis(idx, broadcastLayout(idx.type.shape, shape, layout) ?? [])
          : undefined;
        if (at && src.type.shape[0] === this.extent(at)) {
          return this.intVector(src, at) ?? this.leaf(src.id, at);
        }
        // A table read at integer index expressions of both i and j, one per axis: T5's
        // bias[clamp(j - i, -K, K) + K]; or at constants, sizes and the head or batch index
        // (a per-head temperature `temp[head()]`), bound once per invocation (kernels/attention.ts
        // `hoistScore`) rather than gathered by a dispatch of its own. (Read along one axis it is
        // a leaf: computed once per row, not per score.) Indices holding a table are not nested.
        const one = single(layout);
        if ((one && one !== "scalar") || n.args.length - 1 !== src.type.shape.length) break;
        const idxs = n.args.slice(1).map((a) => this.byId.get(a)!);
        const builder = new ScoreBuilder(this.rows, this.cols, this.byId);
        const ats = idxs.map((x) => {
          const l = x.type.dtype === "int" && broadcastLayout(x.type.shape, shape, layout);
          return l ? (one ? builder : this).build(x.id, l) : undefined;
        });
        if (ats.some((x) => !x || hasTable(x))) break;
        // Per slice: only indices of constants, sizes and head()/batch() (no data of their own).
        if (one && (builder.leaves.length > 0 || builder.a !== undefined)) break;
        if (src.op.op === "random" && !one) {
          const draw = this.draw(src, ats as Score[]);
          if (draw) return draw;
        }
        const computed = one && ats.length === 1 ? intVectorAt(src, ats[0]!, this) : undefined;
        if (computed) return computed;
        return { kind: "table", arg: this.arg(src.id), at: ats as Score[] };
      }
      case "random": {
        // A random tensor laid over (i, j) itself: `where(uniform([n, m], seed) >= p, s, -inf)`.
        if (single(layout)) break;
        const draw = this.draw(
          n,
          layout.map((a) => (a ? { kind: a } : { kind: "const", value: 0 })),
        );
        if (draw) return draw;
        break;
      }
    }
    // An input read at (i, j) in some order, `t[i, j]` or `t^T`: a table at the grid indices.
    if (op.op === "input" && layout.length === 2 && layout.every((a) => a !== null)) {
      return { kind: "table", arg: this.arg(id), at: layout.map((a) => ({ kind: a! })) };
    }
    // Anything else is computed elsewhere: a leaf, if it varies along at most one grid axis.
    const at = single(layout);
    if (!at) {
      this.failure ??= `%${id} ${op.op}${n.name ? ` (${n.name})` : ""} varies along both i and j ` +
        "but is not a form a fused score reads (q·k, index arithmetic, elementwise ops, tables)";
    }
    return at && this.leaf(id, at);
  }
}

/**
 * Why each softmax left in an optimized graph did not fuse, for `explain`: the first condition
 * of `fuseAttention` / `fuseProbabilities` it fails, in their words.
 */
export function whyNotFused(graph: Graph): Map<number, string> {
  const byId = nodesById(graph), users = useCounts(graph), typical = typicalSizes(graph);
  const why = new Map<number, string>();
  for (const n of graph.nodes) {
    if (n.op.op !== "softmax") continue;
    const shape = n.type.shape;
    if (shape.length !== 2 || n.op.axis !== 1) {
      why.set(
        n.id,
        `softmax over axis ${n.op.axis} of a rank-${shape.length} value ` +
          "(a fused pass needs a [rows, keys] score with softmax over axis 1" +
          (shape.length > 2
            ? "; leave heads and batches out of the declared shapes, `q: [n, d]` bound to " +
              "[h, n, d] data, runs each head as one flash pass)"
            : ")"),
      );
      continue;
    }
    const intoV = graph.nodes.some((m) => m.op.op === "matmul" && m.args[0] === n.id);
    const uses = users.get(n.id) ?? 0;
    if (intoV && uses > 1) {
      why.set(n.id, `its probabilities are used ${uses} times (a fused pass would recompute them)`);
      continue;
    }
    const builder = new ScoreBuilder(shape[0], shape[1], byId);
    const score = builder.build(n.args[0]);
    if (!score || builder.a === undefined) {
      why.set(n.id, builder.failure ?? "its score has no dot product q_i · k_j");
    } else if (typical(shape[0]) < LONG_SEQUENCE && typical(shape[1]) < LONG_SEQUENCE) {
      why.set(
        n.id,
        `a small matrix (rows and keys typically < ${LONG_SEQUENCE}): it stays in ` +
          "its region, not a streaming pass",
      );
    } else why.set(n.id, "its probabilities are not multiplied into v by a matmul");
  }
  return why;
}
