/**
 * Metamorphic properties of attention that hold for any compiled `Program` (permutation, shift,
 * convex hull, causality, padding), and `assertProperty`, which runs a property and reports a
 * replayable failure.
 */
import fc from "npm:fast-check@4.10.2";
import { type Backend, type Program, randomTensor, type Tensor, whichBackend } from "../mod.ts";
import {
  type AttentionInputs,
  attentionInputs,
  type InputOptions,
  permutation,
  plain,
  seeds,
} from "./inputs.ts";
import { batchHead, broadcastLead, count, lead, leadOffset, sameShape } from "./layout.ts";
import type { MaskMod } from "./reference.ts";

/** Options shared by the property builders. */
export interface PropertyOptions {
  /** The inputs to draw (default: `attentionInputs` suited to the property and the program). */
  inputs?: fc.Arbitrary<AttentionInputs>;
  /**
   * Where the program runs: default `"interp"`, the float64 interpreter, deterministic on every
   * machine (unlike `Program.run`, whose default is `"auto"`).
   */
  backend?: Backend;
  /**
   * Allowed difference, relative to the larger of max |output| and max |v| (default 1e-9 on the
   * interpreter, 1e-4 on the GPU, which computes in float32; `"auto"` gets the one it picks).
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

async function tolerance(options: PropertyOptions): Promise<number> {
  if (options.tolerance !== undefined) return options.tolerance;
  return (await whichBackend(options.backend ?? "interp")) === "gpu" ? 1e-4 : 1e-9;
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
  compareRows(moved, base, scaleOf(base, x.v), await tolerance(options), what, rows, wantRow);
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
 * import { compile } from "../mod.ts";
 * import { assertProperty, permutationProperty } from "../testing.ts";
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
    const run = (y: AttentionInputs) =>
      program.run(plain(y), { backend: options.backend ?? "interp", seed });
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
 * import { compile } from "../mod.ts";
 * import { assertProperty, keyPermutationProperty } from "../testing.ts";
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
 * import { compile } from "../mod.ts";
 * import { assertProperty, shiftInvarianceProperty } from "../testing.ts";
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
    const run = (y: AttentionInputs) =>
      program.run(plain(y), { backend: options.backend ?? "interp", seed });
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
 * import { compile } from "../mod.ts";
 * import { assertProperty, convexHullProperty } from "../testing.ts";
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
    const y = await program.run(plain(x), { backend: options.backend ?? "interp", seed });
    const n = y.shape.at(-2)!, e = y.shape.at(-1)!, m = x.v.shape.at(-2)!;
    const outLead = y.shape.slice(0, -2);
    const vLead = lead(x.v, 2);
    const real = maskLookup(x.mask, outLead);
    const limit = (await tolerance(options)) * scaleOf(y, x.v);
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
 * import { compile } from "../mod.ts";
 * import { assertProperty, causalityProperty } from "../testing.ts";
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
    const run = (y: AttentionInputs) =>
      program.run(plain(y), { backend: options.backend ?? "interp", seed });
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
 * import { compile } from "../mod.ts";
 * import { assertProperty, paddingInvarianceProperty } from "../testing.ts";
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
    const run = (y: AttentionInputs) =>
      program.run(plain(y), { backend: options.backend ?? "interp", seed });
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
 * `fc.check` a property and throw a short, replayable error if it fails: the seed and path
 * (pass them back as `{ seed, path, endOnFailure: true }` to replay only the failing case), the
 * shrunk counterexample (inputs print as `makeInputs({...})`) and the error.
 *
 * @example
 * ```ts
 * import fc from "npm:fast-check@4.10.2";
 * import { assertProperty } from "../testing.ts";
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
