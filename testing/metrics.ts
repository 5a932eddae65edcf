/**
 * Error metrics of an approximation against exact attention, and the trivial baselines that make
 * a number readable.
 */
import { randomTensor, type Tensor } from "../mod.ts";
import type { AttentionInputs } from "./inputs.ts";
import { count, sameShape } from "./layout.ts";
import { type MaskMod, referenceAttention } from "./reference.ts";

/**
 * The mean-of-v prediction, the trivial baseline of attention: every row of each [m, e] slice of
 * `v` replaced by the mean of that slice's rows (attention with uniform weights).
 *
 * @example
 * ```ts
 * import { meanOfValues } from "../testing.ts";
 * const v = { shape: [2, 1], data: Float64Array.of(1, 3), dtype: "float" as const };
 * if (meanOfValues(v).data.join() !== "2,2") throw new Error("mean of v");
 * ```
 */
export function meanOfValues(v: Tensor): Tensor {
  const [m, e] = v.shape.slice(-2), out = new Float64Array(v.data.length);
  for (let b = 0; b < v.data.length / (m * e); b++) {
    const mean = new Float64Array(e);
    for (let i = 0; i < m * e; i++) mean[i % e] += v.data[b * m * e + i] / m;
    for (let i = 0; i < m; i++) out.set(mean, (b * m + i) * e);
  }
  return { ...v, data: out };
}

/**
 * Each row (last axis) divided by its L2 norm, at least 1e-12, as `normalize(x, axis=-1)` does:
 * how row-normalized variants such as YOSO are put on the scale of exact attention.
 *
 * @example
 * ```ts
 * import { normalizeRows } from "../testing.ts";
 * const y = { shape: [1, 2], data: Float64Array.of(3, 4), dtype: "float" as const };
 * if (normalizeRows(y).data.join() !== "0.6,0.8") throw new Error("unit rows");
 * ```
 */
export function normalizeRows(y: Tensor): Tensor {
  const e = y.shape[y.shape.length - 1], out = new Float64Array(y.data.length);
  for (let r = 0; r < y.data.length / e; r++) {
    let s = 0;
    for (let c = 0; c < e; c++) s += y.data[r * e + c] ** 2;
    const norm = Math.max(Math.sqrt(s), 1e-12);
    for (let c = 0; c < e; c++) out[r * e + c] = y.data[r * e + c] / norm;
  }
  return { ...y, data: out };
}

/**
 * ‖approx − exact‖_F / ‖exact‖_F over all elements (0 when both are zero, Infinity when only the
 * exact one is). NaN anywhere gives NaN.
 *
 * @example
 * ```ts
 * import { tensor } from "../mod.ts";
 * import { relativeFrobeniusError } from "../testing.ts";
 * const r = relativeFrobeniusError(tensor([2], [3, 4]), tensor([2], [0, 4])); // 3 / 4
 * if (r !== 0.75) throw new Error(String(r));
 * ```
 */
export function relativeFrobeniusError(approx: Tensor, exact: Tensor): number {
  sameShape(approx, exact, "relativeFrobeniusError");
  let num = 0, den = 0;
  for (let i = 0; i < exact.data.length; i++) {
    num += (approx.data[i] - exact.data[i]) ** 2;
    den += exact.data[i] ** 2;
  }
  if (den === 0) return num === 0 ? 0 : Number.isNaN(num) ? NaN : Infinity;
  return Math.sqrt(num / den);
}

/**
 * max |approx − exact| over all elements (NaN wins).
 *
 * @example
 * ```ts
 * import { tensor } from "../mod.ts";
 * import { maxAbsoluteError } from "../testing.ts";
 * if (maxAbsoluteError(tensor([3], [1, 2, 3]), tensor([3], [1, 0, 4])) !== 2) throw new Error();
 * ```
 */
export function maxAbsoluteError(approx: Tensor, exact: Tensor): number {
  sameShape(approx, exact, "maxAbsoluteError");
  let m = 0;
  for (let i = 0; i < exact.data.length; i++) {
    const x = Math.abs(approx.data[i] - exact.data[i]);
    if (Number.isNaN(x)) return NaN;
    if (x > m) m = x;
  }
  return m;
}

/**
 * Cosine similarity of each row (last axis) of `approx` with the same row of `exact`: the
 * smallest and the mean over all rows of all slices. Two zero rows count as 1 (they agree), one
 * zero row as 0.
 *
 * @example
 * ```ts
 * import { tensor } from "../mod.ts";
 * import { rowCosine } from "../testing.ts";
 * const c = rowCosine(tensor([2, 2], [1, 0, 2, 2]), tensor([2, 2], [0, 1, 1, 1]));
 * if (c.min !== 0 || Math.abs(c.mean - 0.5) > 1e-15) throw new Error(JSON.stringify(c));
 * ```
 */
export function rowCosine(approx: Tensor, exact: Tensor): { min: number; mean: number } {
  sameShape(approx, exact, "rowCosine");
  const e = exact.shape.at(-1) ?? 1;
  const rows = e === 0 ? 0 : exact.data.length / e;
  let min = 1, sum = 0;
  for (let r = 0; r < rows; r++) {
    let dot = 0, a = 0, b = 0;
    for (let c = 0; c < e; c++) {
      const x = approx.data[r * e + c], y = exact.data[r * e + c];
      dot += x * y;
      a += x * x;
      b += y * y;
    }
    const cos = a === 0 && b === 0 ? 1 : a === 0 || b === 0 ? 0 : dot / Math.sqrt(a * b);
    if (cos < min || Number.isNaN(cos)) min = Number.isNaN(min) ? min : cos;
    sum += cos;
  }
  return { min: rows ? min : 1, mean: rows ? sum / rows : 1 };
}

/**
 * Spectral norm of each [n, e] slice of `x` (leading dims are slices), by power iteration on
 * xᵀx from a fixed pseudo-random start. Power iteration approaches the norm from below; after
 * `iterations` (default 200) steps, or when the estimate stops changing (relative 1e-13), the
 * estimate is returned. One number per slice.
 *
 * @example
 * ```ts
 * import { tensor } from "../mod.ts";
 * import { spectralNorms } from "../testing.ts";
 * const [s] = spectralNorms(tensor([2, 2], [1, 1, 1, 1])); // rank one, norm 2
 * if (Math.abs(s - 2) > 1e-12) throw new Error(String(s));
 * ```
 */
export function spectralNorms(x: Tensor, options: { iterations?: number } = {}): number[] {
  if (x.shape.length < 2) throw new RangeError("spectralNorms: need rank ≥ 2");
  const n = x.shape.at(-2)!, e = x.shape.at(-1)!;
  const slices = count(x.shape.slice(0, -2));
  const start = randomTensor([e], { seed: 0x5bec }).data;
  const out: number[] = [];
  const g = new Float64Array(e * e);
  for (let s = 0; s < slices; s++) {
    const o = s * n * e;
    g.fill(0);
    for (let i = 0; i < n; i++) {
      for (let a = 0; a < e; a++) {
        const xa = x.data[o + i * e + a];
        if (xa === 0) continue;
        for (let b = 0; b < e; b++) g[a * e + b] += xa * x.data[o + i * e + b];
      }
    }
    let v = Float64Array.from(start, (t) => t + 0.1);
    let sigma2 = 0;
    for (let it = 0; it < (options.iterations ?? 200); it++) {
      const w = new Float64Array(e);
      for (let a = 0; a < e; a++) {
        let t = 0;
        for (let b = 0; b < e; b++) t += g[a * e + b] * v[b];
        w[a] = t;
      }
      const vn = Math.hypot(...v), wn = Math.hypot(...w);
      const next = vn === 0 ? 0 : wn / vn; // Rayleigh-like growth factor → σ²
      if (wn === 0 || !Number.isFinite(wn)) {
        sigma2 = wn === 0 ? 0 : NaN;
        break;
      }
      v = w.map((t) => t / wn);
      const done = Math.abs(next - sigma2) <= 1e-13 * next;
      sigma2 = next;
      if (done) break;
    }
    out.push(Math.sqrt(sigma2));
  }
  return out;
}

/** Error of an approximation against exact attention. */
export interface ErrorMetrics {
  /** ‖approx − exact‖_F / ‖exact‖_F over everything. */
  relativeError: number;
  /** max |approx − exact|. */
  maxAbsError: number;
  /** Smallest per-row cosine similarity. */
  cosineMin: number;
  /** Mean per-row cosine similarity. */
  cosineMean: number;
  /** Largest over slices of ‖approx − exact‖₂ (power-iteration estimate). */
  spectralError: number;
  /** Largest over slices of ‖approx − exact‖₂ / ‖exact‖₂. */
  relativeSpectralError: number;
}

/**
 * All the metrics of `approx` against `exact`.
 *
 * @example
 * ```ts
 * import { tensor } from "../mod.ts";
 * import { errorMetrics } from "../testing.ts";
 * const m = errorMetrics(tensor([1, 2], [0, 0]), tensor([1, 2], [3, 4]));
 * if (m.relativeError !== 1 || m.maxAbsError !== 4 || m.cosineMin !== 0) throw new Error();
 * if (Math.abs(m.spectralError - 5) > 1e-12) throw new Error(String(m.spectralError));
 * ```
 */
export function errorMetrics(approx: Tensor, exact: Tensor): ErrorMetrics {
  sameShape(approx, exact, "errorMetrics");
  const diff: Tensor = {
    ...exact,
    data: approx.data.map((x, i) => x - exact.data[i]),
  };
  const errs = spectralNorms(diff), norms = spectralNorms(exact);
  let rel = 0;
  errs.forEach((x, s) => {
    const r = norms[s] === 0 ? (x === 0 ? 0 : Number.isNaN(x) ? NaN : Infinity) : x / norms[s];
    if (r > rel || Number.isNaN(r)) rel = Number.isNaN(rel) ? rel : r;
  });
  const cos = rowCosine(approx, exact);
  return {
    relativeError: relativeFrobeniusError(approx, exact),
    maxAbsError: maxAbsoluteError(approx, exact),
    cosineMin: cos.min,
    cosineMean: cos.mean,
    spectralError: errs.some(Number.isNaN) ? NaN : Math.max(0, ...errs),
    relativeSpectralError: rel,
  };
}

/**
 * What two trivial predictors score against `exact`: `mean` predicts, for every row, the mean of
 * v over the keys that row may attend to (uniform attention: the key mask and `maskMod` apply);
 * `zero` predicts zeros (relative error 1 by construction). An approximation whose relative
 * error is near the `mean` baseline's has learned little about the scores.
 *
 * @example
 * ```ts
 * import { tensor } from "../mod.ts";
 * import { baselines, referenceAttention } from "../testing.ts";
 * const x = { q: tensor([2, 1], [1, -1]), k: tensor([2, 1], [1, -1]), v: tensor([2, 1], [1, -1]) };
 * const exact = referenceAttention(x.q, x.k, x.v);
 * const b = baselines(x, exact);
 * // mean(v) = 0 for both rows, so the mean baseline is as bad as predicting zeros
 * if (b.mean.relativeError !== 1 || b.zero.relativeError !== 1) throw new Error();
 * ```
 */
export function baselines(
  inputs: AttentionInputs,
  exact: Tensor,
  options: { maskMod?: MaskMod } = {},
): { mean: ErrorMetrics; zero: ErrorMetrics } {
  const uniform = referenceAttention(inputs.q, inputs.k, inputs.v, {
    mask: inputs.mask,
    maskMod: options.maskMod,
    scoreMod: () => 0,
  });
  const zero: Tensor = { ...exact, data: new Float64Array(exact.data.length) };
  return { mean: errorMetrics(uniform, exact), zero: errorMetrics(zero, exact) };
}
