/**
 * The statistical budget property: more budget should not make an approximation worse
 * (a one-sided sign test over paired draws).
 */
import fc from "npm:fast-check@4.10.2";
import type { Backend, Program, Tensor } from "../mod.ts";
import { type AttentionInputs, attentionInputs, plain, seeds } from "./inputs.ts";
import { type MaskMod, referenceAttention, type ScoreMod } from "./reference.ts";
import { relativeFrobeniusError } from "./metrics.ts";

/**
 * One-sided sign-test p-value: P[X ≥ worse] for X ~ Binomial(worse + better, 1/2) (ties are
 * dropped before counting).
 *
 * @example
 * ```ts
 * import { signTestPValue } from "../testing.ts";
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
  /**
   * Where the programs run: default `"interp"`, the float64 interpreter, deterministic on every
   * machine (unlike `Program.run`, whose default is `"auto"`).
   */
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
 * import { compile } from "../mod.ts";
 * import { assertProperty, budgetProperty } from "../testing.ts";
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
          backend: options.backend ?? "interp",
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
