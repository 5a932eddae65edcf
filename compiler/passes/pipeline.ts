/**
 * The optimization pipeline: the passes the GPU path runs, in order. Each is a small rewrite of
 * the one IR; `explain` prints the IR after every pass that changed it.
 */
import type { Graph } from "../ir/types.ts";
import { fuseAttention, fuseProbabilities } from "./attention.ts";
import { fuseCausalContractions } from "./causal.ts";
import { eliminateCommonSubexpressions } from "./cse.ts";
import { contractToMatmul } from "./contract.ts";
import { fuseStreams } from "./streams.ts";
import { fuseRowLse } from "./lse.ts";
import { fuseRowSums } from "./rowsum.ts";
import { fuseWrittenSoftmax } from "./written.ts";
import { eliminateDeadCode } from "./dce.ts";
import { reassociate } from "./reassociate.ts";
import { simplify } from "./simplify.ts";
import { hoistRows } from "./rows.ts";
import { hoistScales } from "./scales.ts";

/** The attention fusions, in order (passes/attention.ts and the forms around it). */
const fuseAll = (g: Graph) =>
  eliminateDeadCode(
    fuseStreams(
      fuseRowLse(fuseAttention(fuseRowSums(fuseWrittenSoftmax(eliminateDeadCode(hoistScales(g)))))),
    ),
  );

/** The passes, by name. */
export const PASSES: { name: string; run: (g: Graph) => Graph }[] = [
  { name: "simplify", run: (g) => eliminateDeadCode(simplify(g)) },
  { name: "cse", run: (g) => eliminateDeadCode(eliminateCommonSubexpressions(g)) },
  { name: "reassociate", run: (g) => eliminateDeadCode(reassociate(g)) },
  {
    // Row log-sum-exps join their attention before streams form: an attention whose lse is used
    // stays a pass of its own, rather than one that computes it only for its lse beside a mix
    // that streams its keys again (examples/flash_split.attn: 4 dispatches, 3 passes over keys).
    name: "attention fusion",
    run: (g) => fuseAll(g),
  },
  {
    // Dot operands computed from rows (`k[j] * w`) become rows of a matrix, and fusion runs again
    // on what that changed.
    name: "rows",
    run: (g) => {
      const h = hoistRows(g);
      return h === g ? g : fuseAll(eliminateDeadCode(h));
    },
  },
  { name: "probabilities", run: (g) => eliminateDeadCode(fuseProbabilities(g)) },
  { name: "causal scan", run: (g) => eliminateDeadCode(fuseCausalContractions(g)) },
  { name: "contractions", run: (g) => eliminateDeadCode(contractToMatmul(g)) },
];

/** Run every pass; returns the final graph and the graph after each pass. */
export function optimize(graph: Graph): { graph: Graph; stages: { pass: string; graph: Graph }[] } {
  const stages: { pass: string; graph: Graph }[] = [];
  let g = graph;
  for (const p of PASSES) {
    g = p.run(g);
    stages.push({ pass: p.name, graph: g });
  }
  return { graph: g, stages };
}
