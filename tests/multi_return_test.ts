/**
 * Multiple return values: `-> ([n, e], [n])` and `return y, lse`, checked per result; every
 * result kept by the passes, computed by the interpreter and the GPU (each its own buffer, batch
 * and head dims mapped over all); `run` refuses several results, `runAll` gives them all.
 */
import assert from "node:assert/strict";
import {
  CompileError,
  compileSync,
  randomTensor,
  relativeError,
  type Tensor,
  UsageError,
} from "../mod.ts";
import { getDevice } from "../runtime/device.ts";
import { cli } from "./cli_helpers.ts";

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
      "def g(x: [n]) { return x, x }\ndef f(x: [n]) { return g(x) }",
      `${FILE}:2:24: g returns 2 values; a call takes one`,
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
