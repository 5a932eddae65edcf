/**
 * Score forms fused into one attention dispatch: tables read at index expressions of (i, j)
 * (T5's relative-position bias, 2-D input tables, indices outside the table) and weights other
 * than softmax. Each program must plan to one dispatch, run the same on the interpreter before
 * and after the passes, and agree with the interpreter on the GPU (poisoned intermediates,
 * awkward sizes, batch/head dims).
 */
import assert from "node:assert/strict";
import { compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { interpret } from "../compiler/interp.ts";
import { dispatchesPerRun } from "../compiler/lower/plan.ts";
import { getDevice } from "../runtime/device.ts";

const adapter = await getDevice().then(() => true, () => undefined);

interface Case {
  name: string;
  source: string;
  /** Extra inputs: name → per-slice shape (given n and m). */
  extra?: (n: number, m: number) => Record<string, number[]>;
  /** Key count (defaults to the query count n). */
  m?: (n: number) => number;
}

const attention = (score: string, decls = "", weights = "softmax(s, axis=1)") => `
def f(q: [n, d], k: [m, d], v: [m, e]${decls}) -> [n, e] {
  s[i, j] = ${score}
  return ${weights} @ v
}`;

const CASES: Case[] = [
  {
    name: "T5 bias[clamp(j - i, -K, K) + K]",
    source: attention("q[i] . k[j] / sqrt(d) + bias[clamp(j - i, -4, 4) + 4]", ", bias: [9]"),
    extra: () => ({ bias: [9] }),
  },
  {
    name: "indices outside the table read 0",
    source: attention("q[i] . k[j] + bias[j - i + 2] - bias[i + j]", ", bias: [5]"),
    extra: () => ({ bias: [5] }),
  },
  {
    name: "2-D table t[i, j] and t2[j, i - 1]",
    source: attention("q[i] . k[j] + t[i, j] * t2[j, i - 1]", ", t: [n, m], t2: [m, n]"),
    extra: (n, m) => ({ t: [n, m], t2: [m, n] }),
    m: (n) => n + 4,
  },
  {
    name: "2-D table added in matrix form (s + t^T)",
    source: `
def f(q: [n, d], k: [m, d], v: [m, e], t: [m, n]) -> [n, e] {
  s = q @ k^T / sqrt(d) + t^T
  return softmax(s, axis=1) @ v
}`,
    extra: (n, m) => ({ t: [m, n] }),
    m: (n) => n + 2,
  },
  {
    name: "a table index computed from the score",
    source: attention("q[i] . k[j] + bias[int(abs(q[i] . k[j]) * 2)]", ", bias: [4]"),
    extra: () => ({ bias: [4] }),
  },
];

async function checkCase(c: Case, n: number, gpu: boolean): Promise<void> {
  const p = compileSync(c.source, { file: `${c.name}.attn` });
  assert.equal(dispatchesPerRun(p.plan()), 1, `${c.name}: ${p.explain()}`);
  const m = c.m?.(n) ?? n;
  let seed = 1;
  const inputs: Record<string, Tensor> = {
    q: randomTensor([2, n, 5], { seed: seed++ }),
    k: randomTensor([2, m, 5], { seed: seed++ }),
    v: randomTensor([2, m, 3], { seed: seed++ }),
  };
  for (const [name, shape] of Object.entries(c.extra?.(n, m) ?? {})) {
    inputs[name] = randomTensor([2, ...shape], { seed: seed++ });
  }
  const want = await p.run(inputs, { backend: "interp" });
  const optimized = interpret(p.optimized, inputs);
  assert.ok(relativeError(optimized, want) <= 1e-12, `${c.name}, n = ${n}: passes changed it`);
  if (!gpu) return;
  const got = await p.run(inputs, { backend: "gpu", poison: true });
  const err = relativeError(got, want);
  assert.ok(err <= 1e-5, `${c.name}, n = ${n}: GPU differs by ${err}`);
}

Deno.test("score forms: tables at (i, j) fuse to one dispatch and agree with the interpreter", async () => {
  for (const c of CASES) for (const n of [1, 7, 13]) await checkCase(c, n, false);
});

Deno.test({
  name: "score forms: tables at (i, j) on the GPU",
  ignore: adapter === undefined,
  async fn() {
    for (const c of CASES) await checkCase(c, 13, true);
  },
});
