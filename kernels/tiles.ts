/**
 * Which blocks of (query, key) pairs a fused score masks out entirely. One interval analysis of
 * the score over a block i ∈ [ib, ie], j ∈ [jb, je], written once over an `Algebra` and run two
 * ways: in JS numbers (tests, `explain`'s tile counts) and as WGSL the flash kernel evaluates per
 * key block (sizes are symbolic and leaves are data there). A block is empty when every score in
 * it is exactly -inf: skipping it is then exact, since the online softmax ignores -inf. A NaN
 * score must reach the kernel's NaN flags, so a block that may hold one is never empty; an op the
 * analysis does not model gives "anything, NaN included".
 */
import type { Node, Score } from "../compiler/ir/types.ts";
import { attentionTile, keyTile } from "../compiler/limits.ts";
import { f32, size, sliceOf, type SymbolSlots } from "../compiler/wgsl/syntax.ts";

/** Arithmetic and logic over N (numbers) and B (truth values): JS values, or WGSL expressions. */
export interface Algebra<N, B> {
  num(x: number): N;
  bool(x: boolean): B;
  add(a: N, b: N): N;
  mul(a: N, b: N): N;
  div(a: N, b: N): N;
  min(a: N, b: N): N;
  max(a: N, b: N): N;
  floor(a: N): N;
  lt(a: N, b: N): B;
  le(a: N, b: N): B;
  eq(a: N, b: N): B;
  and(a: B, b: B): B;
  or(a: B, b: B): B;
  not(a: B): B;
  /** c ? t : f */
  pick(c: B, t: N, f: N): N;
}

/** What x may be: NaN only if `nan`, otherwise lo ≤ x ≤ hi (bounds never NaN, maybe infinite). */
export interface Interval<N, B> {
  lo: N;
  hi: N;
  nan: B;
}

/** The block's index ranges and leaf bounds (`leaf` for leaves read at i, j or [0]). */
export interface BlockEnv<N, B> {
  i: Interval<N, B>;
  j: Interval<N, B>;
  size(name: string): N;
  leaf(arg: number, at: "i" | "j" | "scalar"): Interval<N, B>;
}

// Products and quotients are widened outward by this relative amount: the GPU's division is
// within 2.5 ulp, and a multiply-add may be fused into one rounding; 2^-20 covers both.
const SLACK = 2 ** -20;

/** The interval of `x` over a block, in the algebra `A`. */
export function scoreBounds<N, B>(
  A: Algebra<N, B>,
  x: Score,
  env: BlockEnv<N, B>,
): Interval<N, B> {
  return bounder(A, env).go(x);
}

/**
 * The interval of `x` over a block, and for a top-level `where(c, a, b)` whether `c` is surely
 * true there (`full`: every score is `a`'s, so a kernel may compute `a` alone) or surely false
 * (`none`: `b`'s). Both exclude a NaN in `c`; a NaN in `a` or `b` stays in that branch.
 */
export function blockBounds<N, B>(
  A: Algebra<N, B>,
  x: Score,
  env: BlockEnv<N, B>,
): { v: Interval<N, B>; full: B; none: B } {
  const { go, truth, where } = bounder(A, env);
  if (x.kind !== "where") return { v: go(x), full: A.bool(false), none: A.bool(false) };
  const t = truth(go(x.c));
  return { v: where(t, go(x.a), go(x.b)), full: t.yes, none: t.no };
}

/** The interval of each score over the block `env`, and the truth of intervals. */
function bounder<N, B>(A: Algebra<N, B>, env: BlockEnv<N, B>) {
  const { top, point, truth, truthy, U1, B2, castInt, intOperand, intResult } = intervalOps(A);
  const where = (t: { yes: B; no: B }, a: Interval<N, B>, b: Interval<N, B>) => ({
    lo: A.pick(t.yes, a.lo, A.pick(t.no, b.lo, A.min(a.lo, b.lo))),
    hi: A.pick(t.yes, a.hi, A.pick(t.no, b.hi, A.max(a.hi, b.hi))),
    nan: A.or(A.and(A.not(t.no), a.nan), A.and(A.not(t.yes), b.nan)),
  });
  const go = (x: Score): Interval<N, B> => {
    if ("int" in x && x.int) return intOp(x);
    switch (x.kind) {
      case "qk":
        return top;
      case "i":
        return env.i;
      case "j":
        return env.j;
      case "const":
        return Number.isNaN(x.value) ? top : point(A.num(x.value));
      case "size":
        return point(env.size(x.name));
      case "leaf":
        return env.leaf(x.arg, x.at);
      case "table": // data read at (i, j): anything, NaN included
      case "draw": // a random draw: anything (an index outside its axis reads 0)
        return top;
      case "lead": // head(), heads(), batch(), batches(): a non-negative integer
        return { lo: A.num(0), hi: A.num(Infinity), nan: A.bool(false) };
      case "unary":
        return U1[x.fn]?.(go(x.x)) ?? top;
      case "binary": {
        const f = B2[x.fn];
        return f ? f(go(x.a), go(x.b)) : top;
      }
      case "where":
        return where(truth(go(x.c)), go(x.a), go(x.b));
      case "cast": {
        const a = go(x.x);
        if (x.to === "float") return a;
        if (x.to === "int") return castInt(a);
        const t = truth(a);
        return truthy(t.yes, t.no);
      }
    }
  };
  // Int arithmetic wraps past ±2^31 (compiler/ir/scalar.ts INT_BINARY): the float rule's bounds
  // hold unless they leave the range, and then any int may result.
  const intOp = (x: Score & { int?: true }): Interval<N, B> => {
    switch (x.kind) {
      case "unary":
        return intResult(U1[x.fn]?.(intOperand(go(x.x))) ?? top);
      case "binary": {
        const f = B2[x.fn];
        return intResult(f ? f(intOperand(go(x.a)), intOperand(go(x.b))) : top);
      }
      case "where":
        return where(truth(go(x.c)), intOperand(go(x.a)), intOperand(go(x.b)));
    }
    throw new Error(`internal: no int rule for ${x.kind}`);
  };
  return { go, truth, where };
}

/** The interval arithmetic of the algebra `A`. */
function baseRules<N, B>(A: Algebra<N, B>) {
  const inf = A.num(Infinity), ninf = A.num(-Infinity), zero = A.num(0), one = A.num(1);
  const F = A.bool(false);
  const top: Interval<N, B> = { lo: ninf, hi: inf, nan: A.bool(true) };
  const point = (v: N): Interval<N, B> => ({ lo: v, hi: v, nan: F });
  // Anything (NaN included) where `risk` holds, else v.
  const guard = (risk: B, v: Interval<N, B>): Interval<N, B> => ({
    lo: A.pick(risk, ninf, v.lo),
    hi: A.pick(risk, inf, v.hi),
    nan: A.or(risk, v.nan),
  });
  const neg = (a: N) => A.mul(a, A.num(-1));
  const mayInf = (a: Interval<N, B>) => A.or(A.eq(a.lo, ninf), A.eq(a.hi, inf));
  const mayZero = (a: Interval<N, B>) => A.and(A.le(a.lo, zero), A.le(zero, a.hi));
  const nans = (a: Interval<N, B>, b: Interval<N, B>) => A.or(a.nan, b.nan);
  const down = (v: N) =>
    A.pick(A.lt(v, zero), A.mul(v, A.num(1 + SLACK)), A.mul(v, A.num(1 - SLACK)));
  const up = (v: N) =>
    A.pick(A.lt(v, zero), A.mul(v, A.num(1 - SLACK)), A.mul(v, A.num(1 + SLACK)));
  const hull = (f: (a: N, b: N) => N, a: Interval<N, B>, b: Interval<N, B>) => {
    const ps = [f(a.lo, b.lo), f(a.lo, b.hi), f(a.hi, b.lo), f(a.hi, b.hi)];
    return {
      lo: down(A.min(A.min(ps[0], ps[1]), A.min(ps[2], ps[3]))),
      hi: up(A.max(A.max(ps[0], ps[1]), A.max(ps[2], ps[3]))),
      nan: F,
    };
  };
  // Truth: surely nonzero (`yes`), surely zero (`no`); a maybe-NaN operand is neither.
  // (A 0/1 value remembers its truth, so and/or/not chains stay short.)
  const truths = new WeakMap<Interval<N, B>, { yes: B; no: B }>();
  const truth = (a: Interval<N, B>) => {
    const known = truths.get(a);
    if (known) return known;
    const ok = A.not(a.nan);
    return {
      yes: A.and(ok, A.or(A.lt(zero, a.lo), A.lt(a.hi, zero))),
      no: A.and(ok, A.and(A.eq(a.lo, zero), A.eq(a.hi, zero))),
    };
  };
  const truthy = (yes: B, no: B): Interval<N, B> => {
    const v = { lo: A.pick(yes, one, zero), hi: A.pick(no, zero, one), nan: F };
    truths.set(v, { yes, no });
    return v;
  };
  const compare = (a: Interval<N, B>, b: Interval<N, B>, yes: B, no: B) => {
    const ok = A.not(nans(a, b));
    return truthy(A.and(ok, yes), A.and(ok, no));
  };
  const add = (a: Interval<N, B>, b: Interval<N, B>) =>
    guard(
      A.or(
        nans(a, b),
        A.or(A.and(A.eq(a.lo, ninf), A.eq(b.hi, inf)), A.and(A.eq(a.hi, inf), A.eq(b.lo, ninf))),
      ),
      { lo: A.add(a.lo, b.lo), hi: A.add(a.hi, b.hi), nan: F },
    );
  const negate = (a: Interval<N, B>) => ({ lo: neg(a.hi), hi: neg(a.lo), nan: a.nan });
  const mul = (a: Interval<N, B>, b: Interval<N, B>) =>
    guard(
      A.or(nans(a, b), A.or(A.and(mayZero(a), mayInf(b)), A.and(mayInf(a), mayZero(b)))),
      hull(A.mul, a, b),
    );
  const div = (a: Interval<N, B>, b: Interval<N, B>) =>
    guard(
      A.or(
        nans(a, b),
        A.or(mayInf(b), A.not(A.or(A.lt(zero, b.lo), A.lt(b.hi, zero)))),
      ),
      hull(A.div, a, b),
    );
  const floor = (a: Interval<N, B>) => ({ lo: A.floor(a.lo), hi: A.floor(a.hi), nan: a.nan });
  const minmax = (f: (a: N, b: N) => N) => (a: Interval<N, B>, b: Interval<N, B>) => ({
    lo: f(a.lo, b.lo),
    hi: f(a.hi, b.hi),
    nan: nans(a, b),
  });
  // x - y floor(x / y) for one finite y > 0 and finite x: in [0, y], give or take the rounding
  // of x / y (which can move the floor by one near a multiple of y).
  const mod = (a: Interval<N, B>, b: Interval<N, B>) => {
    const m = A.max(A.max(neg(a.lo), a.lo), A.max(neg(a.hi), a.hi));
    const slack = A.mul(A.add(m, b.hi), A.num(2 ** -18));
    const fine = A.and(A.and(A.eq(b.lo, b.hi), A.lt(zero, b.lo)), A.not(mayInf(b)));
    return guard(A.or(A.or(nans(a, b), mayInf(a)), A.not(fine)), {
      lo: neg(slack),
      hi: A.add(b.hi, slack),
      nan: F,
    });
  };
  // Ints: 32-bit. An operand outside the range may wrap anywhere; a NaN read is 0 (`f2i`).
  const IMIN = A.num(-(2 ** 31)), IMAX = A.num(2 ** 31 - 1), LIM = A.num(2 ** 31);
  const intOperand = (a: Interval<N, B>): Interval<N, B> => {
    const out = A.or(A.lt(a.lo, IMIN), A.le(LIM, a.hi));
    return {
      lo: A.pick(out, IMIN, A.pick(a.nan, A.min(a.lo, zero), a.lo)),
      hi: A.pick(out, IMAX, A.pick(a.nan, A.max(a.hi, zero), a.hi)),
      nan: F,
    };
  };
  // A result: bounds widened by the rounding of their own arithmetic (f32 in the kernel), then
  // to whole numbers; one that may leave the range (or the rule's "anything") is any int.
  const intResult = (v: Interval<N, B>): Interval<N, B> => {
    const lo = down(v.lo), hi = up(v.hi);
    const over = A.or(v.nan, A.or(A.lt(lo, IMIN), A.le(LIM, hi)));
    return {
      lo: A.pick(over, IMIN, neg(A.floor(neg(lo)))),
      hi: A.pick(over, IMAX, A.floor(hi)),
      nan: F,
    };
  };
  // int(x): floor, saturating; NaN is 0 (compiler/ir/scalar.ts toInt32).
  const castInt = (a: Interval<N, B>): Interval<N, B> => {
    const fl = floor(a);
    const clamp = (v: N) => A.min(A.max(v, IMIN), IMAX);
    return {
      lo: clamp(A.pick(a.nan, A.min(fl.lo, zero), fl.lo)),
      hi: clamp(A.pick(a.nan, A.max(fl.hi, zero), fl.hi)),
      nan: F,
    };
  };
  return {
    zero,
    top,
    point,
    floor,
    intOperand,
    intResult,
    castInt,
    truth,
    truthy,
    compare,
    add,
    negate,
    mul,
    div,
    mod,
    minmax,
    neg,
  };
}

/** The rules of each modelled op, as rows (an op without one gives `top`). */
function intervalOps<N, B>(A: Algebra<N, B>) {
  const r = baseRules(A);
  const { zero, truth, truthy, compare, add, negate, mul, div, mod, minmax, neg, floor } = r;
  const B2: Partial<Record<string, (a: Interval<N, B>, b: Interval<N, B>) => Interval<N, B>>> = {
    add,
    sub: (a, b) => add(a, negate(b)),
    mul,
    div,
    idiv: (a, b) => floor(div(a, b)),
    mod,
    max: minmax(A.max),
    min: minmax(A.min),
    lt: (a, b) => compare(a, b, A.lt(a.hi, b.lo), A.le(b.hi, a.lo)),
    le: (a, b) => compare(a, b, A.le(a.hi, b.lo), A.lt(b.hi, a.lo)),
    gt: (a, b) => compare(a, b, A.lt(b.hi, a.lo), A.le(a.hi, b.lo)),
    ge: (a, b) => compare(a, b, A.le(b.hi, a.lo), A.lt(a.hi, b.lo)),
    eq: (a, b) => compare(a, b, equalPoints(a, b), apart(a, b)),
    ne: (a, b) => compare(a, b, apart(a, b), equalPoints(a, b)),
    and: (a, b) => {
      const [p, q] = [truth(a), truth(b)];
      return truthy(A.and(p.yes, q.yes), A.or(p.no, q.no));
    },
    or: (a, b) => {
      const [p, q] = [truth(a), truth(b)];
      return truthy(A.or(p.yes, q.yes), A.and(p.no, q.no));
    },
  };
  function equalPoints(a: Interval<N, B>, b: Interval<N, B>): B {
    return A.and(A.and(A.eq(a.lo, a.hi), A.eq(b.lo, b.hi)), A.eq(a.lo, b.lo));
  }
  function apart(a: Interval<N, B>, b: Interval<N, B>): B {
    return A.or(A.lt(a.hi, b.lo), A.lt(b.hi, a.lo));
  }
  const U1: Partial<Record<string, (a: Interval<N, B>) => Interval<N, B>>> = {
    neg: negate,
    not: (a) => {
      const t = truth(a);
      return truthy(t.no, t.yes);
    },
    abs: (a) => ({
      lo: A.pick(A.le(zero, a.lo), a.lo, A.pick(A.le(a.hi, zero), neg(a.hi), zero)),
      hi: A.max(neg(a.lo), a.hi),
      nan: a.nan,
    }),
    floor,
    ceil: (a) => negate(floor(negate(a))),
    relu: (a) => ({ lo: A.max(a.lo, zero), hi: A.max(a.hi, zero), nan: a.nan }),
  };
  return { ...r, U1, B2 };
}

/** Whether every value of `v` is exactly -inf. */
export function allMinusInf<N, B>(A: Algebra<N, B>, v: Interval<N, B>): B {
  return A.and(A.not(v.nan), A.eq(v.hi, A.num(-Infinity)));
}

/** Whether a score can be -inf by construction (only then can a block be skipped). */
export function masksKeys(x: Score): boolean {
  switch (x.kind) {
    case "const":
      return x.value === -Infinity;
    case "unary":
    case "cast":
      return masksKeys(x.x);
    case "binary":
      return masksKeys(x.a) || masksKeys(x.b);
    case "where":
      return masksKeys(x.a) || masksKeys(x.b);
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// In JS numbers

/** The algebra on float64 numbers. */
export const NUMBERS: Algebra<number, boolean> = {
  num: (x) => x,
  bool: (x) => x,
  add: (a, b) => a + b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  min: Math.min,
  max: Math.max,
  floor: Math.floor,
  lt: (a, b) => a < b,
  le: (a, b) => a <= b,
  eq: (a, b) => a === b,
  and: (a, b) => a && b,
  or: (a, b) => a || b,
  not: (a) => !a,
  pick: (c, t, f) => (c ? t : f),
};

/** Bounds of `data[lo..hi]` (inclusive), NaNs flagged apart. */
export function rangeOf(
  data: ArrayLike<number>,
  lo: number,
  hi: number,
): Interval<number, boolean> {
  let mn = Infinity, mx = -Infinity, nan = false;
  for (let x = lo; x <= hi; x++) {
    const v = data[x];
    if (Number.isNaN(v)) nan = true;
    else mn = Math.min(mn, v), mx = Math.max(mx, v);
  }
  return { lo: mn, hi: mx, nan };
}

/** Empty (every score -inf), full (mask surely true: a top-level where's condition) or partial. */
export type TileClass = "empty" | "partial" | "full";

/**
 * The block i ∈ [ib, ie], j ∈ [jb, je] in JS numbers, with `leaves[arg]` the data of leaf
 * argument `arg` for one slice (a missing one is unknown) and `sizes` the size symbols.
 */
export function numericBlock(
  block: [number, number, number, number],
  sizes: Record<string, number>,
  leaves: (ArrayLike<number> | undefined)[] = [],
): BlockEnv<number, boolean> {
  const [ib, ie, jb, je] = block;
  return {
    i: { lo: ib, hi: ie, nan: false },
    j: { lo: jb, hi: je, nan: false },
    size: (name) => {
      if (sizes[name] === undefined) throw new Error(`internal: no size ${name}`);
      return sizes[name];
    },
    leaf: (arg, at) => {
      const d = leaves[arg];
      if (!d) return { lo: -Infinity, hi: Infinity, nan: true };
      return at === "scalar"
        ? rangeOf(d, 0, 0)
        : at === "i"
        ? rangeOf(d, ib, ie)
        : rangeOf(d, jb, je);
    },
  };
}

const EXACT_ON_INTEGERS = new Set<string>(["add", "sub", "mul", "min", "max"]);

/**
 * Whether the index `x` of a table read is, for every i and j, a number in [0, dim): not NaN and
 * inside the axis (T5's `clamp(j - i, -K, K) + K` into a table of 2K + 1), so that the read needs
 * neither of gather's tests.
 */
export function indexInRange(x: Score, dim: number): boolean {
  // No division: the GPU's is within 2.5 ulp, so the quotient in `%` and `//` may round to the
  // next integer and leave the proven range.
  const exact = (y: Score): boolean =>
    y.kind === "i" || y.kind === "j" || y.kind === "lead" ||
    (y.kind === "const" && Number.isInteger(y.value)) ||
    (y.kind === "cast" && y.to !== "bool" && exact(y.x)) ||
    (y.kind === "unary" && (y.fn === "neg" || y.fn === "abs") && exact(y.x)) ||
    (y.kind === "binary" && EXACT_ON_INTEGERS.has(y.fn) && exact(y.a) && exact(y.b));
  if (!exact(x)) return false;
  // Any position: below 2^31 (buffers are far smaller), so i32(i) is i. As a float, f32(i) is
  // rounded past 2^24, but the bounds that prove an index come from min/max, exact on whatever
  // value they get.
  const index = { lo: 0, hi: 2 ** 31 - 1, nan: false };
  const v = scoreBounds(NUMBERS, x, {
    i: index,
    j: index,
    size: () => NaN, // never reached: no size in x
    leaf: () => ({ lo: -Infinity, hi: Infinity, nan: true }), // nor a leaf
  });
  return !v.nan && v.lo >= 0 && Math.floor(v.hi) < dim;
}

/** The class of a block of `score` (see `numericBlock`). */
export function classifyBlock(
  score: Score,
  block: [number, number, number, number],
  sizes: Record<string, number>,
  leaves: (ArrayLike<number> | undefined)[] = [],
): TileClass {
  const { v, full } = blockBounds(NUMBERS, score, numericBlock(block, sizes, leaves));
  return allMinusInf(NUMBERS, v) ? "empty" : full ? "full" : "partial";
}

/** Tile counts of an attention (or probs) node at the given sizes, with the kernel's tiles. */
export function tileCounts(
  node: Node,
  args: Node[],
  sizes: Record<string, number>,
  leaves: (ArrayLike<number> | undefined)[] = [],
): Record<TileClass, number> {
  const score = (node.op as { score: Score }).score;
  const dimOf = (d: number | string) => (typeof d === "number" ? d : sizes[d]);
  const rows = dimOf(args[0].type.shape[0]), cols = dimOf(args[1].type.shape[0]);
  const R = attentionTile.rows, T = keyTile.keys;
  const out: Record<TileClass, number> = { empty: 0, partial: 0, full: 0 };
  for (let ib = 0; ib < rows; ib += R) {
    for (let jb = 0; jb < cols; jb += T) {
      const block: [number, number, number, number] = [
        ib,
        Math.min(ib + R, rows) - 1,
        jb,
        Math.min(jb + T, cols) - 1,
      ];
      out[classifyBlock(score, block, sizes, leaves)]++;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// In WGSL

/**
 * The algebra on WGSL f32/bool expressions: each result is a `let` appended to `lines` (bounds
 * are read many times; named once they stay linear in the score's size), with literal booleans
 * and numbers folded.
 */
function wgslAlgebra(lines: string[], prefix: string): Algebra<string, string> {
  let n = 0;
  const known = new Map<string, number>();
  const exprs = new Map<string, string>();
  const name = (e: string) => {
    const v = `${prefix}${n++}`;
    exprs.set(v, e);
    lines.push(`let ${v} = ${e};`);
    return v;
  };
  const num = (x: number) => {
    const s = f32(x);
    known.set(s, Math.fround(x));
    return s;
  };
  const fold =
    (f: (x: number, y: number) => number, op: (a: string, b: string) => string) =>
    (a: string, b: string) => {
      const x = known.get(a), y = known.get(b);
      return x !== undefined && y !== undefined ? num(f(x, y)) : name(op(a, b));
    };
  const cmp = (f: (x: number, y: number) => boolean, op: string) => (a: string, b: string) => {
    const x = known.get(a), y = known.get(b);
    return x !== undefined && y !== undefined ? String(f(x, y)) : name(`${a} ${op} ${b}`);
  };
  return {
    num,
    bool: (x) => String(x),
    add: fold((x, y) => x + y, (a, b) => `${a} + ${b}`),
    mul: fold((x, y) => x * y, (a, b) => `${a} * ${b}`),
    div: fold((x, y) => x / y, (a, b) => `${a} / ${b}`),
    // Bounds are never NaN where they are used, so WGSL's min and max are exact here.
    min: fold(Math.min, (a, b) => `min(${a}, ${b})`),
    max: fold(Math.max, (a, b) => `max(${a}, ${b})`),
    floor: (a) => (known.has(a) ? num(Math.floor(known.get(a)!)) : name(`floor(${a})`)),
    lt: cmp((x, y) => x < y, "<"),
    le: cmp((x, y) => x <= y, "<="),
    eq: cmp((x, y) => x === y, "=="),
    and: (a, b) =>
      a === "false" || b === "false"
        ? "false"
        : a === "true"
        ? b
        : b === "true"
        ? a
        : name(`${a} && ${b}`),
    or: (a, b) =>
      a === "true" || b === "true"
        ? "true"
        : a === "false"
        ? b
        : b === "false"
        ? a
        : name(`${a} || ${b}`),
    not: (a) => {
      if (a === "true" || a === "false") return a === "true" ? "false" : "true";
      const m = /^!(\w+)$/.exec(exprs.get(a) ?? "");
      return m ? m[1] : name(`!${a}`);
    },
    pick: (
      c,
      t,
      f,
    ) => (c === "true" ? t : c === "false" ? f : t === f ? t : name(`select(${f}, ${t}, ${c})`)),
  };
}

/** WGSL: whether an f32 is NaN, on its bits (lavapipe folds x != x to false). */
const nanBits = (x: string) => `((bitcast<u32>(${x}) & 0x7fffffffu) > 0x7f800000u)`;

/** WGSL statements folding `vals` into `let {v}lo, {v}hi, {v}nan` (NaNs kept out of the bounds). */
function boundsOf(v: string, vals: string[]): string {
  const inf = f32(Infinity), ninf = f32(-Infinity);
  return [
    `var ${v}lo = ${inf}; var ${v}hi = ${ninf}; var ${v}nan = false;`,
    ...vals.map((x) =>
      `{ let x = ${x}; if (${
        nanBits("x")
      }) { ${v}nan = true; } else { ${v}lo = min(${v}lo, x); ${v}hi = max(${v}hi, x); } }`
    ),
  ].join("\n    ");
}

/** The WGSL a flash kernel needs to skip key blocks whose scores are all -inf. */
export interface TileSkip {
  /** Keys per block. */
  keys: number;
  /** Once per invocation (after `ib`, `ie`, `i{r}`): bounds of leaves read at i. */
  rows: string;
  /** Per key block [jt, jte) (u32, jte exclusive, not empty): statements, then `empty`. */
  block: string;
  /** WGSL bool: every score of the block is -inf. */
  empty: string;
  /**
   * WGSL bool (after `block`): the score's top-level `where` condition is surely true over the
   * block, so each score there is its `a` branch (`fullScore`); absent when never provable.
   */
  full?: string;
}

/**
 * Block tests for `score` in a kernel whose leaf `arg` is binding `a{arg}` (slice `s`), with
 * `rows` query rows `i0..i{rows-1}` per invocation; none when no block can be proven empty or
 * full (`empty` is the literal "false" when only full ones can).
 */
export function tileSkip(
  score: Score,
  args: Node[],
  slots: SymbolSlots,
  rows: number,
): TileSkip | undefined {
  if (!masksKeys(score) && score.kind !== "where") return undefined;
  const T = keyTile.keys;
  const lines: string[] = [];
  const A = wgslAlgebra(lines, "tk");
  const read = (arg: number, at: string) =>
    `a${arg}[${sliceOf(args[arg].id, slots)} * ${size(args[arg].type.shape, slots)}${at}]`;
  const leaves = new Map<string, { arg: number; at: "i" | "j" | "scalar" }>();
  const collect = (x: Score): void => {
    if (x.kind === "leaf") leaves.set(`${x.at}${x.arg}`, x);
    else if (x.kind === "unary" || x.kind === "cast") collect(x.x);
    else if (x.kind === "binary") (collect(x.a), collect(x.b));
    else if (x.kind === "where") (collect(x.c), collect(x.a), collect(x.b));
  };
  collect(score);
  const rowLines: string[] = [], blockLines: string[] = [];
  for (const [key, l] of leaves) {
    if (l.at === "i") {
      rowLines.push(
        boundsOf(`tl${key}`, Array.from({ length: rows }, (_, r) => read(l.arg, ` + i${r}`))),
      );
    } else {
      blockLines.push(
        boundsOf(
          `tl${key}`,
          l.at === "scalar"
            ? [read(l.arg, "")]
            : Array.from({ length: T }, (_, c) => read(l.arg, ` + min(jt + ${c}u, jte - 1u)`)),
        ),
      );
    }
  }
  const { v, full } = blockBounds(A, score, {
    i: { lo: "f32(ib)", hi: "f32(ie)", nan: "false" },
    j: { lo: "f32(jt)", hi: "f32(jte - 1u)", nan: "false" },
    size: (name) => `f32(${size([name], slots)})`,
    leaf: (arg, at) => ({ lo: `tl${at}${arg}lo`, hi: `tl${at}${arg}hi`, nan: `tl${at}${arg}nan` }),
  });
  // A score that is never -inf by construction has no empty block (its bounds may not fold).
  const empty = masksKeys(score) ? allMinusInf(A, v) : "false";
  if (empty === "false" && full === "false") return undefined;
  return {
    keys: T,
    rows: rowLines.join("\n  "),
    block: [...blockLines, ...lines].join("\n    "),
    empty,
    full: full === "false" ? undefined : full,
  };
}
