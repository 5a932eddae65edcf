/**
 * Exact softmax attention in float64, with FlexAttention-style score and mask modifications.
 */
import type { Tensor } from "../mod.ts";
import { batchHead, broadcastLead, count, lead, leadOffset } from "./layout.ts";

/** A score modification: the logit for query i, key j of slice (b, h), given the scaled q·k. */
export type ScoreMod = (s: number, b: number, h: number, i: number, j: number) => number;
/** A mask modification: whether query i may attend to key j in slice (b, h). */
export type MaskMod = (b: number, h: number, i: number, j: number) => boolean;

/** Options of `referenceAttention`. */
export interface ReferenceOptions {
  /** Changes each scaled score (ALiBi, soft-capping, ...); -Infinity masks the pair. */
  scoreMod?: ScoreMod;
  /** false excludes the pair (causal: `(b, h, i, j) => j <= i`). */
  maskMod?: MaskMod;
  /** Key mask [...lead', m]; keys with mask ≤ 0 are excluded. */
  mask?: Tensor;
  /** Score scale (default 1/√d). */
  scale?: number;
}

/**
 * Exact softmax attention in float64: `softmax_j(scoreMod(scale · q_i·k_j, b, h, i, j)) · V` over
 * the keys j allowed by the key mask and `maskMod`. Inputs may have leading dims (matched from
 * the left; (b, h) are the first and last of them, or (b, 0) with one, (0, 0) with none). A row
 * with no allowed key (or only -Infinity scores) is zeros, the interpreter's rule for a fully
 * masked softmax. Written from scratch: it shares no code with the compiler or interpreter.
 *
 * @example
 * ```ts
 * import { tensor } from "../mod.ts";
 * import { referenceAttention } from "../testing.ts";
 * const q = tensor([2, 1], [0, 1]), k = tensor([2, 1], [0, 0]), v = tensor([2, 1], [1, 3]);
 * const causal = referenceAttention(q, k, v, { maskMod: (_b, _h, i, j) => j <= i });
 * // row 0 sees key 0 only; row 1 sees both keys with equal scores
 * if (causal.data[0] !== 1 || causal.data[1] !== 2) throw new Error(String(causal.data));
 * ```
 */
export function referenceAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  options: ReferenceOptions = {},
): Tensor {
  if (q.shape.length < 2 || k.shape.length < 2 || v.shape.length < 2) {
    throw new RangeError("referenceAttention: q, k and v need rank ≥ 2");
  }
  const n = q.shape.at(-2)!, d = q.shape.at(-1)!, m = k.shape.at(-2)!, e = v.shape.at(-1)!;
  if (k.shape.at(-1) !== d || v.shape.at(-2) !== m) {
    throw new RangeError(
      `referenceAttention: shapes q [${q.shape}], k [${k.shape}], v [${v.shape}] do not fit`,
    );
  }
  const mask = options.mask;
  if (mask && mask.shape.at(-1) !== m) {
    throw new RangeError(`referenceAttention: mask [${mask.shape}] is not over ${m} keys`);
  }
  const leads = [lead(q, 2), lead(k, 2), lead(v, 2), ...(mask ? [lead(mask, 1)] : [])];
  const outLead = broadcastLead(leads);
  const scale = options.scale ?? 1 / Math.sqrt(d);
  const out = new Float64Array(count(outLead) * n * e);
  const logits = new Float64Array(m);
  for (let s = 0; s < count(outLead); s++) {
    const [b, h] = batchHead(outLead, s);
    const qo = leadOffset(leads[0], outLead, s) * n * d;
    const ko = leadOffset(leads[1], outLead, s) * m * d;
    const vo = leadOffset(leads[2], outLead, s) * m * e;
    const mo = mask ? leadOffset(leads[3], outLead, s) * m : 0;
    for (let i = 0; i < n; i++) {
      let max = -Infinity;
      for (let j = 0; j < m; j++) {
        if (
          (mask && !(mask.data[mo + j] > 0)) || (options.maskMod && !options.maskMod(b, h, i, j))
        ) {
          logits[j] = -Infinity;
          continue;
        }
        let dot = 0;
        for (let c = 0; c < d; c++) dot += q.data[qo + i * d + c] * k.data[ko + j * d + c];
        const x = options.scoreMod ? options.scoreMod(dot * scale, b, h, i, j) : dot * scale;
        logits[j] = x;
        if (x > max || Number.isNaN(x)) max = Number.isNaN(max) ? max : x;
      }
      if (max === -Infinity) continue; // nothing to attend to: zeros
      if (Number.isNaN(max)) {
        out.fill(NaN, (s * n + i) * e, (s * n + i + 1) * e);
        continue;
      }
      let z = 0;
      for (let j = 0; j < m; j++) z += logits[j] = Math.exp(logits[j] - max);
      const oo = (s * n + i) * e;
      for (let j = 0; j < m; j++) {
        const w = logits[j] / z;
        if (w === 0) continue;
        for (let c = 0; c < e; c++) out[oo + c] += w * v.data[vo + j * e + c];
      }
    }
  }
  return { shape: [...outLead, n, e], data: out, dtype: "float" };
}
