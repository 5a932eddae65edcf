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
export {
  attentionInputs,
  AWKWARD_SIZES,
  AWKWARD_WIDTHS,
  awkwardSize,
  batchDims,
  makeInputs,
  seeds,
} from "./testing/inputs.ts";
export type {
  AttentionInputs,
  InputOptions,
  InputSpec,
  MaskKind,
  ValueKind,
} from "./testing/inputs.ts";
export { referenceAttention } from "./testing/reference.ts";
export type { MaskMod, ReferenceOptions, ScoreMod } from "./testing/reference.ts";
export {
  baselines,
  errorMetrics,
  maxAbsoluteError,
  meanOfValues,
  normalizeRows,
  relativeFrobeniusError,
  rowCosine,
  spectralNorms,
} from "./testing/metrics.ts";
export type { ErrorMetrics } from "./testing/metrics.ts";
export { compareWithExact, sweep } from "./testing/compare.ts";
export type { CompareOptions, Comparison, SweepPoint } from "./testing/compare.ts";
export {
  assertProperty,
  causalityProperty,
  convexHullProperty,
  keyPermutationProperty,
  paddingInvarianceProperty,
  permutationProperty,
  shiftInvarianceProperty,
} from "./testing/properties.ts";
export type {
  AttentionProperty,
  ConvexOptions,
  PermutationOptions,
  PropertyOptions,
} from "./testing/properties.ts";
export { budgetProperty, signTestPValue } from "./testing/budget.ts";
export type { BudgetOptions, BudgetTrial } from "./testing/budget.ts";
