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

/** float → int floors, anything → bool is "not zero". */
export function castTo(to: string, x: number): number {
  return to === "bool" ? +(x !== 0) : to === "int" ? Math.floor(x) : x;
}
