/**
 * Common-subexpression elimination: nodes with the same operation, attributes, operands and
 * type are one value. Index notation repeats itself (`mask[i]` in three definitions, `vs[S]`
 * twice in Skeinformer); without CSE each copy would be computed, and counted as a separate
 * consumer by the fusion decisions.
 */
import type { Graph, Node } from "../ir/types.ts";
import { substitute } from "../ir/walks.ts";

/** `graph` with duplicate nodes replaced by their first occurrence (loop bodies see outer values). */
export function eliminateCommonSubexpressions(graph: Graph): Graph {
  const map = new Map<number, number>();
  const to = (id: number): number => map.get(id) ?? id;
  const visit = (nodes: Node[], outer: Map<string, number>) => {
    const seen = new Map(outer);
    for (const n of nodes) {
      if (n.op.op === "loop") {
        visit(n.op.body, seen);
        continue;
      }
      // Inputs and loop placeholders are distinct values even when they look alike.
      if (n.op.op === "input" || n.op.op === "carry" || n.op.op === "loop_result") continue;
      const key = JSON.stringify([n.op, n.args.map(to), n.type]);
      const first = seen.get(key);
      if (first === undefined) seen.set(key, n.id);
      else map.set(n.id, first);
    }
  };
  visit(graph.nodes, new Map());
  return substitute(graph, map);
}
