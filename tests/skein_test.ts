/**
 * examples/skein.attn on the float64 interpreter: the Skeinformer invariants S1–S3 (and S5) of
 * seeds-spec §3.5 against direct float64 exact attention (tests/helpers.ts). Valid tokens form a
 * prefix (right padding), as Skeinformer's pilot sampling assumes.
 *
 * The pilot rows are reproduced from outside: `J = randint([samples], nv, seed)` is the program's
 * first random call site (stream 0), drawn per (batch, head) slice with hi = nv, the slice's valid
 * token count (compiler/rng.ts: counter = (element index, slice)).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { maxAbsError, type Tensor } from "../mod.ts";
import { fillRandom } from "../compiler/rng.ts";
import {
  BATCH,
  count,
  D,
  E,
  exactAttention,
  gauss,
  makeQkv,
  maskRow,
  maskRows,
  N,
  type Qkv,
  row,
  run,
  SEED,
  T,
} from "./helpers.ts";

const OPTS = { numRuns: 20, seed: 0x5eed04 };
/** Small sample counts, so that most columns go unsampled at n = 63, 65, 100. */
const SAMPLES = fc.constantFrom(8, 16, 32);
/** 0: no mask; 1: one [n] prefix mask for every slice; 2: a [batch, n] one; 3: per slice. */
const MASKING = fc.constantFrom(0, 1, 2, 3);

/** A drawn case: inputs and parameters. */
interface SkeinCase {
  x: ReturnType<typeof makeInputs>;
  batch: number[];
  n: number;
  d: number;
  e: number;
  samples: number;
  seed: number;
  masking: number;
}

/** Check `property` on drawn cases (batch, sizes, samples, seed, masking pattern). */
function skeinProperty(
  property: (c: SkeinCase) => Promise<void>,
  masking: fc.Arbitrary<number> = MASKING,
): Promise<void> {
  return fc.assert(
    fc.asyncProperty(
      BATCH,
      N,
      D,
      E,
      SAMPLES,
      SEED,
      masking,
      (batch, n, d, e, samples, seed, masking) =>
        property({
          x: makeInputs(batch, n, d, e, seed, masking),
          batch,
          n,
          d,
          e,
          samples,
          seed,
          masking,
        }),
    ),
    OPTS,
  );
}

type Inputs = Qkv;

/** Skeinformer's pilot assumes right padding, so its masks are prefixes. */
function makeInputs(
  batch: number[],
  n: number,
  d: number,
  e: number,
  seed: number,
  masking: number,
): Inputs {
  return makeQkv(batch, n, { d, e }, seed, masking, { prefix: true });
}

/** Valid token count of every slice. */
function validCounts(x: Inputs, batch: number[], n: number): number[] {
  return Array.from(
    { length: count(batch) },
    (_, s) => maskRow(x.mask, batch, s, n).reduce((a, b) => a + b, 0),
  );
}

/** The pilot rows J of slice s: randint([samples], nv, seed) on stream 0. */
function pilotRows(samples: number, nv: number, seed: number, slice: number): number[] {
  return [...fillRandom(new Float64Array(samples), "randint", { seed, stream: 0, slice }, nv)];
}

function assertRowsClose(
  y: Tensor,
  ref: Tensor,
  rows: Iterable<number>,
  tol: number,
  what: string,
) {
  for (const i of rows) {
    const a = row(y, i), b = row(ref, i);
    const err = Math.max(...a.map((val, c) => Math.abs(val - b[c])));
    assert.ok(err <= tol, `${what}: row ${i} off by ${err}`);
  }
}

Deno.test("skein S1: rows at the pilot indices J equal exact masked attention (1e-10)", async () => {
  await skeinProperty(async ({ x, batch, n, samples, seed }) => {
    const y = await run("skein.attn", x, { samples }, { seed });
    assert.ok(y.data.every(Number.isFinite));
    const ex = exactAttention(x.q, x.k, x.v, x.mask);
    validCounts(x, batch, n).forEach((nv, s) => {
      const J = pilotRows(samples, nv, seed, s);
      assert.ok(J.every((j) => Number.isInteger(j) && j >= 0 && j < nv));
      assertRowsClose(y, ex, J.map((j) => s * n + j), 1e-10, `slice ${s}, pilot`);
    });
  });
});

Deno.test("skein S2: constant V gives v in every row, valid or padded (1e-10)", async () => {
  // The adaptive row normalization's weights sum to 1 by construction; a padded query has q = 0
  // after masking, which gives the mean of the valid (all equal) v rows.
  await skeinProperty(async ({ x, e, samples, seed }) => {
    const v0 = gauss([e], seed + 5).data;
    x.v = T(x.v.shape, Array.from({ length: x.v.data.length }, (_, i) => v0[i % e]));
    const y = await run("skein.attn", x, { samples }, { seed });
    const err = maxAbsError(y, x.v);
    assert.ok(err <= 1e-10, `max deviation from v: ${err}`);
  });
});

Deno.test("skein S3: uniform logits make a row exact — zero query rows, and constant K for every row (1e-10)", async () => {
  await skeinProperty(async ({ x, batch, n, d, samples, seed }) => {
    // Zero every third query row (at least row 0): g_i equals each sampled a_ij, so the row
    // is the mean of the valid v, which is what exact attention gives for q_i = 0.
    const q = Float64Array.from(x.q.data);
    const zero: number[] = [];
    for (let s = 0; s < count(batch); s++) {
      for (let i = 0; i < n; i += 3) {
        q.fill(0, (s * n + i) * d, (s * n + i + 1) * d);
        zero.push(s * n + i);
      }
    }
    const xq = { ...x, q: T(x.q.shape, q) };
    const y = await run("skein.attn", xq, { samples }, { seed });
    assertRowsClose(y, exactAttention(xq.q, xq.k, xq.v, xq.mask), zero, 1e-10, "q = 0");
    // Constant K: every logit of a row is the same, so every row is exact.
    const k0 = gauss([d], seed + 6).data;
    const xk = {
      ...x,
      k: T(x.k.shape, Array.from({ length: x.k.data.length }, (_, i) => k0[i % d])),
    };
    const yk = await run("skein.attn", xk, { samples }, { seed });
    const ex = exactAttention(maskRows(xk.q, xk.mask), xk.k, xk.v, xk.mask);
    const err = maxAbsError(yk, ex);
    assert.ok(err <= 1e-10, `constant K: ${err}`);
  });
});

Deno.test("skein: samples ≥ n samples every column, so every row is exact attention (1e-10)", async () => {
  // samples = 256 ≥ n: top-k takes all n columns (extra slots point past the end and hold
  // nothing), nothing is left for g_i to fill, and r_i = softmax over the valid keys · v.
  // Padded query rows compute on q = 0, so the reference masks the query rows the same way.
  await fc.assert(
    fc.asyncProperty(BATCH, N, D, E, SEED, MASKING, async (batch, n, d, e, seed, masking) => {
      const x = makeInputs(batch, n, d, e, seed, masking);
      const y = await run("skein.attn", x, { samples: 256 }, { seed });
      const ex = exactAttention(maskRows(x.q, x.mask), x.k, x.v, x.mask);
      const err = maxAbsError(y, ex);
      assert.ok(err <= 1e-10, `n=${n}: ${err}`);
    }),
    OPTS,
  );
});

Deno.test("skein: with samples < n the unsampled columns matter (not exact), so S1–S3 test something", async () => {
  const n = 100, samples = 8;
  const x = makeInputs([], n, 16, 8, 77, 0);
  const y = await run("skein.attn", x, { samples }, { seed: 3 });
  const ex = exactAttention(x.q, x.k, x.v);
  const J = new Set(pilotRows(samples, n, 3, 0));
  let worst = 0;
  for (let i = 0; i < n; i++) {
    if (J.has(i)) continue;
    const a = row(y, i), b = row(ex, i);
    worst = Math.max(worst, ...a.map((val, c) => Math.abs(val - b[c])));
  }
  assert.ok(worst > 1e-3, `non-pilot rows are all within ${worst} of exact`);
});

Deno.test("skein S5: q, k, v at padded positions do not change the output at all", async () => {
  await skeinProperty(async ({ x, batch, n, samples, seed }) => {
    const junk = (t: Tensor, s0: number) => {
      const w = t.shape[t.shape.length - 1];
      const noise = gauss([t.data.length], s0, 50).data;
      const out = Float64Array.from(t.data);
      for (let s = 0; s < count(batch); s++) {
        const mu = maskRow(x.mask, batch, s, n);
        for (let j = 0; j < n; j++) {
          if (mu[j] > 0) continue;
          for (let c = 0; c < w; c++) out[(s * n + j) * w + c] = noise[(s * n + j) * w + c];
        }
      }
      return T(t.shape, out);
    };
    const y = await run("skein.attn", x, { samples }, { seed });
    const x2 = { ...x, q: junk(x.q, seed + 7), k: junk(x.k, seed + 8), v: junk(x.v, seed + 9) };
    const y2 = await run("skein.attn", x2, { samples }, { seed });
    assert.equal(maxAbsError(y2, y), 0);
  }, fc.constantFrom(1, 2, 3));
});
