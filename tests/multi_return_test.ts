/**
 * Multiple return values: `-> ([n, e], [n])` and `return y, lse`, checked per result; every
 * result kept by the passes, computed by the interpreter and the GPU (each its own buffer, batch
 * and head dims mapped over all); `run` refuses several results, `runAll` gives them all.
 */
import assert from "node:assert/strict";
import {
  CompileError,
  compileSync,
  type Program,
  randomTensor,
  relativeError,
  type Tensor,
  UsageError,
} from "../mod.ts";
import { getDevice } from "../runtime/device.ts";
import { cli } from "./cli_helpers.ts";
import { LOOPS } from "../compiler/limits.ts";
import type { Dim } from "../compiler/ir/types.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);
const FILE = "m.attn";

/** The diagnostic's first line (file:line:col: message) of compiling `src`. */
function diagnostic(src: string): string {
  try {
    compileSync(src, { file: FILE });
  } catch (e) {
    if (!(e instanceof CompileError)) throw e;
    return e.format().split("\n")[0].replace(/^error: /, "");
  }
  throw new Error(`compiled: ${src}`);
}

Deno.test("multiple results: declared shapes and counts are checked, with spans", () => {
  const cases: [string, string][] = [
    [
      "def f(q: [n, d], v: [n, e]) -> ([n, d], [n, d]) { return q, v }",
      `${FILE}:1:41: f returns [n, e] as result 2 but its declared result 2 is [n, d] ` +
      "(axis 1: e (from v: [n, e]) ≠ d (from q: [n, d]))",
    ],
    [
      "def f(q: [n, d]) -> ([n, d], [n]) { return q }",
      `${FILE}:1:37: f returns 1 value but declares 2 results`,
    ],
    [
      "def f(q: [n, d]) -> [n, d] { return q, q }",
      `${FILE}:1:30: f returns 2 values but declares 1 result`,
    ],
    [
      "def f(q: [n, d]) -> ([n, d], [n, d, d]) { return q, q }",
      `${FILE}:1:30: f returns [n, d] as result 2 but its declared result 2 is [n, d, d] ` +
      "(rank 2 ≠ 3)",
    ],
    [
      "def g(x: [n]) { return x, x }\ndef f(x: [n]) { return g(x) * 2 }",
      `${FILE}:2:24: g returns 2 values; a call inside an expression takes one`,
    ],
  ];
  for (const [src, want] of cases) assert.equal(diagnostic(src), want, src);
  // A single declared result keeps its message (and its span at the type).
  assert.equal(
    diagnostic("def f(q: [n, d], v: [n, e]) -> [n, d] {\n  return v\n}"),
    `${FILE}:1:32: f returns [n, e] but its declared result is [n, d]`,
  );
  // The count error carries a hint with the types to declare.
  try {
    compileSync("def f(q: [n, d]) -> [n, d] { return q, sum(q, axis=1) }");
  } catch (e) {
    assert.match((e as CompileError).format(), /declare -> \(\[n, d\], \[n\]\)/);
  }
});

const TWO = `def f(x: [n, d], w: [d]) -> ([n, d], [n]) {
  y = 2 * x + w
  return y, sum(y, axis=1)
}`;

Deno.test("multiple results: interpreter, runAll and run, leading dims over every result", async () => {
  const p = compileSync(TWO);
  const x = randomTensor([2, 3, 5, 4], { seed: 1 }), w = randomTensor([4], { seed: 2 });
  const [y, s] = await p.runAll({ x, w }, { backend: "interp" });
  assert.deepEqual(y.shape, [2, 3, 5, 4]);
  assert.deepEqual(s.shape, [2, 3, 5]);
  for (let r = 0; r < 30; r++) {
    let total = 0;
    for (let c = 0; c < 4; c++) {
      const want = 2 * x.data[r * 4 + c] + w.data[c];
      assert.equal(y.data[r * 4 + c], want);
      total += want;
    }
    assert.ok(Math.abs(s.data[r] - total) < 1e-12);
  }
  await assert.rejects(() => p.run({ x, w }, { backend: "interp" }), (e: Error) => {
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /f returns 2 values; run gives one: use runAll\(inputs, options\)/);
    return true;
  });
  // One result: runAll is a list of run's.
  const one = compileSync("def g(x: [n]) -> [n] { return x * 3 }");
  const [a] = await one.runAll({ x: [1, 2] }, { backend: "interp" });
  assert.deepEqual([...a.data], [...(await one.run({ x: [1, 2] }, { backend: "interp" })).data]);
  assert.match(p.explain(), /^f\(x: \[n, d\], w: \[d\]\) -> \(\[n, d\], \[n\]\)/);
});

Deno.test("multiple results: the passes keep every result (dead code, duplicates, inputs)", async () => {
  const src = `def f(x: [n, d]) -> ([n], [n, d], [n, d], [n]) {
  unused = exp(x)
  a = sum(x, axis=1)
  b = sum(x, axis=1)
  return a, x, x * 1, b
}`;
  const p = compileSync(src);
  assert.equal(p.optimized.outputs.length, 4);
  const ids = new Set(p.optimized.nodes.map((n) => n.id));
  for (const o of p.optimized.outputs) assert.ok(ids.has(o), `output %${o} dropped`);
  assert.ok(!p.optimized.nodes.some((n) => n.op.op === "unary" && n.op.fn === "exp"));
  // CSE makes a and b one value, returned twice.
  assert.equal(p.optimized.outputs[0], p.optimized.outputs[3]);
  const x = randomTensor([3, 4], { seed: 3 });
  const got = await p.runAll({ x }, { backend: "interp" });
  assert.deepEqual(got.map((t) => t.shape), [[3], [3, 4], [3, 4], [3]]);
  assert.deepEqual([...got[1].data], [...x.data]);
  assert.deepEqual([...got[0].data], [...got[3].data]);
  assert.match(p.explain(), /return %\d+, %\d+, %\d+, %\d+/);
});

/** Every result of a GPU run (poisoned) against the interpreter. */
async function gpuMatches(src: string, inputs: Record<string, Tensor>, tol = 1e-5) {
  const p = compileSync(src);
  const want = await p.runAll(inputs, { backend: "interp" });
  const got = await p.runAll(inputs, { backend: "gpu", poison: true });
  assert.equal(got.length, want.length);
  got.forEach((g, k) => {
    assert.deepEqual(g.shape, want[k].shape, `result ${k + 1}`);
    const err = relativeError(g, want[k]);
    assert.ok(err < tol, `result ${k + 1}: relative error ${err}\n${src}`);
  });
  const prof = await p.profile(inputs, { poison: true });
  assert.equal(prof.outputs.length, want.length);
  assert.equal(prof.output, prof.outputs[0]);
  return { p, got };
}

Deno.test({
  name: "multiple results on the GPU (poisoned) = interpreter: buffers of their own, heads",
  ignore: adapter === undefined,
  fn: async () => {
    const x = randomTensor([2, 3, 13, 4], { seed: 4 }), w = randomTensor([4], { seed: 5 });
    await gpuMatches(TWO, { x, w });
    // An input, a scalar, the same value twice, and an attention output beside its score's sum.
    await gpuMatches(
      `def f(q: [n, d], k: [m, d], v: [m, e]) -> ([n, e], [n, d], [], [n], [n]) {
  s = q @ k^T / sqrt(d)
  r = sum(s, axis=1)
  return softmax(s, axis=1) @ v, q, sum(v), r, r
}`,
      {
        q: randomTensor([2, 7, 3], { seed: 6 }),
        k: randomTensor([2, 65, 3], { seed: 7 }),
        v: randomTensor([2, 65, 5], { seed: 8 }),
      },
    );
  },
});

Deno.test("cli run writes one file per result: PATH.1.npy, PATH.2.npy", async () => {
  const dir = await Deno.makeTempDir({ prefix: "attune-multi-" });
  try {
    await Deno.writeTextFile(`${dir}/two.attn`, TWO);
    const { writeNpy, readNpy } = await import("../mod.ts");
    await writeNpy(`${dir}/x.npy`, randomTensor([3, 4], { seed: 9 }));
    await writeNpy(`${dir}/w.npy`, randomTensor([4], { seed: 10 }));
    const r = await cli(
      [
        "run",
        "two.attn",
        "--in",
        "x=x.npy",
        "--in",
        "w=w.npy",
        "--backend",
        "interp",
        "-o",
        "y.npy",
      ],
      dir,
    );
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^y\.1\.npy: \[3, 4\] f4 \(interp/);
    assert.match(r.out, /\ny\.2\.npy: \[3\] f4 \(interp/);
    assert.deepEqual((await readNpy(`${dir}/y.2.npy`)).shape, [3]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
// ------------------------------------------------------------------------------ logsumexp

/** log Σ exp of `v` in float64, the plain way (finite rows only). */
const naiveLse = (v: number[]) => Math.log(v.reduce((t, x) => t + Math.exp(x), 0));

Deno.test("logsumexp: stable, keepdims and axes; -inf rows give -inf, NaN and +inf propagate", async () => {
  // Inputs are finite: 99, -99 and 77 stand for +inf, -inf and NaN.
  const p = compileSync(`def f(x: [n, m]) -> ([n], [n, 1], [m], []) {
  y = where(x == 99, inf, where(x == -99, -inf, where(x == 77, log(x - 78), x)))
  return logsumexp(y, axis=1), logsumexp(y, axis=1, keepdims=true), logsumexp(y, axis=0), logsumexp(y)
}`);
  const rows = [[1, 2, 3], [1000, 1001, 999], [-99, -99, -99], [77, 0, 1], [99, 0, -99], [
    -99,
    5,
    -99,
  ]];
  const x = { shape: [6, 3], data: Float64Array.from(rows.flat()), dtype: "float" as const };
  const [r, keep, cols, all] = await p.runAll({ x }, { backend: "interp" });
  assert.deepEqual(keep.shape, [6, 1]);
  assert.deepEqual([...keep.data], [...r.data]);
  assert.ok(Math.abs(r.data[0] - naiveLse([1, 2, 3])) < 1e-15);
  assert.ok(Math.abs(r.data[1] - (1000 + naiveLse([0, 1, -1]))) < 1e-12, "no overflow");
  assert.equal(r.data[2], -Infinity);
  assert.ok(Number.isNaN(r.data[3]));
  assert.equal(r.data[4], Infinity);
  assert.equal(r.data[5], 5);
  assert.equal(cols.shape[0], 3);
  assert.ok(Number.isNaN(cols.data[0]) && Number.isNaN(all.data[0]));
  // An int tensor is read as float; an empty axis sums nothing: -inf.
  const q = compileSync("def g(i: int[n]) -> [] { return logsumexp(i) }");
  const [z] = await q.runAll({ i: { shape: [2], data: [0, 0], dtype: "int" } }, {
    backend: "interp",
  });
  assert.ok(Math.abs(z.data[0] - Math.log(2)) < 1e-15);
  const e = compileSync("def h(x: [n, 0]) -> [n] { return logsumexp(x, axis=1) }");
  const [empty] = await e.runAll({ x: { shape: [2, 0], data: [] } }, { backend: "interp" });
  assert.deepEqual([...empty.data], [-Infinity, -Infinity]);
});

Deno.test({
  name: "logsumexp on the GPU (poisoned) = interpreter: -inf rows, long rows, keepdims",
  ignore: adapter === undefined,
  fn: async () => {
    const plain = compileSync(`def g(x: [n, m]) -> ([n], [n, 1]) {
  y = where(x > 1.5, -inf, x)
  return logsumexp(y, axis=1), logsumexp(y * 100, axis=1, keepdims=true)
}`);
    const xs = randomTensor([2, 3, 65], { seed: 8 });
    xs.data.fill(2, 0, 65);
    const want = await plain.runAll({ x: xs }, { backend: "interp" });
    const got = await plain.runAll({ x: xs }, { backend: "gpu", poison: true });
    for (const k of [0, 1]) {
      assert.equal(got[k].data[0], -Infinity);
      const tail = (t: Tensor) => ({ ...t, shape: [5], data: t.data.slice(1) });
      assert.ok(relativeError(tail(got[k]), tail(want[k])) < 1e-6, `result ${k + 1}`);
    }
  },
});

/** Scores with rows fully masked (the first three), tile-skipped blocks, and one NaN row. */
const LSE = `def f(q: [n, d], k: [m, d], v: [m, e]) -> ([n, e], [n]) {
  s[i, j] = where(j <= i - 3, q[i] . k[j] / sqrt(d), -inf)
  return softmax(s, axis=1) @ v, logsumexp(s, axis=1)
}`;

Deno.test("row log-sum-exp from the flash pass: fused only for the same score along the keys", () => {
  const fused = compileSync(LSE);
  const ops = fused.optimized.nodes.map((n) => n.op.op);
  assert.ok(ops.includes("attention_lse"), ops.join(" "));
  assert.ok(!ops.includes("logsumexp"));
  assert.equal(fused.plan().kernels.length, 1);
  assert.match(fused.explain(), /attention\{score=.*, lse=true\}[\s\S]*attention_lse\(%/);
  // Written first, keepdims, matrix form: still one pass.
  const before = compileSync(`def f(q: [n, d], k: [m, d], v: [m, e]) -> ([n, 1], [n, e]) {
  s = q @ k^T / sqrt(d)
  l = logsumexp(s, axis=1, keepdims=true)
  return l, softmax(s, axis=1) @ v
}`);
  assert.equal(before.plan().kernels.length, 1);
  // Not the same score, not along the keys, not a softmax: the reduction stays.
  const others = [
    "return softmax(s, axis=1) @ v, logsumexp(s + 1, axis=1)",
    "return softmax(s, axis=1) @ v, logsumexp(s, axis=0)",
    "return sigmoid(s) @ v, logsumexp(s, axis=1)",
    "return softmax(s, axis=1) @ v, logsumexp(q @ k^T, axis=1)",
  ];
  for (const ret of others) {
    const p = compileSync(`def f(q: [n, d], k: [n, d], v: [n, e]) {
  s = q @ k^T / sqrt(d)
  ${ret}
}`);
    const ops = p.optimized.nodes.map((n) => n.op.op);
    assert.ok(!ops.includes("attention_lse"), ret);
    assert.ok(ops.includes("logsumexp"), ret);
  }
});

/** `LSE` with a row bias log(t[i]): a negative t makes its row's scores NaN. */
const LSE_NAN = LSE.replace("/ sqrt(d)", "/ sqrt(d) + log(t[i])").replace(
  "v: [m, e]",
  "v: [m, e], t: [n]",
);

/** Random q, k, v for `LSE` at n rows and m keys; with `nan`, t for LSE_NAN (row 5 NaN). */
function lseInputs(n: number, m: number, seed: number, nan = false): Record<string, Tensor> {
  const x: Record<string, Tensor> = {
    q: randomTensor([2, n, 3], { seed }),
    k: randomTensor([2, m, 3], { seed: seed + 1 }),
    v: randomTensor([2, m, 5], { seed: seed + 2 }),
  };
  if (!nan) return x;
  const t = randomTensor([n], { seed: seed + 3 });
  t.data.forEach((y, i) => (t.data[i] = i === 5 ? -1 : Math.abs(y) + 0.1));
  return { ...x, t };
}

Deno.test({
  name: "row log-sum-exp on the GPU (poisoned) = interpreter: awkward n, masked rows, split",
  ignore: adapter === undefined,
  fn: async () => {
    const check = async (p: Program, x: Record<string, Tensor>, what: string) => {
      const want = await p.runAll(x, { backend: "interp" });
      const got = await p.runAll(x, { backend: "gpu", poison: true });
      for (const k of [0, 1]) {
        for (let i = 0; i < want[k].data.length; i++) {
          const [a, b] = [got[k].data[i], want[k].data[i]];
          const ok = Number.isNaN(b)
            ? Number.isNaN(a)
            : Number.isFinite(b)
            ? Math.abs(a - b) <= 1e-5 * (1 + Math.abs(b))
            : a === b;
          assert.ok(ok, `${what}: result ${k + 1}, flat index ${i}: got ${a}, expected ${b}`);
        }
      }
      // Rows 0..2 see no key: -inf; the NaN row is NaN.
      assert.equal(got[1].data[0], -Infinity, what);
    };
    const p = compileSync(LSE);
    for (const [n, m] of [[1, 1], [7, 3], [13, 65], [100, 100]]) {
      await check(p, lseInputs(n, m, n), `n = ${n}, m = ${m}`);
    }
    await check(compileSync(LSE_NAN), lseInputs(13, 13, 9, true), "a NaN row");
    // Forced split: the key range in parts, the log-sum-exp combined from their carriers.
    const saved = { ...LOOPS };
    Object.assign(LOOPS, { budget: 60, chunk: 8, parts: 16 });
    try {
      const long = compileSync(LSE);
      const sz = (d: Dim) => (typeof d === "number" ? d : d === "d" ? 3 : d === "e" ? 5 : 100);
      const plan = long.plan().long!(sz);
      assert.ok(
        plan.kernels.some((k) => /_lse$/.test(k.name)),
        plan.kernels.map((k) => k.name).join(" "),
      );
      await check(long, lseInputs(100, 100, 3), "split");
      await check(compileSync(LSE_NAN), lseInputs(100, 100, 4, true), "split, a NaN row");
    } finally {
      Object.assign(LOOPS, saved);
    }
  },
});
