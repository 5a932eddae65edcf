/**
 * Contractions over a prefix sum, without the prefix state. Causal linear attention writes
 * `S = cumsum(kv, axis=0)` with `kv[j, a, c] = u[j, a] * w[j, c]` and then
 * `sum[a](x[i, a] * S[i, a, c])`: stored, S is n·d·e floats written once and read back. The
 * same value is Σ_{j ≤ i} (x_i · u_j) w_j, which lowering computes in chunks of rows (per chunk
 * the state Σ u_j w_jᵀ, an exclusive scan over chunks, then each row's own chunk directly;
 * kernels/causal.ts). This pass proves the form and replaces the reduction by one
 * `causal_contract` node (x, u, w), or (x, u) for the rank-reduced `sum[a](x[i, a] * cumsum(u,
 * axis=0)[i, a])`; the interpreter evaluates that node by itself, in the same order as the
 * unfused graph.
 *
 * Fused only when every step is proven: a sum over axis 1 or 2 (not kept) of a float product of
 * one operand that reads the inclusive `cumsum` along axis 0 with the scan's rows on the
 * product's rows (no shift, no other axis), and one that varies only along the rows and the
 * contracted axis; the scanned value an outer product per row (each factor varying along the
 * rows and one of its axes); the scan and the values between it and the product read nowhere
 * else (otherwise they are stored anyway and the rewrite saves nothing). Reads are followed
 * through broadcasts, unit-axis reshapes, transposes and index notation's iota gathers.
 */
import type { Dim, Graph, Node } from "../ir/types.ts";
import { mapNodes, nodesById, useCounts } from "../ir/walks.ts";
import { type Read, readOf } from "./views.ts";

/** `graph` with each proven contraction over a prefix sum as one `causal_contract` node. */
export function fuseCausalContractions(graph: Graph): Graph {
  const byId = nodesById(graph);
  const uses = useCounts(graph);
  let next = Math.max(0, ...byId.keys()) + 1;
  return mapNodes(graph, (n) => {
    const added: Node[] = [];
    const add: Add = (op, args, shape, from) => {
      const node: Node = { id: next++, op, args, type: { dtype: from.type.dtype, shape } };
      if (n.span) node.span = n.span;
      added.push(node);
      byId.set(node.id, node);
      return node.id;
    };
    const fused = contraction(n, byId, uses, add);
    if (!fused) return n;
    const op: Node["op"] = { op: "causal_contract" };
    if (same(fused.shape, n.type.shape)) return [...added, { ...n, op, args: fused.args }];
    // The rank-reduced form under a grid with a unit axis ([n, 1]): the [n] result, reshaped.
    const id = add(op, fused.args, fused.shape, n);
    return [...added, { ...n, op: { op: "reshape" }, args: [id] }];
  });
}

const same = (s: Dim[], t: Dim[]) => s.length === t.length && s.every((d, i) => d === t[i]);

type Add = (op: Node["op"], args: number[], shape: Dim[], from: Node) => number;

/** The operands and shape of the `causal_contract` computing `n`, when the form is proven. */
function contraction(
  n: Node,
  byId: Map<number, Node>,
  uses: Map<number, number>,
  add: Add,
): { args: number[]; shape: Dim[] } | undefined {
  if (n.op.op !== "reduce" || n.op.fn !== "sum" || n.op.keepdims) return undefined;
  const r = n.op.axis, prod = byId.get(n.args[0])!;
  const F = prod.type.shape;
  if (r === 0 || r >= F.length || F.length < 2 || F.length > 3) return undefined;
  if (prod.op.op !== "binary" || prod.op.fn !== "mul" || prod.type.dtype !== "float") {
    return undefined;
  }
  if (uses.get(prod.id) !== 1) return undefined;
  for (const [s, o] of [[0, 1], [1, 0]]) {
    const scan = readOf(prod.args[s], F, byId);
    if (!scan) continue;
    const S = scan.base;
    if (S.op.op !== "cumsum" || S.op.axis !== 0 || S.type.dtype !== "float") continue;
    // The scan's rows on the product's rows (one row: both unit axes).
    const rows = scan.axes[0] ?? (F[0] === 1 ? 0 : undefined);
    if (rows !== 0 || ![...scan.path, S].every((p) => uses.get(p.id) === 1)) continue;
    const x = readOf(prod.args[o], F, byId);
    if (!x || !only(x, [0, r])) continue;
    if (S.type.shape.length === 2) {
      // Rank-reduced: the scan's columns on the contracted axis; another grid axis is a unit.
      const along = scan.axes[1] ?? (F[r] === 1 ? r : undefined);
      if (along !== r || (F.length === 3 && F[3 - r] !== 1)) continue;
      return { args: [matrix(x, r, F, add), S.args[0]], shape: [F[0]] };
    }
    const g = scanAxes(scan, F);
    const factors = g && outerProduct(byId.get(S.args[0])!, byId, uses, add);
    if (!factors) continue;
    // Contracted along u's axis: Σ_a x[i, a] u[j, a] · w[j, c]; along w's: the roles swap.
    const args = g[0] === r ? [factors[0], factors[1]] : [factors[1], factors[0]];
    return { args: [matrix(x, r, F, add), ...args], shape: [F[0], F[3 - r]] };
  }
  return undefined;
}

/**
 * The grid axes the scan's axes after the first are read at (a unit axis of the scan: the grid
 * axis of size 1 left over), or undefined when they are not the grid's axes after the first.
 */
function scanAxes(scan: Read, F: Dim[]): number[] | undefined {
  if (F.length !== 3 || scan.axes.length !== 3) return undefined;
  const g = scan.axes.slice(1);
  const free = [1, 2].filter((a) => !g.includes(a));
  const out = g.map((a) => a ?? free.shift());
  const ok = out.every((a, k) => a !== undefined && (g[k] !== undefined || F[a] === 1));
  return ok && out[0] !== out[1] ? out as number[] : undefined;
}

/** `y[j, a, c] = u[j, a] * w[j, c]` (either order): [u, w] as matrices, else undefined. */
function outerProduct(y: Node, byId: Map<number, Node>, uses: Map<number, number>, add: Add) {
  if (y.op.op !== "binary" || y.op.fn !== "mul" || uses.get(y.id) !== 1) return undefined;
  const G = y.type.shape;
  const [p, q] = y.args.map((a) => readOf(a, G, byId));
  if (!p || !q) return undefined;
  for (const [u, w] of [[p, q], [q, p]]) {
    if (!only(u, [0, 1]) || !only(w, [0, 2])) continue;
    const um = matrix(u, 1, G, add), wm = matrix(w, 2, G, add);
    if (um !== undefined && wm !== undefined) return [um, wm];
  }
  return undefined;
}

/** Whether `read` varies only along the grid axes `axes`. */
const only = (read: Read, axes: number[]) =>
  read.axes.every((a) => a === undefined || axes.includes(a));

/**
 * The value `read` as an [F[0], F[col]] matrix (its rows along the grid's axis 0): the base
 * itself when it already is one, else the base reshaped, transposed and broadcast to it.
 */
function matrix(read: Read, col: number, F: Dim[], add: Add): number {
  const { base } = read;
  const order = read.axes.filter((a) => a !== undefined);
  const want = [F[0], F[col]];
  // The base's axes in its own order, as a 2-D shape (1 where it does not vary).
  const two: Dim[] = order.length === 2
    ? order.map((a) => F[a])
    : order.length === 1
    ? order[0] === 0 ? [F[0], 1] : [1, F[col]]
    : [1, 1];
  let id = base.id, shape = two;
  if (!same(base.type.shape, two)) id = add({ op: "reshape" }, [id], two, base);
  if (order.length === 2 && order[0] !== 0) {
    shape = [two[1], two[0]];
    id = add({ op: "transpose" }, [id], shape, base);
  }
  if (!same(shape, want)) id = add({ op: "broadcast" }, [id], want, base);
  return id;
}
