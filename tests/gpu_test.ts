/**
 * Every example runs on WebGPU (the software adapter lavapipe here) and agrees with the float64
 * interpreter on random awkward shapes, with batch and head dims, masks, and poisoned buffers.
 */
import assert from "node:assert/strict";
import { CompileError, compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { getDevice } from "../runtime/device.ts";

const adapter = await getDevice().then((d) => d.facts.description, (e) => {
  console.error(`GPU tests skipped: ${e.message}`);
  return undefined;
});

const load = (f: string) => Deno.readTextFileSync(new URL(`../examples/${f}`, import.meta.url));

/** A 0/1 key mask per batch row with a valid prefix (Skeinformer's pilot needs that) of ≥ 1. */
function prefixMask(batch: number, n: number, seed: number): Tensor {
  const u = randomTensor([batch], { seed, kind: "uniform" });
  const data = new Float64Array(batch * n);
  for (let b = 0; b < batch; b++) {
    const valid = Math.max(1, Math.ceil(n * (0.5 + 0.5 * u.data[b])));
    for (let i = 0; i < valid; i++) data[b * n + i] = 1;
  }
  return { shape: [batch, n], data, dtype: "float" };
}

interface Case {
  file: string;
  params?: (n: number) => Record<string, number>;
  mask?: boolean;
  tol: number;
}

const CASES: Case[] = [
  { file: "exact.attn", mask: true, tol: 1e-5 },
  { file: "causal_alibi.attn", params: () => ({ slope: 0.3 }), tol: 1e-5 },
  { file: "sliding_window.attn", params: () => ({ window: 5 }), tol: 1e-5 },
  { file: "linear.attn", mask: true, tol: 1e-5 },
  { file: "nystrom.attn", params: (n) => ({ landmarks: Math.min(8, n) }), mask: true, tol: 1e-5 },
  { file: "yoso_e.attn", params: () => ({ tau: 4 }), mask: true, tol: 1e-4 },
  { file: "yoso.attn", params: () => ({ tau: 4, hashes: 8 }), mask: true, tol: 1e-4 },
  { file: "skein.attn", params: () => ({ samples: 16 }), mask: true, tol: 1e-4 },
  { file: "performer.attn", params: () => ({ features: 32 }), mask: true, tol: 1e-4 },
];

const SHAPES = [
  { batch: 2, heads: 2, n: 1, d: 16, e: 16 },
  { batch: 1, heads: 3, n: 63, d: 32, e: 16 },
  { batch: 2, heads: 1, n: 65, d: 16, e: 80 },
];

for (const c of CASES) {
  Deno.test({
    name: `gpu: ${c.file} agrees with the float64 interpreter (n = 1, 63, 65; batch/heads; masks)`,
    ignore: adapter === undefined,
    fn: async () => {
      for (const [i, s] of SHAPES.entries()) {
        const p = compileSync(load(c.file), { params: c.params?.(s.n), file: c.file });
        const seed = 100 * i + c.file.length;
        const inputs: Record<string, Tensor> = {
          q: randomTensor([s.batch, s.heads, s.n, s.d], { seed }),
          k: randomTensor([s.batch, s.heads, s.n, s.d], { seed: seed + 1 }),
          v: randomTensor([s.batch, s.heads, s.n, s.e], { seed: seed + 2 }),
        };
        if (c.mask) inputs.mask = prefixMask(s.batch, s.n, seed + 3);
        const want = await p.run(inputs, { seed: 7, backend: "interp" });
        const got = await p.run(inputs, { backend: "gpu", poison: true, seed: 7 });
        assert.deepEqual(got.shape, want.shape);
        assert.ok(
          got.data.every(Number.isFinite),
          `${c.file} ${JSON.stringify(s)}: non-finite output`,
        );
        const err = relativeError(got, want);
        assert.ok(err <= c.tol, `${c.file} ${JSON.stringify(s)}: relative error ${err} > ${c.tol}`);
      }
    },
  });
}

Deno.test({
  name: "gpu: a changed sequence length reuses the compiled kernels (sizes are not baked in)",
  ignore: adapter === undefined,
  fn: async () => {
    const p = compileSync(load("exact.attn"));
    const run = (n: number) =>
      p.run({
        q: randomTensor([n, 8], { seed: n }),
        k: randomTensor([n, 8], { seed: n + 1 }),
        v: randomTensor([n, 8], { seed: n + 2 }),
      }, { backend: "gpu" });
    const a = await run(11);
    const b = await run(13);
    assert.deepEqual([a.shape, b.shape], [[11, 8], [13, 8]]);
    // The kernels' WGSL never mentions the sequence length:
    const { lowerGraph } = await import("../compiler/lower/lower.ts");
    const wgsl = lowerGraph(p.graph).kernels.map((k) => k.wgsl).join("\n");
    assert.ok(!/\b11u\b/.test(wgsl) && !/\b13u\b/.test(wgsl), "no sequence length in WGSL");
  },
});

Deno.test({
  name: "gpu: too few rows for the landmarks is the same CompileError as on the interpreter",
  ignore: adapter === undefined,
  fn: async () => {
    const p = compileSync(load("nystrom.attn"), { params: { landmarks: 8 }, file: "nystrom.attn" });
    const x = { q: randomTensor([5, 4]), k: randomTensor([5, 4]), v: randomTensor([5, 4]) };
    await assert.rejects(
      p.run(x, { backend: "interp" }),
      (e) => e instanceof CompileError && /8 segments but only 5 rows/.test(e.message),
    );
    await assert.rejects(
      p.run(x, { backend: "gpu" }),
      (e) => e instanceof CompileError && /8 segments but only 5 rows/.test(e.message),
    );
  },
});

Deno.test("bad input: NaN in an input is refused with its position on both backends", async () => {
  const p = compileSync(load("exact.attn"), { file: "exact.attn" });
  const q = randomTensor([2, 5, 4], { seed: 1 });
  q.data[4 * 3 + 2] = NaN;
  const x = { q, k: randomTensor([2, 5, 4], { seed: 2 }), v: randomTensor([2, 5, 4], { seed: 3 }) };
  const nan = (e: unknown) =>
    e instanceof CompileError && /input q contains NaN at \[0, 3, 2\]/.test(e.message);
  await assert.rejects(p.run(x, { backend: "interp" }), nan);
  if (adapter !== undefined) await assert.rejects(p.run(x, { backend: "gpu" }), nan);
});

Deno.test({
  name: "gpu: larger awkward sizes (n = 257, 1000; d = 64, 80) agree with the interpreter",
  ignore: adapter === undefined,
  fn: async () => {
    const cases: [string, Record<string, number>, number][] = [
      ["exact.attn", {}, 1e-5],
      ["causal_alibi.attn", { slope: 0.1 }, 1e-5],
      ["sliding_window.attn", { window: 40 }, 1e-5],
      ["nystrom.attn", { landmarks: 16 }, 1e-5],
      ["yoso.attn", { tau: 6, hashes: 8 }, 1e-4],
      ["skein.attn", { samples: 64 }, 1e-4],
    ];
    for (const [n, d] of [[257, 80], [1000, 64]]) {
      for (const [file, params, tol] of cases) {
        const p = compileSync(load(file), { params, file });
        const x = {
          q: randomTensor([2, n, d], { seed: n + d }),
          k: randomTensor([2, n, d], { seed: n + d + 1 }),
          v: randomTensor([2, n, d], { seed: n + d + 2 }),
        };
        const want = await p.run(x, { seed: 3, backend: "interp" });
        const got = await p.run(x, { backend: "gpu", poison: true, seed: 3 });
        const err = relativeError(got, want);
        assert.ok(err <= tol, `${file} n=${n} d=${d}: relative error ${err}`);
      }
    }
  },
});

Deno.test({
  name: "gpu: runs over the binding limit are split along batch/heads and still agree",
  ignore: adapter === undefined,
  fn: async () => {
    const { execute } = await import("../runtime/executor.ts");
    for (
      const [file, params] of [["skein.attn", { samples: 8 }], ["yoso.attn", {
        tau: 4,
        hashes: 4,
      }]] as const
    ) {
      const p = compileSync(load(file), { params });
      const x = {
        q: randomTensor([2, 3, 33, 8], { seed: 1 }),
        k: randomTensor([2, 3, 33, 8], { seed: 2 }),
        v: randomTensor([2, 3, 33, 8], { seed: 3 }),
      };
      const want = await p.run(x, { seed: 9, backend: "interp" });
      const perSlice = Math.max(
        ...p.plan().buffers.map((b) =>
          b.shape.reduce<number>(
            (a, d) => a * (typeof d === "number" ? d : d === "e" ? 8 : d === "d" ? 8 : 33),
            1,
          ) * 4
        ),
      );
      const { output, stats } = await execute(p.optimized, p.plan(), x, {
        seed: 9,
        poison: true,
        maxBindingBytes: 2 * perSlice, // two slices per chunk: 3 chunks
      });
      assert.ok(
        stats.dispatches >= 3 * p.plan().kernels.length - 3,
        `${file}: ${stats.dispatches}`,
      );
      assert.ok(relativeError(output, want) < 1e-4, `${file}: ${relativeError(output, want)}`);
    }
    const p = compileSync(load("exact.attn"));
    const x = { q: randomTensor([4, 16]), k: randomTensor([4, 16]), v: randomTensor([4, 16]) };
    await assert.rejects(
      execute(p.optimized, p.plan(), x, { maxBindingBytes: 64 }),
      /maxStorageBufferBindingSize of 64 bytes/,
    );
  },
});

Deno.test("bad input: inputs that do not fit the program get the same error on both backends", async () => {
  const p = compileSync(load("exact.attn"), { file: "exact.attn" });
  const x = {
    q: randomTensor([5, 4], { seed: 1 }),
    k: randomTensor([6, 3], { seed: 2 }),
    v: randomTensor([6, 4], { seed: 3 }),
  };
  const fits = (e: unknown) =>
    e instanceof CompileError && /input k: size d is 3 here but 4 from input q/.test(e.message);
  await assert.rejects(p.run(x, { backend: "interp" }), fits);
  if (adapter !== undefined) await assert.rejects(p.run(x, { backend: "gpu" }), fits);
});
