/** Cost guesses made before sizes are known. */
import type { Dim, Graph } from "./types.ts";
import { LONG_SEQUENCE } from "../limits.ts";

/**
 * A typical value of each size symbol, for cost decisions made before sizes are known: a symbol
 * that is the row axis of a matrix input (the second to last of a higher-rank one, whose leading
 * axes are heads or batches: `q: [h, n, d]`) is a sequence length (4096); any other, a head or
 * feature size (64).
 */
export function typicalSizes(graph: Graph): (d: Dim) => number {
  const rows = new Set(
    graph.inputs.filter((i) => i.type.shape.length >= 2).map((i) => i.type.shape.at(-2)!),
  );
  return (d) => (typeof d === "number" ? d : rows.has(d) ? LONG_SEQUENCE : 64);
}
