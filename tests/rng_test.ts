import assert from "node:assert/strict";
import fc from "fast-check";
import {
  fillRandom,
  gumbelAt,
  type Philox4,
  philox4x32_10,
  randintAt,
  randnAt,
  type RandomStream,
  uniformAt,
} from "../compiler/rng.ts";
import type { RandomKind } from "../compiler/ir/types.ts";

// ---------------------------------------------------------------------------------------------
// Independent reference: Philox4x32-10 with BigInt arithmetic (exact 64-bit products, no splitting).

const MASK32 = 0xFFFFFFFFn;

function philoxBigInt(counter: Philox4, key: [number, number]): Philox4 {
  let [c0, c1, c2, c3] = counter.map((x) => BigInt(x >>> 0));
  let [k0, k1] = key.map((x) => BigInt(x >>> 0));
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      k0 = (k0 + 0x9E3779B9n) & MASK32;
      k1 = (k1 + 0xBB67AE85n) & MASK32;
    }
    const p0 = 0xD2511F53n * c0;
    const p1 = 0xCD9E8D57n * c2;
    [c0, c1, c2, c3] = [(p1 >> 32n) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32n) ^ c3 ^ k1, p0 & MASK32];
  }
  return [Number(c0), Number(c1), Number(c2), Number(c3)];
}

const u32 = fc.integer({ min: 0, max: 0xFFFFFFFF });

// ---------------------------------------------------------------------------------------------
// Published vectors.

Deno.test("philox4x32_10 reproduces the three Random123 known-answer vectors", () => {
  assert.deepEqual(
    philox4x32_10([0, 0, 0, 0], [0, 0]),
    [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
  );
  assert.deepEqual(
    philox4x32_10([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]),
    [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
  );
  assert.deepEqual(
    philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
    [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
  );
});

Deno.test("the BigInt reference also reproduces the Random123 known-answer vectors", () => {
  assert.deepEqual(philoxBigInt([0, 0, 0, 0], [0, 0]), [
    0x6627e8d5,
    0xe169c58d,
    0xbc57ac4c,
    0x9b00dbd8,
  ]);
  assert.deepEqual(
    philoxBigInt([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
    [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
  );
});

// The table of docs/rng.md section 5b: seed 7, stream 3, slice 1, indices 0..3.
const DOC_STREAM: RandomStream = { seed: 7, stream: 3, slice: 1 };
const DOC_TABLE = [
  {
    x0: 0x355ee176,
    x1: 0x1f079961,
    uniform: 0.20847898721694946,
    randn: 1.2816276931268242,
    gumbel: -0.44974800187750014,
    randint10: 2,
  },
  {
    x0: 0xf7cbadbc,
    x1: 0x29f6440d,
    uniform: 0.96795159578323364,
    randn: 0.13142269112548294,
    gumbel: 3.4242654971193094,
    randint10: 9,
  },
  {
    x0: 0xd3ec5521,
    x1: 0x40a3a5bf,
    uniform: 0.82782489061355591,
    randn: -0.0096444227001058185,
    gumbel: 1.6662536287882836,
    randint10: 8,
  },
  {
    x0: 0xbc60a0be,
    x1: 0x2e6f810a,
    uniform: 0.73584944009780884,
    randn: 0.32728865016137793,
    gumbel: 1.1817882244200457,
    randint10: 7,
  },
];

Deno.test("the Attune vectors of docs/rng.md (seed 7, stream 3, slice 1) are reproduced exactly", () => {
  DOC_TABLE.forEach((row, index) => {
    const block = philox4x32_10([index, 1, 0, 0], [7, 3]);
    assert.equal(block[0], row.x0, `x0 at ${index}`);
    assert.equal(block[1], row.x1, `x1 at ${index}`);
    assert.equal(uniformAt(DOC_STREAM, index), row.uniform, `uniform at ${index}`);
    assert.equal(uniformAt(DOC_STREAM, index), ((row.x0 >>> 9) + 0.5) * 2 ** -23);
    assert.equal(randnAt(DOC_STREAM, index), row.randn, `randn at ${index}`);
    assert.equal(gumbelAt(DOC_STREAM, index), row.gumbel, `gumbel at ${index}`);
    assert.equal(randintAt(DOC_STREAM, index, 10), row.randint10, `randint at ${index}`);
  });
});

Deno.test("the docs/rng.md table lists the same numbers as this test", () => {
  const doc = Deno.readTextFileSync(new URL("../docs/rng.md", import.meta.url));
  DOC_TABLE.forEach((row, index) => {
    const hex = (x: number): string => "`0x" + x.toString(16).padStart(8, "0") + "`";
    const cells = [
      String(index),
      hex(row.x0),
      hex(row.x1),
      row.uniform.toPrecision(17),
      row.randn.toPrecision(17),
      row.gumbel.toPrecision(17),
      String(row.randint10),
    ];
    const line = doc.split("\n").find((l) => l.startsWith(`| ${index} `) && l.includes(cells[1]));
    assert.ok(line !== undefined, `row ${index} missing from docs/rng.md`);
    const docCells = line.split("|").slice(1, -1).map((c) => c.trim());
    assert.deepEqual(docCells, cells);
  });
});

// ---------------------------------------------------------------------------------------------
// Bit-exactness of the block function and of the derived integer/uniform values.

Deno.test("philox4x32_10 agrees with an independent BigInt implementation on random inputs", () => {
  fc.assert(
    fc.property(u32, u32, u32, u32, u32, u32, (c0, c1, c2, c3, k0, k1) => {
      const got = philox4x32_10([c0, c1, c2, c3], [k0, k1]);
      assert.deepEqual(got, philoxBigInt([c0, c1, c2, c3], [k0, k1]));
      for (const w of got) assert.ok(Number.isInteger(w) && w >= 0 && w <= 0xFFFFFFFF);
    }),
    { numRuns: 200 },
  );
});

Deno.test("keys and counters are taken modulo 2^32 (>>> 0)", () => {
  const a = philox4x32_10([1, 2, 3, 4], [5, 6]);
  assert.deepEqual(philox4x32_10([1 + 2 ** 32, 2, 3, 4 - 2 ** 32], [5 + 2 ** 33, 6]), a);
  assert.deepEqual(
    philox4x32_10([0, 0, 0, 0], [-1, -1]),
    philox4x32_10([0, 0, 0, 0], [0xFFFFFFFF, 0xFFFFFFFF]),
  );
  const s = { seed: 7, stream: 3, slice: 1 };
  assert.equal(uniformAt({ ...s, seed: 7 + 2 ** 32 }, 2), uniformAt(s, 2));
});

Deno.test("uniforms are on the 23-bit half-offset grid: strictly inside (0,1) and float32-exact", () => {
  const u = fillRandom(new Float64Array(100_000), "uniform", { seed: 11, stream: 0, slice: 0 });
  for (const x of u) {
    assert.ok(x >= 2 ** -24 && x <= 1 - 2 ** -24, `out of range: ${x}`);
    assert.equal(Math.fround(x), x, `not exact in float32: ${x}`);
    const k = x * 2 ** 24; // must be an odd integer below 2^24
    assert.ok(Number.isInteger(k) && k % 2 === 1 && k < 2 ** 24);
  }
  // Why not 24 bits: ((x0 >>> 8) + 0.5) * 2^-24 needs 25 significant bits, and its largest value
  // 1 - 2^-25 rounds to exactly 1 in float32, which a shader would then feed to log().
  assert.equal(Math.fround((2 ** 24 - 1 + 0.5) * 2 ** -24), 1);
  assert.equal(Math.fround((2 ** 23 - 1 + 0.5) * 2 ** -23), 1 - 2 ** -24);
});

Deno.test("randint equals Math.floor(u * hi) wherever the float64 product is exact, and stays in [0, hi)", () => {
  fc.assert(
    fc.property(u32, u32, u32, fc.integer({ min: 1, max: 2 ** 29 - 1 }), (seed, stream, i, hi) => {
      const s = { seed, stream, slice: 0 };
      assert.equal(randintAt(s, i, hi), Math.floor(uniformAt(s, i) * hi));
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(u32, u32, fc.integer({ min: 1, max: 0xFFFFFFFF }), (seed, i, hi) => {
      const r = randintAt({ seed, stream: 1, slice: 2 }, i, hi);
      assert.ok(Number.isInteger(r) && r >= 0 && r < hi);
    }),
    { numRuns: 300 },
  );
});

Deno.test("randint must not be evaluated in float32: the docs/rng.md counterexample holds", () => {
  // 2 * m0 + 1 = 13726813 gives u * 11 = 9 - 2^-24 exactly: floor is 8, but f32 rounds to 9.
  const u = 13726813 * 2 ** -24;
  assert.equal(Math.fround(u), u);
  assert.equal(u * 11, 9 - 2 ** -24);
  assert.equal(Math.floor(u * 11), 8);
  assert.equal(Math.floor(Math.fround(u * 11)), 9);
});

Deno.test("randint rejects a non-positive, non-integer, too large or missing hi with RangeError", () => {
  const s = { seed: 1, stream: 2, slice: 3 };
  for (const hi of [0, -1, -10, 2.5, NaN, Infinity, 2 ** 32]) {
    assert.throws(() => randintAt(s, 0, hi), RangeError, `hi = ${hi}`);
    assert.throws(() => fillRandom(new Float64Array(4), "randint", s, hi), RangeError);
  }
  assert.throws(() => fillRandom(new Float64Array(4), "randint", s), RangeError);
  assert.equal(randintAt(s, 0, 1), 0);
  assert.ok(randintAt(s, 0, 0xFFFFFFFF) <= 0xFFFFFFFE);
});

// ---------------------------------------------------------------------------------------------
// Statistical sanity. All draws use fixed keys, so these tests are deterministic; the bounds are
// chosen so that a correct generator would fail them with probability about 6e-7 (5 standard
// errors, two-sided) or 1e-3 (chi-square), i.e. they catch broken generators, not bad luck.

const N = 100_000;

function meanVar(xs: Float64Array): { mean: number; variance: number } {
  let sum = 0;
  for (const x of xs) sum += x;
  const mean = sum / xs.length;
  let ss = 0;
  for (const x of xs) ss += (x - mean) * (x - mean);
  return { mean, variance: ss / (xs.length - 1) };
}

Deno.test("100k uniforms have mean 0.5 within 5 standard errors", () => {
  const u = fillRandom(new Float64Array(N), "uniform", { seed: 2024, stream: 1, slice: 0 });
  const { mean, variance } = meanVar(u);
  // Var(U(0,1)) = 1/12, so SE(mean) = sqrt(1/(12 N)) ≈ 9.1e-4.
  const se = Math.sqrt(1 / 12 / N);
  assert.ok(Math.abs(mean - 0.5) < 5 * se, `mean ${mean}`);
  // Sample variance of U(0,1): Var(s^2) ≈ (mu4 - sigma^4) / N = (1/80 - 1/144) / N.
  const seVar = Math.sqrt((1 / 80 - 1 / 144) / N);
  assert.ok(Math.abs(variance - 1 / 12) < 5 * seVar, `variance ${variance}`);
});

Deno.test("100k randn draws have mean 0 and variance 1 within 5 standard errors", () => {
  const z = fillRandom(new Float64Array(N), "randn", { seed: 2024, stream: 2, slice: 0 });
  const { mean, variance } = meanVar(z);
  // SE(mean) = sigma / sqrt(N) = 1 / sqrt(N) ≈ 3.2e-3.
  assert.ok(Math.abs(mean) < 5 / Math.sqrt(N), `mean ${mean}`);
  // For normal data (N - 1) s^2 / sigma^2 ~ chi^2(N - 1), so Var(s^2) = 2 sigma^4 / (N - 1) and
  // SE(s^2) = sqrt(2 / (N - 1)) ≈ 4.5e-3.
  assert.ok(Math.abs(variance - 1) < 5 * Math.sqrt(2 / (N - 1)), `variance ${variance}`);
  // Box–Muller with u1 >= 2^-24 bounds |z| by sqrt(-2 ln 2^-24) ≈ 5.77.
  for (const x of z) assert.ok(Number.isFinite(x) && Math.abs(x) <= Math.sqrt(48 * Math.LN2));
  // Shape, not just moments: P(|Z| < 1) = 0.6826894921; a proportion has SE sqrt(p (1 - p) / N).
  const p1 = 0.6826894921370859;
  const inside = z.filter((x) => Math.abs(x) < 1).length / N;
  assert.ok(Math.abs(inside - p1) < 5 * Math.sqrt(p1 * (1 - p1) / N), `P(|Z|<1) ${inside}`);
});

Deno.test("100k gumbel draws have mean ≈ Euler–Mascheroni 0.5772 within 5 standard errors", () => {
  const g = fillRandom(new Float64Array(N), "gumbel", { seed: 2024, stream: 3, slice: 0 });
  const { mean, variance } = meanVar(g);
  const eulerGamma = 0.5772156649015329;
  // Gumbel(0, 1) variance is π²/6 ≈ 1.645, so SE(mean) = sqrt(π²/6 / N) ≈ 4.1e-3.
  const gumbelVar = Math.PI ** 2 / 6;
  assert.ok(Math.abs(mean - eulerGamma) < 5 * Math.sqrt(gumbelVar / N), `mean ${mean}`);
  // Loose check of the spread (the fourth moment of Gumbel is heavy; 10% is many SEs wide).
  assert.ok(Math.abs(variance / gumbelVar - 1) < 0.1, `variance ${variance}`);
  for (const x of g) assert.ok(Number.isFinite(x));
  // Shape: the Gumbel CDF is exp(-exp(-x)), so P(G <= 0) = 1/e; SE of a proportion as above.
  const p0 = Math.exp(-1);
  const below = g.filter((x) => x <= 0).length / N;
  assert.ok(Math.abs(below - p0) < 5 * Math.sqrt(p0 * (1 - p0) / N), `P(G<=0) ${below}`);
});

Deno.test("100k randint(10) draws pass a chi-square uniformity test (df = 9, p = 0.001: 27.88)", () => {
  const r = fillRandom(new Float64Array(N), "randint", { seed: 2024, stream: 4, slice: 0 }, 10);
  const counts = new Array<number>(10).fill(0);
  for (const x of r) {
    assert.ok(Number.isInteger(x) && x >= 0 && x <= 9, `out of range: ${x}`);
    counts[x]++;
  }
  const expected = N / 10;
  const chi2 = counts.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0);
  assert.ok(chi2 < 27.88, `chi-square ${chi2}, counts ${counts}`);
});

// ---------------------------------------------------------------------------------------------
// Keying: every component of the key and counter matters, and fillRandom is the per-element draw.

Deno.test("different seeds, streams and slices give different sequences; equal keys give equal ones", () => {
  const base: RandomStream = { seed: 7, stream: 3, slice: 1 };
  const draw = (s: RandomStream): Float64Array => fillRandom(new Float64Array(64), "uniform", s);
  const a = draw(base);
  assert.deepEqual(draw({ ...base }), a);
  const variants: RandomStream[] = [
    { ...base, seed: 8 },
    { ...base, stream: 4 },
    { ...base, slice: 2 },
    { seed: 3, stream: 7, slice: 1 }, // seed and stream swapped
    { seed: 7, stream: 1, slice: 3 }, // stream and slice swapped
  ];
  for (const v of variants) {
    const b = draw(v);
    const same = a.filter((x, i) => x === b[i]).length;
    assert.equal(same, 0, `${JSON.stringify(v)} shares ${same} of 64 draws with the base stream`);
  }
  // Index and slice are distinct counter words: element 1 of slice 0 is not element 0 of slice 1.
  assert.notEqual(
    uniformAt({ seed: 7, stream: 3, slice: 0 }, 1),
    uniformAt({ seed: 7, stream: 3, slice: 1 }, 0),
  );
});

Deno.test("fillRandom equals the per-element functions for every kind", () => {
  const s: RandomStream = { seed: 123456789, stream: 42, slice: 5 };
  const n = 2000;
  const perElement: Record<RandomKind, (i: number) => number> = {
    uniform: (i) => uniformAt(s, i),
    randn: (i) => randnAt(s, i),
    gumbel: (i) => gumbelAt(s, i),
    randint: (i) => randintAt(s, i, 37),
  };
  for (const kind of Object.keys(perElement) as RandomKind[]) {
    const out = new Float64Array(n);
    const ret = fillRandom(out, kind, s, kind === "randint" ? 37 : undefined);
    assert.equal(ret, out, "fillRandom returns its output array");
    for (let i = 0; i < n; i++) {
      assert.ok(Object.is(out[i], perElement[kind](i)), `${kind} at ${i}`);
    }
  }
  assert.equal(fillRandom(new Float64Array(0), "randn", s).length, 0);
});
