/**
 * Row-normalized weights without softmax in one pass: `(w @ v) / sum(w, axis=1)` (ReLU
 * attention, cosFormer) reads the weight matrix twice, so it was stored whole. When the weights
 * are a fused score and their only other user sums them along the keys, the summed-weights
 * attention keeps each row's Σ_j w too (`rowSum`), and the sum becomes `attention_rowsum` of it:
 * one pass, no n×m matrix. The sum is the same reduction of the same values (in another order
 * on the GPU). Runs before attention fusion, which would refuse weights with two users.
 */
import type { Graph, Node } from "../ir/types.ts";
import { typicalSizes } from "../ir/cost.ts";
import { nodesById, useCounts } from "../ir/walks.ts";
import { fusedMatmul } from "./attention.ts";

/** `graph` with each such matmul and row sum of the same weights computed by one attention. */
export function fuseRowSums(graph: Graph): Graph {
  const byId = nodesById(graph), users = useCounts(graph), typical = typicalSizes(graph);
  const visit = (nodes: Node[]): Node[] => {
    const list = nodes.map((n) =>
      n.op.op === "loop" ? { ...n, op: { ...n.op, body: visit(n.op.body) } } : n
    );
    const pos = new Map(list.map((n, i) => [n.id, i]));
    // The row sum of each weight matrix, and the matmul that multiplies it into v.
    const sums = new Map<number, Node>();
    for (const x of list) {
      if (
        x.op.op === "reduce" && x.op.fn === "sum" && x.op.axis === 1 &&
        x.type.dtype === "float" && byId.get(x.args[0])!.type.shape.length === 2
      ) sums.set(x.args[0], x);
    }
    // Each pair's attention goes where the first of the two stood (its id is the matmul's).
    const first = new Map<number, Node[]>(), later = new Map<number, Node[]>();
    for (const m of list) {
      const sum = m.op.op === "matmul" ? sums.get(m.args[0]) : undefined;
      if (!sum || (users.get(m.args[0]) ?? 0) !== 2) continue;
      const a = fusedMatmul(m, byId, typical);
      if (!a || a.op.op !== "attention" || a.op.weights !== "score") continue;
      const attention: Node = { ...a, op: { ...a.op, rowSum: true } };
      const rowsum: Node = { ...sum, op: { op: "attention_rowsum" }, args: [attention.id] };
      if (pos.get(m.id)! < pos.get(sum.id)!) {
        first.set(m.id, [attention]);
        later.set(sum.id, [rowsum]);
      } else if (pos.get(m.args[1])! < pos.get(sum.id)!) { // v is there already
        first.set(sum.id, [attention, rowsum]);
        later.set(m.id, []);
      }
    }
    return list.flatMap((n) => first.get(n.id) ?? later.get(n.id) ?? [n]);
  };
  return { ...graph, nodes: visit(graph.nodes) };
}
