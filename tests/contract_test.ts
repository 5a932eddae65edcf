/**
 * Index-notation contractions that do not fuse become matmuls (compiler/passes/contract.ts):
 * which forms move, which must stay as written, and that both agree with the float64
 * interpreter as checked, on the GPU too (poisoned outputs, awkward sizes). The generator reaches
 * every form (tests/programs.ts `contract` extras), so the differential oracle covers the pass.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { compileSync, randomTensor, relativeError, verify } from "../mod.ts";
import { interpret } from "../compiler/interp.ts";
import { getDevice } from "../runtime/device.ts";
import { allNodes } from "../compiler/ir/walks.ts";
import { compileSpec, CONTRACT_LINES, type ContractForm, features, specArb } from "./programs.ts";

const MATMUL: ContractForm[] = ["abt", "atb", "swapped", "dot"];
// A third factor read at one output index, or a shifted read: that side's rows are computed first
// (passes/rows.ts dotsOfContractions; reading 0 past the end as the gather does), then the dot of
// the rows is the matmul.
const ROWS_THEN_MATMUL: ContractForm[] = ["scaled", "shifted"];
const adapter = await getDevice().then((d) => d.facts.description, () => undefined);

const program = (form: ContractForm) =>
  compileSync(
    `def f(q: [n, d], k: [m, d], v: [m, e]) -> [${
      { atb: "d, e", swapped: "e, d", batched: "m, d", rowdot: "n" }[form as string] ?? "n, m"
    }] {
  ${CONTRACT_LINES[form]}
  return ct
}`,
  );

const ops = (p: ReturnType<typeof compileSync>) => allNodes(p.optimized.nodes).map((n) => n.op.op);

Deno.test("contract: the plain forms become a matmul, the near-misses stay as written", () => {
  for (const form of Object.keys(CONTRACT_LINES) as ContractForm[]) {
    const p = program(form);
    const o = ops(p);
    if (MATMUL.includes(form)) {
      assert.ok(o.includes("matmul"), `${form}: ${o}`);
      assert.ok(
        !o.includes("reduce") && !o.includes("dot") && !o.includes("gather"),
        `${form}: ${o}`,
      );
    } else if (ROWS_THEN_MATMUL.includes(form)) {
      assert.ok(o.includes("matmul") && o.includes("reshape"), `${form}: ${o}`);
      assert.ok(!o.includes("reduce") && !o.includes("dot"), `${form}: ${o}`);
    } else {
      assert.ok(!o.includes("matmul"), `${form} must not become a matmul: ${o}`);
    }
    const r = verify(p, { trials: 12, sizes: [1, 2, 3, 7, 13] });
    assert.ok(r.ok, `${form}: ${JSON.stringify(r.failure ?? r.rejection)}`);
  }
});

Deno.test({
  name: "contract: matmul forms agree with the interpreter on the GPU at awkward sizes",
  ignore: adapter === undefined,
  async fn() {
    for (const form of Object.keys(CONTRACT_LINES) as ContractForm[]) {
      const p = program(form);
      for (const [n, m, d, e] of [[1, 1, 1, 1], [13, 7, 3, 5], [65, 33, 17, 9]]) {
        const x = {
          q: randomTensor([n, d], { seed: n + 1 }),
          k: randomTensor([m, d], { seed: m + 2 }),
          v: randomTensor([m, e], { seed: e + 3 }),
        };
        const want = interpret(p.graph, x);
        const got = await p.run(x, { backend: "gpu", poison: true });
        assert.deepEqual(got.shape, want.shape);
        const err = relativeError(got, want);
        assert.ok(err < 1e-5, `${form} at n=${n} m=${m} d=${d} e=${e}: ${err}`);
      }
    }
  },
});

Deno.test("contract: generated programs reach the pass, and it changes their graphs", () => {
  const specs = fc.sample(
    specArb({ maxExtras: 2 }).filter((s) => s.extras.some((x) => x.k === "matmul")),
    { numRuns: 40, seed: 0xc0de },
  );
  let moved = 0;
  for (const spec of specs) {
    const c = compileSpec(spec);
    if (features(c).changed.includes("contractions")) moved++;
  }
  assert.ok(moved >= 10, `only ${moved} of 40 generated programs had a contraction moved`);
});
