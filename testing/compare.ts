/**
 * Accuracy reports: one program against exact attention (`compareWithExact`), or one parameter
 * swept over values (`sweep`).
 */
import { type Backend, compile, type Program, type Tensor } from "../mod.ts";
import { type AttentionInputs, plain } from "./inputs.ts";
import { type MaskMod, referenceAttention, type ScoreMod } from "./reference.ts";
import { baselines, type ErrorMetrics, errorMetrics } from "./metrics.ts";

/** Options of `compareWithExact` and `sweep`. */
export interface CompareOptions {
  /**
   * Where the program runs: default `"interp"`, the float64 interpreter, deterministic on every
   * machine (unlike `Program.run`, whose default is `"auto"`); `"gpu"` or `"auto"` measure the
   * float32 kernels.
   */
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
 * import { compile } from "../mod.ts";
 * import { compareWithExact, makeInputs } from "../testing.ts";
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
  const output = await program.run(plain(inputs), {
    backend: options.backend ?? "interp",
    seed: options.seed,
  });
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
 * import { makeInputs, sweep } from "../testing.ts";
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
      output = await program.run(plain(inputs), { backend: options.backend ?? "interp", seed });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    out.push({ value, ms: times[times.length >> 1], ...errorMetrics(output!, exact) });
  }
  return out;
}
