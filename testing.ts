/**
 * Property-testing toolkit for attention variants: fast-check arbitraries for attention inputs,
 * error metrics against exact attention (with baselines that make a number readable), a float64
 * reference with score and mask modifications, metamorphic property builders that work on any
 * compiled `Program`, and `compareWithExact` / `sweep` for accuracy reports.
 *
 * Every property runs the program twice (before and after a transformation of its inputs) and
 * compares; a failure thrown by `fc.assert` or `assertProperty` names the fast-check seed and path
 * that replay it, and the counterexample prints as a `makeInputs({...})` call that rebuilds the
 * inputs.
 *
 * @example
 * ```ts
 * import fc from "npm:fast-check@4.10.2";
 * import { compile } from "./mod.ts";
 * import { assertProperty, compareWithExact, keyPermutationProperty, makeInputs } from "./testing.ts";
 *
 * const sigmoid = await compile(`
 *   def sig(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
 *     w = sigmoid(q @ k^T / sqrt(d) - log(n))
 *     return w @ v
 *   }`);
 * await assertProperty(keyPermutationProperty(sigmoid), { numRuns: 20 });
 * const inputs = makeInputs({ batch: [2], n: 16, m: 16, d: 8, e: 8, seed: 1 });
 * const report = await compareWithExact(sigmoid, inputs);
 * console.log(report.relativeError, "vs uniform attention", report.baselines.mean.relativeError);
 * ```
 * @module
 */
import fc from "npm:fast-check@4.10.2";
import { type Backend, compile, type Program, randomTensor, type Tensor } from "./mod.ts";

// ---------------------------------------------------------------------------------------------
// Inputs

/** Inputs of an attention program: q [...lead, n, d], k [...lead, m, d], v [...lead, m, e]. */
export interface AttentionInputs {
  /** Queries, [...lead, n, d]. */
  q: Tensor;
  /** Keys, [...lead, m, d]. */
  k: Tensor;
  /** Values, [...lead, m, e]. */
  v: Tensor;
  /** Key mask [...lead', m] (lead' a prefix of lead; > 0 = real token, 0 = padding). */
  mask?: Tensor;
}

/**
 * How the numbers are drawn: `bounded` is Gaussian times a moderate scale (0.25, 1 or 3);
 * `extreme` is Gaussian times 1e-30, 1e-4, 1e4 or 1e8 with a few outliers of ±1e18 (every
 * value, and every product of two values, stays finite in float32).
 */
export type ValueKind = "bounded" | "extreme";

/**
 * Key masks: `none`; `padding` (each mask row is a prefix of 1 to m ones, right padding);
 * `random` (about 30% zeros anywhere, at least one 1 per row); `empty` (as random, but the first
 * mask row is all zeros, so every query of that slice has no key to attend to).
 */
export type MaskKind = "none" | "padding" | "random" | "empty";

/** Everything that determines one draw of `attentionInputs`; `makeInputs` rebuilds it. */
export interface InputSpec {
  /** Leading batch/head dims, e.g. `[]`, `[2]`, `[2, 3]`. */
  batch: number[];
  /** Queries. */
  n: number;
  /** Keys (equal to n for self-attention). */
  m: number;
  /** Query/key width. */
  d: number;
  /** Value width. */
  e: number;
  /** Seed of the data (Attune's Philox generator; q, k, v, mask use seed, seed+1, ...). */
  seed: number;
  /** Distribution of the values (default "bounded"). */
  values?: ValueKind;
  /** Scale of the Gaussian (default 1). */
  scale?: number;
  /** Mask kind (default "none"). */
  mask?: MaskKind;
  /** How many leading dims of `batch` the mask keeps (default 0: one [m] mask for all). */
  maskLead?: number;
}

/** Token counts to draw from: 1, 2, odd sizes and sizes around powers of two. */
export const AWKWARD_SIZES: readonly number[] = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33]
  .concat([63, 64, 65, 100, 127, 128, 129]);

/** Head widths to draw from (d and e). */
export const AWKWARD_WIDTHS: readonly number[] = [1, 2, 3, 4, 7, 8, 16, 17, 32, 33, 64];

/**
 * An awkward size in [min, max] from `AWKWARD_SIZES` (or the list given).
 *
 * @example
 * ```ts
 * import fc from "npm:fast-check@4.10.2";
 * import { awkwardSize } from "./testing.ts";
 * const sizes = fc.sample(awkwardSize({ max: 33 }), { seed: 1, numRuns: 50 });
 * if (sizes.some((s) => s < 1 || s > 33)) throw new Error("out of range");
 * ```
 */
export function awkwardSize(
  options: { min?: number; max?: number; sizes?: readonly number[] } = {},
): fc.Arbitrary<number> {
  const min = options.min ?? 1, max = options.max ?? 65;
  const pool = (options.sizes ?? AWKWARD_SIZES).filter((s) => s >= min && s <= max);
  if (pool.length === 0) throw new RangeError(`awkwardSize: no size in [${min}, ${max}]`);
  return fc.constantFrom(...pool);
}

/**
 * Leading batch/head dims: none most often, then [b], [1, h], [b, h] with awkward b, h.
 *
 * @example
 * ```ts
 * import fc from "npm:fast-check@4.10.2";
 * import { batchDims } from "./testing.ts";
 * for (const b of fc.sample(batchDims(), { seed: 2, numRuns: 20 })) {
 *   if (b.length > 2) throw new Error("at most batch and heads");
 * }
 * ```
 */
export function batchDims(): fc.Arbitrary<number[]> {
  return fc.constantFrom<number[]>([], [], [1], [2], [3], [1, 3], [2, 3], [2, 1]);
}

/**
 * Seeds for `Program.run(..., { seed })` and for data: integers in [0, 2^31).
 *
 * @example
 * ```ts
 * import fc from "npm:fast-check@4.10.2";
 * import { seeds } from "./testing.ts";
 * const [s] = fc.sample(seeds(), { seed: 3, numRuns: 1 });
 * if (!Number.isInteger(s)) throw new Error("not an integer");
 * ```
 */
export function seeds(): fc.Arbitrary<number> {
  return fc.integer({ min: 0, max: 0x7fffffff });
}

/** Options of `attentionInputs`. */
export interface InputOptions {
  /** Largest n (and m) to draw (default 65). */
  maxN?: number;
  /** Largest d and e (default 33). */
  maxD?: number;
  /** Allow m ≠ n (cross attention; default false, as programs with `k: [n, d]` need). */
  cross?: boolean;
  /** Draw leading batch/head dims (default true). */
  batch?: boolean;
  /** Value kinds to draw from (default ["bounded"]). */
  values?: ValueKind[];
  /** Mask kinds to draw from (default ["none", "padding", "random"]). */
  masks?: MaskKind[];
}

/**
 * Attention inputs `{ q, k, v, mask? }` with awkward shapes, bounded or extreme values and masks.
 * Each value prints as the `makeInputs({...})` call that rebuilds it, so a counterexample is
 * short and replayable. Shrinking goes towards smaller shapes, no batch dims and no mask.
 *
 * @example
 * ```ts
 * import fc from "npm:fast-check@4.10.2";
 * import { attentionInputs } from "./testing.ts";
 * const arb = attentionInputs({ maxN: 17, values: ["bounded", "extreme"], masks: ["padding"] });
 * for (const x of fc.sample(arb, { seed: 4, numRuns: 10 })) {
 *   if (x.mask === undefined || x.q.shape.at(-2) !== x.k.shape.at(-2)) throw new Error("bad");
 * }
 * ```
 */
export function attentionInputs(options: InputOptions = {}): fc.Arbitrary<AttentionInputs> {
  const maxN = options.maxN ?? 65, maxD = options.maxD ?? 33;
  const size = awkwardSize({ max: maxN });
  const width = awkwardSize({ max: maxD, sizes: AWKWARD_WIDTHS });
  const masks = options.masks ?? ["none", "padding", "random"];
  const values = options.values ?? ["bounded"];
  return fc.record({
    batch: options.batch === false ? fc.constant<number[]>([]) : batchDims(),
    n: size,
    m: options.cross ? size : fc.constant(-1),
    d: width,
    e: width,
    seed: fc.integer({ min: 0, max: 1 << 30 }),
    values: fc.constantFrom(...values),
    pick: fc.nat(3),
    mask: fc.constantFrom(...masks),
    maskLead: fc.nat(2),
  }).map((r) => {
    const scales = r.values === "bounded" ? [1, 0.25, 3] : [1e4, 1e-30, 1e-4, 1e8];
    return makeInputs({
      batch: r.batch,
      n: r.n,
      m: r.m < 0 ? r.n : r.m,
      d: r.d,
      e: r.e,
      seed: r.seed,
      values: r.values,
      scale: scales[r.pick % scales.length],
      mask: r.mask,
      maskLead: Math.min(r.maskLead, r.batch.length),
    });
  });
}

/**
 * Build the inputs an `InputSpec` describes (what `attentionInputs` prints for a counterexample).
 *
 * @example
 * ```ts
 * import { makeInputs } from "./testing.ts";
 * const x = makeInputs({ batch: [2], n: 7, m: 7, d: 4, e: 3, seed: 9, mask: "padding" });
 * if (x.q.shape.join() !== "2,7,4" || x.mask?.shape.join() !== "7") throw new Error("shape");
 * ```
 */
export function makeInputs(spec: InputSpec): AttentionInputs {
  const { batch, n, m, d, e, seed } = spec;
  const values = spec.values ?? "bounded", scale = spec.scale ?? 1;
  const draw = (shape: number[], s: number): Tensor => {
    const t = randomTensor(shape, { seed: s, scale });
    if (values === "extreme") {
      // A few outliers of ±1e18: large, and their products stay below float32's 3.4e38.
      const u = randomTensor([3], { seed: s + 17, kind: "uniform" }).data;
      for (let o = 0; o < 2; o++) {
        t.data[Math.floor(u[o] * t.data.length)] = (u[2] < 0.5) === (o === 0) ? 1e18 : -1e18;
      }
    }
    return t;
  };
  const x: AttentionInputs = {
    q: draw([...batch, n, d], seed),
    k: draw([...batch, m, d], seed + 1),
    v: draw([...batch, m, e], seed + 2),
  };
  const kind = spec.mask ?? "none";
  if (kind !== "none") x.mask = makeMask(batch.slice(0, spec.maskLead ?? 0), m, kind, seed + 3);
  const shown = `makeInputs(${JSON.stringify({ ...spec, values, scale, mask: kind })})`;
  Object.defineProperty(x, fc.toStringMethod, { value: () => shown, enumerable: false });
  return x;
}

function makeMask(lead: number[], m: number, kind: MaskKind, seed: number): Tensor {
  const rows = lead.reduce((a, b) => a * b, 1);
  const u = randomTensor([rows, m + 1], { seed, kind: "uniform" }).data;
  const data = new Float64Array(rows * m);
  for (let r = 0; r < rows; r++) {
    const o = r * (m + 1);
    if (kind === "padding") {
      data.fill(1, r * m, r * m + 1 + Math.floor(u[o + m] * m));
    } else if (!(kind === "empty" && r === 0)) {
      let any = false;
      for (let j = 0; j < m; j++) {
        data[r * m + j] = u[o + j] < 0.3 ? 0 : 1;
        any ||= data[r * m + j] === 1;
      }
      if (!any) data[r * m + Math.floor(u[o + m] * m)] = 1;
    }
  }
  return { shape: [...lead, m], data, dtype: "float" };
}

// ---------------------------------------------------------------------------------------------
// Layout helpers (leading dims are matched from the left, as Attune's interpreter does)

function lead(t: Tensor, rank: number): number[] {
  return t.shape.slice(0, t.shape.length - rank);
}

function broadcastLead(leads: number[][]): number[] {
  const out: number[] = [];
  for (const l of leads) {
    l.forEach((x, a) => {
      const y = out[a];
      if (y === undefined || y === 1) out[a] = x;
      else if (x !== 1 && x !== y) {
        throw new RangeError(`leading dims [${l}] do not match [${out}] (matched from the left)`);
      }
    });
  }
  return out;
}

/** Index (in units of the per-slice block) of slice `s` of `outLead` inside a tensor `tLead`. */
function leadOffset(tLead: number[], outLead: number[], s: number): number {
  const idx = new Array<number>(outLead.length);
  let rem = s;
  for (let a = outLead.length - 1; a >= 0; a--) {
    idx[a] = rem % outLead[a];
    rem = Math.floor(rem / outLead[a]);
  }
  let off = 0;
  for (let a = 0; a < tLead.length; a++) off = off * tLead[a] + (tLead[a] === 1 ? 0 : idx[a]);
  return off;
}

/** (b, h) of slice s: rank 0 → (0, 0), rank 1 → (b, 0), else (flattened outer dims, last dim). */
function batchHead(outLead: number[], s: number): [number, number] {
  if (outLead.length === 0) return [0, 0];
  if (outLead.length === 1) return [s, 0];
  const h = outLead[outLead.length - 1];
  return [Math.floor(s / h), s % h];
}

function count(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function sameShape(a: Tensor, b: Tensor, what: string): void {
  if (a.shape.length !== b.shape.length || a.shape.some((x, i) => x !== b.shape[i])) {
    throw new RangeError(`${what}: shapes differ: [${a.shape}] vs [${b.shape}]`);
  }
}

// ---------------------------------------------------------------------------------------------
// Reference

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
 * import { tensor } from "./mod.ts";
 * import { referenceAttention } from "./testing.ts";
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

// ---------------------------------------------------------------------------------------------
// Metrics

/**
 * The mean-of-v prediction, the trivial baseline of attention: every row of each [m, e] slice of
 * `v` replaced by the mean of that slice's rows (attention with uniform weights).
 *
 * @example
 * ```ts
 * import { meanOfValues } from "./testing.ts";
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
 * import { normalizeRows } from "./testing.ts";
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
 * import { tensor } from "./mod.ts";
 * import { relativeFrobeniusError } from "./testing.ts";
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
 * import { tensor } from "./mod.ts";
 * import { maxAbsoluteError } from "./testing.ts";
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
 * import { tensor } from "./mod.ts";
 * import { rowCosine } from "./testing.ts";
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
 * import { tensor } from "./mod.ts";
 * import { spectralNorms } from "./testing.ts";
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
 * import { tensor } from "./mod.ts";
 * import { errorMetrics } from "./testing.ts";
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
 * import { tensor } from "./mod.ts";
 * import { baselines, referenceAttention } from "./testing.ts";
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

// ---------------------------------------------------------------------------------------------
// Comparing with exact attention

/** Options of `compareWithExact` and `sweep`. */
export interface CompareOptions {
  /** Where the program runs (default "interp"). */
  backend?: Backend;
  /** Seed passed to `Program.run` (random programs). */
  seed?: number;
  /** Score modification of the exact attention the program approximates. */
  scoreMod?: ScoreMod;
  /** Mask modification of the exact attention (e.g. causal). */
  maskMod?: MaskMod;
  /** Score scale of the exact attention (default 1/√d). */
  scale?: number;
  /** The exact output, if already computed (otherwise `referenceAttention`). */
  exact?: Tensor;
}

/** `compareWithExact`'s result: the metrics, the baselines and both outputs. */
export interface Comparison extends ErrorMetrics {
  /** The same metrics for the two trivial predictors (see `baselines`). */
  baselines: { mean: ErrorMetrics; zero: ErrorMetrics };
  /** The program's output. */
  output: Tensor;
  /** Exact attention. */
  exact: Tensor;
  /** Milliseconds of the program's run. */
  ms: number;
}

/**
 * Run `program` on `inputs` and measure it against exact softmax attention (`referenceAttention`
 * with the inputs' key mask and the options' score/mask modifications), with the baselines.
 *
 * @example
 * ```ts
 * import { compile } from "./mod.ts";
 * import { compareWithExact, makeInputs } from "./testing.ts";
 * const exact = await compile(`def f(q: [n, d], k: [m, d], v: [m, e], mask: [m] = ones) -> [n, e] {
 *   return softmax(where(mask > 0, q @ k^T / sqrt(d), -inf), axis=1) @ v
 * }`);
 * const x = makeInputs({ batch: [2], n: 9, m: 9, d: 4, e: 4, seed: 5, mask: "random" });
 * const r = await compareWithExact(exact, x);
 * if (r.relativeError > 1e-12 || r.baselines.mean.relativeError < 0.1) throw new Error();
 * ```
 */
export async function compareWithExact(
  program: Program,
  inputs: AttentionInputs,
  options: CompareOptions = {},
): Promise<Comparison> {
  const exact = options.exact ?? referenceAttention(inputs.q, inputs.k, inputs.v, {
    mask: inputs.mask,
    scoreMod: options.scoreMod,
    maskMod: options.maskMod,
    scale: options.scale,
  });
  const t0 = performance.now();
  const output = await program.run(plain(inputs), { backend: options.backend, seed: options.seed });
  const ms = performance.now() - t0;
  return {
    ...errorMetrics(output, exact),
    baselines: baselines(inputs, exact, { maskMod: options.maskMod }),
    output,
    exact,
    ms,
  };
}

/** One point of a `sweep`: the parameter's value, the metrics and the run time. */
export interface SweepPoint extends ErrorMetrics {
  /** The parameter's value. */
  value: number;
  /** Median milliseconds of the runs (compilation excluded). */
  ms: number;
}

/**
 * Error and time of a program for each value of one parameter. `target` is a `.attn` source
 * (compiled with `{ ...options.params, [param]: value }`), a function from those parameters to
 * a `Program`, or a compiled `Program` when `param` is `"seed"` (then the value is the run seed).
 * The exact output is computed once.
 *
 * @example
 * ```ts
 * import { makeInputs, sweep } from "./testing.ts";
 * const src = `def f(q: [n, d], k: [n, d], v: [n, e], t = 1.0) -> [n, e] {
 *   return softmax(t * q @ k^T / sqrt(d), axis=1) @ v
 * }`;
 * const points = await sweep(src, "t", [0, 0.5, 1], makeInputs({ batch: [], n: 8, m: 8, d: 4, e: 2, seed: 3 }));
 * if (points[2].relativeError > 1e-12 || !(points[0].relativeError > points[2].relativeError)) {
 *   throw new Error(JSON.stringify(points));
 * }
 * ```
 */
export async function sweep(
  target: string | Program | ((params: Record<string, number>) => Program | Promise<Program>),
  param: string,
  values: number[],
  inputs: AttentionInputs,
  options: CompareOptions & { params?: Record<string, number | boolean>; repeats?: number } = {},
): Promise<SweepPoint[]> {
  const exact = options.exact ?? referenceAttention(inputs.q, inputs.k, inputs.v, {
    mask: inputs.mask,
    scoreMod: options.scoreMod,
    maskMod: options.maskMod,
    scale: options.scale,
  });
  const out: SweepPoint[] = [];
  for (const value of values) {
    let program: Program, seed = options.seed;
    if (typeof target === "string") {
      program = await compile(target, { params: { ...options.params, [param]: value } });
    } else if (typeof target === "function") {
      program = await target({ [param]: value });
    } else if (param === "seed") {
      [program, seed] = [target, value];
    } else {
      throw new RangeError(
        `sweep: a compiled Program can only sweep "seed"; pass the source or a function for ${param}`,
      );
    }
    const times: number[] = [];
    let output: Tensor | undefined;
    for (let r = 0; r < Math.max(1, options.repeats ?? 1); r++) {
      const t0 = performance.now();
      output = await program.run(plain(inputs), { backend: options.backend, seed });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    out.push({ value, ms: times[times.length >> 1], ...errorMetrics(output!, exact) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Metamorphic properties

/** Options shared by the property builders. */
export interface PropertyOptions {
  /** The inputs to draw (default: `attentionInputs` suited to the property and the program). */
  inputs?: fc.Arbitrary<AttentionInputs>;
  /** Where the program runs (default "interp"). */
  backend?: Backend;
  /**
   * Allowed difference, relative to the larger of max |output| and max |v| (default 1e-9 on the
   * interpreter, 1e-4 on the GPU, which computes in float32).
   */
  tolerance?: number;
}

/** What the metamorphic builders return: run it with `fc.assert` or `assertProperty`. */
export type AttentionProperty = fc.IAsyncPropertyWithHooks<[AttentionInputs, number, number]>;

function takesMask(program: Program): boolean {
  return program.graph.inputs.some((i) => i.name === "mask");
}

function defaultInputs(program: Program, extra: InputOptions): fc.Arbitrary<AttentionInputs> {
  return attentionInputs({
    maxN: 33,
    ...extra,
    masks: takesMask(program) ? extra.masks : ["none"],
  });
}

/** The inputs as a plain record (what `Program.run` takes). */
function plain(x: AttentionInputs): Record<string, Tensor> {
  const r: Record<string, Tensor> = { q: x.q, k: x.k, v: x.v };
  if (x.mask) r.mask = x.mask;
  return r;
}

function tolerance(options: PropertyOptions): number {
  return options.tolerance ?? (options.backend === "gpu" ? 1e-4 : 1e-9);
}

/**
 * Throw if rows `rows(slice, i)` of `got` and `want` ([...lead, n, e]) differ by more than
 * tol · scale.
 */
function compareRows(
  got: Tensor,
  want: Tensor,
  scale: number,
  tol: number,
  what: string,
  rows: (s: number, i: number) => boolean = () => true,
  wantRow: (s: number, i: number) => number = (_s, i) => i,
): void {
  sameShape(got, want, what);
  const n = got.shape.at(-2)!, e = got.shape.at(-1)!;
  const limit = tol * scale;
  for (let s = 0; s < count(got.shape.slice(0, -2)); s++) {
    for (let i = 0; i < n; i++) {
      if (!rows(s, i)) continue;
      const wi = wantRow(s, i);
      for (let c = 0; c < e; c++) {
        const a = got.data[(s * n + i) * e + c], b = want.data[(s * n + wi) * e + c];
        if (!(Math.abs(a - b) <= limit) && !(Object.is(a, b))) {
          throw new Error(
            `${what}: slice ${s}, row ${i}, column ${c}: got ${a}, expected ${b} ` +
              `(|difference| ${Math.abs(a - b)} > tolerance ${tol} × scale ${scale})`,
          );
        }
      }
    }
  }
}

/**
 * Run the original inputs and a transformed copy; the copy's output rows must equal the
 * original's (see `compareRows`), on the scale of the original output and v.
 */
async function runsAgree(
  run: (y: AttentionInputs) => Promise<Tensor>,
  x: AttentionInputs,
  y: AttentionInputs,
  options: PropertyOptions,
  what: string,
  rows?: (s: number, i: number) => boolean,
  wantRow?: (s: number, i: number) => number,
): Promise<void> {
  const base = await run(x), moved = await run(y);
  compareRows(moved, base, scaleOf(base, x.v), tolerance(options), what, rows, wantRow);
}

function permutation(n: number, seed: number): number[] {
  const u = randomTensor([n], { seed, kind: "uniform" }).data;
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u[i] * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** out[..., i, :] = t[..., perm[i], :] along the token axis (second to last, or last for masks). */
function permuteTokens(t: Tensor, perm: number[], matrix = true): Tensor {
  const w = matrix ? t.shape.at(-1)! : 1;
  const n = perm.length;
  const out = new Float64Array(t.data.length);
  for (let b = 0; b < t.data.length / (n * w); b++) {
    for (let i = 0; i < n; i++) {
      out.set(t.data.subarray((b * n + perm[i]) * w, (b * n + perm[i] + 1) * w), (b * n + i) * w);
    }
  }
  return { ...t, shape: [...t.shape], data: out };
}

function rms(t: Tensor): number {
  let s = 0;
  for (const x of t.data) s += x * x;
  return t.data.length ? Math.sqrt(s / t.data.length) : 0;
}

/** A copy of `t` ([...lead, n, w]) whose rows with replace(slice, row) true are fresh values. */
function replaceRows(t: Tensor, seed: number, replace: (s: number, i: number) => boolean): Tensor {
  const n = t.shape.at(-2)!, w = t.shape.at(-1)!;
  const fresh = randomTensor(t.shape, { seed, scale: rms(t) || 1 }).data;
  const data = Float64Array.from(t.data);
  for (let s = 0; s < data.length / (n * w || 1); s++) {
    for (let i = 0; i < n; i++) {
      if (replace(s, i)) {
        data.set(fresh.subarray((s * n + i) * w, (s * n + i + 1) * w), (s * n + i) * w);
      }
    }
  }
  return { ...t, shape: [...t.shape], data };
}

/** The larger of max |y| and max |v| over finite elements (NaN and ±Infinity are skipped). */
function scaleOf(y: Tensor, v: Tensor): number {
  let m = 0;
  for (const t of [y.data, v.data]) {
    for (const x of t) if (Math.abs(x) > m && Number.isFinite(x)) m = Math.abs(x);
  }
  return m || Number.MIN_VALUE;
}

/** Is key j of the slice `s` of a tensor with leading dims `tLead` real (mask > 0)? */
function maskLookup(mask: Tensor | undefined, tLead: number[]): (s: number, j: number) => boolean {
  if (!mask) return () => true;
  const mLead = lead(mask, 1), m = mask.shape.at(-1)!;
  broadcastLead([tLead, mLead]);
  return (s, j) => mask.data[leadOffset(mLead, tLead, s) * m + j] > 0;
}

/** Options of `permutationProperty`. */
export interface PermutationOptions extends PropertyOptions {
  /**
   * `keys` (default): permute k, v and the key mask together, the output must not change.
   * `queries`: permute q; the output rows must be permuted the same way (the mask is a key mask
   * and stays). `tokens`: self-attention (n = m): permute q, k, v and the mask together; the
   * output rows must be permuted the same way.
   */
  mode?: "keys" | "queries" | "tokens";
}

/**
 * Permutation equivariance, the symmetry of softmax attention without positions: permuting the
 * keys together with the values (and the key mask) leaves every output row unchanged; permuting
 * the queries permutes the output rows. Holds for exact, linear, Performer and YOSO (fixed seed);
 * not for Nyström (segment landmarks) or anything with positions (causal, ALiBi, windows).
 *
 * @example
 * ```ts
 * import { compile } from "./mod.ts";
 * import { assertProperty, permutationProperty } from "./testing.ts";
 * const exact = await compile(`def f(q: [n, d], k: [m, d], v: [m, e], mask: [m] = ones) -> [n, e] {
 *   return softmax(where(mask > 0, q @ k^T / sqrt(d), -1e9), axis=1) @ v
 * }`);
 * await assertProperty(permutationProperty(exact), { numRuns: 20 });
 * await assertProperty(permutationProperty(exact, { mode: "queries" }), { numRuns: 20 });
 * ```
 */
export function permutationProperty(
  program: Program,
  options: PermutationOptions = {},
): AttentionProperty {
  const mode = options.mode ?? "keys";
  const inputs = options.inputs ??
    defaultInputs(program, {
      values: ["bounded", "extreme"],
      masks: ["none", "padding", "random", "empty"],
    });
  return fc.asyncProperty(inputs, seeds(), seeds(), async (x, seed, permSeed) => {
    const run = (y: AttentionInputs) => program.run(plain(y), { backend: options.backend, seed });
    const n = x.q.shape.at(-2)!, m = x.k.shape.at(-2)!;
    if (mode === "tokens" && n !== m) throw new RangeError("tokens mode needs n = m");
    const perm = permutation(mode === "queries" ? n : m, permSeed);
    const y: AttentionInputs = { ...x };
    if (mode !== "queries") {
      y.k = permuteTokens(x.k, perm);
      y.v = permuteTokens(x.v, perm);
      if (x.mask) y.mask = permuteTokens(x.mask, perm, false);
    }
    if (mode !== "keys") y.q = permuteTokens(x.q, perm);
    await runsAgree(
      run,
      x,
      y,
      options,
      `${mode} permuted by [${perm}]`,
      undefined,
      mode === "keys" ? undefined : (_s, i) => perm[i],
    );
  });
}

/**
 * Key-permutation equivariance: `permutationProperty` with mode "keys".
 *
 * @example
 * ```ts
 * import { compile } from "./mod.ts";
 * import { assertProperty, keyPermutationProperty } from "./testing.ts";
 * const linear = await compile(`def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
 *   fq = elu(q) + 1
 *   fk = elu(k) + 1
 *   num = fq @ (fk^T @ v)
 *   den = fq @ sum(fk, axis=0)
 *   y[i, c] = num[i, c] / den[i]
 *   return y
 * }`);
 * await assertProperty(keyPermutationProperty(linear), { numRuns: 20 });
 * ```
 */
export function keyPermutationProperty(
  program: Program,
  options: PropertyOptions = {},
): AttentionProperty {
  return permutationProperty(program, { ...options, mode: "keys" });
}

/**
 * Per-row score-shift invariance of softmax: adding c_i to every score of row i changes nothing.
 * Programs rarely take a score bias, so the shift is made through the keys: translating every key
 * by the same vector t adds q_i·t/√d, a per-row constant, to row i's scores. Every method that
 * is softmax over q·k (exact, Skeinformer; Nyström without padding, since zeroed pad rows enter
 * its landmark means) is invariant; linear attention, Performer and YOSO are not. The translation
 * is random, of the keys' own RMS size. Default inputs: bounded values (with |scores| ≫ 1 a
 * float64 shift itself loses digits).
 *
 * @example
 * ```ts
 * import { compile } from "./mod.ts";
 * import { assertProperty, shiftInvarianceProperty } from "./testing.ts";
 * const exact = await compile(`def f(q: [n, d], k: [m, d], v: [m, e]) -> [n, e] {
 *   return softmax(q @ k^T / sqrt(d), axis=1) @ v
 * }`);
 * await assertProperty(shiftInvarianceProperty(exact), { numRuns: 20 });
 * ```
 */
export function shiftInvarianceProperty(
  program: Program,
  options: PropertyOptions = {},
): AttentionProperty {
  const inputs = options.inputs ?? defaultInputs(program, {});
  return fc.asyncProperty(inputs, seeds(), seeds(), async (x, seed, shiftSeed) => {
    const run = (y: AttentionInputs) => program.run(plain(y), { backend: options.backend, seed });
    const d = x.k.shape.at(-1)!;
    const t = randomTensor([d], { seed: shiftSeed, scale: rms(x.k) || 1 }).data;
    const k = { ...x.k, data: x.k.data.map((val, i) => val + t[i % d]) };
    await runsAgree(
      run,
      x,
      { ...x, k },
      options,
      `keys translated by [${[...t].map((a) => a.toPrecision(3))}] (a per-row score shift)`,
    );
  });
}

/** Options of `convexHullProperty`. */
export interface ConvexOptions extends PropertyOptions {
  /** Pairs (query i, key j) the program attends over besides the key mask (e.g. causal). */
  maskMod?: MaskMod;
}

/**
 * Convex-combination bound of row-normalized attention: every output element y[i, c] lies within
 * [min_j v[j, c], max_j v[j, c]] over the keys j row i may attend to (key mask and `maskMod`).
 * Rows with no such key are not checked. Holds for any method whose weights are non-negative
 * and sum to one (exact, Skeinformer, linear and Performer attention with positive features);
 * not for Nyström (its pinv has negative entries) or YOSO (normalized to unit length).
 *
 * @example
 * ```ts
 * import { compile } from "./mod.ts";
 * import { assertProperty, convexHullProperty } from "./testing.ts";
 * const causal = await compile(`def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
 *   s[i, j] = where(j <= i, q[i] . k[j] / sqrt(d), -inf)
 *   return softmax(s, axis=1) @ v
 * }`);
 * const maskMod = (_b: number, _h: number, i: number, j: number) => j <= i;
 * await assertProperty(convexHullProperty(causal, { maskMod }), { numRuns: 20 });
 * ```
 */
export function convexHullProperty(
  program: Program,
  options: ConvexOptions = {},
): AttentionProperty {
  const inputs = options.inputs ??
    defaultInputs(program, {
      values: ["bounded", "extreme"],
      masks: ["none", "padding", "random", "empty"],
    });
  return fc.asyncProperty(inputs, seeds(), fc.constant(0), async (x, seed, _unused) => {
    const y = await program.run(plain(x), { backend: options.backend, seed });
    const n = y.shape.at(-2)!, e = y.shape.at(-1)!, m = x.v.shape.at(-2)!;
    const outLead = y.shape.slice(0, -2);
    const vLead = lead(x.v, 2);
    const real = maskLookup(x.mask, outLead);
    const limit = tolerance(options) * scaleOf(y, x.v);
    const lo = new Float64Array(e), hi = new Float64Array(e);
    for (let s = 0; s < count(outLead); s++) {
      const [b, h] = batchHead(outLead, s);
      const vo = leadOffset(vLead, outLead, s) * m * e;
      for (let i = 0; i < n; i++) {
        lo.fill(Infinity);
        hi.fill(-Infinity);
        let any = false;
        for (let j = 0; j < m; j++) {
          if (!real(s, j) || (options.maskMod && !options.maskMod(b, h, i, j))) continue;
          any = true;
          for (let c = 0; c < e; c++) {
            lo[c] = Math.min(lo[c], x.v.data[vo + j * e + c]);
            hi[c] = Math.max(hi[c], x.v.data[vo + j * e + c]);
          }
        }
        if (!any) continue;
        for (let c = 0; c < e; c++) {
          const a = y.data[(s * n + i) * e + c];
          if (!(a >= lo[c] - limit && a <= hi[c] + limit)) {
            throw new Error(
              `convex bound: slice ${s}, row ${i}, column ${c}: ${a} is outside ` +
                `[${lo[c]}, ${hi[c]}], the range of v over the keys the row attends to ` +
                `(tolerance ${limit})`,
            );
          }
        }
      }
    }
  });
}

/**
 * Causality: output row i depends only on tokens 0..i. Draws a position p, replaces q, k and v
 * at rows after p with fresh values and checks that output rows 0..p did not change. Needs
 * self-attention inputs (n = m; the default inputs have no mask).
 *
 * @example
 * ```ts
 * import { compile } from "./mod.ts";
 * import { assertProperty, causalityProperty } from "./testing.ts";
 * const causal = await compile(`def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
 *   s[i, j] = where(j <= i, q[i] . k[j] / sqrt(d) - 0.5 * (i - j), -inf)
 *   return softmax(s, axis=1) @ v
 * }`);
 * await assertProperty(causalityProperty(causal), { numRuns: 20 });
 * ```
 */
export function causalityProperty(
  program: Program,
  options: PropertyOptions = {},
): AttentionProperty {
  const inputs = options.inputs ??
    defaultInputs(program, { values: ["bounded", "extreme"], masks: ["none"] });
  return fc.asyncProperty(inputs, seeds(), seeds(), async (x, seed, aux) => {
    const run = (y: AttentionInputs) => program.run(plain(y), { backend: options.backend, seed });
    const n = x.q.shape.at(-2)!;
    if (x.k.shape.at(-2) !== n) throw new RangeError("causalityProperty needs n = m");
    const p = aux % n;
    const after = (_s: number, i: number) => i > p;
    const y: AttentionInputs = {
      ...x,
      q: replaceRows(x.q, aux + 1, after),
      k: replaceRows(x.k, aux + 2, after),
      v: replaceRows(x.v, aux + 3, after),
    };
    await runsAgree(
      run,
      x,
      y,
      options,
      `causality: q, k, v replaced after row ${p}`,
      (_s, i) => i <= p,
    );
  });
}

/**
 * Invariance to the content of padded positions: replacing k and v at keys with mask = 0 (and q
 * at those positions when n = m, self-attention) must leave the output rows of real tokens
 * unchanged (inputs drawn without a mask pass: nothing is padded). Default inputs: bounded
 * values, padding/random/empty masks. (With |scores| above
 * 1e9 a finite `-1e9` mask no longer masks: pass extreme inputs to see it.)
 *
 * @example
 * ```ts
 * import { compile } from "./mod.ts";
 * import { assertProperty, paddingInvarianceProperty } from "./testing.ts";
 * const exact = await compile(`def f(q: [n, d], k: [m, d], v: [m, e], mask: [m] = ones) -> [n, e] {
 *   return softmax(where(mask > 0, q @ k^T / sqrt(d), -inf), axis=1) @ v
 * }`);
 * await assertProperty(paddingInvarianceProperty(exact), { numRuns: 20 });
 * ```
 */
export function paddingInvarianceProperty(
  program: Program,
  options: PropertyOptions = {},
): AttentionProperty {
  if (!options.inputs && !takesMask(program)) {
    throw new RangeError("paddingInvarianceProperty: the program has no `mask` input");
  }
  const inputs = options.inputs ??
    defaultInputs(program, { masks: ["padding", "random", "empty"] });
  return fc.asyncProperty(inputs, seeds(), seeds(), async (x, seed, aux) => {
    const run = (y: AttentionInputs) => program.run(plain(y), { backend: options.backend, seed });
    if (!x.mask) return; // nothing is padded
    const n = x.q.shape.at(-2)!, m = x.k.shape.at(-2)!;
    const padK = maskLookup(x.mask, lead(x.k, 2)), padV = maskLookup(x.mask, lead(x.v, 2));
    const y: AttentionInputs = {
      ...x,
      k: replaceRows(x.k, aux + 1, (s, j) => !padK(s, j)),
      v: replaceRows(x.v, aux + 2, (s, j) => !padV(s, j)),
    };
    const self = n === m;
    if (self) {
      const padQ = maskLookup(x.mask, lead(x.q, 2));
      y.q = replaceRows(x.q, aux + 3, (s, i) => !padQ(s, i));
    }
    const real = maskLookup(x.mask, lead(x.q, 2));
    await runsAgree(
      run,
      x,
      y,
      options,
      `padding: ${self ? "q, " : ""}k, v replaced at masked positions`,
      (s, i) => !self || real(s, i),
    );
  });
}

/**
 * One-sided sign-test p-value: P[X ≥ worse] for X ~ Binomial(worse + better, 1/2) (ties are
 * dropped before counting).
 *
 * @example
 * ```ts
 * import { signTestPValue } from "./testing.ts";
 * // 16 of 20 pairs worse: (C(20,16) + ... + C(20,20)) / 2^20 = 6196 / 1048576
 * if (Math.abs(signTestPValue(16, 4) - 6196 / 1048576) > 1e-15) throw new Error();
 * ```
 */
export function signTestPValue(worse: number, better: number): number {
  const n = worse + better;
  if (worse <= 0) return 1;
  // log pmf by recurrence, then a log-sum-exp over the upper tail.
  let lp = -n * Math.LN2;
  const logs: number[] = [];
  for (let x = 0; x <= n; x++) {
    if (x >= worse) logs.push(lp);
    lp += Math.log(n - x) - Math.log(x + 1);
  }
  const top = Math.max(...logs);
  return Math.min(1, Math.exp(top) * logs.reduce((a, l) => a + Math.exp(l - top), 0));
}

/** Options of `budgetProperty`. */
export interface BudgetOptions {
  /** Inputs to draw for each pair (default: bounded, no mask unless the program takes one). */
  inputs?: fc.Arbitrary<AttentionInputs>;
  /** Where the programs run (default "interp"). */
  backend?: Backend;
  /** Paired draws per run of the property (default 20; at least 7 so α = 0.01 can reject). */
  pairs?: number;
  /** False-failure probability bound of one run of the property (default 0.01). */
  alpha?: number;
  /** Error of an output against exact (default relative Frobenius error). */
  metric?: (approx: Tensor, exact: Tensor) => number;
  /** Exact attention's modifications (see `referenceAttention`). */
  scoreMod?: ScoreMod;
  /** Exact attention's mask modification. */
  maskMod?: MaskMod;
}

/** One paired draw of `budgetProperty`: inputs and the run seed both budgets share. */
export interface BudgetTrial {
  /** The inputs. */
  inputs: AttentionInputs;
  /** The seed passed to `Program.run` for every budget. */
  seed: number;
}

/**
 * More budget should not make the approximation worse: a statistical property. Each run draws
 * `pairs` (inputs, seed) pairs and, for each consecutive pair of budgets b < b', the error
 * against exact attention with b and with b' (same inputs, same run seed). It counts W pairs
 * where b' has the larger error and B where it has the smaller (ties dropped) and fails when the
 * one-sided sign test rejects H0: "P(error(b') > error(b)) ≤ 1/2", i.e. when
 * P[Binomial(W + B, 1/2) ≥ W] ≤ α / (budgets − 1) (Bonferroni over the consecutive pairs).
 *
 * False-failure probability: for a method whose error with the larger budget is at least as
 * likely to drop as to rise (the median form of "error non-increasing in expectation"), one run
 * of the property fails with probability at most α (default 0.01). Run it with `numRuns: 1`;
 * k runs raise the bound to k·α. The pairs are drawn by fast-check, so the failure message's
 * seed and path replay the same draws.
 *
 * Power (catching a real regression) depends on the inputs: tiny n makes both errors tie, and
 * inputs where every budget is noise make the sign random. Draw inputs at a representative shape
 * and scale, or raise `pairs`, when the property must detect a reversal reliably.
 *
 * @example
 * ```ts
 * import { compile } from "./mod.ts";
 * import { assertProperty, budgetProperty } from "./testing.ts";
 * const src = `def f(q: [n, d], k: [n, d], v: [n, e], t = 0.5) -> [n, e] {
 *   return softmax(t * q @ k^T / sqrt(d), axis=1) @ v
 * }`;
 * // "budget" t: the temperature approaches exact attention's as t grows to 1
 * const prop = budgetProperty((t) => compile(src, { params: { t } }), [0.25, 0.5, 1], { pairs: 10 });
 * await assertProperty(prop, { numRuns: 1 });
 * ```
 */
export function budgetProperty(
  programFor: (budget: number) => Program | Promise<Program>,
  budgets: number[],
  options: BudgetOptions = {},
): fc.IAsyncPropertyWithHooks<[BudgetTrial[]]> {
  const pairs = options.pairs ?? 20, alpha = options.alpha ?? 0.01;
  if (budgets.length < 2) throw new RangeError("budgetProperty: give at least two budgets");
  const level = alpha / (budgets.length - 1);
  if (signTestPValue(pairs, 0) > level) {
    throw new RangeError(
      `budgetProperty: ${pairs} pairs can never reject at level ${level}; use more pairs`,
    );
  }
  const sorted = [...budgets].sort((a, b) => a - b);
  const cache = new Map<number, Promise<Program>>();
  const get = (b: number) => {
    if (!cache.has(b)) cache.set(b, Promise.resolve(programFor(b)));
    return cache.get(b)!;
  };
  const trials = fc.noShrink(
    fc.array(
      fc.record({
        inputs: options.inputs ?? attentionInputs({ maxN: 65, masks: ["none"] }),
        seed: seeds(),
      }),
      { minLength: pairs, maxLength: pairs },
    ),
  );
  return fc.asyncProperty(trials, async (draws) => {
    const errors: number[][] = sorted.map(() => []);
    for (const { inputs, seed } of draws) {
      const exact = referenceAttention(inputs.q, inputs.k, inputs.v, {
        mask: inputs.mask,
        scoreMod: options.scoreMod,
        maskMod: options.maskMod,
      });
      for (let b = 0; b < sorted.length; b++) {
        const y = await (await get(sorted[b])).run(plain(inputs), {
          backend: options.backend,
          seed,
        });
        errors[b].push((options.metric ?? relativeFrobeniusError)(y, exact));
      }
    }
    for (let b = 0; b + 1 < sorted.length; b++) {
      let worse = 0, better = 0;
      errors[b].forEach((e0, r) => {
        const e1 = errors[b + 1][r];
        if (e1 > e0 || (Number.isNaN(e1) && !Number.isNaN(e0))) worse++;
        else if (e1 < e0) better++;
      });
      const p = signTestPValue(worse, better);
      if (p <= level) {
        const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
        throw new Error(
          `budget ${sorted[b + 1]} was worse than budget ${sorted[b]} in ${worse} of ${pairs} ` +
            `pairs (better in ${better}); sign-test p = ${p.toExponential(3)} ≤ ${level} ` +
            `(α = ${alpha}); mean errors ${mean(errors[b]).toPrecision(4)} → ` +
            `${mean(errors[b + 1]).toPrecision(4)}`,
        );
      }
    }
  });
}

/**
 * `fc.check` a property and throw a short, replayable error if it fails: the seed and path
 * (pass them back as `{ seed, path, endOnFailure: true }` to replay only the failing case), the
 * shrunk counterexample (inputs print as `makeInputs({...})`) and the error.
 *
 * @example
 * ```ts
 * import fc from "npm:fast-check@4.10.2";
 * import { assertProperty } from "./testing.ts";
 * let message = "";
 * try {
 *   await assertProperty(fc.property(fc.nat(), (x) => x < 10), { seed: 42 });
 * } catch (e) {
 *   message = (e as Error).message;
 * }
 * if (!message.includes("seed: 42") || !message.includes("path:")) throw new Error(message);
 * ```
 */
export async function assertProperty<Ts>(
  property: fc.IAsyncProperty<Ts> | fc.IProperty<Ts>,
  params: fc.Parameters<Ts> = {},
): Promise<void> {
  const out = await fc.check(property as fc.IAsyncProperty<Ts>, params);
  if (!out.failed) return;
  const error = out.errorInstance instanceof Error
    ? out.errorInstance.message
    : String(out.errorInstance);
  throw new Error(
    [
      `Property failed after ${out.numRuns} run(s), shrunk ${out.numShrinks} time(s).`,
      `Replay: { seed: ${out.seed}, path: "${out.counterexamplePath}", endOnFailure: true }`,
      `Counterexample: ${out.counterexample ? fc.stringify(out.counterexample) : "(none)"}`,
      `Error: ${out.interrupted ? "interrupted" : error}`,
    ].join("\n"),
  );
}
