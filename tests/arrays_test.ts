/**
 * Array basics: `arange`, slices with static bounds and `cumsum`, on the interpreter against
 * direct float64 loops and on the GPU (poisoned buffers) against the interpreter; causal linear
 * attention written with `cumsum` against a brute-force float64 causal linear attention; and the
 * diagnostics, each pinned to its first line.
 */
import assert from "node:assert/strict";
import { CompileError, compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { getDevice } from "../runtime/device.ts";

const adapter = await getDevice().then((d) => d.facts.description, (e) => {
  console.error(`GPU tests skipped: ${e.message}`);
  return undefined;
});

const interp = (src: string, inputs: Record<string, Tensor>, params = {}) =>
  compileSync(src, { params }).run(inputs, { backend: "interp" });

Deno.test("arrays: arange gives 0..n-1 for a size symbol, a parameter and an integer", async () => {
  const src = `def f(x: [n], m = 3) -> [n] {
  return float(arange(n)) * 100 + float(sum(arange(m))) + float(sum(arange(4)))
}`;
  const y = await interp(src, { x: randomTensor([5], { seed: 1 }) });
  assert.deepEqual(Array.from(y.data), [9, 109, 209, 309, 409]);
});

Deno.test("arrays: slices pick the rows and columns numpy would", async () => {
  const x = randomTensor([7, 6], { seed: 2 });
  const at = (i: number, j: number) => x.data[i * 6 + j];
  const cases: [string, number[][]][] = [
    ["x[2:5, 1]", [2, 3, 4].map((i) => [at(i, 1)])],
    ["x[1, :3]", [[0, 1, 2].map((j) => at(1, j))]],
    ["x[:, 4:][3]", [[at(3, 4), at(3, 5)]]],
    ["x[:2, -2:][1]", [[at(1, 4), at(1, 5)]]],
    ["x[:, a:a + 2][6]", [[at(6, 2), at(6, 3)]]],
  ];
  for (const [expr, want] of cases) {
    const y = await interp(`def f(x: [n, 6], a = 2) { return ${expr} }`, { x });
    assert.deepEqual(Array.from(y.data), want.flat(), expr);
  }
  // On a symbolic axis, positions past the run's size read 0.
  const y = await interp(`def f(x: [n, 6]) { return x[5:9, 0] }`, { x });
  assert.deepEqual(Array.from(y.data), [at(5, 0), at(6, 0), 0, 0]);
});

/** Inclusive prefix sums along `axis` of a row-major tensor, in float64. */
function cumsumRef(x: Tensor, axis: number): Float64Array {
  const len = x.shape[axis], inner = x.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
  const out = Float64Array.from(x.data);
  for (let o = 0; o < x.data.length / (len * inner); o++) {
    for (let i = 0; i < inner; i++) {
      for (let k = 1; k < len; k++) {
        out[(o * len + k) * inner + i] += out[(o * len + k - 1) * inner + i];
      }
    }
  }
  return out;
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) num += (a[i] - b[i]) ** 2, den += b[i] ** 2;
  assert.ok(Math.sqrt(num / den) <= tol, `${what}: relative error ${Math.sqrt(num / den)}`);
};

Deno.test("arrays: cumsum on the interpreter equals float64 prefix sums along each axis", async () => {
  const x = randomTensor([3, 5, 4], { seed: 3 });
  for (const axis of [0, 1, 2, -1]) {
    const y = await interp(`def f(x: [a, b, c]) { return cumsum(x, axis=${axis}) }`, { x });
    close(y.data, cumsumRef(x, (axis + 3) % 3), 1e-15, `axis ${axis}`);
  }
});

Deno.test({
  name: "gpu: cumsum at lengths 1, 3, 64, 65, 1000, 70000 agrees with float64 prefix sums",
  ignore: adapter === undefined,
  fn: async () => {
    const p = compileSync(`def f(x: [n, c]) -> [n, c] { return cumsum(x * 2 + 1, axis=0) }`);
    for (const [n, c] of [[1, 3], [3, 2], [64, 3], [65, 2], [1000, 3], [70000, 1]]) {
      const x = randomTensor([2, n, c], { seed: n });
      const shifted = { ...x, data: x.data.map((v) => 2 * v + 1) };
      const ref = cumsumRef(shifted, 1);
      const want = await p.run({ x }, { backend: "interp" });
      close(want.data, ref, 1e-14, `interp n = ${n}`);
      const got = await p.run({ x }, { backend: "gpu", poison: true });
      // f32 sums of n terms: error grows with the length.
      close(got.data, ref, n > 1000 ? 1e-5 : 1e-6, `gpu n = ${n}`);
    }
    // A middle axis with inner and outer axes, and an inlined operand.
    const q = compileSync(`def f(x: [a, n, 5]) { return cumsum(exp(x[:, :, 1:]), axis=1) }`);
    const x = randomTensor([3, 130, 5], { seed: 9 });
    const want = await q.run({ x }, { backend: "interp" });
    const got = await q.run({ x }, { backend: "gpu", poison: true });
    assert.ok(relativeError(got, want) < 1e-6, `middle axis: ${relativeError(got, want)}`);
  },
});

/** Causal linear attention, O(n) with prefix sums (the program under test). */
export const CAUSAL_LINEAR = Deno.readTextFileSync(
  new URL("../examples/causal_linear.attn", import.meta.url),
);

/** Brute force: y_i = Σ_{j ≤ i} (φ(q_i)·φ(k_j)) v_j / Σ_{j ≤ i} φ(q_i)·φ(k_j), φ = elu + 1. */
function causalLinearRef(q: Tensor, k: Tensor, v: Tensor): Float64Array {
  const [n, d] = q.shape.slice(-2), e = v.shape.at(-1)!;
  const phi = (x: number) => (x > 0 ? x + 1 : Math.exp(x));
  const slices = q.data.length / (n * d);
  const out = new Float64Array(slices * n * e);
  for (let s = 0; s < slices; s++) {
    for (let i = 0; i < n; i++) {
      let den = 0;
      const num = new Float64Array(e);
      for (let j = 0; j <= i; j++) {
        let w = 0;
        for (let a = 0; a < d; a++) {
          w += phi(q.data[(s * n + i) * d + a]) * phi(k.data[(s * n + j) * d + a]);
        }
        den += w;
        for (let c = 0; c < e; c++) num[c] += w * v.data[(s * n + j) * e + c];
      }
      for (let c = 0; c < e; c++) out[(s * n + i) * e + c] = num[c] / den;
    }
  }
  return out;
}

Deno.test({
  name: "arrays: causal linear attention with cumsum equals brute force (interpreter and GPU)",
  fn: async () => {
    const p = compileSync(CAUSAL_LINEAR);
    for (const [n, d, e] of [[1, 3, 2], [7, 4, 5], [65, 8, 8]]) {
      const seed = n * 10;
      const q = randomTensor([2, n, d], { seed }), k = randomTensor([2, n, d], { seed: seed + 1 });
      const v = randomTensor([2, n, e], { seed: seed + 2 });
      const ref = causalLinearRef(q, k, v);
      close((await p.run({ q, k, v }, { backend: "interp" })).data, ref, 1e-13, `interp n=${n}`);
      if (adapter === undefined) continue;
      const got = await p.run({ q, k, v }, { backend: "gpu", poison: true });
      close(got.data, ref, 1e-5, `gpu n = ${n}`);
    }
  },
});

const FILE = "bad.attn";
const ERRORS: [string, string, string][] = [
  [
    "cumsum: axis out of range",
    "cumsum(x, axis=2)",
    "1:46: cumsum: axis 2 is out of range for [n, 5]",
  ],
  ["cumsum: no axis", "cumsum(x)", "1:36: cumsum needs an axis"],
  [
    "cumsum: a scalar",
    "cumsum(sum(x), axis=0)",
    "1:36: cumsum needs a tensor of rank ≥ 1, got a scalar",
  ],
  ["cumsum: float axis", "cumsum(x, axis=0.5)", "1:46: cumsum: axis must be an integer, got 0.5"],
  ["slice: too many subscripts", "x[:, :, 1:2]", "1:36: x has rank 2 but 3 subscripts were given"],
  ["slice: past the end", "x[:, 2:9]", "1:41: slice 2:9 is out of range for axis 1 of size 5"],
  [
    "slice: negative past the start",
    "x[:, -7:]",
    "1:41: slice -7: is out of range for axis 1 of size 5",
  ],
  ["slice: empty", "x[:, 3:3]", "1:41: slice 3:3 of axis 1 of size 5 is empty"],
  [
    "slice: a start on a symbolic axis",
    "x[2:]",
    "1:38: slice 2: of axis 0 of size n (from x: [n, 5]) needs that size, known only at run time (a shape cannot say n - 2)",
  ],
  [
    "slice: a float bound",
    "x[1.5:2]",
    "1:38: a slice bound must be an integer known at compile time, got 1.5",
  ],
  [
    "slice: a tensor bound",
    "x[:, x[0, 0]:]",
    "1:41: a slice bound must be an integer known at compile time, got a value computed at run time (float[])",
  ],
  [
    "slice: subscript out of range",
    "x[:, 5]",
    "1:41: subscript 5 is out of range for axis 1 of size 5",
  ],
  [
    "slice: outside a subscript",
    "cumsum(1:2, axis=0)",
    '1:44: syntax error: expected ")", found ":"',
  ],
  [
    // fuzz: planning threw a RangeError
    "slice: a bound past u32",
    "x[:100000000000]",
    "1:39: a slice bound of 100000000000 is past 4294967295, the largest a GPU index (u32) can address",
  ],
  [
    "arange: not a size",
    "arange(x)",
    "1:43: a size must be a non-negative integer known at compile time, got a [n, 5] tensor",
  ],
];

for (const [name, expr, message] of ERRORS) {
  Deno.test(`arrays error: ${name}`, () => {
    const src = `def f(x: [n, 5]) {  y = 1;  return ${expr} }`;
    assert.throws(
      () => compileSync(src, { file: FILE }),
      (err: unknown) => {
        assert.ok(err instanceof CompileError, String(err));
        assert.equal(err.message.split("\n")[0], `${FILE}:${message}`);
        return true;
      },
    );
  });
}
