/**
 * Contractions written in index notation become the matmul they are. `y[i, c] = sum[a](x[i, a] *
 * w[a, c])` checks to gathers of x and w over an [i, c, a] grid, a product and a sum over a; and
 * an unfused `s[i, j] = q[i] . k[j]` to a `dot` of two gathers. Lowered as written, each output
 * element loops over a alone (4–5× the time of the tiled `q @ k^T` at n = 2048, issue #9); as a
 * matmul it takes the tiled kernel. Runs after attention fusion, so only what did not fuse moves.
 *
 * Proven only for the plain case: each factor reads a whole rank-2 float tensor (views.ts: every
 * index in range, each axis once), the grid has three axes, one contracted, and the two others
 * come one from each factor. Anything else is left as written.
 */
import type { Dim, Graph, Node } from "../ir/types.ts";
import { mapNodes, nodesById } from "../ir/walks.ts";
import { type Read, readOf } from "./views.ts";

/** The two factors, the grid and its contracted axis of a contraction node, if it is one. */
function contraction(
  n: Node,
  byId: Map<number, Node>,
): { a: number; b: number; grid: Dim[]; r: number } | undefined {
  if (n.type.dtype !== "float" || n.type.shape.length !== 2) return undefined;
  if (n.op.op === "reduce" && n.op.fn === "sum" && !n.op.keepdims) {
    const mul = byId.get(n.args[0])!;
    if (mul.op.op !== "binary" || mul.op.fn !== "mul") return undefined;
    return { a: mul.args[0], b: mul.args[1], grid: mul.type.shape, r: n.op.axis };
  }
  if (n.op.op === "dot") {
    // The last axis of the broadcast operands is contracted.
    const width = byId.get(n.args[0])!.type.shape.at(-1);
    if (width === undefined) return undefined;
    return { a: n.args[0], b: n.args[1], grid: [...n.type.shape, width], r: 2 };
  }
  return undefined;
}

/** A whole rank-2 float tensor read at two distinct grid axes, else undefined. */
function matrixRead(id: number, grid: Dim[], byId: Map<number, Node>): Read | undefined {
  const read = readOf(id, grid, byId);
  if (!read || read.base.type.dtype !== "float" || read.base.type.shape.length !== 2) {
    return undefined;
  }
  return read.axes.every((a) => a !== undefined) ? read : undefined;
}

/** Index-notation contractions of two rank-2 tensors become matmuls (with transposes). */
export function contractToMatmul(graph: Graph): Graph {
  const byId = nodesById(graph);
  let next = Math.max(...byId.keys()) + 1;
  return mapNodes(graph, (n): Node[] => {
    const c = contraction(n, byId);
    if (!c || c.grid.length !== 3) return [n];
    const va = matrixRead(c.a, c.grid, byId), vb = matrixRead(c.b, c.grid, byId);
    if (!va || !vb || !va.axes.includes(c.r) || !vb.axes.includes(c.r)) return [n];
    const out = [0, 1, 2].filter((p) => p !== c.r);
    // One output axis from each factor: the one reading out[0] is the left operand.
    const left = va.axes.includes(out[0]) ? va : vb, right = left === va ? vb : va;
    if (!left.axes.includes(out[0]) || !right.axes.includes(out[1])) return [n];
    const added: Node[] = [];
    // The factor's tensor with the axis read at grid axis `first` first: itself or transposed.
    const arrange = (v: Read, first: number): number => {
      if (v.axes[0] === first) return v.base.id;
      const [r0, r1] = v.base.type.shape;
      const t: Node = {
        id: next++,
        op: { op: "transpose" },
        args: [v.base.id],
        type: { dtype: "float", shape: [r1, r0] },
        span: n.span,
      };
      added.push(t);
      return t.id;
    };
    const l = arrange(left, out[0]), r = arrange(right, c.r);
    return [...added, { ...n, op: { op: "matmul" }, args: [l, r] }];
  });
}
