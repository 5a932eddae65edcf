/**
 * Contractions written in index notation become the matmul they are. `y[i, c] = sum[a](x[i, a] *
 * w[a, c])` checks to gathers of x and w over an [i, c, a] grid, a product and a sum over a; and
 * an unfused `s[i, j] = q[i] . k[j]` to a `dot` of two gathers. Lowered as written, each output
 * element loops over a alone (4–5× the time of the tiled `q @ k^T` at n = 2048, issue #9); as a
 * matmul it takes the tiled kernel. Runs after attention fusion, so only what did not fuse moves.
 *
 * Proven only for the plain case: each operand is a whole rank-2 tensor read through iotas (every
 * index in range, each axis once), the grid has three axes, one contracted, and the two others
 * come one from each operand. Anything else is left as written.
 */
import type { Dim, Graph, Node } from "../ir/types.ts";
import { mapNodes, nodesById } from "../ir/walks.ts";

/** An operand read whole: which axis of `x` sits at each grid position (undefined: size 1). */
interface View {
  x: Node;
  axes: (number | undefined)[];
}

const same = (a: Dim, b: Dim) => a === b;

/** `node` as a whole rank-2 float tensor read at iotas over a grid of `rank` axes, if it is. */
function viewOf(node: Node, rank: number, byId: Map<number, Node>): View | undefined {
  if (node.op.op !== "gather" || node.type.shape.length !== rank) return undefined;
  const [x, ...idx] = node.args.map((a) => byId.get(a)!);
  if (x.type.dtype !== "float" || x.type.shape.length !== 2) return undefined;
  const axes: (number | undefined)[] = new Array(rank).fill(undefined);
  // Trailing axes of x not indexed sit at the gather's last positions.
  for (let t = idx.length; t < 2; t++) axes[rank - 2 + t] = t;
  for (let k = 0; k < idx.length; k++) {
    const ix = idx[k];
    if (ix.op.op !== "iota" || ix.type.shape.length !== rank - (2 - idx.length)) return undefined;
    const g = ix.op.axis;
    // The iota varies along g only, over exactly x's axis k: every index in range, none twice.
    if (!ix.type.shape.every((d, p) => (p === g ? same(d, x.type.shape[k]) : d === 1))) {
      return undefined;
    }
    if (axes[g] !== undefined) return undefined;
    axes[g] = k;
  }
  if (axes.filter((a) => a !== undefined).length !== 2) return undefined;
  // Positions not read from x are broadcast (size 1); read ones have x's size.
  const ok = node.type.shape.every((d, p) =>
    axes[p] === undefined ? d === 1 : same(d, x.type.shape[axes[p]!])
  );
  return ok ? { x, axes } : undefined;
}

/** The two operands and the contracted position of a contraction node, if it is one. */
function contraction(
  n: Node,
  byId: Map<number, Node>,
): { a: Node; b: Node; r: number; rank: number } | undefined {
  if (n.type.dtype !== "float" || n.type.shape.length !== 2) return undefined;
  if (n.op.op === "reduce" && n.op.fn === "sum" && !n.op.keepdims) {
    const mul = byId.get(n.args[0])!;
    if (mul.op.op !== "binary" || mul.op.fn !== "mul" || mul.type.shape.length !== 3) {
      return undefined;
    }
    const [a, b] = mul.args.map((x) => byId.get(x)!);
    return { a, b, r: n.op.axis, rank: 3 };
  }
  if (n.op.op === "dot") {
    const [a, b] = n.args.map((x) => byId.get(x)!);
    return { a, b, r: 2, rank: 3 };
  }
  return undefined;
}

/** Index-notation contractions of two rank-2 tensors become matmuls (with transposes). */
export function contractToMatmul(graph: Graph): Graph {
  const byId = nodesById(graph);
  let next = Math.max(...byId.keys()) + 1;
  return mapNodes(graph, (n): Node[] => {
    const c = contraction(n, byId);
    if (!c) return [n];
    const va = viewOf(c.a, c.rank, byId), vb = viewOf(c.b, c.rank, byId);
    if (!va || !vb || va.axes[c.r] === undefined || vb.axes[c.r] === undefined) return [n];
    const out = [0, 1, 2].filter((p) => p !== c.r);
    // One output position from each operand, none from both.
    const owner = (p: number) =>
      va.axes[p] !== undefined && vb.axes[p] === undefined
        ? va
        : vb.axes[p] !== undefined && va.axes[p] === undefined
        ? vb
        : undefined;
    const left = owner(out[0]), right = owner(out[1]);
    if (!left || !right || left === right) return [n];
    const inner = (v: View) => v.x.type.shape[v.axes[c.r]!];
    if (!same(inner(left), inner(right))) return [n];
    const added: Node[] = [];
    // x arranged with axis `first` first: itself, or its transpose.
    const arrange = (v: View, first: number): number => {
      if (first === 0) return v.x.id;
      const [r0, r1] = v.x.type.shape;
      added.push({
        id: next++,
        op: { op: "transpose" },
        args: [v.x.id],
        type: { dtype: "float", shape: [r1, r0] },
        span: n.span,
      });
      return added[added.length - 1].id;
    };
    const l = arrange(left, left.axes[out[0]]!), r = arrange(right, right.axes[c.r]!);
    return [...added, { ...n, op: { op: "matmul" }, args: [l, r] }];
  });
}
