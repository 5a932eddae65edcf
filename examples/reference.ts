/**
 * Direct float64 formulas for the softmax variants, written without the Attune language, so the
 * demo and the tests can check the interpreter against something that shares no code with it.
 */
import type { Tensor } from "../compiler/tensor.ts";

/**
 * A score bias/mask: returns the logit for (i, j) of (batch, head) slice `slice` given the scaled
 * dot product, or -Infinity.
 */
export type ScoreMod = (s: number, i: number, j: number, slice: number) => number;

/** softmax(mod(q kᵀ / √d)) v for inputs [..., n, d], [..., m, d], [..., m, e]. */
export function softmaxAttention(q: Tensor, k: Tensor, v: Tensor, mod: ScoreMod): Tensor {
  const r = q.shape.length;
  const n = q.shape[r - 2], d = q.shape[r - 1], m = k.shape[r - 2], e = v.shape[r - 1];
  const slices = q.data.length / (n * d);
  const out = new Float64Array(slices * n * e);
  const row = new Float64Array(m);
  for (let b = 0; b < slices; b++) {
    const qo = b * n * d, ko = b * m * d, vo = b * m * e, oo = b * n * e;
    for (let i = 0; i < n; i++) {
      let mx = -Infinity;
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (let c = 0; c < d; c++) s += q.data[qo + i * d + c] * k.data[ko + j * d + c];
        row[j] = mod(s / Math.sqrt(d), i, j, b);
        if (row[j] > mx) mx = row[j];
      }
      let z = 0;
      for (let j = 0; j < m; j++) z += row[j] = Math.exp(row[j] - mx);
      for (let j = 0; j < m; j++) {
        const w = row[j] / z;
        for (let c = 0; c < e; c++) out[oo + i * e + c] += w * v.data[vo + j * e + c];
      }
    }
  }
  return { shape: [...q.shape.slice(0, -1), e], data: out, dtype: "float" };
}
