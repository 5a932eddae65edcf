/**
 * Dead-code elimination: drop nodes whose values never reach an output. The checker emits
 * freely (size lookups for shape declarations, the discarded halves of folded expressions);
 * this keeps the IR that `explain` shows and later passes rewrite down to what matters.
 */
import type { Graph } from "../ir/types.ts";
import { mapNodes, nodesById } from "../ir/walks.ts";

/** A copy of `graph` without the nodes no output depends on. Inputs always stay. */
export function eliminateDeadCode(graph: Graph): Graph {
  const byId = nodesById(graph);
  const live = new Set<number>();
  const stack = [...graph.outputs, ...graph.inputs.map((i) => i.node)];
  while (stack.length) {
    const id = stack.pop()!;
    if (live.has(id)) continue;
    live.add(id);
    const n = byId.get(id)!;
    stack.push(...n.args);
    if (n.op.op === "loop") stack.push(...n.op.results);
    if (n.op.op === "carry") stack.push(n.op.loop);
  }
  return mapNodes(graph, (n) => (live.has(n.id) ? n : []));
}
