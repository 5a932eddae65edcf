/**
 * The executor's host side: runs split by slices (forced with `maxBindingBytes`) equal unsplit
 * runs exactly and hold at most 2× the bytes of inputs and output on the host; compile progress.
 */
import assert from "node:assert/strict";
import {
  type CompileProgress,
  compileSync,
  type Program,
  randomTensor,
  relativeError,
  type Tensor,
} from "../mod.ts";
import { getDevice } from "../runtime/device.ts";
import { execute } from "../runtime/executor.ts";
import { cachedPipelines } from "../runtime/encoder.ts";
import { PIPELINE_CACHE } from "../compiler/limits.ts";
import { invocations } from "../compiler/lower/plan.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);
const load = (f: string) => Deno.readTextFileSync(new URL(`../examples/${f}`, import.meta.url));

/**
 * Host bytes are measured against inputs and output as float64 (8 bytes an element), the form the
 * host holds them in: the caller passes float64 tensors and gets one back, and `peakHostBytes`
 * counts those arrays too, so the bound is on the whole of what the run holds.
 */
/** The largest buffer of one slice of `p`'s plan, sizes from `sizes` (a chunk of one slice). */
const sliceBytes = (p: Program, sizes: Record<string, number>) =>
  Math.max(
    ...p.plan().buffers.map((b) =>
      (b.parts ?? [b.shape]).reduce(
        (t, shape) => t + invocations(shape, (d) => typeof d === "number" ? d : sizes[d]),
        0,
      ) * 4
    ),
  );

const f64Bytes = (ts: Tensor[]) => ts.reduce((t, x) => t + 8 * x.data.length, 0);

Deno.test({
  name: "executor: split runs equal unsplit runs exactly and hold at most 2× in + out on the host",
  ignore: adapter === undefined,
  fn: async () => {
    const cases = [
      // An output past the readback block (2^20 floats), read back in pieces.
      {
        source: "def twice(x: [n, d]) -> [n, d] { return x * 2 + 1 }",
        params: {},
        sizes: { n: 700, d: 600 },
        inputs: { x: randomTensor([3, 700, 600], { seed: 1 }) },
      },
      // A defaulted input (mask) and random draws made on the host (YOSO's hyperplanes).
      ...[["exact.attn", {}], ["yoso.attn", { tau: 4, hashes: 4 }]].map(([file, params]) => ({
        source: load(file as string),
        params: params as Record<string, number>,
        sizes: { n: 33, m: 33, d: 8, e: 8 },
        inputs: {
          q: randomTensor([2, 3, 33, 8], { seed: 1 }),
          k: randomTensor([2, 3, 33, 8], { seed: 2 }),
          v: randomTensor([2, 3, 33, 8], { seed: 3 }),
        },
      })),
    ];
    for (const { source, params, sizes, inputs } of cases) {
      const p = compileSync(source, { params });
      const whole = await execute(p.optimized, p.plan(), inputs, { seed: 5 });
      const bytes = sliceBytes(p, sizes);
      for (const maxBindingBytes of [bytes, 2 * bytes]) {
        const split = await execute(p.optimized, p.plan(), inputs, {
          seed: 5,
          poison: true,
          maxBindingBytes,
        });
        assert.ok(split.stats.dispatches > whole.stats.dispatches);
        assert.deepEqual(split.output.shape, whole.output.shape);
        assert.deepEqual(split.output.data, whole.output.data);
        const inOut = f64Bytes([...Object.values(inputs), split.output]);
        assert.ok(
          split.stats.peakHostBytes <= 2 * inOut,
          `${split.stats.peakHostBytes} host bytes for ${inOut} of inputs and output`,
        );
        assert.ok(split.stats.peakHostBytes >= inOut);
      }
    }
  },
});

Deno.test({
  name: "executor: onProgress reports each pipeline compiled, none when all are cached",
  ignore: adapter === undefined,
  fn: async () => {
    // A constant no other test uses, so the device's pipeline cache has none of these kernels.
    const c = 1 + Math.random();
    const p = compileSync(`def f(x: [n, d]) -> [n] { return sum(exp(x * ${c}), axis=1) }`);
    const x = { x: randomTensor([2, 16, 8]) };
    const events: CompileProgress[] = [];
    const want = await p.run(x, { backend: "gpu" });
    await p.run(x, { backend: "gpu", onProgress: (e) => events.push(e) });
    assert.equal(events.length, 0, "a second run compiles nothing");
    const q = compileSync(`def g(x: [n, d]) -> [n] { return sum(exp(x * ${c + 1}), axis=1) }`);
    const got = await q.run(x, { backend: "gpu", onProgress: (e) => events.push(e) });
    const kernels = new Set(q.plan().kernels.map((k) => k.name));
    assert.ok(events.length > 0 && events.length <= q.plan().kernels.length);
    events.forEach((e, i) => {
      assert.equal(e.done, i + 1);
      assert.equal(e.total, events.length);
      assert.ok(kernels.has(e.kernel), e.kernel);
      assert.ok(e.ms >= 0);
    });
    assert.equal(got.data.length, want.data.length);
  },
});

Deno.test({
  name: "pipelines: the device keeps at most PIPELINE_CACHE, least recently used dropped first",
  ignore: adapter === undefined,
  fn: async () => {
    const saved = PIPELINE_CACHE.count;
    PIPELINE_CACHE.count = 2;
    try {
      const { device } = await getDevice();
      const x = { q: randomTensor([3, 4], { seed: 1 }) };
      for (const c of [1.5, 2.5, 3.5, 1.5]) {
        const p = compileSync(`def f(q: [n, d]) -> [n, d] { return tanh(q * ${c}) }`);
        const got = await p.run(x, { backend: "gpu", poison: true });
        const want = await p.run(x, { backend: "interp" });
        assert.ok(relativeError(got, want) < 1e-6);
        assert.ok(cachedPipelines(device) <= 2, `${cachedPipelines(device)} pipelines kept`);
      }
    } finally {
      PIPELINE_CACHE.count = saved;
    }
  },
});
