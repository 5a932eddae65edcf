/** Walks over a graph that reach into loop bodies: the one place that knows where bodies are. */
import type { Graph, Node, Score } from "./types.ts";

/** Every node of a node list (a graph's, a loop body), loop bodies included, each loop first. */
export function allNodes(nodes: readonly Node[]): Node[] {
  const out: Node[] = [];
  const visit = (list: readonly Node[]) => {
    for (const n of list) {
      out.push(n);
      if (n.op.op === "loop") visit(n.op.body);
    }
  };
  visit(nodes);
  return out;
}

/** Every node of a graph by id, loop bodies included. */
export function nodesById(graph: Graph): Map<number, Node> {
  return new Map(allNodes(graph.nodes).map((n) => [n.id, n]));
}

/**
 * Every read of a value, in `allNodes` order: each operand of a node (`by` is that node), each
 * result of a loop (read by the next iteration and by `loop_result`, so `by` is undefined), and
 * last each graph output (read by the caller; `by` undefined).
 */
export function forEachRead(graph: Graph, f: (id: number, by?: Node) => void): void {
  for (const n of allNodes(graph.nodes)) {
    for (const a of n.args) f(a, n);
    if (n.op.op === "loop") { for (const r of n.op.results) f(r); }
  }
  for (const o of graph.outputs) f(o);
}

/** How many times each node id is read (see `forEachRead`); an id never read is absent. */
export function useCounts(graph: Graph): Map<number, number> {
  const uses = new Map<number, number>();
  forEachRead(graph, (id) => uses.set(id, (uses.get(id) ?? 0) + 1));
  return uses;
}

/**
 * A copy of `graph` with every node replaced by `f` of it (a node, or a list: empty drops it,
 * several insert). A loop's body is mapped first, in order, and `f` then sees the loop holding the
 * mapped body; so `f` runs on the nodes in program order, loops after their bodies.
 */
export function mapNodes(graph: Graph, f: (n: Node) => Node | Node[]): Graph {
  const visit = (nodes: Node[]): Node[] =>
    nodes.flatMap((n) =>
      f(n.op.op === "loop" ? { ...n, op: { ...n.op, body: visit(n.op.body) } } : n)
    );
  return { ...graph, nodes: visit(graph.nodes) };
}

/** A copy of `graph` in which every use of a key of `map` reads its value instead. */
export function substitute(graph: Graph, map: Map<number, number>): Graph {
  if (map.size === 0) return graph;
  const to = (id: number): number => (map.has(id) ? to(map.get(id)!) : id);
  const mapped = mapNodes(graph, (n) => {
    const args = n.args.map(to);
    return n.op.op === "loop"
      ? { ...n, args, op: { ...n.op, results: n.op.results.map(to) } }
      : { ...n, args };
  });
  return { ...mapped, outputs: graph.outputs.map(to) };
}

/** The sub-scores of a score. */
export function scoreChildren(x: Score): Score[] {
  switch (x.kind) {
    case "table":
      return x.at;
    case "draw":
      return [x.seed, ...x.shape, ...x.at];
    case "unary":
    case "cast":
      return [x.x];
    case "binary":
      return [x.a, x.b];
    case "where":
      return [x.c, x.a, x.b];
    default:
      return [];
  }
}
