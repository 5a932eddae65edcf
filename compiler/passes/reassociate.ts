/**
 * Matrix-chain reassociation: `(A @ B) @ C` becomes `A @ (B @ C)` when that does less work at
 * typical sizes (sequence axes long, feature axes short). Nyströmformer's `(F @ Z) @ W` with F
 * [n, m] turns into `F @ (Z @ W)`, so the product with the n-row softmax is a plain
 * `softmax(...) @ V`, which the attention pass then fuses into one flash kernel.
 */
import type { Graph, Node } from "../ir/types.ts";
import { mapNodes, nodesById, useCounts } from "../ir/walks.ts";
import { typicalSizes } from "../ir/cost.ts";

/** Reassociate 2-D matmul chains whose inner product has no other use. */
export function reassociate(graph: Graph): Graph {
  const byId = nodesById(graph);
  const size = typicalSizes(graph);
  const uses = useCounts(graph);
  let next = Math.max(...byId.keys()) + 1;
  return mapNodes(graph, (n): Node[] => {
    if (n.op.op !== "matmul" || n.type.shape.length !== 2) return [n];
    const left = byId.get(n.args[0])!;
    const c = byId.get(n.args[1])!;
    if (left.op.op !== "matmul" || left.type.shape.length !== 2 || uses.get(left.id) !== 1) {
      return [n];
    }
    const [a, b] = left.args.map((x) => byId.get(x)!);
    if (a.type.shape.length !== 2 || b.type.shape.length !== 2 || c.type.shape.length !== 2) {
      return [n];
    }
    const [p, q] = a.type.shape.map(size);
    const [, r] = b.type.shape.map(size);
    const t = size(c.type.shape[1]);
    if (q * r * t + p * q * t >= p * q * r + p * r * t) return [n];
    const inner: Node = {
      id: next++,
      op: { op: "matmul" },
      args: [b.id, c.id],
      type: { dtype: "float", shape: [b.type.shape[0], c.type.shape[1]] },
      span: n.span,
    };
    return [inner, { ...n, args: [a.id, inner.id] }];
  });
}
