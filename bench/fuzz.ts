/**
 * Volume fuzzing of the optimizer and the GPU lowering, outside the test suite:
 *
 *   deno task fuzz -- --count 100000 --gpu 200 [--seed N] [--chunk 1000]
 *
 * Generated programs (tests/programs.ts, the same arbitraries as tests/differential_test.ts, so a
 * reported seed and path reproduce there with ATTUNE_DIFF_SEED / ATTUNE_DIFF_PATH) run on the
 * float64 interpreter as checked and after every pass, and are planned (lowering and its plan
 * checks; no GPU needed); `--gpu` of them also run on WebGPU against the interpreter. Programs are checked in chunks of `--chunk`, each an `fc.check` with its own
 * seed; a failing chunk is shrunk, reported and the fuzzing goes on with the next chunk.
 * Writes bench/results/fuzz.json.
 */
import fc from "fast-check";
import { getDevice } from "../runtime/device.ts";
import { fullTiles } from "../compiler/limits.ts";
import {
  compileSpec,
  GPU_BUCKETS,
  gpuDifferential,
  interpDifferential,
  report,
  SMALL_SIZES,
  type Spec,
  specArb,
} from "../tests/programs.ts";

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(Deno.args[i + 1]);
  if (!Number.isFinite(v)) throw new Error(`--${name} expects a number`);
  return v;
}

const count = flag("count", 100_000);
const gpuCount = flag("gpu", 200);
const seed = flag("seed", 1);
const chunk = flag("chunk", 1000);

interface Failure {
  kind: "interp" | "gpu";
  seed: number;
  path: string;
  message: string;
}

const failures: Failure[] = [];
/** The slowest programs (compile + passes + interpreter differential + plan), in ms. */
const slowest: { kind: string; ms: number; source: string }[] = [];
function timed(kind: string, source: string, ms: number): void {
  if (slowest.length < 5 || ms > slowest[slowest.length - 1].ms) {
    slowest.push({ kind, ms: Math.round(ms), source });
    slowest.sort((a, b) => b.ms - a.ms);
    slowest.length = Math.min(slowest.length, 5);
  }
}

async function fuzz(
  kind: "interp" | "gpu",
  total: number,
  prop: (
    n: number,
  ) => fc.IAsyncProperty<[Spec, number | undefined, boolean]> | fc.IProperty<[Spec]>,
): Promise<{ checked: number; ms: number }> {
  const t0 = performance.now();
  let checked = 0;
  for (let c = 0; checked < total; c++) {
    const n = Math.min(chunk, total - checked);
    const s = seed * 1_000_003 + c + (kind === "gpu" ? 500_000 : 0);
    const r = await fc.check(prop(n) as fc.IAsyncProperty<[Spec, number | undefined, boolean]>, {
      numRuns: n,
      seed: s,
    });
    checked += r.failed ? r.numRuns : n;
    if (r.failed) {
      const message = r.errorInstance instanceof Error
        ? r.errorInstance.message
        : String(r.errorInstance);
      failures.push({ kind, seed: r.seed, path: r.counterexamplePath ?? "", message });
      console.log(
        `\n${kind} failure (reproduce: ATTUNE_DIFF_SEED=${r.seed} ATTUNE_DIFF_PATH=${r.counterexamplePath})\n${message}\n`,
      );
    }
    const ms = performance.now() - t0;
    console.log(
      `${kind}: ${checked}/${total} programs, ${(checked / (ms / 1000)).toFixed(1)}/s, ` +
        `${failures.filter((f) => f.kind === kind).length} failures`,
    );
  }
  return { checked, ms: performance.now() - t0 };
}

const interp = await fuzz(
  "interp",
  count,
  () =>
    fc.property(specArb({ sizes: SMALL_SIZES }), (spec) => {
      const t0 = performance.now();
      const c = compileSpec(spec);
      const d = interpDifferential(c);
      if (d) throw new Error(report(c, `pass "${d.pass}" changed the result: ${d.detail}`));
      try {
        c.program.plan();
      } catch (e) {
        throw new Error(report(c, `plan() threw ${e instanceof Error ? e.message : String(e)}`));
      }
      timed("interp", c.source, performance.now() - t0);
    }),
);

let gpu = { checked: 0, ms: 0 };
let adapter: string | undefined;
if (gpuCount > 0) {
  adapter = await getDevice().then((d) => d.facts.description, (e) => {
    console.log(`GPU share skipped: ${e.message}`);
    return undefined;
  });
  if (adapter) {
    // The same arbitraries as the GPU test of tests/differential_test.ts.
    gpu = await fuzz("gpu", gpuCount, () =>
      fc.asyncProperty(
        specArb({ sizes: SMALL_SIZES, depth: 2, buckets: GPU_BUCKETS }),
        fc.constantFrom(undefined, 8),
        // Full key blocks run unmasked (compiler/limits.ts `fullTiles`, off by default).
        fc.boolean(),
        async (spec, maxStorageBuffers, full) => {
          const t0 = performance.now();
          fullTiles.scores = full;
          try {
            const c = compileSpec(spec);
            const lower = maxStorageBuffers ? { maxStorageBuffers } : undefined;
            const why = await gpuDifferential(c, { lower });
            const how = `${lower ? " (8 bindings)" : ""}${full ? " (full tiles)" : ""}`;
            if (why) throw new Error(report(c, `GPU${how}: ${why}`));
            timed("gpu", c.source, performance.now() - t0);
          } finally {
            fullTiles.scores = false;
          }
        },
      ));
  }
}

const result = {
  date: new Date().toISOString(),
  seed,
  chunk,
  interp: {
    programs: interp.checked,
    seconds: interp.ms / 1000,
    perSecond: interp.checked / (interp.ms / 1000),
  },
  gpu: {
    adapter: adapter ?? null,
    programs: gpu.checked,
    seconds: gpu.ms / 1000,
    perSecond: gpu.checked ? gpu.checked / (gpu.ms / 1000) : 0,
  },
  slowest,
  failures,
};
await Deno.mkdir(new URL("./results/", import.meta.url), { recursive: true });
await Deno.writeTextFile(
  new URL("./results/fuzz.json", import.meta.url),
  JSON.stringify(result, null, 2) + "\n",
);
console.log(
  `\n${interp.checked} interpreter programs in ${(interp.ms / 1000).toFixed(1)} s ` +
    `(${result.interp.perSecond.toFixed(1)}/s), ${gpu.checked} on the GPU in ` +
    `${(gpu.ms / 1000).toFixed(1)} s; ${failures.length} failures; wrote bench/results/fuzz.json`,
);
