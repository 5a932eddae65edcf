/**
 * How large a stored int may get. Buffers hold float32, exact for ints within ±2^24 only, so an
 * int value a kernel stores (rather than computes where it is read) loses its low bits past that:
 * a Knuth hash `arange(n) * 1103515245 + 12345` stored and read as `h[j] % 3` in another kernel
 * picked other buckets on the GPU than the interpreter (probe 3). Int arithmetic is tracked
 * exactly (a bound on |value| at given sizes); values from elsewhere (int inputs, which binding
 * checks, casts of float data, loop-carried ints) are untracked: assumed within ±2^24 as the docs
 * say, not diagnosed.
 */
import type { Node } from "../ir/types.ts";
import type { Magnitude } from "./plan.ts";

const untracked: Magnitude = () => undefined;
/** The largest magnitude of an int32 (-2^31). */
const INT32_MAGNITUDE = 2 ** 31;
const known = (v: number): Magnitude => () => v;
/** f over the operands' bounds, untracked when one is. */
const lift = (f: (...xs: number[]) => number, ...ms: Magnitude[]): Magnitude => (sz) => {
  const xs = ms.map((m) => m(sz));
  return xs.every((x) => x !== undefined) ? f(...(xs as number[])) : undefined;
};

type Rule = (n: Node, arg: (k: number) => Magnitude, byId: Map<number, Node>) => Magnitude;

const same: Rule = (_, arg) => arg(0);
const larger: Rule = (_, arg) => lift(Math.max, arg(0), arg(1));

/** Binary int ops: bounds of a op b from bounds of a and b. */
const BINARY: Record<string, Rule> = {
  add: (_, arg) => lift((a, b) => a + b, arg(0), arg(1)),
  sub: (_, arg) => lift((a, b) => a + b, arg(0), arg(1)),
  mul: (_, arg) => lift((a, b) => a * b, arg(0), arg(1)),
  // |a // c| ≤ ⌈|a| / |c|⌉ for a constant c ≠ 0; |a // b| ≤ |a| for any b (a // 0 is 0).
  idiv: (n, arg, byId) => {
    const b = byId.get(n.args[1])!;
    return b.op.op === "const" && b.op.value !== 0
      ? lift((a) => Math.ceil(a / Math.abs((b.op as { value: number }).value)), arg(0))
      : arg(0);
  },
  // Floor mod by b ≠ 0 is below |b| whatever a is; a % 0 is a.
  mod: (n, arg, byId) => {
    const b = byId.get(n.args[1])!;
    return b.op.op === "const" && b.op.value !== 0
      ? known(Math.abs(b.op.value) - 1)
      : lift(Math.max, arg(0), arg(1));
  },
  max: larger,
  min: larger,
};

/** Rules per op for int-valued nodes; an op not listed is untracked. */
const RULES: Record<string, Rule> = {
  const: (n) => known(Math.abs((n.op as { value: number }).value)),
  fill: (n) => known(Math.abs((n.op as { value: number }).value)),
  eye: () => known(1),
  dim: (n) => (sz) => sz((n.op as { name: string }).name),
  iota: (n) => (sz) => Math.max(0, sz(n.type.shape[(n.op as { axis: number }).axis]) - 1),
  unary: (n, arg) => {
    const fn = (n.op as { fn: string }).fn;
    return fn === "neg" || fn === "abs" ? arg(0) : fn === "sign" ? known(1) : untracked;
  },
  binary: (n, arg, byId) => BINARY[(n.op as { fn: string }).fn]?.(n, arg, byId) ?? untracked,
  where: (_, arg) => lift(Math.max, arg(1), arg(2)),
  cast: (n, _, byId) => (byId.get(n.args[0])!.type.dtype === "bool" ? known(1) : untracked),
  gather: same, // a read outside gives 0
  reshape: same,
  transpose: same,
  broadcast: same,
  reduce: (n, arg, byId) => {
    const op = n.op as { fn: string; axis: number };
    const len = byId.get(n.args[0])!.type.shape[op.axis];
    return op.fn === "max" || op.fn === "min"
      ? arg(0)
      : op.fn === "sum"
      ? (sz) => lift((a) => a * sz(len), arg(0))(sz)
      : untracked;
  },
  // Indices along the last axis (one past it where k exceeds the axis).
  topk: (n, _, byId) => (sz) => sz(byId.get(n.args[0])!.type.shape.at(-1)!),
  bits: (n, _, byId) => (sz) => 2 ** sz(byId.get(n.args[0])!.type.shape.at(-1)!) - 1,
};

/** Bounds of each int node of `byId` on |value|, by its arithmetic (memoized). */
export function intMagnitudes(byId: Map<number, Node>): (id: number) => Magnitude {
  const memo = new Map<number, Magnitude>();
  const of = (id: number): Magnitude => {
    const hit = memo.get(id);
    if (hit) return hit;
    const n = byId.get(id);
    const rule = n && (n.type.dtype === "int" || n.type.dtype === "bool")
      ? RULES[n.op.op]
      : undefined;
    memo.set(id, untracked); // no cycles in a graph; this bounds the walk regardless
    const m = rule ? rule(n!, (k) => of(n!.args[k]), byId) : untracked;
    // Int arithmetic wraps: no int32 is larger than 2^31 in magnitude.
    const wrapped: Magnitude = (sz) => {
      const v = m(sz);
      return v === undefined ? v : Math.min(v, INT32_MAGNITUDE);
    };
    memo.set(id, wrapped);
    return wrapped;
  };
  return of;
}
