/**
 * Plan before render: lowering decides with data, and the data agree with the rendered kernels.
 * `regionCost` (trips and bindings from a region's layout and phases, no WGSL) must report
 * exactly what the rendered `regionKernel` does, for every region of every example and of
 * generated programs, at several sizes.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { compileSync } from "../mod.ts";
import type { Dim, Graph } from "../compiler/ir/types.ts";
import { nodesById } from "../compiler/ir/walks.ts";
import { typicalSizes } from "../compiler/ir/cost.ts";
import { inlinedNodes, partialTables } from "../compiler/lower/inline.ts";
import { findRegions } from "../compiler/lower/regions.ts";
import { regionCost, regionKernel } from "../kernels/index.ts";
import { printProgram, specArb } from "./programs.ts";

const examples = [...Deno.readDirSync(new URL("../examples", import.meta.url))]
  .filter((e) => e.name.endsWith(".attn")).map((e) => e.name).sort();
const sources = [
  ...examples.map((f) => ({
    what: f,
    text: Deno.readTextFileSync(new URL(`../examples/${f}`, import.meta.url)),
  })),
  ...fc.sample(specArb(), { numRuns: 60, seed: 4242 }).map((s, i) => ({
    what: `generated #${i}`,
    text: printProgram(s),
  })),
];

const sizes = (n: number) => (d: Dim) => typeof d === "number" ? d : n;

Deno.test("regionCost equals what the rendered region kernel reports", () => {
  let regions = 0;
  for (const { what, text } of sources) {
    let graph: Graph;
    try {
      graph = compileSync(text).optimized;
    } catch {
      continue; // a generated program the checker rejects has no plan
    }
    const byId = nodesById(graph);
    const chunks = partialTables(graph, byId);
    const { inline } = inlinedNodes(graph, byId);
    const slots = new Map(Object.keys(graph.symbols).map((s, i) => [s, i + 4]));
    // Any binding count: regions the 16-binding limit would cut are compared too.
    for (const limit of [8, 16, 1000]) {
      for (const r of findRegions(graph, byId, inline, typicalSizes(graph), slots, limit)) {
        const k = regionKernel(r, byId, inline, chunks, slots);
        const cost = regionCost(r, byId, inline, slots);
        const name = `${what}: ${k.name}`;
        assert.equal(cost.bindings, k.reads.length + 1, `${name}: bindings`);
        for (const n of [1, 7, 97, 4096]) {
          assert.equal(cost.trips(sizes(n)), k.trips(sizes(n)), `${name}: trips at ${n}`);
        }
        regions++;
      }
    }
  }
  assert.ok(regions > 20, `only ${regions} regions compared`);
});
