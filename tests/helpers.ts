/**
 * Shared pieces of the seed-method tests (exact, Nyström, YOSO, Skeinformer): loading and caching
 * the example programs, fast-check arbitraries for awkward shapes, masks, token permutations, and
 * direct float64 reference formulas written from scratch here (they share no code with the
 * compiler, the interpreter or examples/reference.ts).
 *
 * Layout conventions: a token tensor is [...batch, n, w] (w = d or e), a mask is [...lead, n] with
 * `lead` a prefix of `batch` (leading dims are matched from the left, like the interpreter does).
 */
import fc from "fast-check";
import { compileSync, type Program, randomTensor, type Tensor } from "../mod.ts";
import { softmaxAttention } from "../examples/reference.ts";

// ---------------------------------------------------------------------------------------------
// Programs

const sources = new Map<string, string>();
const programs = new Map<string, Program>();

/** The text of `examples/<file>`. */
export function source(file: string): string {
  let s = sources.get(file);
  if (s === undefined) {
    s = Deno.readTextFileSync(new URL(`../examples/${file}`, import.meta.url));
    sources.set(file, s);
  }
  return s;
}

/** `examples/<file>` compiled with these parameters and entry (cached). */
export function program(
  file: string,
  params: Record<string, number | boolean> = {},
  entry?: string,
): Program {
  const key = JSON.stringify([file, params, entry ?? null]);
  let p = programs.get(key);
  if (!p) {
    p = compileSync(source(file), { params, entry, file });
    programs.set(key, p);
  }
  return p;
}

/** Run `examples/<file>` on the interpreter. */
export function run(
  file: string,
  inputs: Record<string, Tensor>,
  params: Record<string, number | boolean> = {},
  options: { entry?: string; seed?: number } = {},
): Promise<Tensor> {
  return program(file, params, options.entry).run(inputs, {
    seed: options.seed,
    backend: "interp",
  });
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Awkward token counts: 1, 2, odd, one below and above a power of two, not a power of two. */
export const N = fc.constantFrom(1, 2, 7, 63, 65, 100);
/** Head widths (query/key). */
export const D = fc.constantFrom(1, 4, 16, 32);
/** Value widths, drawn independently of D. */
export const E = fc.constantFrom(1, 4, 16, 32);
/** Leading batch/head dims: none most often, sometimes [batch] or [batch, heads]. */
export const BATCH = fc.constantFrom<number[]>([], [], [2], [2, 3]);
/** Seeds for randomTensor / masks / permutations (consecutive offsets stay below 2^31). */
export const SEED = fc.integer({ min: 0, max: 1 << 30 });

/** Number of (batch, head) slices of a batch shape. */
export function count(batch: number[]): number {
  return batch.reduce((a, b) => a * b, 1);
}

// ---------------------------------------------------------------------------------------------
// Tensors

/** A float tensor from a shape and values. */
export function T(shape: number[], data: ArrayLike<number>): Tensor {
  return { shape: [...shape], data: Float64Array.from(data), dtype: "float" };
}

/** Gaussian data with this seed and scale (never all zeros). */
export function gauss(shape: number[], seed: number, scale = 1): Tensor {
  return randomTensor(shape, { seed, scale });
}

/** [...batch, n, w] whose rows all equal `row` (length w). */
export function constantRows(batch: number[], n: number, row: ArrayLike<number>): Tensor {
  const w = row.length;
  const data = new Float64Array(count(batch) * n * w);
  for (let i = 0; i < data.length; i++) data[i] = row[i % w];
  return T([...batch, n, w], data);
}

/**
 * A 0/1 mask of shape [...lead, n]: each row has about `pZero` zeros at random places and at
 * least one 1; with `prefix`, the ones form a prefix of random length in [1, n] instead
 * (right padding, as Skeinformer assumes).
 */
export function randomMask(
  lead: number[],
  n: number,
  seed: number,
  options: { prefix?: boolean; pZero?: number } = {},
): Tensor {
  const rows = count(lead);
  const u = randomTensor([rows, n + 1], { seed, kind: "uniform" }).data;
  const data = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const o = r * (n + 1);
    if (options.prefix) {
      const valid = 1 + Math.floor(u[o + n] * n);
      data.fill(1, r * n, r * n + valid);
    } else {
      let any = false;
      for (let j = 0; j < n; j++) {
        data[r * n + j] = u[o + j] < (options.pZero ?? 0.3) ? 0 : 1;
        any ||= data[r * n + j] === 1;
      }
      if (!any) data[r * n + Math.floor(u[o + n] * n)] = 1;
    }
  }
  return T([...lead, n], data);
}

/** Random q, k, v (and a mask over the first `masking - 1` batch dims when `masking > 0`). */
export type Qkv = {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  mask?: Tensor;
};

/** Gaussian q, k, v of shapes [...batch, n, d|e], with an optional random mask. */
export function makeQkv(
  batch: number[],
  n: number,
  dims: { d: number; e: number },
  seed: number,
  masking: number,
  maskOptions: { prefix?: boolean } = {},
): Qkv {
  const x: Qkv = {
    q: gauss([...batch, n, dims.d], seed),
    k: gauss([...batch, n, dims.d], seed + 1),
    v: gauss([...batch, n, dims.e], seed + 2),
  };
  if (masking > 0) x.mask = randomMask(batch.slice(0, masking - 1), n, seed + 3, maskOptions);
  return x;
}

/** The mask row (length n) that slice `s` of a batch shape uses; all ones without a mask. */
export function maskRow(mask: Tensor | undefined, batch: number[], s: number, n: number) {
  if (!mask) return new Float64Array(n).fill(1);
  const lead = mask.shape.slice(0, -1);
  const idx: number[] = new Array(batch.length);
  let rem = s;
  for (let i = batch.length - 1; i >= 0; i--) {
    idx[i] = rem % batch[i];
    rem = Math.floor(rem / batch[i]);
  }
  let off = 0;
  for (let i = 0; i < lead.length; i++) off = off * lead[i] + (lead[i] === 1 ? 0 : idx[i]);
  return mask.data.subarray(off * n, off * n + n);
}

export { permutation } from "../testing/inputs.ts";

/**
 * Reorder the token axis: out[..., i, :] = t[..., perm[i], :]. The token axis is the second to
 * last for q/k/v (`matrix`, the default) and the last one for a mask (`matrix` = false).
 */
export function permuteTokens(t: Tensor, perm: number[], matrix = true): Tensor {
  const r = t.shape.length;
  const n = t.shape[matrix ? r - 2 : r - 1];
  const w = matrix ? t.shape[r - 1] : 1;
  const out = new Float64Array(t.data.length);
  for (let b = 0; b < t.data.length / (n * w); b++) {
    for (let i = 0; i < n; i++) {
      out.set(t.data.subarray((b * n + perm[i]) * w, (b * n + perm[i] + 1) * w), (b * n + i) * w);
    }
  }
  return { ...t, shape: [...t.shape], data: out };
}

/** [...batch, n, w] with the rows of masked tokens zeroed (as the Nyström/Skein programs do). */
export function maskRows(t: Tensor, mask: Tensor | undefined): Tensor {
  if (!mask) return t;
  const r = t.shape.length, n = t.shape[r - 2], w = t.shape[r - 1];
  const batch = t.shape.slice(0, -2);
  const out = Float64Array.from(t.data);
  for (let s = 0; s < count(batch); s++) {
    const m = maskRow(mask, batch, s, n);
    for (let i = 0; i < n; i++) if (!(m[i] > 0)) out.fill(0, (s * n + i) * w, (s * n + i + 1) * w);
  }
  return { ...t, shape: [...t.shape], data: out };
}

/** Euclidean norm of every row of the last axis. */
export function rowNorms(y: Tensor): number[] {
  const e = y.shape[y.shape.length - 1];
  const out: number[] = [];
  for (let r = 0; r < y.data.length / e; r++) {
    let s = 0;
    for (let c = 0; c < e; c++) s += y.data[r * e + c] ** 2;
    out.push(Math.sqrt(s));
  }
  return out;
}

/** Largest |x| of a tensor or array. */
export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

// ---------------------------------------------------------------------------------------------
// Direct float64 references

/**
 * Exact masked softmax attention, softmax_j(q_i·k_j/√d, or -1e9 where mask_j = 0) · V, per slice:
 * q [...batch, n, d], k [...batch, m, d], v [...batch, m, e], mask [...lead, m] or none.
 * The softmax is max-subtracted; a row whose keys are all masked averages every v_j (as -1e9 does).
 */
export function exactAttention(q: Tensor, k: Tensor, v: Tensor, mask?: Tensor): Tensor {
  const r = q.shape.length;
  const batch = q.shape.slice(0, -2), m = k.shape[r - 2];
  const rows = Array.from({ length: count(batch) }, (_, s) => maskRow(mask, batch, s, m));
  return softmaxAttention(q, k, v, (x, _i, j, slice) => (rows[slice][j] > 0 ? x : -1e9));
}

/** cos(q_i, k_j) computed directly, for [n, d] and [m, d]. Zero rows give NaN. */
export function cosine(q: Tensor, k: Tensor, i: number, j: number): number {
  const d = q.shape[q.shape.length - 1];
  let dot = 0, a = 0, b = 0;
  for (let c = 0; c < d; c++) {
    const x = q.data[i * d + c], y = k.data[j * d + c];
    dot += x * y;
    a += x * x;
    b += y * y;
  }
  return dot / Math.sqrt(a * b);
}

/** Row i of [..., n, w] as a copy. */
export function row(t: Tensor, i: number): number[] {
  const w = t.shape[t.shape.length - 1];
  return [...t.data.subarray(i * w, i * w + w)];
}
