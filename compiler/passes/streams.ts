/**
 * Several score streams in one pass (differential attention). A linear combination of row
 * softmaxes multiplied into one V, `(softmax(s1) - lam * softmax(s2)) @ v`, or of fused
 * attentions over the same V, `softmax(s1) @ v - lam * (softmax(s2) @ v)`, is
 * Σ_t c_t · (softmax(s_t) @ v): one `attention_mix` node, whose flash pass keeps one
 * online-softmax carrier per stream and row and loads each key's v once. Each coefficient is a
 * score of i, scalars and per-row leaves (a row scale commutes with the product by v). Runs after
 * `fuseAttention`; what it does not prove stays as it is.
 */
import type { AttentionStream, Dim, Graph, Node, Score } from "../ir/types.ts";
import { mapNodes, nodesById, scoreChildren, useCounts } from "../ir/walks.ts";
import { MAX_STREAMS } from "../limits.ts";
import { ScoreBuilder } from "./attention.ts";

/** A term of a linear combination: node `id` times the product of `factors` (÷ where `inv`). */
interface Term {
  id: number;
  neg: boolean;
  factors: { id: number; inv: boolean }[];
}

/** A stream before its operands are numbered: leaf operands counted from 3 in `leaves`. */
interface Built {
  q: number;
  k: number;
  score: Score;
  leaves: number[];
}

export function fuseStreams(graph: Graph): Graph {
  const byId = nodesById(graph);
  const users = useCounts(graph);
  return mapNodes(
    graph,
    (n) => mixOfSoftmaxes(n, byId, users) ?? mixOfAttentions(n, byId, users) ?? n,
  );
}

/** `(Σ_t c_t · softmax(s_t, axis=1)) @ v`. */
function mixOfSoftmaxes(n: Node, byId: Map<number, Node>, users: Map<number, number>) {
  if (n.op.op !== "matmul") return undefined;
  const p = byId.get(n.args[0])!, v = byId.get(n.args[1])!;
  if (p.type.shape.length !== 2 || v.type.shape.length !== 2 || p.op.op === "softmax") {
    return undefined;
  }
  const [rows, cols] = p.type.shape;
  const isTerm = (x: Node) => x.op.op === "softmax" && x.op.axis === 1;
  const terms = linear(p.id, p.type.shape, byId, users, isTerm, true);
  if (!terms) return undefined;
  const built: Built[] = [];
  for (const t of terms) {
    const builder = new ScoreBuilder(rows, cols, byId);
    const score = builder.build(byId.get(t.id)!.args[0]);
    if (!score || builder.a === undefined || builder.b === undefined) return undefined;
    built.push({ q: builder.a, k: builder.b, score, leaves: builder.leaves });
  }
  return mixNode(n, v.id, terms, built, rows, cols, byId);
}

/** `Σ_t c_t · attention_t` over one V (the product by v distributed over the combination). */
function mixOfAttentions(n: Node, byId: Map<number, Node>, users: Map<number, number>) {
  if (n.op.op !== "binary" || n.type.shape.length !== 2) return undefined;
  let v: number | undefined;
  const isTerm = (x: Node) =>
    x.op.op === "attention" && x.op.weights === undefined && !x.op.emptyNaN &&
    (v ??= x.args[2]) === x.args[2];
  const terms = linear(n.id, n.type.shape, byId, users, isTerm, true);
  if (!terms || v === undefined) return undefined;
  const built = terms.map((t): Built => {
    const x = byId.get(t.id)!;
    return {
      q: x.args[0],
      k: x.args[1],
      score: (x.op as { score: Score }).score,
      leaves: x.args.slice(3),
    };
  });
  const a = byId.get(terms[0].id)!;
  return mixNode(
    n,
    v,
    terms,
    built,
    byId.get(a.args[0])!.type.shape[0],
    byId.get(a.args[1])!.type.shape[0],
    byId,
  );
}

/**
 * The terms of node `id` as a linear combination of nodes passing `isTerm` (all of `shape`), by
 * add, sub, neg, and mul/div with coefficients that do not vary along the last axis; every node
 * but the root used once. Undefined unless it has 2 to MAX_STREAMS terms.
 */
function linear(
  id: number,
  shape: Dim[],
  byId: Map<number, Node>,
  users: Map<number, number>,
  isTerm: (x: Node) => boolean,
  root = false,
): Term[] | undefined {
  const same = (x: Node) =>
    x.type.shape.length === shape.length && x.type.shape.every((d, k) => d === shape[k]);
  const walk = (id: number, top: boolean): Term[] | undefined => {
    const x = byId.get(id)!;
    if (!same(x) || (!top && (users.get(id) ?? 0) !== 1)) return undefined;
    if (isTerm(x)) return [{ id, neg: false, factors: [] }];
    const op = x.op;
    const negate = (ts?: Term[]) => ts?.map((t) => ({ ...t, neg: !t.neg }));
    if (op.op === "unary" && op.fn === "neg") return negate(walk(x.args[0], false));
    if (op.op !== "binary") return undefined;
    const [a, b] = x.args;
    if (op.fn === "add" || op.fn === "sub") {
      const ta = walk(a, false), tb = walk(b, false);
      return ta && tb && [...ta, ...(op.fn === "sub" ? negate(tb)! : tb)];
    }
    const scaled = (t: number, c: number, inv: boolean) =>
      isCoef(byId.get(c)!, shape)
        ? walk(t, false)?.map((y) => ({ ...y, factors: [...y.factors, { id: c, inv }] }))
        : undefined;
    if (op.fn === "mul") return scaled(a, b, false) ?? scaled(b, a, false);
    if (op.fn === "div") return scaled(a, b, true);
    return undefined;
  };
  const terms = walk(id, root);
  return terms && terms.length >= 2 && terms.length <= MAX_STREAMS ? terms : undefined;
}

/** A coefficient: a scalar, or a [rows, 1] column, broadcast against `shape` ([rows, x]). */
function isCoef(c: Node, shape: Dim[]): boolean {
  const s = c.type.shape;
  return c.type.dtype === "float" && s.length <= 2 && (s.length === 0 || s[s.length - 1] === 1) &&
    (s.length < 2 || s[0] === 1 || s[0] === shape[0]);
}

/** The `attention_mix` node replacing `n`, or undefined if a coefficient is not a row score. */
function mixNode(
  n: Node,
  v: number,
  terms: Term[],
  built: Built[],
  rows: Dim,
  cols: Dim,
  byId: Map<number, Node>,
): Node | undefined {
  const T = terms.length;
  // The kernel has one head width d for every stream's q·k (kernels/streams.ts): streams of
  // other widths (`q[i, :4] . k[j, :4]` beside `q[i, 4:7] . k[j, 4:7]`) stay passes of their own.
  const width = (t: Built) => byId.get(t.q)!.type.shape[1];
  if (built.some((b) => width(b) !== width(built[0]))) return undefined;
  // Operands: a0, b0, v, then a_t, b_t of each further stream, then the leaves.
  const cores = built.flatMap((b, t) => (t === 0 ? [] : [b.q, b.k]));
  const leaves: number[] = [];
  const slot = (id: number) => {
    let k = leaves.indexOf(id);
    if (k < 0) k = leaves.push(id) - 1;
    return 2 * T + 1 + k;
  };
  const streams: AttentionStream[] = [];
  for (const [t, b] of built.entries()) {
    let coef: Score = { kind: "const", value: terms[t].neg ? -1 : 1 };
    for (const f of terms[t].factors) {
      const builder = new ScoreBuilder(rows, cols, byId);
      const shape = byId.get(f.id)!.type.shape;
      const layout = shape.map((
        d,
        k,
      ) => (k === 0 && shape.length === 2 && d !== 1 ? "i" as const : null));
      const x = builder.build(f.id, layout);
      if (!x || builder.a !== undefined || varies(x)) return undefined;
      coef = {
        kind: "binary",
        fn: f.inv ? "div" : "mul",
        a: coef,
        b: renumber(x, (a) => slot(builder.leaves[a - 3])),
      };
    }
    streams.push({
      q: t === 0 ? 0 : 2 * t + 1,
      k: t === 0 ? 1 : 2 * t + 2,
      score: renumber(b.score, (a) => slot(b.leaves[a - 3])),
      coef,
    });
  }
  return {
    ...n,
    op: { op: "attention_mix", streams },
    args: [built[0].q, built[0].k, v, ...cores, ...leaves],
  };
}

/** Whether a coefficient reads anything of the key axis (it must not). */
function varies(x: Score): boolean {
  return x.kind === "qk" || x.kind === "j" || x.kind === "table" ||
    (x.kind === "leaf" && x.at === "j") || scoreChildren(x).some(varies);
}

/** A score with its operand numbers mapped by `f`. */
function renumber(x: Score, f: (arg: number) => number): Score {
  const r = (y: Score) => renumber(y, f);
  switch (x.kind) {
    case "leaf":
      return { ...x, arg: f(x.arg) };
    case "table":
      return { ...x, arg: f(x.arg), at: x.at.map(r) };
    case "draw":
      return { ...x, seed: r(x.seed), shape: x.shape.map(r), at: x.at.map(r) };
    case "unary":
    case "cast":
      return { ...x, x: r(x.x) };
    case "binary":
      return { ...x, a: r(x.a), b: r(x.b) };
    case "where":
      return { ...x, c: r(x.c), a: r(x.a), b: r(x.b) };
    default:
      return x;
  }
}
