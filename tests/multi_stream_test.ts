/**
 * Several score streams in one pass (differential attention, `attention_mix`): linear
 * combinations of row softmaxes multiplied into one v, or of attentions over one v, plan to one
 * dispatch, run the same on the interpreter before and after the passes (masked streams, rows
 * with no finite score, NaN rows, 2 to 4 streams, awkward sizes), and agree with the interpreter
 * on the GPU (poisoned intermediates; plain and blocked key loops; key blocks skipped where every
 * stream masks them, at small key blocks so that several are skipped and several kept). Past the
 * loop budget the kernel has no split form and is refused by name. What is not provably a
 * combination stays unfused.
 */
import assert from "node:assert/strict";
import {
  compileSync,
  LimitError,
  randomTensor,
  relativeError,
  type Tensor,
  tensor,
} from "../mod.ts";
import { interpret } from "../compiler/interp.ts";
import { dispatchesPerRun } from "../compiler/lower/plan.ts";
import { getDevice } from "../runtime/device.ts";
import { keyTile, LOOPS, streamTile } from "../compiler/limits.ts";

const adapter = await getDevice().then(() => true, () => undefined);

interface Case {
  name: string;
  source: string;
  /** Extra inputs: name → per-slice shape (given n and m), random data. */
  extra?: (n: number, m: number) => Record<string, number[]>;
  /** Extra inputs given as data (per slice; the same for both slices), e.g. document ids. */
  data?: (n: number, m: number) => Record<string, number[]>;
  /** Whether the kernel tests key blocks (every stream masks keys, windows differ). */
  tiles?: boolean;
  /** A row that is NaN in one stream (and so in the result). */
  nanRow?: number;
  m?: (n: number) => number;
}

const decls = "q: [n, d], k: [m, d], q2: [n, d], k2: [m, d], v: [m, e], lam = 0.37";
const prog = (body: string, extra = "") => `
def f(${decls}${extra}) -> [n, e] {
  s1 = q @ k^T / sqrt(d)
  s2 = q2 @ k2^T / sqrt(d)
  ${body}
}`;

const CASES: Case[] = [
  {
    name: "(softmax(s1) - lam * softmax(s2)) @ v",
    source: prog("return (softmax(s1, axis=1) - lam * softmax(s2, axis=1)) @ v"),
    m: (n) => n + 2,
  },
  {
    name: "softmax(s1) @ v - lam * (softmax(s2) @ v) (distributed)",
    source: prog("return softmax(s1, axis=1) @ v - lam * (softmax(s2, axis=1) @ v)"),
  },
  {
    name: "causal in one stream only, a per-row coefficient c [n, 1]",
    source: prog(
      "c1[i, j] = where(j <= i, q[i] . k[j], -inf)\n  " +
        "return (softmax(c1, axis=1) - c * softmax(s2, axis=1)) @ v",
      ", c: [n, 1]",
    ),
    extra: (n) => ({ c: [n, 1] }),
  },
  {
    name: "three streams: neg, div, a shared q, a sliding window and a causal window",
    source: prog(
      "w1[i, j] = where(abs(i - j) <= 2, q[i] . k[j], -inf)\n  " +
        "w3[i, j] = where(j <= i, q[i] . k2[j] * 0.5, -inf)\n  " +
        "return (-softmax(w1, axis=1) / 3.0 + softmax(s2, axis=1) * lam - 0.25 * softmax(w3, axis=1)) @ v",
    ),
  },
  {
    name: "rows with no finite score in one stream (zeros there), keys before 3 only",
    source: prog(
      "e2[i, j] = where(i > 3 and j < 3, q2[i] . k2[j], -inf)\n  " +
        "return (lam * softmax(s1, axis=1) + softmax(e2, axis=1)) @ v",
    ),
  },
  {
    name: "a NaN row in one stream (NaN there)",
    source: prog(
      "n2[i, j] = q2[i] . k2[j] + where(i == 2, sqrt(t[i] * 0.0 - 1.0), 0.0)\n  " +
        "return (softmax(s1, axis=1) - lam * softmax(n2, axis=1)) @ v",
      ", t: [n]",
    ),
    extra: (n) => ({ t: [n] }),
    nanRow: 2,
  },
  {
    name: "causal in both streams: one window, keys past the tile never visited",
    source: prog(
      "c1[i, j] = where(j <= i, q[i] . k[j], -inf)\n  " +
        "c2[i, j] = where(j <= i, q2[i] . k2[j] * 0.5, -inf)\n  " +
        "return (softmax(c1, axis=1) - lam * softmax(c2, axis=1)) @ v",
    ),
  },
  {
    name: "documents in both streams: blocks between documents skipped",
    source: prog(
      "d1[i, j] = where(doc[i] == dk[j], q[i] . k[j], -inf)\n  " +
        "d2[i, j] = where(doc[i] == dk[j] and j <= i, q2[i] . k2[j], -inf)\n  " +
        "return (softmax(d1, axis=1) - lam * softmax(d2, axis=1)) @ v",
      ", doc: [n], dk: [m]",
    ),
    data: (n, m) => ({
      doc: Array.from({ length: n }, (_, t) => Math.floor(t / 9)),
      dk: Array.from({ length: m }, (_, t) => Math.floor(t / 9)),
    }),
    tiles: true,
  },
  {
    name: "prefix-LM in one stream, a band in the other: blocks outside both skipped",
    source: prog(
      "p1[i, j] = where(j <= i or j < 3, q[i] . k[j], -inf)\n  " +
        "p2[i, j] = where(abs(i - j) <= 2, q2[i] . k2[j], -inf)\n  " +
        "return (softmax(p1, axis=1) - lam * softmax(p2, axis=1)) @ v",
    ),
    tiles: true,
  },
  {
    name: "four streams, masks apart: a block empty in three streams is kept for the fourth",
    source: prog(
      "a1[i, j] = where(j <= i - 20, q[i] . k[j], -inf)\n  " +
        "a2[i, j] = where(j >= i + 20, q2[i] . k2[j], -inf)\n  " +
        "a3[i, j] = where(km[j] > 0.5, q[i] . k2[j], -inf)\n  " +
        "a4[i, j] = where(i == 5, q2[i] . k[j], -inf)\n  " +
        "return (softmax(a1, axis=1) - lam * softmax(a2, axis=1) + 0.5 * softmax(a3, axis=1) " +
        "- 0.25 * softmax(a4, axis=1)) @ v",
      ", km: [m]",
    ),
    data: (_, m) => ({ km: Array.from({ length: m }, (_, t) => (t === m - 1 ? 1 : 0)) }),
    tiles: true,
  },
  {
    name: "a row masked in every stream (zeros), a NaN row inside a masked stream",
    source: prog(
      "r1[i, j] = where(i != 3 and j <= i, q[i] . k[j], -inf)\n  " +
        "r2[i, j] = where(i != 3 and j >= i, q2[i] . k2[j] + " +
        "where(i == 2, sqrt(t[i] * 0.0 - 1.0), 0.0), -inf)\n  " +
        "return (softmax(r1, axis=1) + lam * softmax(r2, axis=1)) @ v",
      ", t: [n]",
    ),
    extra: (n) => ({ t: [n] }),
    nanRow: 2,
    tiles: true,
  },
];

function inputsFor(c: Case, n: number, d: number, e: number): Record<string, Tensor> {
  const m = c.m?.(n) ?? n;
  let seed = 7;
  const inputs: Record<string, Tensor> = {
    q: randomTensor([2, n, d], { seed: seed++ }),
    k: randomTensor([2, m, d], { seed: seed++ }),
    q2: randomTensor([2, n, d], { seed: seed++ }),
    k2: randomTensor([2, m, d], { seed: seed++ }),
    v: randomTensor([2, m, e], { seed: seed++ }),
  };
  for (const [name, shape] of Object.entries(c.extra?.(n, m) ?? {})) {
    inputs[name] = randomTensor([2, ...shape], { seed: seed++ });
  }
  for (const [name, data] of Object.entries(c.data?.(n, m) ?? {})) {
    inputs[name] = tensor([2, data.length], [...data, ...data]);
  }
  return inputs;
}

/** NaN-aware agreement: same NaN positions, the rest within `tol`. */
function agree(got: Tensor, want: Tensor, tol: number, what: string): void {
  const nan = (t: Tensor) => [...t.data].map(Number.isNaN);
  assert.deepEqual(nan(got), nan(want), `${what}: NaN positions differ`);
  const strip = (t: Tensor) => ({ ...t, data: t.data.map((x) => (Number.isNaN(x) ? 0 : x)) });
  const err = relativeError(strip(got), strip(want));
  assert.ok(err <= tol, `${what}: differs by ${err}`);
}

async function checkCase(c: Case, n: number, gpu: boolean, d = 5, e = 3): Promise<void> {
  const p = compileSync(c.source, { file: `${c.name}.attn` });
  assert.equal(dispatchesPerRun(p.plan()), 1, `${c.name}: ${p.explain()}`);
  assert.ok(p.optimized.nodes.some((x) => x.op.op === "attention_mix"), c.name);
  const inputs = inputsFor(c, n, d, e);
  const want = await p.run(inputs, { backend: "interp" });
  agree(interpret(p.optimized, inputs), want, 1e-12, `${c.name}, n = ${n}: passes changed it`);
  if (c.nanRow !== undefined && c.nanRow < n) {
    assert.ok(want.data.some(Number.isNaN), `${c.name}: no NaN row`);
  }
  if (!gpu) return;
  const got = await p.run(inputs, { backend: "gpu", poison: true });
  agree(got, want, 1e-5, `${c.name}, n = ${n}, d = ${d}, e = ${e}: GPU`);
}

Deno.test("multi-stream: combinations of softmaxes fuse to one dispatch, interpreter agrees", async () => {
  for (const c of CASES) for (const n of [1, 7, 13, 65]) await checkCase(c, n, false);
});

Deno.test("multi-stream: what is not provably a combination stays unfused", () => {
  const unfused = [
    // The second softmax's probabilities are used twice.
    prog("p2 = softmax(s2, axis=1)\n  return (softmax(s1, axis=1) - lam * p2) @ v + p2 @ v"),
    // A coefficient varying along the keys.
    prog("return (softmax(s1, axis=1) - softmax(s2, axis=1) * s1) @ v"),
    // Attentions over different values.
    prog("return softmax(s1, axis=1) @ v - softmax(s2, axis=1) @ (v * 2.0)"),
    // A product of two softmaxes is not a linear combination.
    prog("return (softmax(s1, axis=1) * softmax(s2, axis=1)) @ v"),
  ];
  for (const src of unfused) {
    const p = compileSync(src, { file: "unfused.attn" });
    assert.ok(!p.optimized.nodes.some((x) => x.op.op === "attention_mix"), p.explain());
  }
});

Deno.test({
  name: "multi-stream: the GPU agrees (plain and blocked key loops)",
  ignore: adapter === undefined,
  async fn() {
    // d = 8, e = 4: vec4 rows, so the key loop runs in blocks too; d = 5, e = 3 one key at a time.
    for (const c of CASES) {
      for (const [d, e] of [[5, 3], [8, 4]]) await checkCase(c, 13, true, d, e);
    }
    await checkCase(CASES[2], 65, true, 8, 4);
  },
});

Deno.test("multi-stream: key blocks are tested exactly where every stream masks keys", () => {
  for (const c of CASES) {
    const p = compileSync(c.source, { file: `${c.name}.attn` });
    const k = p.plan().kernels.find((x) => x.name.startsWith("attention_mix_"))!;
    assert.equal(/var jt = jlo;/.test(k.wgsl), c.tiles === true, c.name);
  }
});

Deno.test({
  name: "multi-stream: skipping key blocks every stream masks changes nothing (GPU, poisoned)",
  ignore: adapter === undefined,
  async fn() {
    // Key blocks of 6 keys: several blocks skipped and several kept at n = 37, and blocks that
    // end in the one-key loop; d = 8, e = 4 runs blocked, d = 5, e = 3 one key at a time.
    const before = keyTile.keys;
    keyTile.keys = 6;
    try {
      for (const c of CASES.filter((c) => c.tiles)) {
        await checkCase(c, 37, true, 8, 4);
        await checkCase(c, 13, true, 5, 3);
      }
    } finally {
      keyTile.keys = before;
    }
  },
});

Deno.test({
  name: "multi-stream: 1, 3 and 8 query rows per invocation agree (n = 29, windows, tiles)",
  ignore: adapter === undefined,
  async fn() {
    const before = { rows: streamTile.rows, keys: keyTile.keys };
    keyTile.keys = 6;
    try {
      for (const rows of [1, 3, 8]) {
        streamTile.rows = rows;
        for (const c of [CASES[3], CASES[7]]) await checkCase(c, 29, true, 8, 4);
      }
    } finally {
      Object.assign(streamTile, { rows: before.rows });
      keyTile.keys = before.keys;
    }
  },
});

Deno.test({
  name: "multi-stream: past the loop budget the run is refused by name, never cut short",
  ignore: adapter === undefined,
  async fn() {
    const saved = { ...LOOPS };
    Object.assign(LOOPS, { budget: 120, chunk: 8, parts: 16 });
    try {
      const c = CASES[0];
      const p = compileSync(c.source, { file: "long.attn" });
      const inputs = inputsFor(c, 131, 8, 4);
      await assert.rejects(p.run(inputs, { backend: "gpu", poison: true }), LimitError);
      // Under the budget the same program still runs.
      await checkCase(c, 13, true, 8, 4);
    } finally {
      Object.assign(LOOPS, saved);
    }
  },
});

Deno.test({
  name: "multi-stream: grouped k/v heads (GQA) and a reused mask read the right slices (poisoned)",
  ignore: adapter === undefined,
  fn: async () => {
    const src =
      `def f(q: [n, d], k: [m, d], q2: [n, d], k2: [m, d], v: [m, e], mask: [m]) -> [n, e] {
  s1[i, j] = where(mask[j] > 0, q[i] . k[j], -inf)
  s2 = q2 @ k2^T / sqrt(d)
  return (softmax(s1, axis=1) - 0.3 * softmax(s2, axis=1)) @ v
}`;
    const p = compileSync(src);
    const n = 13, m = 11, d = 8, e = 4;
    const x = {
      q: randomTensor([4, n, d], { seed: 61 }),
      q2: randomTensor([4, n, d], { seed: 62 }),
      k: randomTensor([2, m, d], { seed: 63 }),
      k2: randomTensor([2, m, d], { seed: 64 }),
      v: randomTensor([2, m, e], { seed: 65 }),
      mask: randomTensor([1, m], { seed: 66 }),
    };
    const got = await p.run(x, { backend: "gpu", poison: true });
    const want = await p.run(x, { backend: "interp" });
    assert.deepEqual(got.shape, [4, n, e]);
    assert.ok(relativeError(got, want) < 1e-5, `${relativeError(got, want)}`);
  },
});

// f16 was ignored by the mix kernel (its q and k rows stayed f32); they are now rounded to f16 on
// load and multiplied in f32, as in the one-stream kernel.
Deno.test({
  name:
    "multi-stream: f16 (opt-in) rounds q and k rows to half precision, close to the interpreter",
  ignore: adapter === undefined,
  fn: async () => {
    const { device } = await getDevice();
    const p = compileSync(CASES[0].source, { f16: true });
    const kernel = p.plan().kernels.find((k) => k.name.startsWith("attention_mix"))!;
    assert.ok(kernel.specialize!(() => 16).startsWith("enable f16;"), kernel.name);
    const x = inputsFor(CASES[0], 65, 16, 8);
    if (!device.features.has("shader-f16")) {
      await assert.rejects(() => p.run(x, { backend: "gpu" }), /has no shader-f16/);
      return;
    }
    const want = await p.run(x, { backend: "interp" });
    const half = relativeError(await p.run(x, { backend: "gpu", poison: true }), want);
    const full = relativeError(await compileSync(CASES[0].source).run(x, { backend: "gpu" }), want);
    assert.ok(half < 1e-2, `f16: ${half}`);
    assert.ok(half > 10 * full, `f16 ${half} should be visibly coarser than f32 ${full}`);
  },
});
