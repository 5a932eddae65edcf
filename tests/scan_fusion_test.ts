/**
 * Contractions over prefix sums (passes/causal.ts → `causal_contract`, kernels/causal.ts): on
 * random programs, each form fuses into exactly the expected `causal_contract` nodes and each
 * near miss into none, with the optimized graph's interpreter result equal to the checked
 * graph's; on the GPU (poisoned buffers), the chunked kernels against the interpreter at row
 * counts 1, C - 1, C, C + 1 and 3C + 5 (C = CAUSAL_CHUNK). Failures print the seed and path.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import type { Graph } from "../compiler/ir/types.ts";
import { allNodes } from "../compiler/ir/walks.ts";
import { firstDivergence } from "../compiler/verify.ts";
import { getDevice } from "../runtime/device.ts";
import {
  CONTRACT_ROWS,
  contractArb,
  type ContractExtra,
  contractLines,
  CONTRACTS,
} from "./causal_programs.ts";
import { compileSpec, interpDifferential, report, SMALL_SIZES, specArb } from "./programs.ts";

const adapter = await getDevice().then((d) => d.facts.description, (e) => {
  console.error(`GPU tests skipped: ${e.message}`);
  return undefined;
});

const count = (g: Graph, op: string) => allNodes(g.nodes).filter((n) => n.op.op === op).length;

/** A program returning the contraction itself: z0 from k [M, d] and v [M, e]. */
const source = (x: ContractExtra) =>
  `def f(k: [M, d], v: [M, e]) {\n  ${contractLines(x, 0).join("\n  ")}\n  return z0\n}`;

function inputs(rows: number, d: number, e: number, seed: number): Record<string, Tensor> {
  return {
    k: randomTensor([2, rows, d], { seed }),
    v: randomTensor([2, rows, e], { seed: seed + 1 }),
  };
}

Deno.test("scan fusion: each form fuses as proven, near misses stay, results unchanged", () => {
  const sizes = fc.constantFrom(1, 2, 3, 5, 8);
  const prop = fc.property(contractArb, sizes, sizes, sizes, (x, M, d, e) => {
    const p = compileSync(source(x), { file: "contract.attn" });
    const got = count(p.optimized, "causal_contract");
    const want = CONTRACTS[x.variant]; // d and e are symbols: their values do not decide
    const where = `${x.variant}, rows ${x.rows}, M = ${M}, d = ${d}, e = ${e}\n${source(x)}`;
    assert.equal(got, want, `causal_contract nodes: ${where}`);
    if (want > 0) assert.equal(count(p.optimized, "cumsum"), 0, `a cumsum left: ${where}`);
    const div = firstDivergence(p.graph, p.passes, inputs(M, d, e, M * 31 + d));
    assert.equal(div, undefined, `pass ${div?.pass} changed the result: ${div?.detail}\n${where}`);
  });
  fc.assert(prop, { numRuns: 200, seed: 0x5ca9 });
});

Deno.test("scan fusion: generated programs with contractions keep the interpreter's result", () => {
  let fused = 0;
  const arb = fc.tuple(specArb({ sizes: SMALL_SIZES, maxExtras: 0 }), contractArb)
    .map(([s, x]) => ({ ...s, extras: [x] }));
  fc.assert(
    fc.property(arb, (spec) => {
      const c = compileSpec(spec);
      const d = interpDifferential(c);
      if (d) throw new Error(report(c, `pass "${d.pass}" changed the result: ${d.detail}`));
      fused += count(c.program.optimized, "causal_contract");
    }),
    { numRuns: 100, seed: 0x5caa },
  );
  assert.ok(fused > 50, `only ${fused} causal_contract nodes in 100 programs`);
});

Deno.test({
  name: "gpu: causal_contract at 1, C - 1, C, C + 1, 3C + 5 rows agrees with the interpreter",
  ignore: adapter === undefined,
  fn: async () => {
    const cases: [ContractExtra, number, number][] = [
      ...CONTRACT_ROWS.map((rows): [ContractExtra, number, number] => [
        { k: "contract", variant: "ratio", rows },
        4,
        5,
      ]),
      [{ k: "contract", variant: "num", rows: "M" }, 3, 7],
      [{ k: "contract", variant: "wside", rows: CONTRACT_ROWS[3] }, 5, 2],
      [{ k: "contract", variant: "den", rows: CONTRACT_ROWS[4] }, 13, 1],
      [{ k: "contract", variant: "xt", rows: CONTRACT_ROWS[2] }, 1, 3],
      [{ k: "contract", variant: "xvec", rows: CONTRACT_ROWS[1] }, 3, 1],
      [{ k: "contract", variant: "shiftw", rows: "M" }, 2, 4],
    ];
    for (const [i, [x, d, e]] of cases.entries()) {
      const p = compileSync(source(x), { file: "contract.attn" });
      assert.ok(count(p.optimized, "causal_contract") > 0, x.variant);
      const M = x.rows === "M" ? [1, 33, 70][i % 3] : 9;
      const ins = inputs(M, d, e, 100 + i);
      const want = await p.run(ins, { backend: "interp" });
      const got = await p.run(ins, { backend: "gpu", poison: true });
      const err = relativeError(got, want);
      assert.ok(err < 1e-5, `${x.variant}, rows ${x.rows}, M ${M}: relative error ${err}`);
    }
  },
});
