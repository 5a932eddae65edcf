/**
 * Several results at a call: any function may return `-> (a, b)` and `y, lse = f(...)` binds
 * them (`_` drops one, `return f(x)` passes them all on). Each program with helpers computes, on
 * the float64 interpreter, exactly what the same program written out by hand computes; the
 * two-halves merge of examples/flash_split.attn is exact attention, on the GPU too; and each
 * misuse is a diagnostic at its span.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { CompileError, compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { getDevice } from "../runtime/device.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);
const SPLIT = Deno.readTextFileSync(new URL("../examples/flash_split.attn", import.meta.url));

/** examples/flash_split.attn with its helper written out at both calls. */
const SPLIT_BY_HAND = `def flash_split(q: [n, d], k: [m, d], v: [m, e]) -> ([n, e], [n]) {
  s1[i, j] = where(j >= 0 and j < m // 2, q[i] . k[j] / sqrt(d), -inf)
  y1 = softmax(s1, axis=1) @ v
  l1 = logsumexp(s1, axis=1)
  s2[i, j] = where(j >= m // 2 and j < m, q[i] . k[j] / sqrt(d), -inf)
  y2 = softmax(s2, axis=1) @ v
  l2 = logsumexp(s2, axis=1)
  top = max(l1, l2)
  l = top + log(exp(l1 - top) + exp(l2 - top))
  y[i, c] = exp(l1[i] - l[i]) * y1[i, c] + exp(l2[i] - l[i]) * y2[i, c]
  return y, l
}`;

const EXACT = `def exact(q: [n, d], k: [m, d], v: [m, e]) -> ([n, e], [n]) {
  s = q @ k^T / sqrt(d)
  return softmax(s, axis=1) @ v, logsumexp(s, axis=1)
}`;

/**
 * Three results, `_`, a helper destructuring another's, `return f(x)` passing two results on,
 * and destructuring inside `repeat` (x and s carried around the loop).
 */
const HELPERS = `def stats(x: [n, d]) -> ([n], [n], [n, d]) {
  mu = sum(x, axis=1) / d
  c[i, t] = x[i, t] - mu[i]
  var = sum(c * c, axis=1) / d
  return mu, var, c
}

def standardize(x: [n, d]) -> ([n, d], [n]) {
  mu, var, c = stats(x)
  y[i, t] = c[i, t] / sqrt(var[i] + 0.001)
  return y, mu
}

def step(x: [n, d], w: [d, d]) -> ([n, d], [n]) {
  return standardize(tanh(x @ w))
}

def f(x: [n, d], w: [d, d]) -> ([n, d], [n]) {
  s = sum(x, axis=1)
  repeat 3 {
    x, m = step(x, w)
    s = s + m
  }
  _, var, _ = stats(x)
  return x, s + var
}`;

const HELPERS_BY_HAND = `def f(x: [n, d], w: [d, d]) -> ([n, d], [n]) {
  s = sum(x, axis=1)
  repeat 3 {
    h = tanh(x @ w)
    mu = sum(h, axis=1) / d
    c[i, t] = h[i, t] - mu[i]
    var = sum(c * c, axis=1) / d
    y[i, t] = c[i, t] / sqrt(var[i] + 0.001)
    x = y
    s = s + mu
  }
  mu = sum(x, axis=1) / d
  c[i, t] = x[i, t] - mu[i]
  var = sum(c * c, axis=1) / d
  return x, s + var
}`;

const SIZES = fc.constantFrom(1, 7, 65);
const SEED = fc.integer({ min: 0, max: 2 ** 31 - 1 });
const OPTS = { numRuns: 12 };

/** Every result of `a` and `b` on the interpreter: equal to the bit. */
async function sameResults(a: string, b: string, x: Record<string, Tensor>): Promise<Tensor[]> {
  const got = await compileSync(a).runAll(x, { backend: "interp" });
  const want = await compileSync(b).runAll(x, { backend: "interp" });
  assert.equal(got.length, want.length);
  got.forEach((g, k) => {
    assert.deepEqual(g.shape, want[k].shape, `result ${k + 1}`);
    assert.deepEqual([...g.data], [...want[k].data], `result ${k + 1}`);
  });
  return got;
}

const qkv = (n: number, m: number, seed: number, lead: number[] = []) => ({
  q: randomTensor([...lead, n, 5], { seed }),
  k: randomTensor([...lead, m, 5], { seed: seed + 1 }),
  v: randomTensor([...lead, m, 3], { seed: seed + 2 }),
});

Deno.test("destructuring: the two-halves merge = the same program by hand = exact attention (interpreter)", async () => {
  const exact = compileSync(EXACT);
  await fc.assert(
    fc.asyncProperty(SIZES, SIZES, SEED, async (n, m, seed) => {
      const x = qkv(n, m, seed);
      const [y, l] = await sameResults(SPLIT, SPLIT_BY_HAND, x);
      const [ye, le] = await exact.runAll(x, { backend: "interp" });
      assert.ok(relativeError(y, ye) < 1e-12, `y: ${relativeError(y, ye)}`);
      assert.ok(relativeError(l, le) < 1e-12, `lse: ${relativeError(l, le)}`);
    }),
    OPTS,
  );
});

Deno.test("destructuring: three results, _, nested helpers, return f(x), repeat = by hand (interpreter)", async () => {
  await fc.assert(
    fc.asyncProperty(SIZES, fc.constantFrom(1, 3, 7), SEED, async (n, d, seed) => {
      const x = randomTensor([n, d], { seed }), w = randomTensor([d, d], { seed: seed + 1 });
      await sameResults(HELPERS, HELPERS_BY_HAND, { x, w });
    }),
    OPTS,
  );
  // Each destructured name is its own result of the callee (not the first, not a copy).
  const swap = compileSync(`def g(a: [n], b: [n]) -> ([n], [n], []) { return b, a * 2, 5 }
def f(a: [n], b: [n]) -> ([n], [n], [n]) {
  p, q, r = g(a, b)
  _, s, _ = g(q, p)
  return p, q + r, s
}`);
  const a = randomTensor([7], { seed: 1 }), b = randomTensor([7], { seed: 2 });
  const [p, qr, s] = await swap.runAll({ a, b }, { backend: "interp" });
  assert.deepEqual([...p.data], [...b.data]);
  assert.deepEqual([...qr.data], [...a.data].map((x) => 2 * x + 5));
  assert.deepEqual([...s.data], [...a.data].map((x) => 4 * x)); // g(2a, b)[1] = 2 · 2a
  // The entry passes a helper's results on: `return g(x)`.
  const pass = compileSync(`def g(x: [n]) -> ([n], []) { return exp(x), sum(x) }
def f(x: [n]) { return g(x) }`);
  const [ex, sx] = await pass.runAll({ x: a }, { backend: "interp" });
  assert.deepEqual([...ex.data], [...a.data].map(Math.exp));
  assert.deepEqual(sx.shape, []);
});

Deno.test({
  name:
    "destructuring on the GPU (poisoned): the two-halves merge = interpreter, heads, awkward sizes",
  ignore: adapter === undefined,
  fn: async () => {
    const p = compileSync(SPLIT);
    for (const [n, m, seed] of [[7, 13, 1], [1, 1, 4], [13, 2, 7]]) {
      const x = qkv(n, m, seed, [2]);
      const want = await p.runAll(x, { backend: "interp" });
      const got = await p.runAll(x, { backend: "gpu", poison: true });
      want.forEach((w, k) => {
        assert.deepEqual(got[k].shape, w.shape);
        const err = relativeError(got[k], w);
        assert.ok(err < 1e-5, `n = ${n}, m = ${m}, result ${k + 1}: relative error ${err}`);
      });
    }
  },
});

/** The diagnostic of compiling `src`: its first line (file:line:col: message) and its hint. */
function diagnostic(src: string): [string, string | undefined] {
  try {
    compileSync(src, { file: "t.attn" });
  } catch (e) {
    if (!(e instanceof CompileError)) throw e;
    return [e.format().split("\n")[0].replace(/^error: /, ""), e.hint];
  }
  throw new Error(`compiled: ${src}`);
}

const FLASH = `def flash(q: [n, d], k: [m, d], v: [m, e]) -> ([n, e], [n]) {
  s = q @ k^T / sqrt(d)
  y = softmax(s, axis=1) @ v
  lse = logsumexp(s, axis=1)
  return y, lse
}
def g(x: [n, d]) -> [n, d] { return x * 2 }
`;

Deno.test("destructuring errors: name the function and both counts, at the call or the names", () => {
  const entry = (body: string) => `${FLASH}def f(q: [n, d], k: [m, d], v: [m, e]) {\n${body}\n}`;
  const cases: [string, string, string | undefined][] = [
    [
      entry("  return flash(q, k, v) + 1"),
      "t.attn:9:10: flash returns 2 values; a call inside an expression takes one",
      "bind each to a name: y, lse = flash(...)",
    ],
    [
      entry("  y = flash(q, k, v)\n  return y"),
      "t.attn:9:7: flash returns 2 values; a call inside an expression takes one",
      "bind each to a name: y, lse = flash(...)",
    ],
    [
      entry("  a, b, c = flash(q, k, v)\n  return a"),
      "t.attn:9:3: flash returns 2 values but 3 names are given",
      "write y, lse = flash(...)",
    ],
    [
      entry("  a, b = g(q)\n  return a"),
      "t.attn:9:10: g returns one value; it cannot be destructured into 2 names",
      "write a = g(...)",
    ],
    [
      entry("  a, b = softmax(q, axis=1)\n  return a"),
      "t.attn:9:10: softmax returns one value; it cannot be destructured into 2 names",
      "write a = softmax(...)",
    ],
    [
      entry("  a, b = q + 1\n  return a"),
      "t.attn:9:10: a, b = … takes the results of a function call, not q + 1",
      "only a call of a function that returns several values can be destructured",
    ],
    [
      entry("  a, a = flash(q, k, v)\n  return a"),
      "t.attn:9:6: a is bound twice here",
      "write _ to drop a result",
    ],
    [
      entry("  _, l = flash(q, k, v)\n  return _"),
      "t.attn:10:10: unknown name _",
      undefined,
    ],
  ];
  for (const [src, message, hint] of cases) {
    const [got, gotHint] = diagnostic(src);
    assert.equal(got, message, src);
    if (hint !== undefined) assert.equal(gotHint, hint, src);
  }
  // A helper's results are checked against its declared types, at the declared type.
  assert.equal(
    diagnostic(
      "def h(x: [n]) -> ([n], [n, n]) { return x, x }\ndef f(x: [n]) {\n  a, b = h(x)\n  return a\n}",
    )[0],
    "t.attn:1:24: h returns [n] as result 2 but its declared result 2 is [n, n] (rank 1 ≠ 2)",
  );
});
