/**
 * `repeat` stays a loop through lowering: past LOOP_UNROLL iterations a loop outside a region is a
 * host loop over one copy of its body's dispatches (`ExecPlan.loops`), so the plan does not grow
 * with the count. GPU results are checked against the float64 interpreter with poisoned buffers:
 * carried values, swaps between them, nested loops, results that are loop-invariant, and counts on
 * both sides of LOOP_UNROLL.
 */
import assert from "node:assert/strict";
import { compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { LOOP_UNROLL } from "../compiler/limits.ts";
import { dispatchesPerRun } from "../compiler/lower/plan.ts";
import { getDevice } from "../runtime/device.ts";

const adapter = await getDevice().then((d) => d.facts.description, (e) => {
  console.error(`GPU tests skipped: ${e.message}`);
  return undefined;
});

const nystrom = Deno.readTextFileSync(new URL("../examples/nystrom.attn", import.meta.url));

Deno.test("explain nystrom with iters = 100,000: a plan whose dispatches do not depend on iters", () => {
  // Unrolled, this planned 400,005 dispatches and ran out of memory.
  const big = compileSync(nystrom, { params: { iters: 100_000 } });
  const text = big.explain();
  const small = compileSync(nystrom, { params: { iters: 10_000 } }).plan();
  assert.equal(big.plan().kernels.length, small.kernels.length);
  assert.ok(big.plan().loops.some((l) => l.count === 100_000), JSON.stringify(big.plan().loops));
  assert.match(text, /repeat ×100000: dispatches \d+–\d+/);
  assert.ok(dispatchesPerRun(big.plan()) > 100_000);
});

/** Random inputs of these shapes, seeded; never zeros. */
function inputs(shapes: Record<string, number[]>): Record<string, Tensor> {
  return Object.fromEntries(
    Object.entries(shapes).map(([k, s], i) => [k, randomTensor(s, { seed: 11 + i, scale: 0.7 })]),
  );
}

async function agree(source: string, shapes: Record<string, number[]>, what: string) {
  const p = compileSync(source);
  const x = inputs(shapes);
  const want = await p.run(x, { backend: "interp" });
  const got = await p.run(x, { backend: "gpu", poison: true });
  assert.deepEqual(got.shape, want.shape, what);
  assert.ok(got.data.every(Number.isFinite), `${what}: non-finite GPU output`);
  const err = relativeError(got, want);
  assert.ok(err <= 1e-5, `${what}: relative error ${err}`);
  return p.plan();
}

Deno.test({
  name: "host loops on the GPU agree with the interpreter on both sides of LOOP_UNROLL",
  ignore: !adapter,
  async fn() {
    for (const count of [0, 1, LOOP_UNROLL, LOOP_UNROLL + 1, 23]) {
      const src = `def f(x: [n, d], w: [d, d]) -> [n, d] {
  h = x
  repeat ${count} { h = normalize(h + 0.5 * tanh(h @ w), axis=1) }
  return h
}`;
      const plan = await agree(src, { x: [37, 5], w: [5, 5] }, `count ${count}`);
      assert.equal(plan.loops.length, count > LOOP_UNROLL ? 1 : 0, `count ${count}`);
    }
  },
});

Deno.test({
  name: "host loops: swapped carried values, a loop-invariant result and nested loops",
  ignore: !adapter,
  async fn() {
    // a and b swap every iteration (with a twist, so the order of the copies matters).
    await agree(
      `def f(x: [n, d], y: [n, d]) -> [n, d] {
  a = x
  b = y
  repeat 11 {
    t = a
    a = b * 0.9
    b = t + 0.1
  }
  return a - 2.0 * b
}`,
      { x: [29, 3], y: [29, 3] },
      "swap",
    );
    // A pure swap: each result is the other carried buffer (copied aside before the copies).
    const swapped = await agree(
      `def f(x: [n, d], y: [n, d]) -> [n, d] {
  a = x
  b = y
  c = x
  repeat 11 {
    t = a
    a = b
    b = t
    c = c * 0.5 + a
  }
  return a - 2.0 * b + c
}`,
      { x: [29, 3], y: [29, 3] },
      "pure swap",
    );
    assert.ok(swapped.kernels.some((k) => k.name.startsWith("copy_")), "copies planned");
    // A result that is the carry itself and one that is an outer value.
    await agree(
      `def f(x: [n, d], y: [n, d]) -> [n, d] {
  a = x
  b = x
  repeat 10 {
    a = a
    b = y
  }
  return a + b
}`,
      { x: [17, 4], y: [17, 4] },
      "identity and invariant",
    );
    // Nested: the inner loop is a host loop inside the outer one.
    const plan = await agree(
      `def f(x: [n, d]) -> [n, d] {
  h = x
  g = x * 0.5
  repeat 9 {
    repeat 10 { h = 0.5 * h + 0.25 * tanh(g) }
    g = g + 0.1 * h
  }
  return h + g
}`,
      { x: [19, 6] },
      "nested",
    );
    assert.equal(plan.loops.length, 2);
    const [inner, outer] = plan.loops;
    assert.ok(outer.start <= inner.start && inner.end <= outer.end, JSON.stringify(plan.loops));
    assert.equal(outer.count * inner.count, 90);
  },
});

Deno.test({
  name: "a small-matrix loop too long for a region runs as a host loop, its results outside it",
  ignore: !adapter,
  async fn() {
    // At 5,000 iterations the pinv-like loop is one region; from about 8,000 (REGION_TRIPS) it is
    // not, and its results, left out of any region, are ordinary values (a fuzz find: grouped into
    // a region without their loop, they were read before anything wrote them).
    for (const n of [5000, 9000]) {
      const plan = await agree(
        `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  lk0 = segment_mean(k, 2)
  a0 = softmax(lk0 @ lk0^T / sqrt(d), axis=1)
  r0 = a0
  repeat ${n} { r0 = 0.5 * (r0 @ a0) + 0.25 * a0 }
  return softmax(q @ lk0^T, axis=1) @ (r0 @ segment_mean(v, 2))
}`,
        { q: [13, 4], k: [13, 4], v: [13, 3] },
        `repeat ${n}`,
      );
      assert.equal(plan.loops.length, n > 8000 ? 1 : 0, `repeat ${n}`);
    }
  },
});

Deno.test({
  name: "loops whose results the body does not compute (an outer value, an unchanged carry)",
  ignore: !adapter,
  async fn() {
    // A fuzz find: such a loop over small values was a region that never wrote its output.
    for (const count of [1, LOOP_UNROLL + 1]) {
      for (const body of ["x = q", "x = x", "x = x\n    y = y * 0.5"]) {
        await agree(
          `def f(q: [n, d], lm: [m, d]) -> [n, d] {
  x = q
  y = lm @ lm^T
  repeat ${count} {
    ${body}
  }
  return x + sum(y)
}`,
          { q: [7, 3], lm: [3, 3] },
          `repeat ${count} { ${body} }`,
        );
      }
    }
  },
});
