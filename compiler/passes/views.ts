/**
 * How a value laid over an index-notation grid reads a tensor: followed through broadcasts,
 * unit-axis reshapes, transposes and iota gathers (`x[i, a]`) down to the tensor they view. The
 * passes that rewrite contractions (contract.ts, causal.ts) prove their forms on this.
 */
import type { Dim, Node } from "../ir/types.ts";

/**
 * How a value laid over a grid reads a base value: base axis k is read at the grid's axis
 * `axes[k]` (undefined: a unit axis, read at 0). `path` is every node looked through.
 */
export interface Read {
  base: Node;
  axes: (number | undefined)[];
  path: Node[];
}

/**
 * How node `id`, broadcast (right-aligned) over grid shape F, reads its base value; undefined
 * when that is not a plain relabelling of axes (an axis read twice, shifted or partly).
 */
export function readOf(id: number, F: Dim[], byId: Map<number, Node>): Read | undefined {
  const n = byId.get(id)!;
  const off = F.length - n.type.shape.length;
  if (off < 0) return undefined;
  const axes: (number | undefined)[] = [];
  for (const [k, d] of n.type.shape.entries()) {
    if (d === 1) axes.push(undefined);
    else if (d === F[k + off]) axes.push(k + off);
    else return undefined;
  }
  const read = through({ base: n, axes, path: [] }, byId);
  const seen = read.axes.filter((a) => a !== undefined);
  return new Set(seen).size === seen.length ? read : undefined;
}

/** `read` followed through the views of its base: broadcasts, reshapes, transposes, gathers. */
function through(read: Read, byId: Map<number, Node>): Read {
  const n = read.base;
  const x = byId.get(n.args[0]);
  if (!x) return read;
  const xs = x.type.shape, ns = n.type.shape;
  let axes: (number | undefined)[] | undefined;
  if (n.op.op === "broadcast" && xs.length <= ns.length) {
    const off = ns.length - xs.length;
    axes = xs.map((d, k) => (d === 1 ? undefined : d === ns[k + off] ? read.axes[k + off] : NaN));
  } else if (n.op.op === "reshape" && !(ns.length === 2 && xs.length !== 2)) {
    // Only unit axes added or dropped: the other axes keep their order. A matrix made of a
    // value of another rank (passes/rows.ts) is read as the matrix it is.
    const big = (s: Dim[]) => s.flatMap((d, k) => (d === 1 ? [] : [k]));
    const [bx, bn] = [big(xs), big(ns)];
    if (bx.length === bn.length && bx.every((k, t) => xs[k] === ns[bn[t]])) {
      axes = xs.map((d, k) => (d === 1 ? undefined : read.axes[bn[bx.indexOf(k)]]));
    }
  } else if (n.op.op === "transpose" && xs.length >= 2) {
    const last = xs.length - 1;
    axes = xs.map((_, k) => read.axes[k === last ? last - 1 : k === last - 1 ? last : k]);
  } else if (n.op.op === "gather" && n.args.length - 1 <= xs.length) {
    axes = iotaAxes(n, x, read.axes, byId);
  }
  if (!axes || axes.some((a) => Number.isNaN(a))) return read;
  return through({ base: x, axes, path: [...read.path, n] }, byId);
}

/**
 * gather(x, idx_0, ..., idx_{k-1}) where each idx_k is an iota along one output axis over all
 * of x's axis k (index notation's `x[i, a]`; with fewer indices than axes, x's other axes follow
 * as the output's last): the output axis each x axis is read at.
 */
function iotaAxes(
  n: Node,
  x: Node,
  outAxes: (number | undefined)[],
  byId: Map<number, Node>,
): (number | undefined)[] | undefined {
  const out = n.type.shape, xs = x.type.shape;
  const idx = n.args.slice(1);
  // The indices broadcast over the output's leading axes; x's unindexed axes fill the rest.
  const lead = out.length - (xs.length - idx.length);
  const axes: (number | undefined)[] = [];
  for (const [k, id] of idx.entries()) {
    const ix = byId.get(id)!;
    if (ix.op.op !== "iota" || ix.type.dtype !== "int") return undefined;
    const at = ix.op.axis + lead - ix.type.shape.length;
    const len = ix.type.shape[ix.op.axis];
    if (len !== xs[k] || out[at] !== len) return undefined;
    axes.push(len === 1 ? undefined : outAxes[at]);
  }
  for (let k = idx.length; k < xs.length; k++) {
    const at = lead + k - idx.length;
    if (out[at] !== xs[k]) return undefined;
    axes.push(xs[k] === 1 ? undefined : outAxes[at]);
  }
  return axes;
}
