/**
 * How large a stored int may get. Buffers hold float32, exact for ints within ±2^24 only, so an
 * int value a kernel stores (rather than computes where it is read) loses its low bits past that:
 * a Knuth hash `arange(n) * 1103515245 + 12345` stored and read as `h[j] % 3` in another kernel
 * picked other buckets on the GPU than the interpreter (probe 3). Int arithmetic is tracked
 * exactly as an interval [lo, hi] at given sizes (intervals, not magnitudes: `min(arange(n) *
 * 10^8, 5)` is at most 5, never below 0). An int input is the range of the data a run binds
 * (a product of inputs summed past 2^24 was silently rounded: probe 7). Values from elsewhere
 * (casts of float data, loop-carried ints) are untracked: assumed within ±2^24 as the docs say,
 * not diagnosed.
 */
import type { Dim, Node } from "../ir/types.ts";
import { wrapInt32 } from "../ir/scalar.ts";
import type { InputRanges, Magnitude } from "./plan.ts";

/** The values an int node may take at given sizes and inputs; undefined: untracked. */
type Interval = (
  size: (d: Dim) => number,
  inputs: InputRanges,
) => [number, number] | undefined;

const INT32: [number, number] = [-(2 ** 31), 2 ** 31 - 1];
const untracked: Interval = () => undefined;
const known = (lo: number, hi = lo): Interval => () => [lo, hi];
/** f over the operands' intervals, untracked when one is. */
const lift = (
  f: (...xs: [number, number][]) => [number, number],
  ...ms: Interval[]
): Interval =>
(sz, inputs) => {
  const xs = ms.map((m) => m(sz, inputs));
  return xs.every((x) => x !== undefined) ? f(...(xs as [number, number][])) : undefined;
};
/** The hull of some values. */
const hull = (...xs: number[]): [number, number] => [Math.min(...xs), Math.max(...xs)];
/** |x| at most m. */
const within = (m: number): [number, number] => [-m, m];
const magnitude = ([lo, hi]: [number, number]) => Math.max(Math.abs(lo), Math.abs(hi));

type Rule = (n: Node, arg: (k: number) => Interval, byId: Map<number, Node>) => Interval;

const same: Rule = (_, arg) => arg(0);
/** The constant second operand of a binary node, if it is one. */
const constant = (n: Node, byId: Map<number, Node>): number | undefined => {
  const b = byId.get(n.args[1])!.op;
  return b.op === "const" ? wrapInt32(b.value) : undefined;
};

/** Binary int ops: the interval of a op b from those of a and b. */
const BINARY: Record<string, Rule> = {
  add: (_, arg) => lift(([a, b], [c, d]) => [a + c, b + d], arg(0), arg(1)),
  sub: (_, arg) => lift(([a, b], [c, d]) => [a - d, b - c], arg(0), arg(1)),
  mul: (_, arg) => lift(([a, b], [c, d]) => hull(a * c, a * d, b * c, b * d), arg(0), arg(1)),
  // Floor division by a constant c ≠ 0 is monotone in a; by anything else |a // b| ≤ |a| (a // 0
  // is 0).
  idiv: (n, arg, byId) => {
    const c = constant(n, byId);
    return c !== undefined && c !== 0
      ? lift(([a, b]) => hull(Math.floor(a / c), Math.floor(b / c)), arg(0))
      : lift((a) => within(magnitude(a)), arg(0));
  },
  // Floor mod by c ≠ 0 takes c's sign and is below |c|; a % 0 is a.
  mod: (n, arg, byId) => {
    const c = constant(n, byId);
    return c !== undefined && c !== 0
      ? known(Math.min(0, c + 1), Math.max(0, c - 1))
      : lift((a, b) => within(Math.max(magnitude(a), magnitude(b))), arg(0), arg(1));
  },
  max: (_, arg) => lift(([a, b], [c, d]) => [Math.max(a, c), Math.max(b, d)], arg(0), arg(1)),
  min: (_, arg) => lift(([a, b], [c, d]) => [Math.min(a, c), Math.min(b, d)], arg(0), arg(1)),
};

/** Unary int ops. */
const UNARY: Record<string, Rule> = {
  neg: (_, arg) => lift(([a, b]) => [-b, -a], arg(0)),
  abs: (_, arg) => lift(([a, b]) => [a > 0 ? a : b < 0 ? -b : 0, magnitude([a, b])], arg(0)),
  sign: () => known(-1, 1),
};

/** Rules per op for int-valued nodes; an op not listed is untracked. */
const RULES: Record<string, Rule> = {
  input: (n) => (_, inputs) => inputs((n.op as { name: string }).name),
  // An int constant past int32 (`-(-2147483648)`, folded exactly) wraps where it is used.
  const: (n) => known(wrapInt32((n.op as { value: number }).value)),
  fill: (n) => known(wrapInt32((n.op as { value: number }).value)),
  eye: () => known(0, 1),
  dim: (n) => (sz) => {
    const v = sz((n.op as { name: string }).name);
    return [v, v];
  },
  iota: (n) => (sz) => [0, Math.max(0, sz(n.type.shape[(n.op as { axis: number }).axis]) - 1)],
  unary: (n, arg, byId) => UNARY[(n.op as { fn: string }).fn]?.(n, arg, byId) ?? untracked,
  binary: (n, arg, byId) => BINARY[(n.op as { fn: string }).fn]?.(n, arg, byId) ?? untracked,
  where: (_, arg) => lift(([a, b], [c, d]) => [Math.min(a, c), Math.max(b, d)], arg(1), arg(2)),
  cast: (n, _, byId) => (byId.get(n.args[0])!.type.dtype === "bool" ? known(0, 1) : untracked),
  // A read outside gives 0.
  gather: (_, arg) => lift(([a, b]) => [Math.min(a, 0), Math.max(b, 0)], arg(0)),
  reshape: same,
  transpose: same,
  broadcast: same,
  reduce: (n, arg, byId) => {
    const op = n.op as { fn: string; axis: number };
    const len = byId.get(n.args[0])!.type.shape[op.axis];
    return op.fn === "max" || op.fn === "min"
      ? arg(0)
      : op.fn === "sum"
      ? (sz, x) => lift(([a, b]) => hull(a * sz(len), b * sz(len)), arg(0))(sz, x)
      : op.fn === "prod"
      ? (sz, x) => lift((a) => within(magnitude(a) ** sz(len)), arg(0))(sz, x)
      : untracked;
  },
  // Each element a sum of K products.
  matmul: (n, arg, byId) => (sz, x) => {
    const K = sz(byId.get(n.args[0])!.type.shape.at(-1)!);
    return lift((a, b) => within(K * magnitude(a) * magnitude(b)), arg(0), arg(1))(sz, x);
  },
  // Indices along the last axis (one past it where k exceeds the axis).
  topk: (n, _, byId) => (sz) => [0, sz(byId.get(n.args[0])!.type.shape.at(-1)!)],
  bits: (n, _, byId) => (sz) => [0, 2 ** sz(byId.get(n.args[0])!.type.shape.at(-1)!) - 1],
};

/** Bounds of each int node of `byId` on |value|, by its arithmetic (memoized). */
export function intMagnitudes(byId: Map<number, Node>): (id: number) => Magnitude {
  const memo = new Map<number, Interval>();
  const of = (id: number): Interval => {
    const hit = memo.get(id);
    if (hit) return hit;
    const n = byId.get(id);
    const rule = n && (n.type.dtype === "int" || n.type.dtype === "bool")
      ? RULES[n.op.op]
      : undefined;
    memo.set(id, untracked); // no cycles in a graph; this bounds the walk regardless
    const m = rule ? rule(n!, (k) => of(n!.args[k]), byId) : untracked;
    // Int arithmetic wraps: past int32, any int32.
    const wrapped: Interval = (sz, inputs) => {
      const v = m(sz, inputs);
      return v === undefined || (v[0] >= INT32[0] && v[1] <= INT32[1]) ? v : INT32;
    };
    memo.set(id, wrapped);
    return wrapped;
  };
  return (id) => (sz, inputs = () => undefined) => {
    const v = of(id)(sz, inputs);
    return v && magnitude(v);
  };
}
