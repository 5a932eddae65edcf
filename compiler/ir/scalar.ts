/**
 * Op semantics: what each elementwise function computes on one float64 scalar. The one
 * definition shared by the interpreter (the oracle) and constant folding, so folding cannot
 * change a result.
 */
import type { BinaryFn, UnaryFn } from "./types.ts";

/** Scalar semantics of the elementwise functions (shared with constant folding). */
export const UNARY: Record<UnaryFn, (x: number) => number> = {
  neg: (x) => -x,
  not: (x) => (x ? 0 : 1),
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  abs: Math.abs,
  tanh: Math.tanh,
  acos: Math.acos,
  cos: Math.cos,
  sin: Math.sin,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  relu: (x) => (x > 0 ? x : 0),
  elu: (x) => (x > 0 ? x : Math.expm1(x)),
  floor: Math.floor,
  ceil: Math.ceil,
  sign: Math.sign,
  erf,
};

/** Scalar semantics of the binary functions (shared with constant folding). */
export const BINARY: Record<BinaryFn, (x: number, y: number) => number> = {
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
  idiv: (x, y) => Math.floor(x / y),
  mod: (x, y) => x - y * Math.floor(x / y),
  pow: (x, y) => x ** y,
  // Math.max/min: NaN wins, +0 is above -0 (the checker's constant folding uses the same).
  max: Math.max,
  min: Math.min,
  lt: (x, y) => +(x < y),
  le: (x, y) => +(x <= y),
  gt: (x, y) => +(x > y),
  ge: (x, y) => +(x >= y),
  eq: (x, y) => +(x === y),
  ne: (x, y) => +(x !== y),
  and: (x, y) => +(x !== 0 && y !== 0),
  or: (x, y) => +(x !== 0 || y !== 0),
};

/**
 * log Σ exp of a fiber, shifted by its max (by 0 when the max is ±inf, so no inf − inf): a fiber
 * of -inf (or an empty one) gives -inf, one holding +inf gives +inf, a NaN gives NaN.
 */
export function logSumExp(v: ArrayLike<number>): number {
  let m = -Infinity;
  for (let k = 0; k < v.length; k++) m = Math.max(m, v[k]);
  const shift = Number.isFinite(m) ? m : 0;
  let s = 0;
  for (let k = 0; k < v.length; k++) s += Math.exp(v[k] - shift);
  return shift + Math.log(s);
}

/** Abramowitz–Stegun 7.1.26 is too coarse for an oracle; use a series/continued fraction. */
function erf(x: number): number {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? x : Math.sign(x);
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let sum = 0, term = ax;
    for (let k = 0; k < 100; k++) {
      sum += term / (2 * k + 1);
      term *= (-ax * ax) / (k + 1);
      if (Math.abs(term) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction (Lentz).
  let f = ax, c = ax, d = 0;
  for (let k = 1; k < 200; k++) {
    const an = k / 2;
    d = ax + an * d;
    d = 1 / d;
    c = ax + an / c;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / (f * Math.sqrt(Math.PI));
  return Math.sign(x) * (1 - erfc);
}

/**
 * A float cast to int (`int(x)`): floor, saturating at the ends of the 32-bit range; NaN is 0
 * (the GPU's `f2i`, compiler/wgsl/ops.ts, does the same).
 */
export function toInt32(x: number): number {
  if (Number.isNaN(x)) return 0;
  const f = Math.floor(x);
  return f >= 2 ** 31 ? 2 ** 31 - 1 : f < -(2 ** 31) ? -(2 ** 31) : f;
}

/**
 * An int operand as a 32-bit two's-complement value: an int literal past the range wraps
 * (2654435761 is -1640531535, so Knuth's multiplicative hash reads as written). Every other
 * int is already one.
 */
export const wrapInt32 = (x: number): number => x | 0;

const w = wrapInt32;

/** Int semantics of the unary functions that keep ints (neg, abs): wrapping, as WGSL's i32. */
export const INT_UNARY: Partial<Record<UnaryFn, (x: number) => number>> = {
  neg: (x) => -w(x) | 0,
  abs: (x) => Math.abs(w(x)) | 0,
};

/**
 * Int semantics of the binary functions that give ints: 32-bit two's-complement, wrapping past
 * ±2^31 (so a hash like `(i * 2654435761) % m` is one value on every backend). `//` and `%` floor
 * (Python's rule: `x % m` lies in [0, m) for m > 0); `x // 0` is 0 and `x % 0` is x, which keeps
 * x = m (x // m) + x % m.
 */
export const INT_BINARY: Partial<Record<BinaryFn, (x: number, y: number) => number>> = {
  add: (x, y) => (w(x) + w(y)) | 0,
  sub: (x, y) => (w(x) - w(y)) | 0,
  mul: (x, y) => Math.imul(w(x), w(y)),
  idiv: (x, y) => {
    const a = w(x), b = w(y);
    return b === 0 ? 0 : Math.floor(a / b) | 0;
  },
  mod: (x, y) => {
    const a = w(x), b = w(y);
    if (b === 0) return a;
    const r = a % b;
    return (r !== 0 && r < 0 !== b < 0 ? r + b : r) | 0;
  },
  max: (x, y) => Math.max(w(x), w(y)),
  min: (x, y) => Math.min(w(x), w(y)),
};

/** The scalar function of a unary op whose result has dtype `dtype`. */
export function unaryOf(fn: UnaryFn, dtype: string): (x: number) => number {
  return (dtype === "int" && INT_UNARY[fn]) || UNARY[fn];
}

/** The scalar function of a binary op whose result has dtype `dtype`. */
export function binaryOf(fn: BinaryFn, dtype: string): (x: number, y: number) => number {
  return (dtype === "int" && INT_BINARY[fn]) || BINARY[fn];
}

/** float → int floors (saturating, NaN → 0: `toInt32`), anything → bool is "not zero". */
export function castTo(to: string, x: number): number {
  return to === "bool" ? +(x !== 0) : to === "int" ? toInt32(x) : x;
}
