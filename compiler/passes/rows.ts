/**
 * Rows computed once, not per pair. A dot operand that varies along one grid axis but is not a
 * plain row read (`q[i] . (k[j] * w)`, `q[i] . (k[j] + b)`, the token shift `0.5 * k[j] + 0.5 *
 * k[j - 1]`, `(q[i] * t[i]) . k[j]`) is, element for element, the gather at that axis of itself
 * laid out as a matrix (a reshape: the other leading axes are 1). Written so, the attention pass
 * reads that matrix as its q or k (one flash pass after the rows' own kernel), and a dot left
 * unfused is a matmul (passes/contract.ts) rather than a gather-and-dot kernel storing every
 * score. The arithmetic is unchanged, so no IEEE case (a factor of inf, a 0) can differ. It runs
 * on the dots attention fusion left: a factor that pass takes out of the dot (`(c * q[i]) .
 * k[j]`) costs no kernel.
 */
import type { Dim, Graph, Node } from "../ir/types.ts";
import { mapNodes, nodesById } from "../ir/walks.ts";

/** `graph` with each dot operand that varies along one grid axis read as rows of a matrix. */
export function hoistRows(graph: Graph): Graph {
  const byId = nodesById(graph);
  let next = Math.max(...byId.keys()) + 1;
  let changed = false;
  const out = mapNodes(graph, (n) => {
    if (n.op.op !== "dot") return n;
    const added: Node[] = [];
    const args = n.args.map((a) => {
      const x = byId.get(a)!;
      const along = varyingAxis(x, byId);
      if (along === undefined) return a;
      const lead = x.type.shape.slice(0, -1), span = x.span;
      const rows: Node = {
        id: next++,
        op: { op: "reshape" },
        args: [x.id],
        type: { dtype: x.type.dtype, shape: [lead[along], x.type.shape.at(-1)!] },
        span,
      };
      const at: Node = {
        id: next++,
        op: { op: "iota", axis: along },
        args: [],
        type: { dtype: "int", shape: lead },
        span,
      };
      const read: Node = {
        id: next++,
        op: { op: "gather" },
        args: [rows.id, at.id],
        type: x.type,
        span,
      };
      added.push(rows, at, read);
      return read.id;
    });
    if (added.length === 0) return n;
    changed = true;
    return [...added, { ...n, args }];
  });
  return changed ? out : graph;
}

/**
 * The one leading axis (of two or more) along which operand `x` varies, unless `x` already reads
 * whole rows of a matrix at that axis (`k[j]`: gather(k, iota)).
 */
function varyingAxis(x: Node, byId: Map<number, Node>): number | undefined {
  const lead = x.type.shape.slice(0, -1);
  const varying = lead.flatMap((d: Dim, a) => (d === 1 ? [] : [a]));
  if (lead.length < 2 || varying.length !== 1 || x.type.dtype !== "float") return undefined;
  const along = varying[0];
  if (x.op.op === "gather" && x.args.length === 2) {
    const src = byId.get(x.args[0])!, idx = byId.get(x.args[1])!;
    if (src.type.shape.length === 2 && idx.op.op === "iota" && idx.op.axis === along) {
      return undefined;
    }
  }
  return along;
}
