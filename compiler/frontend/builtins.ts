/**
 * The builtin functions, one row each: the signature (its arguments and keywords, shown in every
 * message about a call) and the rule that reads the arguments, checks kinds and shapes, and emits
 * the IR. Arity and unknown keywords are checked by the ArgReader as the rule reads.
 */
import type { ExprOf } from "./ast.ts";
import type { Dim, LeadFn, Op, RandomKind, ReduceFn, UnaryFn } from "../ir/types.ts";
import type { DType } from "../tensor.ts";
import { ArgReader } from "./args.ts";
import type { Checker } from "./check.ts";
import { elementwise, foldStatic } from "./operators.ts";
import { castTo } from "../ir/scalar.ts";
import type { Scope, Val } from "./scope.ts";
import {
  align,
  broadcastShapes,
  cast,
  describeDim,
  dimOf,
  kindType,
  nonEmpty,
  promote,
  sameDim,
  toTensor,
} from "./shapes.ts";

type Call = ExprOf<"call">;
type Rule = (c: Checker, a: ArgReader, e: Call, scope: Scope) => Val;
interface Builtin {
  sig: string;
  rule: Rule;
}

/** Elementwise math, computed in float (abs keeps ints). */
const MATH: UnaryFn[] = [
  "exp",
  "log",
  "sqrt",
  "abs",
  "tanh",
  "acos",
  "cos",
  "sin",
  "sigmoid",
  "relu",
  "elu",
  "floor",
  "ceil",
  "sign",
  "erf",
];

const REDUCE_SIG = "(x, axis=all, keepdims=false)";

/** Every builtin; the order is the order of "did you mean" candidates. */
export const BUILTINS: Record<string, Builtin> = {
  ...Object.fromEntries(MATH.map((f) => [f, { sig: `${f}(x)`, rule: math(f) }])),
  int: { sig: "int(x)", rule: convert("int") },
  float: { sig: "float(x)", rule: convert("float") },
  where: { sig: "where(cond, a, b)", rule: where },
  clamp: { sig: "clamp(x, lo, hi)", rule: clamp },
  sum: { sig: `sum${REDUCE_SIG}  or  sum[i](expr)`, rule: reduction("sum") },
  max: { sig: `max${REDUCE_SIG}  or  max(a, b)  or  max[i](expr)`, rule: extremum("max") },
  min: { sig: `min${REDUCE_SIG}  or  min(a, b)  or  min[i](expr)`, rule: extremum("min") },
  mean: { sig: `mean${REDUCE_SIG}  or  mean[i](expr)`, rule: reduction("mean") },
  prod: { sig: `prod${REDUCE_SIG}`, rule: reduction("prod") },
  norm: { sig: `norm${REDUCE_SIG}`, rule: reduction("norm") },
  logsumexp: { sig: `logsumexp${REDUCE_SIG}  (log sum exp, stable)`, rule: reduction("logsumexp") },
  softmax: { sig: "softmax(x, axis=-1)", rule: alongAxis("softmax") },
  normalize: { sig: "normalize(x, axis=-1)", rule: alongAxis("normalize") },
  cumsum: { sig: "cumsum(x, axis)", rule: cumsum },
  arange: { sig: "arange(n)  (the ints 0, 1, ..., n-1)", rule: arange },
  segment_mean: { sig: "segment_mean(x, segments)", rule: segmentMean },
  scatter_add: { sig: "scatter_add(index, values, size)", rule: scatterAdd },
  bits: { sig: "bits(x)", rule: bits },
  topk: { sig: "topk(x, k)", rule: topk },
  concat: { sig: "concat(a, b)  (rows of a, then rows of b; b may be a single row)", rule: concat },
  eye: { sig: "eye(size)", rule: eye },
  head: { sig: "head()  (this slice's index along the last leading dim)", rule: lead("head") },
  heads: { sig: "heads()  (the size of the last leading dim)", rule: lead("heads") },
  batch: {
    sig: "batch()  (this slice's index over the leading dims before heads)",
    rule: lead("batch"),
  },
  batches: {
    sig: "batches()  (the slices per head: the leading dims before heads)",
    rule: lead("batches"),
  },
  zeros: { sig: "zeros(shape)", rule: fill(() => 0) },
  ones: { sig: "ones(shape)", rule: fill(() => 1) },
  full: { sig: "full(shape, value)", rule: fill((a) => a.staticNumber(1, "value")) },
  uniform: { sig: "uniform(shape, seed, stream=auto)", rule: random("uniform") },
  randn: { sig: "randn(shape, seed, stream=auto)", rule: random("randn") },
  gumbel: { sig: "gumbel(shape, seed, stream=auto)", rule: random("gumbel") },
  randint: { sig: "randint(shape, hi, seed, stream=auto)", rule: random("randint") },
};

/** A call of builtin `e.fn` (known to be one: `e.fn in BUILTINS`). */
export function callBuiltin(c: Checker, e: Call, scope: Scope): Val {
  const a = new ArgReader(c, e, scope, BUILTINS[e.fn]?.sig);
  // `in` also finds Object.prototype's names; they are no builtins.
  if (!Object.hasOwn(BUILTINS, e.fn)) return c.fail(`unknown function ${e.fn}`, e.fnSpan);
  return BUILTINS[e.fn].rule(c, a, e, scope);
}

function math(fn: UnaryFn): Rule {
  return (c, a, e, scope) => {
    const x = a.tensor(0, "x");
    a.done();
    if (fn === "abs" && x.type.dtype === "int") {
      return c.op(scope, { op: "unary", fn: "abs" }, [x], x.type, e.span);
    }
    const xf = cast(c, x, "float", scope, e.span);
    return c.op(scope, { op: "unary", fn }, [xf], { dtype: "float", shape: x.type.shape }, e.span);
  };
}

function convert(to: "int" | "float"): Rule {
  return (c, a, e, scope) => {
    const x = a.value(0, "x");
    a.done();
    if (x.kind === "static") {
      return { kind: "static", value: castTo(to, x.value), dtype: to };
    }
    return cast(c, toTensor(c, x, e.span), to, scope, e.span);
  };
}

function where(c: Checker, a: ArgReader, e: Call, scope: Scope): Val {
  const cond = cast(c, a.tensor(0, "cond"), "bool", scope, e.span);
  const x = a.value(1, "a"), y = a.value(2, "b");
  a.done();
  let xt = toTensor(c, x, e.span), yt = toTensor(c, y, e.span);
  let ct = cond;
  [ct, xt] = align(c, ct, xt, scope, e.span);
  [ct, yt] = align(c, ct, yt, scope, e.span);
  [xt, yt] = align(c, xt, yt, scope, e.span);
  const s1 = broadcastShapes(c, xt.type.shape, yt.type.shape, e.span, "a", "b", " in where");
  const shape = broadcastShapes(c, ct.type.shape, s1, e.span, "cond", "values", " in where");
  const dtype = promote([xt.type.dtype, yt.type.dtype], xt.type.dtype);
  return c.op(scope, { op: "where" }, [ct, xt, yt], { dtype, shape }, e.span);
}

function clamp(c: Checker, a: ArgReader, e: Call, scope: Scope): Val {
  const x = a.value(0, "x"), lo = a.value(1, "lo"), hi = a.value(2, "hi");
  a.done();
  return elementwise(c, "min", elementwise(c, "max", x, lo, e.span, scope), hi, e.span, scope);
}

/** max(a, b) elementwise, or a reduction max(x, axis). */
function extremum(fn: "max" | "min"): Rule {
  const reduce = reduction(fn);
  return (c, a, e, scope) => {
    if (a.positional.length !== 2) return reduce(c, a, e, scope);
    const x = a.value(0, "a"), y = a.value(1, "b");
    a.done();
    if (x.kind === "static" && y.kind === "static") return foldStatic(fn, x, y);
    return elementwise(c, fn, x, y, e.span, scope, ` in ${fn}`);
  };
}

/** sum, mean, prod, max, min over one axis or all; norm is sqrt(sum(x * x)). */
function reduction(fn: ReduceFn | "norm" | "logsumexp"): Rule {
  return (c, a, e, scope) => {
    let x = a.tensor(0, "x");
    const all = !a.has(1, "axis");
    const g = x.grid ? (scope.grid?.vars.length ?? 0) : 0;
    const axes = all
      ? Array.from({ length: x.type.shape.length - g }, (_, i) => g + i)
      : [a.axis(x, 0, scope)];
    const keepdims = a.has(2, "keepdims") ? a.staticNumber(2, "keepdims") !== 0 : false;
    a.done();
    if (fn === "norm" || fn === "logsumexp") x = cast(c, x, "float", scope, e.span);
    if (fn === "norm") {
      x = c.op(scope, { op: "binary", fn: "mul" }, [x, x], x.type, e.span);
    }
    const rf = fn === "norm" ? "sum" : fn;
    for (const axis of axes.reverse()) {
      const shape = keepdims
        ? x.type.shape.map((d, i) => (i === axis ? 1 : d))
        : x.type.shape.filter((_, i) => i !== axis);
      nonEmpty(c, rf, x, axis, e.span);
      const dtype: DType = rf === "mean" || x.type.dtype === "float"
        ? "float"
        : x.type.dtype === "bool" && rf === "sum"
        ? "int"
        : x.type.dtype;
      const op: Op = rf === "logsumexp"
        ? { op: "logsumexp", axis, keepdims }
        : { op: "reduce", fn: rf, axis, keepdims };
      x = c.op(scope, op, [x], { dtype, shape }, e.span);
    }
    if (fn === "norm") x = c.op(scope, { op: "unary", fn: "sqrt" }, [x], x.type, e.span);
    return x;
  };
}

/** softmax and normalize: along one axis, in float, shape kept. */
function alongAxis(fn: "softmax" | "normalize"): Rule {
  return (c, a, e, scope) => {
    const x = cast(c, a.tensor(0, "x"), "float", scope, e.span);
    const axis = a.axis(x, -1, scope);
    a.done();
    return c.op(scope, { op: fn, axis }, [x], x.type, e.span);
  };
}

/** Inclusive prefix sum along a required axis, in float. */
function cumsum(c: Checker, a: ArgReader, e: Call, scope: Scope): Val {
  const x = cast(c, a.tensor(0, "x"), "float", scope, e.span);
  noGrid(c, scope, e);
  if (x.type.shape.length === 0) c.fail("cumsum needs a tensor of rank ≥ 1, got a scalar", e.span);
  if (!a.has(1, "axis")) {
    c.fail("cumsum needs an axis", e.span, "cumsum(x, axis=0) sums along rows");
  }
  const axis = a.axis(x, 0, scope);
  a.done();
  return c.op(scope, { op: "cumsum", axis }, [x], x.type, e.span);
}

/** The int vector 0, 1, ..., n-1 (n a size symbol, parameter or integer). */
function arange(c: Checker, a: ArgReader, e: Call): Val {
  const n = dimOf(c, a.value(0, "n"), e.args[0]?.span ?? e.span);
  a.done();
  return c.emit({ op: "iota", axis: 0 }, [], { dtype: "int", shape: [n] }, e.span);
}

function noGrid(c: Checker, scope: Scope, e: Call): void {
  if (scope.grid) {
    c.fail(
      `${e.fn} is not available inside index notation`,
      e.span,
      "compute it as its own tensor first",
    );
  }
}

function segmentMean(c: Checker, a: ArgReader, e: Call, scope: Scope): Val {
  const x = cast(c, a.tensor(0, "x"), "float", scope, e.span);
  const m = a.staticInt(1, "segments", 1);
  a.done();
  noGrid(c, scope, e);
  if (x.type.shape.length < 1) c.fail("segment_mean needs a tensor of rank ≥ 1", e.span);
  if (typeof x.type.shape[0] === "number" && x.type.shape[0] < m) {
    c.fail(`segment_mean: ${m} segments but only ${x.type.shape[0]} rows`, e.span);
  }
  return c.op(scope, { op: "segment_mean", segments: m }, [x], {
    dtype: "float",
    shape: [m, ...x.type.shape.slice(1)],
  }, e.span);
}

function scatterAdd(c: Checker, a: ArgReader, e: Call, scope: Scope): Val {
  const idx = a.tensor(0, "index"), vals = a.tensor(1, "values");
  const size = a.staticInt(2, "size", 1);
  a.done();
  noGrid(c, scope, e);
  if (idx.type.dtype !== "int") {
    c.fail(`scatter_add index must be int, got ${kindType(idx.type)}`, e.span);
  }
  if (idx.type.shape.length < 1 || vals.type.shape.length < 1) {
    c.fail("scatter_add needs index [..., n] and values [n, ...]", e.span);
  }
  const n1 = idx.type.shape[idx.type.shape.length - 1], n2 = vals.type.shape[0];
  if (!sameDim(n1, n2)) {
    c.fail(
      `scatter_add: index has ${describeDim(c, n1)} entries per row but values have ${
        describeDim(c, n2)
      } rows`,
      e.span,
    );
  }
  return c.op(scope, { op: "scatter_add", size }, [idx, cast(c, vals, "float", scope, e.span)], {
    dtype: "float",
    shape: [...idx.type.shape.slice(0, -1), size, ...vals.type.shape.slice(1)],
  }, e.span);
}

function bits(c: Checker, a: ArgReader, e: Call, scope: Scope): Val {
  const x = cast(c, a.tensor(0, "x"), "bool", scope, e.span);
  a.done();
  const b = x.type.shape[x.type.shape.length - 1];
  if (typeof b !== "number" || b > 24) {
    c.fail(`bits packs at most 24 bits, got a last axis of ${b ?? "nothing"}`, e.span);
  }
  return c.op(scope, { op: "bits" }, [x], {
    dtype: "int",
    shape: x.type.shape.slice(0, -1),
  }, e.span);
}

function topk(c: Checker, a: ArgReader, e: Call, scope: Scope): Val {
  const x = cast(c, a.tensor(0, "x"), "float", scope, e.span);
  const k = a.staticInt(1, "k", 1);
  a.done();
  if (x.type.shape.length - x.grid < 1) c.fail("topk needs a vector", e.span);
  const len = x.type.shape[x.type.shape.length - 1];
  if (typeof len === "number" && k > len) {
    // With a symbolic length the extra slots hold the index len (docs/language.md).
    c.fail(
      `topk: k = ${k} is more than the ${len} elements of the last axis`,
      e.span,
      `ask for at most ${len}`,
    );
  }
  return c.op(scope, { op: "topk", k }, [x], {
    dtype: "int",
    shape: [...x.type.shape.slice(0, -1), k],
  }, e.span);
}

/** Sugar: out[j] = where(j < A, a[j], b[j − A]) over A + B rows (reads outside give 0). */
function concat(c: Checker, a: ArgReader, e: Call, scope: Scope): Val {
  const x = a.tensor(0, "a");
  let y = a.tensor(1, "b");
  a.done();
  noGrid(c, scope, e);
  if (x.type.shape.length < 1) c.fail("concat needs a tensor of rank ≥ 1 first", e.span);
  if (y.type.shape.length === x.type.shape.length - 1) {
    y = c.emit({ op: "reshape" }, [y.id], { ...y.type, shape: [1, ...y.type.shape] }, e.span);
  }
  const [rows, ...rest] = x.type.shape;
  const [rowsB, ...restB] = y.type.shape;
  if (restB.length !== rest.length || !rest.every((d, i) => sameDim(d, restB[i]))) {
    c.fail(
      `concat: rows of [${x.type.shape.join(", ")}] and [${y.type.shape.join(", ")}] differ`,
      e.span,
      "both operands need the same trailing sizes",
    );
  }
  if (typeof rows !== "number" || typeof rowsB !== "number") {
    c.fail(
      `concat needs static row counts, got ${describeDim(c, rows)} and ${describeDim(c, rowsB)}`,
      e.span,
    );
  }
  const total = rows + rowsB;
  const kinds = [x.type.dtype, y.type.dtype];
  const dtype = promote(kinds, kinds.includes("int") ? "int" : "bool");
  const int = (shape: Dim[]) => ({ dtype: "int" as const, shape });
  const j = c.emit({ op: "iota", axis: 0 }, [], int([total]), e.span);
  const jCol = c.emit({ op: "iota", axis: 0 }, [], int([total, ...rest.map(() => 1)]), e.span);
  const first = c.emit({ op: "const", value: rows }, [], int([]), e.span);
  const shift = c.emit({ op: "binary", fn: "sub" }, [j.id, first.id], int([total]), e.span);
  const inA = c.emit({ op: "binary", fn: "lt" }, [jCol.id, first.id], {
    dtype: "bool",
    shape: jCol.type.shape,
  }, e.span);
  const shape = [total, ...rest];
  const fromA = c.emit({ op: "gather" }, [x.id, j.id], { dtype: x.type.dtype, shape }, e.span);
  const fromB = c.emit({ op: "gather" }, [y.id, shift.id], { dtype: y.type.dtype, shape }, e.span);
  return c.emit({ op: "where" }, [inA.id, fromA.id, fromB.id], { dtype, shape }, e.span);
}

function eye(c: Checker, a: ArgReader, e: Call): Val {
  const n = dimOf(c, a.value(0, "size"), e.args[0]?.span ?? e.span);
  a.done();
  return c.emit({ op: "eye" }, [], { dtype: "float", shape: [n, n] }, e.span);
}

/** head(), heads(), batch(), batches(): where this slice sits in the run (an int scalar). */
function lead(of: LeadFn): Rule {
  return (c, a, e) => {
    a.done();
    return c.emit({ op: "lead", of }, [], { dtype: "int", shape: [] }, e.span);
  };
}

/** zeros, ones and full: a float tensor of one value. */
function fill(value: (a: ArgReader) => number): Rule {
  return (c, a, e) => {
    const shape = a.shape(0);
    const v = value(a);
    a.done();
    return c.emit({ op: "fill", value: v }, [], { dtype: "float", shape }, e.span);
  };
}

/** Counter-based random tensors; each call without `stream=` gets the next stream. */
function random(kind: RandomKind): Rule {
  return (c, a, e, scope) => {
    const shape = a.shape(0);
    const hi = kind === "randint" ? cast(c, a.tensor(1, "hi"), "float", scope, e.span) : undefined;
    const seed = toTensor(c, a.value(kind === "randint" ? 2 : 1, "seed"), e.span);
    const stream = a.keyword("stream") ? a.staticInt(-1, "stream", 0) : c.streams++;
    a.done();
    noGrid(c, scope, e);
    if (seed.type.shape.length !== 0 || seed.type.dtype === "float") {
      c.fail(`seed must be an integer scalar, got ${kindType(seed.type)}`, e.span);
    }
    if (hi && hi.type.shape.length !== 0) c.fail("randint's hi must be a scalar", e.span);
    return c.emit(
      { op: "random", kind, stream },
      hi ? [seed.id, hi.id] : [seed.id],
      { dtype: kind === "randint" ? "int" : "float", shape },
      e.span,
    );
  };
}
