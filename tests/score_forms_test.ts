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
import { LOOPS } from "../compiler/limits.ts";

const adapter = await getDevice().then(() => true, () => undefined);

interface Case {
  name: string;
  source: string;
  /** Extra inputs: name → per-slice shape (given n and m). */
  extra?: (n: number, m: number) => Record<string, number[]>;
  /** Key count (defaults to the query count n). */
  m?: (n: number) => number;
  /** The fused node sums its weights (no softmax). */
  summed?: boolean;
}

const attention = (score: string, decls = "", weights = "softmax(s, axis=1)") => `
def f(q: [n, d], k: [m, d], v: [m, e]${decls}) -> [n, e] {
  s[i, j] = ${score}
  return ${weights} @ v
}`;

const TABLES: Case[] = [
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

/** Weights without normalization: `f(score) @ v` in one streaming pass. */
const SUMMED: Case[] = ([
  {
    name: "sigmoid attention",
    source: attention("q[i] . k[j] / sqrt(d)", "", "sigmoid(s - log(m))"),
    m: (n) => n + 3,
  },
  {
    name: "relu(s)^2 with a causal -inf mask (relu(-inf) = 0)",
    source: attention("where(j <= i, q[i] . k[j], -inf)", "", "relu(s)^2"),
  },
  {
    name: "sigmoid with a sliding window of weight 0 (keys outside skipped)",
    source: attention("where(abs(i - j) <= 2, sigmoid(q[i] . k[j]), 0)", "", "s"),
  },
  {
    name: "sigmoid attention with T5 bias and a key mask",
    source: attention(
      "where(km[j] > 0, q[i] . k[j] + bias[clamp(j - i, -3, 3) + 3], -inf)",
      ", bias: [7], km: [m]",
      "sigmoid(s)",
    ),
    extra: (_, m) => ({ bias: [7], km: [m] }),
  },
] as Case[]).map((c) => ({ ...c, summed: true }));

async function checkCase(c: Case, n: number, gpu: boolean, d = 5, e = 3): Promise<void> {
  const p = compileSync(c.source, { file: `${c.name}.attn` });
  assert.equal(dispatchesPerRun(p.plan()), 1, `${c.name}: ${p.explain()}`);
  const fused = p.optimized.nodes.find((x) => x.op.op === "attention");
  const summed = fused?.op.op === "attention" && fused.op.weights === "score";
  assert.equal(summed, c.summed === true, `${c.name}: ${p.explain()}`);
  const m = c.m?.(n) ?? n;
  let seed = 1;
  const inputs: Record<string, Tensor> = {
    q: randomTensor([2, n, d], { seed: seed++ }),
    k: randomTensor([2, m, d], { seed: seed++ }),
    v: randomTensor([2, m, e], { seed: seed++ }),
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

Deno.test("score forms: tables at (i, j) and summed weights fuse to one dispatch, interpreter agrees", async () => {
  for (const c of [...TABLES, ...SUMMED]) for (const n of [1, 7, 13]) await checkCase(c, n, false);
});

Deno.test({
  name: "score forms: tables at (i, j) and summed weights on the GPU",
  ignore: adapter === undefined,
  async fn() {
    for (const c of TABLES) await checkCase(c, 13, true);
    // d = 8, e = 4: vec4 rows, so the key loop runs in blocks (flash.ts `blocked`) too.
    for (const c of SUMMED) {
      for (const [d, e] of [[5, 3], [8, 4]]) await checkCase(c, 13, true, d, e);
    }
  },
});

Deno.test({
  name: "score forms: summed weights through the split (long-loop) plan on the GPU",
  ignore: adapter === undefined,
  async fn() {
    // Past the loop budget the key loop is split into parts whose partial sums are combined.
    const saved = { ...LOOPS };
    Object.assign(LOOPS, { budget: 120, chunk: 8, parts: 16 });
    try {
      for (const c of SUMMED) await checkCase(c, 131, true, 8, 4);
    } finally {
      Object.assign(LOOPS, saved);
    }
  },
});

/** Positions where NaN differs between two results, or undefined. */
function nanMismatch(got: Tensor, want: Tensor): string | undefined {
  for (let x = 0; x < want.data.length; x++) {
    if (Number.isNaN(got.data[x]) !== Number.isNaN(want.data[x])) {
      return `flat index ${x}: got ${got.data[x]}, expected ${want.data[x]}`;
    }
  }
  return undefined;
}

Deno.test({
  name:
    "score forms: divisors of a row, a key or the invocation agree on the GPU, 0, -0 and ±inf included",
  ignore: adapter === undefined,
  async fn() {
    // Divisors hoisted out of the key loop (kernels/attention.ts `hoistScore`): x / 0, x / -0,
    // x / inf and 0 / 0 must stay the interpreter's quotients, through softmax (an inf score
    // gives NaN rows) and sums.
    const cases = [
      attention("q[i] . k[j] / u[j]", ", u: [m]"),
      attention("q[i] . k[j] / float(i) - 1.0 / u[j]", ", u: [m]"),
      attention("(q[i] . k[j] + w[i]) / (w[i] * 2.0) + q[i] . k[j] / sqrt(d)", ", w: [n]"),
      attention("q[i] . k[j] / u[j]", ", u: [m]", "sigmoid(s)"),
      attention("where(j <= i, q[i] . k[j] / (u[j] - w[i]), -inf)", ", u: [m], w: [n]"),
    ];
    const n = 13, special = [0, -0, Infinity, -Infinity, 1e-30, 3e38];
    for (const [c, source] of cases.entries()) {
      for (const d of [5, 8]) {
        const p = compileSync(source);
        assert.equal(dispatchesPerRun(p.plan()), 1, `case ${c}: ${p.explain()}`);
        // Special values at a few keys / rows of the second slice only: the first stays finite.
        const vec = (len: number, seed: number) => {
          const t = randomTensor([2, len], { seed });
          special.forEach((v, x) => (t.data[len + ((x * 5) % len)] = v));
          return t;
        };
        const inputs: Record<string, Tensor> = {
          q: randomTensor([2, n, d], { seed: 1 }),
          k: randomTensor([2, n, d], { seed: 2 }),
          v: randomTensor([2, n, 4], { seed: 3 }),
          u: vec(n, 4),
          w: vec(n, 5),
        };
        if (!source.includes("u: ")) delete inputs.u;
        if (!source.includes("w: ")) delete inputs.w;
        const want = await p.run(inputs, { backend: "interp" });
        const got = await p.run(inputs, { backend: "gpu", poison: true });
        const where = `case ${c}, d = ${d}`;
        assert.equal(nanMismatch(got, want), undefined, where);
        const finite = (t: Tensor) => ({
          ...t,
          data: t.data.map((v) => (Number.isNaN(v) ? 0 : v)),
        });
        const err = relativeError(finite(got), finite(want));
        assert.ok(err <= 1e-5, `${where}: GPU differs by ${err}`);
        // Softmax over a row holding an inf score is NaN there: the special values took effect.
        if (c !== 2 && c !== 3) assert.ok(want.data.some(Number.isNaN), `${where}: no NaN reached`);
      }
    }
  },
});

// `.` binds like `*`: `c * q[i] . k[j]` is `(c * q[i]) . k[j]`. A factor constant along the row
// comes out of the dot product where that is exact in IEEE arithmetic (passes/finite.ts): never
// infinite for a product, never zero for a divisor. Found by the second generality probe (SSMax).
/** How a score with a factor on a row fuses: taken out of the dot, or rows computed first. */
const FACTORED: [string, "out" | "rows"][] = [
  ["sc * log(float(i + 1)) * q[i] . k[j] / sqrt(d)", "out"], // SSMax
  ["-q[i] . k[j]", "out"],
  ["q[i] . (k[j] * 0.5)", "out"],
  ["(q[i] / 4.0) . k[j]", "out"],
  ["2.0 * -q[i] . k[j]", "out"],
  // Not provable as a factor taken out: t[i] may be inf (inf * 0 in a term is NaN on one side
  // only), sqrt(d) and float(i) may be 0, log(float(i)) is -inf at i = 0. These rows are computed
  // as written, by a kernel of their own (passes/rows.ts), and read as the pass's q.
  ["(q[i] * t[i]) . k[j]", "rows"],
  ["(q[i] / sqrt(d)) . k[j]", "rows"],
  ["(q[i] / float(i)) . k[j]", "rows"],
  ["(q[i] * log(float(i))) . k[j]", "rows"],
];

Deno.test({
  name:
    "score forms: factors of a row come out of q[i] . k[j] only where exact, rows otherwise, and agree on the GPU",
  ignore: adapter === undefined,
  fn: async () => {
    for (const [score, form] of FACTORED) {
      const p = compileSync(`def f(q: [n, d], k: [n, d], v: [n, e], t: [n], sc = 0.4) -> [n, e] {
  s[i, j] = where(j <= i, ${score}, -inf)
  return softmax(s, axis=1) @ v
}`);
      const fused = p.optimized.nodes.some((n) => n.op.op === "attention");
      assert.ok(fused, `${score}:\n${p.explain()}`);
      assert.equal(p.plan().kernels.length, form === "out" ? 1 : 2, `${score}:\n${p.explain()}`);
      const n = 29;
      const x = {
        q: randomTensor([2, n, 8], { seed: 1 }),
        k: randomTensor([2, n, 8], { seed: 2 }),
        v: randomTensor([2, n, 3], { seed: 3 }),
        t: randomTensor([2, n], { seed: 4 }),
      };
      // An infinite factor on one row and a zero in its q: that row is NaN in the checked program
      // (0 · inf in a term). A wrong factoring would give ±inf scores there, also NaN after the
      // softmax, so this checks values, not the policy: `fused` above asserts which forms fuse.
      x.t.data[5] = Infinity;
      x.q.data[5 * 8 + 2] = 0;
      const want = interpret(p.graph, {
        ...x,
        q: { ...x.q, shape: [n, 8], data: x.q.data.subarray(0, n * 8) },
        k: { ...x.k, shape: [n, 8], data: x.k.data.subarray(0, n * 8) },
        v: { ...x.v, shape: [n, 3], data: x.v.data.subarray(0, n * 3) },
        t: { ...x.t, shape: [n], data: x.t.data.subarray(0, n) },
      });
      const interp = await p.run(x, { backend: "interp" });
      const gpu = await p.run(x, { backend: "gpu", poison: true });
      // The checked program's first slice, the optimized one's, and the GPU's: NaN by position.
      for (let r = 0; r < n * 3; r++) {
        for (const [name, t] of [["interp", interp], ["gpu", gpu]] as [string, Tensor][]) {
          assert.equal(
            Number.isNaN(t.data[r]),
            Number.isNaN(want.data[r]),
            `${score}: ${name} [${r}]`,
          );
        }
      }
      const finite = (t: Tensor) => ({ ...t, data: t.data.map((y) => (Number.isNaN(y) ? 0 : y)) });
      assert.ok(relativeError(finite(gpu), finite(interp)) < 1e-5, score);
    }
  },
});
