/**
 * Ints are 32-bit on both backends (docs/language.md "Integers are 32-bit"): hashes that wrap past
 * 2^31, floor division and remainder of negatives, division by a data-dependent 0, int(NaN) and
 * int(±inf), in elementwise kernels and inside fused attention scores. Each backend is checked
 * against a BigInt reference written here, not against the interpreter alone; GPU halves are
 * skipped without an adapter.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { CompileError, compileSync, type Tensor } from "../mod.ts";
import { getDevice } from "../runtime/device.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);

// The reference: exact integers (BigInt), wrapped to 32 bits after each operation.
const wrap = (x: bigint) => BigInt.asIntN(32, x);
const floorDiv = (a: bigint, b: bigint) => {
  if (b === 0n) return 0n;
  const q = a / b;
  return wrap(a % b !== 0n && (a < 0n) !== (b < 0n) ? q - 1n : q);
};
const floorMod = (a: bigint, b: bigint) => {
  if (b === 0n) return a;
  const r = a % b;
  return r !== 0n && (r < 0n) !== (b < 0n) ? r + b : r;
};
const B = (x: number) => BigInt(x);
const KNUTH = wrap(2654435761n); // the literal wraps to -1640531535

/** Both backends' results (the GPU's with poisoned outputs), with what they are called. */
async function runs(
  src: string,
  inputs: Record<string, Tensor>,
): Promise<{ name: string; ys: Tensor[] }[]> {
  const p = compileSync(src);
  const out = [{ name: "interp", ys: await p.runAll(inputs, { backend: "interp" }) }];
  if (adapter !== undefined) {
    out.push({ name: "gpu", ys: await p.runAll(inputs, { backend: "gpu", poison: true }) });
  }
  return out;
}

const vec = (data: number[]): Tensor => ({
  shape: [data.length],
  data: Float64Array.from(data),
  dtype: "float",
});

Deno.test("ints: hashes past 2^31, floor // and % of negatives, and // 0 agree with a BigInt reference on both backends", async () => {
  // x holds 0 (a divisor of 0 at run time), negatives, NaN-free fractions.
  const n = 45;
  const x = Array.from({ length: n }, (_, i) => [0.1, -0.6, 1.3, -2.2, 0.9, 3.7, -0.2][i % 7]);
  const src = `def f(x: [n]) -> ([n], [n], [n], [n], [n], [n], [n]) {
  d[i] = int(x[i] * 4)
  ii = arange(n)
  a = float((ii * 2654435761 + 12345) % 1000)
  b = float((ii * 1000003 - 999999937) // 65536)
  c[i] = float((i - 20) // d[i])
  e[i] = float((i * 7 - 20) % d[i])
  f = float(-(ii * 1073741824) + 3)
  g = float(abs(ii * 1073741825) // 4096)
  h = float(max(ii * 1000000007, ii * 999999937) % 977)
  return a, b, c, e, f, g, h
}`;
  const want = Array.from({ length: n }, (_, i) => {
    const I = B(i), d = B(Math.floor(x[i] * 4));
    const absW = (v: bigint) => wrap(v < 0n ? -v : v);
    const m1 = wrap(I * wrap(1000000007n)), m2 = wrap(I * wrap(999999937n));
    return [
      floorMod(wrap(wrap(I * KNUTH) + 12345n), 1000n),
      floorDiv(wrap(wrap(I * 1000003n) - 999999937n), 65536n),
      floorDiv(I - 20n, d),
      floorMod(I * 7n - 20n, d),
      wrap(wrap(-wrap(I * 1073741824n)) + 3n),
      floorDiv(absW(wrap(I * 1073741825n)), 4096n),
      floorMod(m1 > m2 ? m1 : m2, 977n),
    ].map(Number);
  });
  // The reference itself reaches the cases: wrapped products, negative quotients, a 0 divisor.
  assert.ok(want.some((w) => w[4] < 0) && x.some((v) => Math.floor(v * 4) === 0));
  for (const { name, ys } of await runs(src, { x: vec(x) })) {
    ys.forEach((y, k) =>
      y.data.forEach((v, i) => {
        // float32 holds the results of a, c, e exactly; the others are rounded to it once.
        const w = Math.fround(want[i][k]);
        assert.ok(
          Object.is(Math.fround(v), w),
          `${name}: result ${k} at i = ${i}: ${v}, want ${w}`,
        );
      })
    );
  }
});

Deno.test("ints: int(x) floors and saturates at ±2^31, int(NaN) is 0, on both backends", async () => {
  const src = `def f(x: [n]) -> [n] {
  return float(int(x * 1e30) // 65536) + float(int(log(x)) % 7)
}`;
  // x * 1e30: ±inf and huge values saturate; log(x): NaN for x < 0, -inf at 0.
  const x = [2.5, -3, 0, 1e-31, -1e-31, 1e10, Infinity, -Infinity, 0.7];
  const sat = (v: number) =>
    Number.isNaN(v)
      ? 0n
      : v >= 2 ** 31
      ? 2n ** 31n - 1n
      : v < -(2 ** 31)
      ? -(2n ** 31n)
      : B(Math.floor(v));
  const want = x.map((v) =>
    Number(floorDiv(sat(Math.fround(v * 1e30)), 65536n) + floorMod(sat(Math.log(v)), 7n))
  );
  for (const { name, ys } of await runs(src, { x: vec(x) })) {
    ys[0].data.forEach((v, i) =>
      assert.ok(Object.is(v, want[i]), `${name}: at ${x[i]}: ${v}, want ${want[i]}`)
    );
  }
});

Deno.test("ints: a hashed mask inside fused attention keeps exactly the pairs the BigInt hash keeps", async () => {
  // A pseudo-random sparse pattern (BigBird's random blocks, by a hash of (i, j)) plus the
  // diagonal, so that no row is empty; and the same hash as a score term.
  const n = 37, d = 5;
  const src = `def f(q: [n, d], k: [n, d], v: [n, d]) -> [n, d] {
  s[i, j] = where((i * 2654435761 + j * 40503) % 3 == 0 or i == j, q[i] . k[j] + float((i * 1000003 - j * 999999937) % 7) * 0.5, -inf)
  return softmax(s, axis=1) @ v
}`;
  const p = compileSync(src);
  assert.equal(p.plan().kernels.length, 1, `the hashed mask fuses into one pass:\n${p.explain()}`);
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const mat = () => Array.from({ length: n * d }, rnd);
  const [q, k, v] = [mat(), mat(), mat()];
  const t = (data: number[]): Tensor => ({
    shape: [n, d],
    data: Float64Array.from(data),
    dtype: "float",
  });
  // Reference: float64 softmax over the kept keys.
  const want: number[] = [];
  for (let i = 0; i < n; i++) {
    const s: number[] = [];
    for (let j = 0; j < n; j++) {
      const keep = floorMod(wrap(wrap(B(i) * KNUTH) + wrap(B(j) * 40503n)), 3n) === 0n || i === j;
      let dot = 0;
      for (let c = 0; c < d; c++) dot += q[i * d + c] * k[j * d + c];
      const term = Number(floorMod(wrap(wrap(B(i) * 1000003n) - wrap(B(j) * 999999937n)), 7n));
      s.push(keep ? dot + term * 0.5 : -Infinity);
    }
    const m = Math.max(...s), w = s.map((x) => Math.exp(x - m)), z = w.reduce((a, b) => a + b);
    for (let c = 0; c < d; c++) want.push(w.reduce((a, wj, j) => a + wj * v[j * d + c], 0) / z);
  }
  for (const { name, ys } of await runs(src, { q: t(q), k: t(k), v: t(v) })) {
    ys[0].data.forEach((y, x) =>
      assert.ok(Math.abs(y - want[x]) < 1e-5, `${name}: element ${x}: ${y}, want ${want[x]}`)
    );
  }
});

Deno.test("ints: an int input holding a fraction or a value past 2^24 is refused with its position", async () => {
  const p = compileSync(`def f(idx: int[n], x: [m]) -> [n] { return x[idx] }`);
  const x = vec([1, 2, 3]);
  for (const bad of [2.5, 2 ** 24 + 1]) {
    const idx: Tensor = { shape: [3], data: Float64Array.from([0, bad, 1]), dtype: "int" };
    await assert.rejects(
      () => p.run({ idx, x }, { backend: "interp" }),
      (e: Error) =>
        e instanceof CompileError &&
        e.message.includes(`input idx is declared int but holds ${bad} at [1]`),
    );
  }
  const ok: Tensor = { shape: [3], data: Float64Array.from([0, -(2 ** 24), 2]), dtype: "int" };
  assert.deepEqual([...(await p.run({ idx: ok, x }, { backend: "interp" })).data], [1, 0, 3]);
});

Deno.test("ints: stored ints are bounded from their arithmetic; untracked ones are not diagnosed", () => {
  // Each program stores `h` (returned as a value of its own, so no kernel computes it inline).
  const bound = (expr: string, decls = "") => {
    const p = compileSync(`def f(x: [n]${decls}) -> int[n] {
  h = ${expr}
  return h
}`);
    const h = p.plan().storedInts.find((s) => s.node.name === "h");
    assert.ok(h, `${expr}: h is not among the stored ints\n${p.explain()}`);
    return h.magnitude((d) => (d === "n" ? 100 : 7));
  };
  assert.equal(bound("arange(n) * 3 + 1"), 99 * 3 + 1);
  assert.equal(bound("(arange(n) * 1103515245 + 12345) % 1000"), 999);
  assert.equal(bound("arange(n) * 1103515245 + 12345"), 2 ** 31, "int32 wraps: at most 2^31");
  assert.equal(bound("abs(arange(n) * 1103515245 + 12345) // 16777216"), 128);
  assert.equal(bound("-abs(arange(n) - 200) // 2"), 100, "in [-100, -51]");
  assert.equal(bound("min(arange(n) * 10000000, 5)"), 5, "arange is never negative");
  assert.equal(bound("max(arange(n) * -10000000, -5) % -7"), 6, "floor mod takes -7's sign");
  assert.equal(bound("min(arange(n) * 1103515245, 5)"), 2 ** 31, "a wrapped hash may be negative");
  // -(-2^31) folds to 2^31, which wraps to -2^31 where it is used: 1 // -2^31 is -1, not 0.
  assert.equal(bound("arange(n) // -(-2147483648)"), 1, "an int constant wraps");
  assert.equal(bound("(arange(n) * 10000000) // 10000000"), 99);
  assert.equal(bound("max(arange(n), 5) * head()"), undefined, "head() is untracked");
  assert.equal(bound("int(x * 1e9)"), undefined, "a cast of float data is untracked");
  assert.equal(bound("ids * 2", ", ids: int[n]"), undefined, "int inputs are checked at binding");
});

/** A random int expression over `arange(n)`, `n` and constants, of the ops intrange.ts bounds. */
const intExpr: fc.Arbitrary<string> = fc.letrec<{ e: string }>((tie) => ({
  e: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom("arange(n)", "n", "arange(n) * 1103515245"),
    fc.oneof(fc.integer({ min: -9, max: 9 }), fc.constantFrom(100000000, -2147483648, 65536))
      .map(String),
    fc.tuple(tie("e"), fc.constantFrom("+", "-", "*", "//", "%"), tie("e"))
      .map(([a, op, b]) => `(${a} ${op} ${b})`),
    fc.tuple(fc.constantFrom("min", "max"), tie("e"), tie("e")).map(([f, a, b]) =>
      `${f}(${a}, ${b})`
    ),
    fc.tuple(fc.constantFrom("abs", "-"), tie("e")).map(([f, a]) => `${f}(${a})`),
    fc.tuple(tie("e"), tie("e"), tie("e")).map(([c, a, b]) => `where(${c} > 0, ${a}, ${b})`),
    fc.tuple(tie("e"), fc.integer({ min: 1, max: 9 })).map(([a, k]) =>
      `${k % 2 ? "sum" : "prod"}(where(ones([${k}, 1]) > 0, ${a}, ${a}), axis=0)`
    ),
  ),
})).e;

Deno.test("ints: the stored-int bound holds every value the interpreter computes (random expressions)", async () => {
  await fc.assert(
    fc.asyncProperty(intExpr, fc.integer({ min: 1, max: 70 }), async (expr, n) => {
      // A constant divisor of 0 (`arange(n) // 0`) is a CompileError: no value to bound.
      const source = `def f(x: [n]) -> int[n] {
  h = arange(n) * 0 + ${expr}
  return h
}`;
      let p;
      try {
        p = compileSync(source);
      } catch (e) {
        if (e instanceof CompileError && /by zero/.test(e.message)) return;
        throw e;
      }
      const h = p.plan().storedInts.find((s) => s.node.name === "h");
      const bound = h?.magnitude((d) => (typeof d === "number" ? d : n));
      if (bound === undefined) return;
      const y = await p.run({ x: { shape: [n], data: new Float64Array(n), dtype: "float" } }, {
        backend: "interp",
      });
      const worst = Math.max(...y.data.map(Math.abs));
      assert.ok(worst <= bound, `${expr} at n ${n}: |value| ${worst} past the bound ${bound}`);
    }),
    { numRuns: 300 },
  );
});
