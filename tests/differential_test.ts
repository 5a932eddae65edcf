/**
 * The differential oracle, the gate for every optimization pass: random valid attention programs
 * (tests/programs.ts) run on the float64 interpreter as checked and after each pass; any
 * difference beyond float64 rounding fails with the program, the inputs' shapes, the fast-check
 * seed and path, and the first pass that changed the result. A smaller sample runs on the GPU
 * against the interpreter. The oracle's sensitivity is checked too: swapping the grid axis of
 * fused score leaves must be caught.
 *
 * Reproduce a failure: set ATTUNE_DIFF_SEED (and ATTUNE_DIFF_PATH) to the printed values;
 * ATTUNE_DIFF_RUNS changes the number of programs.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { CompileError, compileSync, randomTensor, relativeError, verify } from "../mod.ts";
import { firstDivergence } from "../compiler/verify.ts";
import { interpret } from "../compiler/interp.ts";
import { getDevice } from "../runtime/device.ts";
import { lowerGraph } from "../compiler/lower/lower.ts";
import {
  fullTiles,
  LOOPS,
  PARTIAL_TABLE_BUCKETS,
  PRIVATE_TABLE_BUCKETS,
} from "../compiler/limits.ts";
import { main } from "../cli.ts";
import {
  AWKWARD_SIZES,
  type Compiled,
  compileSpec,
  features,
  GPU_BUCKETS,
  gpuDifferential,
  interpDifferential,
  printProgram,
  report,
  SMALL_SIZES,
  type Spec,
  specArb,
  swapLeafAxes,
} from "./programs.ts";

/** An environment variable, when the test may read it (`--allow-env`). */
const env = (k: string): string | undefined => {
  try {
    return Deno.env.get(k);
  } catch {
    return undefined;
  }
};
const SEED = Number(env("ATTUNE_DIFF_SEED") ?? 0xd1ff);
const PATH = env("ATTUNE_DIFF_PATH");
const RUNS = Number(env("ATTUNE_DIFF_RUNS") ?? 400);

/** Compile a spec; a CompileError means the generator produced an invalid program. */
function compileOrFail(spec: Spec): Compiled {
  try {
    return compileSpec(spec);
  } catch (e) {
    if (e instanceof CompileError) {
      throw new Error(`generator bug: the compiler rejected\n${printProgram(spec)}\n${e.format()}`);
    }
    throw e;
  }
}

/** fc.check, rethrowing a failure with its seed and path (and the property's own message). */
async function checkProperty<T>(
  name: string,
  prop: fc.IAsyncProperty<T> | fc.IProperty<T>,
  numRuns: number,
): Promise<void> {
  const result = await fc.check(prop as fc.IAsyncProperty<T>, {
    numRuns,
    seed: SEED,
    path: PATH,
    endOnFailure: PATH === undefined ? false : true,
  });
  if (result.failed) {
    const err = result.errorInstance instanceof Error
      ? result.errorInstance.message
      : String(result.errorInstance);
    throw new Error(
      `${name} failed after ${result.numRuns} runs (shrunk ${result.numShrinks} times)\n` +
        `reproduce: ATTUNE_DIFF_SEED=${result.seed} ATTUNE_DIFF_PATH=${result.counterexamplePath}\n` +
        err,
    );
  }
}

Deno.test("differential: every pass preserves the interpreter's result on generated programs", async () => {
  let programs = 0,
    fused = 0,
    iShared = 0,
    probs = 0,
    inLoop = 0,
    reassociated = 0,
    tables = 0,
    summed = 0,
    rowLse = 0,
    rowSum = 0,
    written = 0;
  const t0 = performance.now();
  await checkProperty(
    "interpreter differential",
    fc.property(specArb({ sizes: SMALL_SIZES }), (spec) => {
      const c = compileOrFail(spec);
      const d = interpDifferential(c);
      if (d) throw new Error(report(c, `pass "${d.pass}" changed the result: ${d.detail}`));
      const f = features(c);
      programs++;
      if (f.attention) fused++;
      if (f.probs) probs++;
      if (f.iLeafShared) iShared++;
      if (f.inLoop) inLoop++;
      if (f.table) tables++;
      if (f.summed) summed++;
      if (f.rowLse) rowLse++;
      if (f.rowSum) rowSum++;
      if (f.written) written++;
      if (f.changed.includes("reassociate")) reassociated++;
    }),
    RUNS,
  );
  const ms = performance.now() - t0;
  console.log(
    `${programs} programs in ${ms.toFixed(0)} ms: ${fused} with fused attention, ${iShared} ` +
      `reading a query vector with n shared, ${probs} probs, ${inLoop} fused inside a loop, ` +
      `${reassociated} reassociated, ${tables} reading a table at (i, j), ${summed} summing ` +
      `weights without softmax, ${rowLse} giving the row log-sum-exp from the flash pass, ` +
      `${rowSum} their row sums of weights, ${written} a softmax written out`,
  );
  // The generator must keep reaching what the passes rewrite.
  if (RUNS >= 200) {
    assert.ok(fused >= programs / 4, `only ${fused} of ${programs} fuse attention`);
    assert.ok(iShared >= programs / 20, `only ${iShared} read a per-query leaf with n shared`);
    assert.ok(probs >= 5, `only ${probs} fuse probabilities`);
    assert.ok(inLoop >= 3, `only ${inLoop} fuse attention inside a loop`);
    assert.ok(reassociated >= 5, `only ${reassociated} reassociate`);
    assert.ok(tables >= 5, `only ${tables} fuse a table read at (i, j)`);
    assert.ok(summed >= 5, `only ${summed} fuse weights without softmax`);
    assert.ok(rowLse >= 5, `only ${rowLse} give the row log-sum-exp from the flash pass`);
    assert.ok(rowSum >= 5, `only ${rowSum} give row sums of weights from the pass`);
    assert.ok(written >= 5, `only ${written} fuse a softmax written out`);
  }
});

Deno.test("differential: awkward sizes up to 100, fewer programs", async () => {
  await checkProperty(
    "interpreter differential (awkward sizes)",
    fc.property(specArb({ sizes: AWKWARD_SIZES, maxExtras: 1, depth: 2 }), (spec) => {
      const c = compileOrFail(spec);
      const d = interpDifferential(c);
      if (d) throw new Error(report(c, `pass "${d.pass}" changed the result: ${d.detail}`));
    }),
    Math.max(1, Math.round(RUNS / 8)),
  );
});

Deno.test("differential: the oracle catches fused leaves read at the wrong axis", () => {
  // Mutation check: with every fused leaf at i read at j instead, programs that read a
  // per-query vector with n shared must (mostly) be caught by the comparison.
  const specs = fc.sample(specArb({ sizes: SMALL_SIZES }), { numRuns: RUNS, seed: SEED });
  let candidates = 0, caught = 0;
  for (const spec of specs) {
    const c = compileOrFail(spec);
    if (!features(c).iLeafShared) continue;
    candidates++;
    const stages = c.program.passes.map((s) => ({ ...s, graph: swapLeafAxes(s.graph, "i") }));
    if (firstDivergence(c.program.graph, stages, c.inputs, { seed: 7 })) caught++;
  }
  console.log(`mutation i→j: ${caught} of ${candidates} candidate programs caught`);
  assert.ok(candidates >= 10, `only ${candidates} candidates`);
  // Some mutants are equivalent (n = 1, a leaf constant over the row); most must be caught.
  assert.ok(caught >= candidates / 3, `only ${caught} of ${candidates} mutants caught`);
});

Deno.test("verify: API names the first pass that changed the result", () => {
  const src = `def f(q: [n, d], k: [n, d], v: [n, e], t: [n]) -> [n, e] {
  s[i, j] = where(j <= i, q[i] . k[j] + t[i], -inf)
  return softmax(s, axis=1) @ v
}`;
  const p = compileSync(src);
  const ok = verify(p, { trials: 4 });
  assert.equal(ok.ok, true);
  assert.ok(ok.trials >= 1);
  // A broken attention-fusion stage is reported as the first changing pass.
  const broken = p.passes.map((s, i) =>
    i >= p.passes.findIndex((x) => x.pass === "attention fusion")
      ? { ...s, graph: swapLeafAxes(s.graph, "i") }
      : s
  );
  const bad = verify({ graph: p.graph, passes: broken }, { trials: 4 });
  assert.equal(bad.ok, false);
  assert.equal(bad.failure?.pass, "attention fusion");
  assert.ok(bad.failure!.sizes.n > 1);
});

Deno.test("verify: `check --verify` and `explain --verify` on the command line", async () => {
  const file = await Deno.makeTempFile({ dir: "/tmp", suffix: ".attn" });
  try {
    await Deno.writeTextFile(
      file,
      `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  return softmax(q @ k^T / sqrt(d), axis=1) @ v
}`,
    );
    for (const command of ["check", "explain"]) {
      const lines: string[] = [];
      const log = console.log;
      console.log = (...xs: unknown[]) => lines.push(xs.join(" "));
      let code: number;
      try {
        code = await main([command, file, "--verify"]);
      } finally {
        console.log = log;
      }
      const out = lines.join("\n");
      assert.equal(code, 0, out);
      assert.match(out, /verify: \d+ trials?, every pass preserves the result/);
    }
    // --verify is not an option of run.
    const errors: string[] = [];
    const error = console.error;
    console.error = (...xs: unknown[]) => errors.push(xs.join(" "));
    try {
      assert.equal(await main(["run", file, "--verify", "--out", "/tmp/x.npy"]), 2);
    } finally {
      console.error = error;
    }
    assert.match(errors.join("\n"), /--verify goes with check or explain/);
  } finally {
    await Deno.remove(file);
  }
});

const adapter = await getDevice().then((d) => d.facts.description, (e) => {
  console.error(`GPU differential skipped: ${e.message}`);
  return undefined;
});

Deno.test({
  name: "differential: generated programs on the GPU agree with the interpreter",
  ignore: adapter === undefined,
  async fn() {
    // Every program runs (no shrinking on the slow adapter); all failures are reported together,
    // each with the fast-check path that replays it (ATTUNE_DIFF_SEED / ATTUNE_DIFF_PATH).
    const failures: string[] = [];
    const runs = Number(env("ATTUNE_DIFF_GPU_RUNS") ?? 25);
    const seen = { hostDraw: 0, deviceDraw: 0, regionMerged: 0, regionAlone: 0, probs: 0 };
    const more = {
      privateTable: 0,
      partialTable: 0,
      atomicTable: 0,
      split: 0,
      tiled: 0,
      fullTiles: 0,
    };
    let index = 0;
    const result = await fc.check(
      fc.asyncProperty(
        specArb({ sizes: SMALL_SIZES, depth: 2, buckets: GPU_BUCKETS }),
        fc.constantFrom(undefined, 8),
        // Full key blocks run unmasked (compiler/limits.ts `fullTiles`, off by default).
        fc.boolean(),
        async (spec, maxStorageBuffers, full) => {
          fullTiles.scores = full;
          try {
            await gpuCase(spec, maxStorageBuffers, full);
          } finally {
            fullTiles.scores = false;
          }
        },
      ),
      { numRuns: runs, seed: SEED, path: PATH, endOnFailure: true },
    );
    async function gpuCase(spec: Spec, maxStorageBuffers: number | undefined, full: boolean) {
      const path = PATH ?? String(index++);
      const c = compileOrFail(spec);
      let plan;
      try {
        plan = c.program.plan();
      } catch (e) {
        failures.push(
          `ATTUNE_DIFF_SEED=${SEED} ATTUNE_DIFF_PATH=${path}\n` +
            report(c, `lowering threw ${e instanceof Error ? e.message : String(e)}`),
        );
        return;
      }
      const randoms = c.program.optimized.nodes.filter((n) => n.op.op === "random").length;
      seen.hostDraw += plan.hostDraws.length ? 1 : 0;
      seen.deviceDraw += randoms > plan.hostDraws.length ? 1 : 0;
      seen.regionMerged += plan.kernels.some((k) =>
          k.launch.kind === "grid" && k.launch.regions > 0
        )
        ? 1
        : 0;
      seen.regionAlone += plan.kernels.some((k) => k.launch.kind === "slice") ? 1 : 0;
      seen.probs += features(c).probs ? 1 : 0;
      // Flash kernels that skip key blocks (kernels/tiles.ts).
      more.tiled += plan.kernels.some((k) => k.wgsl.includes("var jt = jlo")) ? 1 : 0;
      more.fullTiles += plan.kernels.some((k) => k.wgsl.includes("if (tfull)")) ? 1 : 0;
      for (const n of c.program.optimized.nodes) {
        if (n.op.op === "scatter_add") {
          more[
            n.op.size <= PRIVATE_TABLE_BUCKETS
              ? "privateTable"
              : n.op.size <= PARTIAL_TABLE_BUCKETS
              ? "partialTable"
              : "atomicTable"
          ]++;
        }
      }
      const lower = maxStorageBuffers ? { maxStorageBuffers } : undefined;
      if (lower) {
        more.split += lowerGraph(c.program.optimized, lower).kernels.length > plan.kernels.length
          ? 1
          : 0;
      }
      const why = await gpuDifferential(c, { lower });
      if (why) {
        const how = `${lower ? " (8 bindings)" : ""}${full ? " (full tiles)" : ""}`;
        failures.push(
          `ATTUNE_DIFF_SEED=${SEED} ATTUNE_DIFF_PATH=${path}\n` + report(c, `GPU${how}: ${why}`),
        );
      }
    }
    console.log(`GPU sample of ${runs}: plans reached ${JSON.stringify({ ...seen, ...more })}`);
    if (result.failed) throw result.errorInstance;
    assert.equal(
      failures.length,
      0,
      `${failures.length} of ${runs} differ:\n\n${failures.join("\n\n")}`,
    );
  },
});

Deno.test({
  name: "differential: generated programs through the split (long-loop) plans agree on the GPU",
  ignore: adapter === undefined,
  async fn() {
    // The split plans appear past lavapipe's 65,535-iteration budget (n in the tens of
    // thousands); with the limits shrunk they appear at n ≤ 100, for random programs.
    const saved = { ...LOOPS };
    Object.assign(LOOPS, { budget: 120, chunk: 8, parts: 16 });
    try {
      const failures: string[] = [];
      const runs = Number(env("ATTUNE_DIFF_LONG_RUNS") ?? 12);
      let long = 0, refused = 0, index = 0;
      const result = await fc.check(
        fc.asyncProperty(
          specArb({ sizes: [13, 31, 64, 65, 100], depth: 2, buckets: GPU_BUCKETS }),
          async (spec) => {
            const path = PATH ?? String(index++);
            const c = compileOrFail(spec);
            const bound = new Map<string, number>();
            for (const decl of c.program.graph.inputs) {
              const shape = c.inputs[decl.name]?.shape ?? [];
              decl.type.shape.forEach((d, i) => {
                if (typeof d === "string") {
                  bound.set(d, shape[shape.length - decl.type.shape.length + i]);
                }
              });
            }
            const size = (d: string | number) => (typeof d === "number" ? d : bound.get(d) ?? 1);
            const why = await gpuDifferential(c);
            long += c.program.plan().kernels.some((k) => k.trips!(size) > LOOPS.budget) ? 1 : 0;
            // A kernel kind without a split form is refused, naming the budget: not a wrong answer.
            if (why?.includes("LimitError") && why.includes(`budget of ${LOOPS.budget}`)) {
              refused++;
              console.log(`refused: ${why.slice(0, 160)}`);
            } else if (why) {
              failures.push(
                `ATTUNE_DIFF_SEED=${SEED} ATTUNE_DIFF_PATH=${path} (budget 120, chunk 8, parts 16)\n` +
                  report(c, `GPU: ${why}`),
              );
            }
          },
        ),
        { numRuns: runs, seed: SEED + 1, path: PATH, endOnFailure: true },
      );
      console.log(
        `long-loop sample of ${runs}: ${long} past the budget, ${refused} refused by name`,
      );
      if (result.failed) throw result.errorInstance;
      assert.equal(
        failures.length,
        0,
        `${failures.length} of ${runs} differ:\n\n${failures.join("\n\n")}`,
      );
      assert.ok(long - refused >= runs / 3, `only ${long - refused} of ${runs} ran a split plan`);
    } finally {
      Object.assign(LOOPS, saved);
    }
  },
});

Deno.test("differential: values carried by repeat equal their unrolled values", () => {
  // The passes only see what the checker elaborated; this checks the elaboration of `repeat`
  // itself against values computed here: a static scalar and a tensor, both carried.
  fc.assert(
    fc.property(
      fc.constantFrom(1, 0.25),
      fc.constantFrom(0.5, 1.5, 2),
      fc.integer({ min: 0, max: 5 }),
      fc.constantFrom(...SMALL_SIZES),
      (init, factor, count, n) => {
        const lit = (x: number) => (Number.isInteger(x) ? `${x}.0` : String(x));
        const p = compileSync(`def f(q: [n, d]) -> [n, d] {
  x = ${lit(init)}
  y = q
  repeat ${count} { x = x * ${lit(factor)}; y = y * ${lit(factor)} }
  return y + q * x
}`);
        const q = randomTensor([n, 3], { seed: n });
        const want = init * factor ** count + factor ** count;
        for (const g of [p.graph, ...p.passes.map((s) => s.graph)]) {
          const y = interpret(g, { q });
          for (let i = 0; i < q.data.length; i++) {
            assert.ok(Math.abs(y.data[i] - q.data[i] * want) <= 1e-12 * Math.abs(q.data[i] * want));
          }
        }
      },
    ),
    { numRuns: 60, seed: SEED },
  );
});

Deno.test({
  name: "differential: the float32 floor grows with a score offset and bounds the GPU's error",
  ignore: adapter === undefined,
  async fn() {
    // softmax(s + c) = softmax(s) in exact arithmetic, but float32 keeps ~7 digits of s + c:
    // the interpreter rounding each value to float32 must see that loss, and the GPU's error
    // must stay within the tolerance built on it (gpuDifferential's GPU_RTOL + 4 × floor).
    const inputs = {
      q: randomTensor([13, 5], { seed: 1 }),
      k: randomTensor([13, 5], { seed: 2 }),
      v: randomTensor([13, 3], { seed: 3 }),
    };
    const floors: number[] = [];
    for (const c of ["0.0", "1024.0"]) {
      const p = compileSync(`def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = q[i] . k[j] + ${c}
  return softmax(s, axis=1) @ v
}`);
      const exact = interpret(p.graph, inputs);
      const rounded = interpret(p.graph, inputs, { roundF32: true });
      assert.ok(rounded.data.every((x) => Math.fround(x) === x), "roundF32 left a float64 value");
      const floor = relativeError(rounded, exact);
      const gpu = relativeError(await p.run(inputs, { backend: "gpu", poison: true }), exact);
      assert.ok(gpu <= 1e-5 + 4 * floor, `offset ${c}: GPU ${gpu}, floor ${floor}`);
      floors.push(floor);
    }
    assert.ok(floors[0] < 1e-6, `offset 0: floor ${floors[0]}`);
    assert.ok(floors[1] > 10 * floors[0], `floors ${floors}`);
  },
});
