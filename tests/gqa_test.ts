/**
 * Inputs at their own leading shape on the GPU: grouped-query k and v (and a mask reused over
 * heads) are uploaded once and read through their slice map, not copied to every slice. Each
 * case is checked against the interpreter with poisoned buffers, also split into chunks of
 * slices and through the long-loop plan, and the uploaded bytes are checked to shrink.
 */
import assert from "node:assert/strict";
import { compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { getDevice } from "../runtime/device.ts";
import { execute } from "../runtime/executor.ts";
import { chunkSlices, sliceMap } from "../runtime/slices.ts";
import { LOOPS } from "../compiler/limits.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);

const EXACT = `def exact(q: [n, d], k: [m, d], v: [m, e]) -> [n, e] {
  return softmax(q @ k^T / sqrt(d), axis=1) @ v
}`;

/** A key mask beside grouped k/v, and a plain elementwise read of k (the generic reader). */
const MASKED = `def masked(q: [n, d], k: [m, d], v: [m, e], mask: [m]) -> [n, e] {
  s = q @ k^T / sqrt(d) + log(mask)
  return softmax(s, axis=1) @ v + sum(k, axis=0)[0]
}`;

/** Random data; `positive`: in (0.1, 1.1] (a mask whose log is finite). */
const t = (shape: number[], seed: number, positive = false) => {
  const x = randomTensor(shape, { seed });
  return positive ? { ...x, data: x.data.map((y) => Math.abs(y) % 1 + 0.1) } : x;
};

Deno.test("slice maps: grouped heads, reused dims, chunks that wrap are copied", () => {
  assert.equal(sliceMap([8], [8]), undefined);
  assert.deepEqual(sliceMap([2], [8]), { keep: 2, group: 4 });
  assert.deepEqual(sliceMap([], [2, 8]), { keep: 0, group: 8 });
  assert.deepEqual(sliceMap([2, 2], [2, 8]), { keep: 2, group: 4 });
  assert.deepEqual(sliceMap([1, 8], [2, 8]), { keep: 0, group: 1 });
  assert.equal(sliceMap([2, 1, 4], [2, 3, 4]), undefined, "a batch dim partly reused");
  // Run slices 6..9 of [2, 8] with k/v [2, 2]: k/v slices 1..2.
  assert.deepEqual(chunkSlices({ keep: 2, group: 4 }, 8, 6, 4).count, 2);
  assert.deepEqual(chunkSlices({ keep: 2, group: 4 }, 8, 6, 4).first, 1);
  // A [1, 8] mask over [2, 8] in chunks of 4 starting at 6 wraps: copied.
  assert.equal(chunkSlices({ keep: 0, group: 1 }, 8, 6, 4).copied, true);
  assert.equal(chunkSlices({ keep: 0, group: 1 }, 8, 8, 8).copied, false);
});

Deno.test({
  name: "GQA on the GPU (poisoned) = interpreter: 8/2, 8/1, [2,8]/[2,2], masks, chunks, long",
  ignore: adapter === undefined,
  fn: async () => {
    const exact = compileSync(EXACT), masked = compileSync(MASKED);
    const cases: [typeof exact, Record<string, Tensor>, string][] = [
      [exact, { q: t([8, 7, 3], 1), k: t([2, 13, 3], 2), v: t([2, 13, 5], 3) }, "8/2"],
      [exact, { q: t([8, 13, 4], 4), k: t([1, 13, 4], 5), v: t([1, 13, 4], 6) }, "8/1"],
      [exact, { q: t([2, 8, 7, 3], 7), k: t([2, 2, 65, 3], 8), v: t([2, 2, 65, 5], 9) }, "b×h"],
      [masked, {
        q: t([2, 8, 7, 3], 10),
        k: t([2, 2, 13, 3], 11),
        v: t([2, 2, 13, 5], 12),
        mask: t([1, 1, 13], 13, true),
      }, "masked [1,1]"],
      [masked, {
        q: t([2, 4, 7, 3], 14),
        k: t([2, 1, 13, 3], 15),
        v: t([2, 4, 13, 1], 16),
        mask: t([1, 4, 13], 17, true),
      }, "mask [1,4]"],
    ];
    for (const [p, x, what] of cases) {
      const want = await p.run(x, { backend: "interp" });
      const got = await execute(p.optimized, p.plan(), x, { poison: true });
      const err = relativeError(got.output, want);
      assert.ok(err < 1e-5, `${what}: relative error ${err}`);
      // Chunks of 3 slices (the [1, 4] mask wraps in some, copied there).
      const one = (x: Tensor, r: number) => x.shape.slice(-r).reduce((a, b) => a * b, 1);
      const limit = 3 * 4 * Math.max(one(want, 2), ...Object.values(x).map((y) => one(y, 2)));
      const chunked = await execute(p.optimized, p.plan(), x, {
        poison: true,
        maxBindingBytes: limit,
      });
      const errC = relativeError(chunked.output, want);
      assert.ok(errC < 1e-5, `${what}, chunked: relative error ${errC}`);
      assert.ok(chunked.stats.dispatches > got.stats.dispatches, `${what}: split into chunks`);
    }
    // The long-loop (split) plan, its limits shrunk so that it appears at these sizes.
    const saved = { ...LOOPS };
    Object.assign(LOOPS, { budget: 60, chunk: 8, parts: 16 });
    try {
      for (const [p, x, what] of [cases[2], cases[3]]) {
        const fresh = compileSync(p === exact ? EXACT : MASKED);
        const want = await fresh.run(x, { backend: "interp" });
        const got = await execute(fresh.optimized, fresh.plan(), x, { poison: true });
        const err = relativeError(got.output, want);
        assert.ok(err < 1e-5, `${what}, long plan: relative error ${err}`);
        if (p === exact) assert.ok(got.stats.dispatches > 1, `${what}: split plan`);
      }
    } finally {
      Object.assign(LOOPS, saved);
    }
  },
});

Deno.test({
  name: "GQA uploads k and v once: fewer GPU and host bytes than the same run with k/v copied",
  ignore: adapter === undefined,
  fn: async () => {
    const p = compileSync(EXACT);
    const [H, G, n, d] = [8, 2, 64, 16];
    const q = t([H, n, d], 1), k = t([G, n, d], 2), v = t([G, n, d], 3);
    const expand = (x: Tensor) => {
      const per = n * d, data = new Float64Array(H * per);
      for (let h = 0; h < H; h++) {
        data.set(
          x.data.subarray(Math.floor(h / (H / G)) * per, (Math.floor(h / (H / G)) + 1) * per),
          h * per,
        );
      }
      return { shape: [H, n, d], data, dtype: "float" } as Tensor;
    };
    const grouped = await execute(p.optimized, p.plan(), { q, k, v });
    const full = await execute(p.optimized, p.plan(), { q, k: expand(k), v: expand(v) });
    assert.ok(relativeError(grouped.output, full.output) < 1e-6);
    // q, out and k/v each [8, 64, 16] floats when copied; k/v [2, 64, 16] when grouped.
    const slice = n * d * 4;
    // (The grouped plan's sizes table holds three more numbers per input, and the leading counts.)
    const saved = full.stats.peakBytes - grouped.stats.peakBytes;
    assert.ok(saved > 2 * (H - G) * slice - 64, `saved ${saved} bytes`);
    assert.ok(grouped.stats.peakHostBytes < full.stats.peakHostBytes);
    assert.ok(grouped.stats.dispatches === full.stats.dispatches);
  },
});
