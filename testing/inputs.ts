/**
 * Attention inputs: fast-check arbitraries of awkward sizes, batch dims, values and masks, and
 * `makeInputs`, which rebuilds any drawn input from its printed spec.
 */
import fc from "npm:fast-check@4.10.2";
import { randomTensor, type Tensor } from "../mod.ts";

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
 * import { awkwardSize } from "../testing.ts";
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
 * import { batchDims } from "../testing.ts";
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
 * import { seeds } from "../testing.ts";
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
 * import { attentionInputs } from "../testing.ts";
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
 * import { makeInputs } from "../testing.ts";
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

/** The inputs as a plain record (what `Program.run` takes). */
export function plain(x: AttentionInputs): Record<string, Tensor> {
  const r: Record<string, Tensor> = { q: x.q, k: x.k, v: x.v };
  if (x.mask) r.mask = x.mask;
  return r;
}

/** A seeded uniformly random permutation of 0..n-1 (Fisher–Yates). */
export function permutation(n: number, seed: number): number[] {
  const u = randomTensor([n], { seed, kind: "uniform" }).data;
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u[i] * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}
