/**
 * The row log-sum-exp from the flash pass. A program returning `softmax(s, axis=1) @ v` and
 * `logsumexp(s, axis=1)` (FlashAttention's two outputs) would stream the score twice; the flash
 * kernel already keeps each row's running max m and sum l, and lse = m + log l. So the attention
 * node is marked `lse` and the logsumexp becomes `attention_lse` of it: one pass for both.
 *
 * Fused only when provably the same score: the logsumexp's operand, read by the same
 * ScoreBuilder that built the attention's score, gives the same score expression over the same
 * dot-product operands and leaves (so the same value at every (i, j)), and the reduction runs
 * along the keys (axis 1). Runs after attention fusion, on plain softmax attention nodes only.
 */
import type { Graph, Node } from "../ir/types.ts";
import { nodesById } from "../ir/walks.ts";
import { ScoreBuilder } from "./attention.ts";

/** `graph` with each logsumexp of a fused attention's score read from that attention. */
export function fuseRowLse(graph: Graph): Graph {
  const byId = nodesById(graph);
  const visit = (nodes: Node[]): Node[] => {
    const list = nodes.map((n) =>
      n.op.op === "loop" ? { ...n, op: { ...n.op, body: visit(n.op.body) } } : n
    );
    const pos = new Map(list.map((n, i) => [n.id, i]));
    // Each logsumexp fused: the attention it reads; an attention that came after the first
    // logsumexp of its score moves to just before it.
    const from = new Map<number, Node>();
    const early = new Map<number, number>();
    for (const x of list) {
      const a = x.op.op === "logsumexp" ? sameScore(x, list, byId) : undefined;
      if (!a) continue;
      const at = pos.get(x.id)!;
      if (pos.get(a.id)! > at && !early.has(a.id)) {
        // Its operands other than v come from the score, which precedes x.
        const v = pos.get(a.args[2]);
        if (v !== undefined && v > at) continue;
        early.set(a.id, x.id);
      }
      from.set(x.id, a);
    }
    const lse = new Set([...from.values()].map((a) => a.id));
    const mark = (a: Node): Node => ({ ...a, op: { ...a.op, lse: true } } as Node);
    return list.flatMap((n) => {
      if (early.has(n.id)) return [];
      const a = from.get(n.id);
      if (!a) return lse.has(n.id) ? [mark(n)] : [n];
      const proj: Node = { ...n, op: { op: "attention_lse" }, args: [a.id] };
      return early.get(a.id) === n.id ? [mark(a), proj] : [proj];
    });
  };
  return { ...graph, nodes: visit(graph.nodes) };
}

/** The softmax attention in `list` whose score is the operand of logsumexp `x`, if one is. */
function sameScore(x: Node, list: Node[], byId: Map<number, Node>): Node | undefined {
  if (x.op.op !== "logsumexp" || x.op.axis !== 1) return undefined;
  const s = byId.get(x.args[0])!;
  if (s.type.shape.length !== 2) return undefined;
  const builder = new ScoreBuilder(s.type.shape[0], s.type.shape[1], byId);
  const score = builder.build(s.id);
  if (!score || builder.a === undefined || builder.b === undefined) return undefined;
  const key = JSON.stringify([score, builder.a, builder.b, builder.leaves]);
  return list.find((a) =>
    a.op.op === "attention" && a.op.weights === undefined &&
    JSON.stringify([a.op.score, a.args[0], a.args[1], a.args.slice(3)]) === key
  );
}
