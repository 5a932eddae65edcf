/**
 * The plan's data flow (issue #7 A): every dispatch states what each of its parts reads and
 * writes, and `checkPlan` (run on every plan `lowerGraph` makes) rejects a dispatch whose parts
 * read or write what another part writes, or a read of a buffer nothing wrote before. Merged
 * dispatches with a region run 16 grid elements per invocation; a part with long loops must not
 * go there (lavapipe ends an invocation's loops after 65,535 trips, silently): Skeinformer's
 * sum(vs, axis=0) did at n ≥ 4094 with 512 samples, and the GPU answer was off by 1e-2.
 */
import assert from "node:assert/strict";
import { compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { lowerGraph } from "../compiler/lower/lower.ts";
import { checkPlan } from "../compiler/lower/check.ts";
import type { ExecPlan, PlannedKernel } from "../compiler/lower/plan.ts";
import { getDevice } from "../runtime/device.ts";
import { source } from "./helpers.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);

/** Every example at a few parameter settings. */
const SETTINGS: [string, Record<string, number>[]][] = [
  ["exact.attn", [{}]],
  ["causal_alibi.attn", [{}]],
  ["sliding_window.attn", [{}, { window: 3 }]],
  ["linear.attn", [{}]],
  ["nystrom.attn", [{}, { landmarks: 8, iters: 2 }, { landmarks: 32, conv: 3 }]],
  ["yoso.attn", [{}, { hashes: 4, tau: 4 }, { hashes: 64 }]],
  ["yoso_e.attn", [{}, { tau: 4 }]],
  ["skein.attn", [{}, { samples: 16 }, { samples: 512 }, { samples: 1024 }]],
  ["performer.attn", [{}, { features: 8 }, { features: 256 }]],
];

/** Lowering options that change merging. */
const OPTIONS = [
  {},
  { regions: false },
  { maxStorageBuffers: 8 },
  { mergeKernels: false },
  { fuseElementwise: false },
];

/** Typical sizes for evaluating trip counts. */
const at = (n: number) => (d: string | number) =>
  typeof d === "number" ? d : d === "n" || d === "m" ? n : 64;

const plans: { what: string; plan: ExecPlan }[] = [];
for (const [file, settings] of SETTINGS) {
  for (const params of settings) {
    const p = compileSync(source(file), { params, file });
    for (const options of OPTIONS) {
      plans.push({
        what: `${file} ${JSON.stringify(params)} ${JSON.stringify(options)}`,
        plan: lowerGraph(p.optimized, options),
      });
    }
  }
}

Deno.test("plan check: every example's plan (params × lowering options) passes", () => {
  for (const { what, plan } of plans) {
    assert.doesNotThrow(() => checkPlan(plan), what);
    for (const k of plan.kernels) {
      assert.ok(k.io && k.io.length >= 1, `${what}: ${k.name} states no reads/writes`);
      // The parts account for the dispatch's bindings and writes.
      const bound = new Set(k.bindings);
      const used = new Set(k.io.flatMap((p) => [...p.reads, ...p.writes]));
      assert.deepEqual([...bound].filter((b) => !used.has(b)), [], `${what}: ${k.name}`);
    }
  }
});

Deno.test("plan check: merged dispatches with a region stay within lavapipe's loop budget at n = 4096", () => {
  for (const { what, plan } of plans) {
    for (const k of plan.kernels) {
      if (k.launch.kind !== "grid" || !k.launch.regions || !k.launch.parts.length) continue;
      const trips = k.trips(at(4096));
      assert.ok(trips <= 65_535, `${what}: ${k.name} makes ${trips} trips per invocation`);
    }
  }
});

Deno.test("plan check: skein with 512 samples keeps sum(vs, axis=0) out of the region's dispatch", () => {
  const p = compileSync(source("skein.attn"), { params: { samples: 512 } });
  const plan = lowerGraph(p.optimized);
  const reduce = plan.kernels.find((k) => k.io!.some((io) => io.name === "reduce_81"))!;
  assert.ok(reduce, plan.kernels.map((k) => k.name).join(", "));
  const regions = reduce.launch.kind === "grid" ? reduce.launch.regions : 0;
  assert.ok(!regions, `${reduce.name} runs next to a region`);
});

/** A dispatch made of two parts (by hand, not by the scheduler). */
function merge(a: PlannedKernel, b: PlannedKernel): PlannedKernel {
  const writes = [...a.writes, ...b.writes];
  const bindings = [...new Set([...a.bindings, ...b.bindings])];
  return { ...a, name: `${a.name}+${b.name}`, writes, bindings, io: [...a.io, ...b.io] };
}

Deno.test("plan check: catches a hand-made merge of a kernel with its reader, and a read before the write", () => {
  const p = compileSync(source("skein.attn"), { params: { samples: 512 } });
  const plan = lowerGraph(p.optimized);
  // Find a dispatch that reads what the one right before it writes.
  const i = plan.kernels.findIndex((k, j) =>
    j > 0 &&
    k.io!.some((io) =>
      io.reads.some((b) => plan.kernels[j - 1].io!.some((w) => w.writes.includes(b)))
    )
  );
  assert.ok(i > 0);
  const bad = { ...plan, kernels: [...plan.kernels] };
  bad.kernels.splice(i - 1, 2, merge(plan.kernels[i - 1], plan.kernels[i]));
  assert.throws(() => checkPlan(bad), /internal: plan check: .* which part .* writes/);
  // The two in the wrong order: the reader runs before anything wrote its operand.
  const swapped = { ...plan, kernels: [...plan.kernels] };
  [swapped.kernels[i - 1], swapped.kernels[i]] = [plan.kernels[i], plan.kernels[i - 1]];
  assert.throws(() => checkPlan(swapped), /which nothing before it writes/);
  // A dispatch whose parts leave a binding unaccounted for.
  const hidden = {
    ...plan,
    kernels: plan.kernels.map((k, j) => j === i ? { ...k, io: [{ ...k.io![0], reads: [] }] } : k),
  };
  assert.throws(() => checkPlan(hidden), /binds buffer/);
  // The output must be written.
  assert.throws(() => checkPlan({ ...plan, kernels: plan.kernels.slice(0, -1) }), /never written/);
});

Deno.test({
  name: "gpu: skein at n = 4096 with 512 samples agrees with the interpreter (same seed, 1e-4)",
  ignore: adapter === undefined,
  fn: async () => {
    const n = 4096, d = 32;
    const p = compileSync(source("skein.attn"), { params: { samples: 512 } });
    const x: Record<string, Tensor> = {
      q: randomTensor([n, d], { seed: 1 }),
      k: randomTensor([n, d], { seed: 2 }),
      v: randomTensor([n, d], { seed: 3 }),
    };
    const ref = await p.run(x, { seed: 5, backend: "interp" });
    // Poisoned first, then again on the reused (NaN-filled) buffers.
    for (const poison of [true, false]) {
      const y = await p.run(x, { seed: 5, backend: "gpu", poison });
      const err = relativeError(y, ref);
      assert.ok(err <= 1e-4, `poison ${poison}: relative error ${err}`);
    }
  },
});

Deno.test("plan check: a map over a reduction whose op has no vec4 form reads no buffer of its own (fuzz find)", async () => {
  // sigmoid(sum over rows of probabilities): the four-lane map expanded its own node by reading
  // its output buffer, which nothing had written (deno task fuzz, seed 1500003).
  const p = compileSync(`def prog(q: [n, d], k: [m, d]) -> [m] {
  s[i, j] = q[i] . k[j]
  return sigmoid(sum(softmax(s, axis=1), axis=0))
}`);
  p.plan(); // threw "plan check: ... reads buffer undefined"
  if (!adapter) return;
  for (const [n, m] of [[1, 1], [5, 9], [3, 70]]) {
    const inputs = { q: randomTensor([n, 3], { seed: n }), k: randomTensor([m, 3], { seed: m }) };
    const err = relativeError(
      await p.run(inputs, { backend: "gpu", poison: true }),
      await p.run(inputs, { backend: "interp" }),
    );
    assert.ok(err < 1e-5, `n = ${n}, m = ${m}: ${err}`);
  }
});
