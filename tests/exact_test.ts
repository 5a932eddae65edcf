/**
 * examples/exact.attn on the float64 interpreter against a direct float64 computation of masked
 * softmax attention (tests/helpers.ts, written from scratch), over awkward shapes, leading
 * batch/head dims and key-padding masks.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { maxAbsError, type Tensor } from "../mod.ts";
import {
  BATCH,
  count,
  D,
  E,
  exactAttention,
  gauss,
  maskRow,
  N,
  randomMask,
  run,
  SEED,
  T,
} from "./helpers.ts";

const OPTS = { numRuns: 25, seed: 0x5eed01 };

/** How the mask is passed: none, one row shared by all slices, per batch element, per slice. */
const MASKING = fc.constantFrom("none", "shared", "lead", "full");

function inputs(
  batch: number[],
  n: number,
  m: number,
  d: number,
  e: number,
  seed: number,
  masking: string,
): Record<string, Tensor> {
  const x: Record<string, Tensor> = {
    q: gauss([...batch, n, d], seed),
    k: gauss([...batch, m, d], seed + 1),
    v: gauss([...batch, m, e], seed + 2),
  };
  if (masking !== "none") {
    const lead = masking === "shared" ? [] : masking === "lead" ? batch.slice(0, 1) : batch;
    x.mask = randomMask(lead, m, seed + 3);
  }
  return x;
}

Deno.test("exact: interpreter equals direct float64 masked softmax attention to 1e-12 (batch dims, n ≠ m, masks)", async () => {
  await fc.assert(
    fc.asyncProperty(
      BATCH,
      N,
      N,
      D,
      E,
      SEED,
      MASKING,
      async (batch, n, m, d, e, seed, masking) => {
        const x = inputs(batch, n, m, d, e, seed, masking);
        const y = await run("exact.attn", x);
        assert.deepEqual(y.shape, [...batch, n, e]);
        const err = maxAbsError(y, exactAttention(x.q, x.k, x.v, x.mask));
        assert.ok(err <= 1e-12, `max abs error ${err}`);
      },
    ),
    OPTS,
  );
});

Deno.test("exact: K and V at masked key positions do not change the output at all", async () => {
  await fc.assert(
    fc.asyncProperty(
      BATCH,
      N,
      N,
      D,
      E,
      SEED,
      fc.constantFrom("shared", "lead", "full"),
      async (batch, n, m, d, e, seed, masking) => {
        const x = inputs(batch, n, m, d, e, seed, masking);
        // Replace every masked key and value row by unrelated, large data.
        const k2 = Float64Array.from(x.k.data), v2 = Float64Array.from(x.v.data);
        const junkK = gauss([k2.length], seed + 7, 100).data;
        const junkV = gauss([v2.length], seed + 8, 100).data;
        for (let s = 0; s < count(batch); s++) {
          const mu = maskRow(x.mask, batch, s, m);
          for (let j = 0; j < m; j++) {
            if (mu[j] > 0) continue;
            for (let c = 0; c < d; c++) k2[(s * m + j) * d + c] = junkK[(s * m + j) * d + c];
            for (let c = 0; c < e; c++) v2[(s * m + j) * e + c] = junkV[(s * m + j) * e + c];
          }
        }
        const y = await run("exact.attn", x);
        const y2 = await run("exact.attn", { ...x, k: T(x.k.shape, k2), v: T(x.v.shape, v2) });
        // exp(-1e9 - max) is exactly 0, so the masked terms add exact zeros: bit-identical.
        assert.equal(maxAbsError(y2, y), 0);
      },
    ),
    OPTS,
  );
});

Deno.test("exact: shifting every key by one vector (a per-row logit shift) leaves the output unchanged", async () => {
  await fc.assert(
    fc.asyncProperty(
      BATCH,
      N,
      N,
      D,
      E,
      SEED,
      MASKING,
      async (batch, n, m, d, e, seed, masking) => {
        const x = inputs(batch, n, m, d, e, seed, masking);
        // k_j + c changes row i's logits by q_i·c/√d for every j: softmax is shift invariant.
        const c = gauss([d], seed + 5, 2).data;
        const k2 = T(x.k.shape, x.k.data.map((val, i) => val + c[i % d]));
        const y = await run("exact.attn", x);
        const y2 = await run("exact.attn", { ...x, k: k2 });
        // Only rounding of the shifted logits (|shift| ≲ 10) separates the two.
        const err = maxAbsError(y2, y);
        assert.ok(err <= 1e-12, `shift changed the output by ${err}`);
      },
    ),
    OPTS,
  );
});

Deno.test("exact: a row whose keys are all padding stays finite and averages V (-1e9, not -inf)", async () => {
  for (const [n, m, d, e] of [[1, 1, 1, 1], [7, 65, 4, 3], [63, 2, 32, 16]]) {
    const x = {
      q: gauss([2, n, d], 11),
      k: gauss([2, m, d], 12),
      v: gauss([2, m, e], 13),
      mask: T([2, m], Array.from({ length: 2 * m }, (_, j) => (j < m ? 0 : 1))),
    };
    const y = await run("exact.attn", x);
    assert.ok(y.data.every(Number.isFinite));
    const mean = new Float64Array(e);
    for (let j = 0; j < m; j++) for (let c = 0; c < e; c++) mean[c] += x.v.data[j * e + c] / m;
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < e; c++) {
        assert.ok(Math.abs(y.data[i * e + c] - mean[c]) <= 1e-12, `row ${i}`);
      }
    }
    const ref = exactAttention(x.q, x.k, x.v, x.mask);
    assert.ok(maxAbsError(y, ref) <= 1e-12);
  }
});
