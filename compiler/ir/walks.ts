/** Walks over a graph that reach into loop bodies. */
import type { Graph, Node } from "./types.ts";

/** Every node of a graph by id, loop bodies included. */
export function nodesById(graph: Graph): Map<number, Node> {
  const byId = new Map<number, Node>();
  const visit = (nodes: Node[]) => {
    for (const n of nodes) {
      byId.set(n.id, n);
      if (n.op.op === "loop") visit(n.op.body);
    }
  };
  visit(graph.nodes);
  return byId;
}

/** A copy of `graph` in which every use of a key of `map` reads its value instead. */
export function substitute(graph: Graph, map: Map<number, number>): Graph {
  if (map.size === 0) return graph;
  const to = (id: number): number => (map.has(id) ? to(map.get(id)!) : id);
  const visit = (nodes: Node[]): Node[] =>
    nodes.map((n) => {
      const args = n.args.map(to);
      if (n.op.op === "loop") {
        const op = { ...n.op, body: visit(n.op.body), results: n.op.results.map(to) };
        return { ...n, args, op };
      }
      return { ...n, args };
    });
  return { ...graph, nodes: visit(graph.nodes), output: to(graph.output) };
}
