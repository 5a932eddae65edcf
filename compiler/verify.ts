/**
 * Translation validation of the optimizer: run the checked graph and the graph after every pass
 * on the float64 interpreter with the same random inputs, and name the first pass whose result
 * differs beyond float64 rounding. The interpreter runs every stage (attention and probabilities
 * nodes included), so this checks each rewrite against the program as written, independently of
 * code generation. Used by `attune check --verify`, `attune explain --verify`, the differential
 * tests and the fuzzing bench.
 */
import { AttuneError } from "./errors.ts";
import { interpretAll } from "./interp.ts";
import type { Graph } from "./ir/types.ts";
import type { Tensor } from "./tensor.ts";

/** A graph after one optimization pass. */
export interface Stage {
  /** The pass name. */
  pass: string;
  /** The graph after it. */
  graph: Graph;
}

/** Default tolerance: max |a − b| over the larger magnitude of the two results. */
export const VERIFY_RTOL = 1e-9;

/**
 * Why two results differ, or undefined when they agree: same shape, NaN in the same places,
 * infinities equal, and max |a − b| ≤ rtol · max(|a|, |b|) over the finite elements.
 */
export function compareResults(
  expected: Tensor,
  got: Tensor,
  rtol = VERIFY_RTOL,
): string | undefined {
  if (
    expected.shape.length !== got.shape.length ||
    expected.shape.some((d, i) => d !== got.shape[i])
  ) {
    return `shape [${got.shape.join(", ")}], expected [${expected.shape.join(", ")}]`;
  }
  let scale = 0;
  for (let i = 0; i < expected.data.length; i++) {
    const a = expected.data[i], b = got.data[i];
    if (Number.isFinite(a)) scale = Math.max(scale, Math.abs(a));
    if (Number.isFinite(b)) scale = Math.max(scale, Math.abs(b));
  }
  let worst = -1, worstErr = 0;
  for (let i = 0; i < expected.data.length; i++) {
    const a = expected.data[i], b = got.data[i];
    if (Number.isNaN(a) || Number.isNaN(b)) {
      if (Number.isNaN(a) !== Number.isNaN(b)) return at(i, a, b, "NaN in one result only");
      continue;
    }
    if (!Number.isFinite(a) || !Number.isFinite(b)) {
      if (a !== b) return at(i, a, b, "infinite in one result only");
      continue;
    }
    const err = Math.abs(a - b);
    if (err > worstErr) [worst, worstErr] = [i, err];
  }
  if (worst >= 0 && worstErr > rtol * scale) {
    const rel = worstErr / scale;
    return at(
      worst,
      expected.data[worst],
      got.data[worst],
      `error ${rel.toExponential(2)} of the scale ${scale.toExponential(2)} (tolerance ${rtol})`,
    );
  }
  return undefined;
}

function at(i: number, a: number, b: number, why: string): string {
  return `flat index ${i}: got ${b}, expected ${a}: ${why}`;
}

/** Where a run of the stages first departed from the checked graph. */
export interface Divergence {
  /** The first pass whose graph gives a different result. */
  pass: string;
  /** Its index in the stages. */
  index: number;
  /** What differs (or what the stage threw). */
  detail: string;
}

/**
 * Interpret `graph` and every stage on `inputs`; the first stage whose result differs from the
 * checked graph's (or that throws), or undefined when every stage agrees. Errors of the checked
 * graph itself (bad inputs) propagate.
 */
export function firstDivergence(
  graph: Graph,
  stages: readonly Stage[],
  inputs: Record<string, Tensor>,
  options: { seed?: number; rtol?: number } = {},
): Divergence | undefined {
  const expected = interpretAll(graph, inputs, { seed: options.seed });
  for (let index = 0; index < stages.length; index++) {
    const { pass, graph: g } = stages[index];
    let got: Tensor[];
    try {
      got = interpretAll(g, inputs, { seed: options.seed });
    } catch (e) {
      return { pass, index, detail: `threw ${e instanceof Error ? e.message : String(e)}` };
    }
    for (const [k, want] of expected.entries()) {
      const why = compareResults(want, got[k], options.rtol);
      const which = expected.length > 1 ? `result ${k + 1}: ` : "";
      if (why !== undefined) return { pass, index, detail: which + why };
    }
  }
  return undefined;
}

/** Options of `verify`. */
export interface VerifyOptions {
  /** Random input sets to try (default 8). */
  trials?: number;
  /** Values each size symbol is drawn from (default 1, 2, 3, 5, 7, 8, 13). */
  sizes?: readonly number[];
  /** Seed of the input data and size choices (default 1). */
  seed?: number;
  /** Tolerance of `compareResults` (default VERIFY_RTOL). */
  rtol?: number;
}

/** What `verify` found. */
export interface VerifyReport {
  /** True when at least one trial ran and every trial agreed at every pass. */
  ok: boolean;
  /** Trials that ran (the checked graph accepted the sizes). */
  trials: number;
  /** Trials skipped because the checked graph rejected the drawn sizes (e.g. landmarks > n). */
  skipped: number;
  /** When no trial ran: why the program rejected the last sizes tried. */
  rejection?: string;
  /** The first divergence found, with the sizes and seed that show it. */
  failure?: Divergence & { sizes: Record<string, number>; seed: number };
}

/**
 * Check that every optimization pass preserves the program's result: run the checked graph and
 * each stage on random inputs (each size symbol bound to a small awkward value, drawn anew per
 * trial; random draws seeded per trial) and report the first pass that changed the result.
 */
export function verify(
  program: { graph: Graph; passes: readonly Stage[] },
  options: VerifyOptions = {},
): VerifyReport {
  const sizes = options.sizes ?? [1, 2, 3, 5, 7, 8, 13];
  const trials = options.trials ?? 8;
  const next = mulberry32(options.seed ?? 1);
  let ran = 0, skipped = 0, rejection: string | undefined;
  for (let t = 0; t < trials; t++) {
    const drawn: Record<string, number> = {};
    for (const s of Object.keys(program.graph.symbols)) {
      drawn[s] = sizes[Math.floor(next() * sizes.length)];
    }
    // A program may need larger sizes (Nyström: n ≥ landmarks): grow them until it accepts.
    for (const grow of SIZE_STEPS) {
      const bound = Object.fromEntries(Object.entries(drawn).map(([s, v]) => [s, v + grow]));
      const inputs = randomInputs(program.graph, bound, next);
      const seed = Math.floor(next() * 1000);
      let d: Divergence | undefined;
      try {
        d = firstDivergence(program.graph, program.passes, inputs, { seed, rtol: options.rtol });
      } catch (e) {
        if (!(e instanceof AttuneError)) throw e;
        skipped++;
        rejection = e.message;
        continue;
      }
      ran++;
      if (d) return { ok: false, trials: ran, skipped, failure: { ...d, sizes: bound, seed } };
      break;
    }
  }
  return { ok: ran > 0, trials: ran, skipped, rejection: ran > 0 ? undefined : rejection };
}

/** What `verify` adds to every drawn size when the program rejects the sizes before. */
const SIZE_STEPS = [0, 16, 64, 256];

/** Inputs of a graph at these sizes: Gaussian floats, ints in 0..2, bools about 70% true. */
export function randomInputs(
  graph: Graph,
  sizes: Record<string, number>,
  next: () => number,
): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const decl of graph.inputs) {
    const shape = decl.type.shape.map((d) => (typeof d === "number" ? d : sizes[d] ?? 1));
    const data = new Float64Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) {
      if (decl.type.dtype === "int") data[i] = Math.floor(next() * 3);
      else if (decl.type.dtype === "bool") data[i] = next() < 0.7 ? 1 : 0;
      else data[i] = Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
    }
    if (data.length && data.every((x) => x === 0)) data[0] = 1;
    out[decl.name] = { shape, data, dtype: decl.type.dtype };
  }
  return out;
}

/** mulberry32: a tiny seeded generator of uniforms in [0, 1) for test data. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
