/**
 * Attention fusion reads each score term at the grid axis it varies along, derived from how the
 * value was built (gathers by iota, reshapes, broadcasts, transposes, keepdims reductions), never
 * from its size: with self-attention the rows and columns share the size symbol n. And values a
 * `repeat` reassigns, compile-time numbers included, are carried around the loop.
 */
import assert from "node:assert/strict";
import { compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { interpret } from "../compiler/interp.ts";
import { getDevice } from "../runtime/device.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);

/** Programs whose scores read per-query values, per-key values, or transposed products. */
const SCORES: { name: string; src: string; fused: boolean; dispatches?: number }[] = [
  {
    name: "a per-query temperature t[i]",
    src: `def f(q: [n, d], k: [n, d], v: [n, e], t: [n]) -> [n, e] {
  s[i, j] = q[i] . k[j] * t[i]
  return softmax(s, axis=1) @ v
}`,
    fused: true,
    dispatches: 1,
  },
  {
    name: "document masking doc[i] == doc[j] and causal",
    src: `def f(q: [n, d], k: [n, d], v: [n, e], doc: [n]) -> [n, e] {
  s[i, j] = where(floor(doc[i]) == floor(doc[j]) and j <= i, q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
    fused: true,
    dispatches: 1,
  },
  {
    name: "a query padding mask qm[i]",
    src: `def f(q: [n, d], k: [n, d], v: [n, e], qm: [n]) -> [n, e] {
  s[i, j] = where(qm[i] > 0, q[i] . k[j], -1e9)
  return softmax(s, axis=1) @ v
}`,
    fused: true,
    dispatches: 1,
  },
  {
    name: "cosine similarity q[i] . k[j] / (qn[i] * kn[j])",
    src: `def f(q: [n, d], k: [n, d], v: [n, e], qn: [n], kn: [n]) -> [n, e] {
  s[i, j] = q[i] . k[j] / (qn[i] * kn[j])
  return softmax(s, axis=1) @ v
}`,
    fused: true,
    dispatches: 1,
  },
  {
    name: "a symmetric score s + s^T (two different products: not fused)",
    src: `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s = q @ k^T
  return softmax(s + s^T, axis=1) @ v
}`,
    fused: false,
  },
  {
    name: "a transposed product (k @ q^T)^T with a keepdims row max and a key bias",
    src: `def f(q: [n, d], k: [n, d], v: [n, e], t: [n]) -> [n, e] {
  s = (k @ q^T)^T
  return softmax(s - max(s, axis=1, keepdims=true) + t, axis=1) @ v
}`,
    fused: true,
  },
  {
    name: "k[j] . q[i] written key first",
    src: `def f(q: [n, d], k: [n, d], v: [n, e], t: [n]) -> [n, e] {
  s[i, j] = k[j] . q[i] + t[i] - t[j]
  return softmax(s, axis=1) @ v
}`,
    fused: true,
    dispatches: 1,
  },
  {
    name: "a keepdims row sum of q scaling the score, a key sum broadcast along j",
    src: `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s = q @ k^T
  r = sum(q, axis=1, keepdims=true)
  return softmax(s * r + sum(k, axis=1), axis=1) @ v
}`,
    fused: true,
  },
  {
    name: "a column vector made by transposing a row vector",
    src: `def f(q: [n, d], k: [n, d], v: [n, e], t: [n]) -> [n, e] {
  row = sum(k, axis=1, keepdims=true)^T
  col = row^T
  return softmax(q @ k^T + col - row, axis=1) @ v
}`,
    fused: true,
  },
];

function inputsFor(graph: ReturnType<typeof compileSync>["graph"], n: number, seed: number) {
  const sizes: Record<string, number> = { n, d: 5, e: 3 };
  const inputs: Record<string, Tensor> = {};
  for (const [k, decl] of graph.inputs.entries()) {
    const shape = decl.type.shape.map((x) => (typeof x === "number" ? x : sizes[x]));
    // Values away from zero so divisions stay tame; doc ids take a few distinct values.
    const t = randomTensor(shape, { seed: seed + k, kind: "uniform" });
    t.data = t.data.map((x) => (decl.name === "doc" ? 3 * x : 0.5 + x));
    inputs[decl.name] = t;
  }
  return inputs;
}

function maxDiff(a: Tensor, b: Tensor): number {
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i] - b.data[i]));
  return m;
}

for (const c of SCORES) {
  Deno.test(`orientation: ${c.name}: the optimized graph computes the checked one`, () => {
    const p = compileSync(c.src);
    const fused = p.optimized.nodes.some((n) => n.op.op === "attention");
    assert.equal(fused, c.fused, "fusion decision");
    for (const n of [1, 2, 7, 13]) {
      const inputs = inputsFor(p.graph, n, 11 * n);
      const want = interpret(p.graph, inputs);
      for (const stage of p.passes) {
        const got = interpret(stage.graph, inputs);
        assert.ok(
          maxDiff(want, got) < 1e-12,
          `n = ${n}: after ${stage.pass}: ${maxDiff(want, got)}`,
        );
      }
    }
  });
  Deno.test({
    name: `orientation: ${c.name}: the GPU gives the interpreter's answer`,
    ignore: adapter === undefined,
    fn: async () => {
      const p = compileSync(c.src);
      if (c.dispatches !== undefined) assert.equal(p.plan().kernels.length, c.dispatches);
      for (const n of [7, 70]) {
        const inputs = inputsFor(p.graph, n, 5 * n);
        const err = relativeError(
          await p.run(inputs, { backend: "gpu", poison: true }),
          interpret(p.graph, inputs),
        );
        assert.ok(err <= 1e-5, `n = ${n}: relative error ${err}`);
      }
    },
  });
}

Deno.test("orientation: a mutated score (a query value read at the key) is caught", () => {
  // The check above must be able to fail: swap i and j of one leaf and the stages disagree.
  const p = compileSync(SCORES[0].src);
  const swapped = structuredClone(p.optimized);
  const att = swapped.nodes.find((n) => n.op.op === "attention")!;
  const swap = (s: unknown): void => {
    if (!s || typeof s !== "object") return;
    const o = s as Record<string, unknown>;
    if (o.kind === "leaf") o.at = o.at === "i" ? "j" : o.at === "j" ? "i" : o.at;
    Object.values(o).forEach(swap);
  };
  swap(att.op);
  const inputs = inputsFor(p.graph, 7, 3);
  assert.ok(maxDiff(interpret(p.graph, inputs), interpret(swapped, inputs)) > 1e-3);
});

const LOOPS: { name: string; src: string; want: (v: number) => number }[] = [
  {
    name: "a float doubled three times",
    src: `def f(v: [n, e]) -> [n, e] {
  x = 1.0
  repeat 3 { x = x * 2 }
  return v * x
}`,
    want: (v) => 8 * v,
  },
  {
    name: "an int that the body turns into a float, and a sum that reads it",
    src: `def f(v: [n, e]) -> [n, e] {
  x = 1
  c = 0
  repeat 3 {
    x = x * 1.5
    c = c + x
  }
  return v * x + c
}`,
    want: (v) => 3.375 * v + 7.125,
  },
  {
    name: "a scalar carried with a tensor and a parameter count",
    src: `def f(v: [n, e], steps = 4) -> [n, e] {
  y = v
  w = 0.5
  repeat steps {
    y = y + w
    w = w / 2
  }
  return y
}`,
    want: (v) => v + 0.5 + 0.25 + 0.125 + 0.0625,
  },
];

for (const c of LOOPS) {
  Deno.test(`repeat carries compile-time values: ${c.name}`, async () => {
    const p = compileSync(c.src);
    const v = randomTensor([2, 5, 3], { seed: 9 });
    const want = Float64Array.from(v.data, c.want);
    const got = await p.run({ v }, { backend: "interp" });
    assert.ok(maxDiff(got, { ...v, data: want }) < 1e-12, "interpreter");
    if (adapter !== undefined) {
      const g = await p.run({ v }, { backend: "gpu", poison: true });
      assert.ok(relativeError(g, { ...v, data: want }) <= 1e-6, "gpu");
    }
  });
}

Deno.test("repeat: a Hillis-Steele scan with a doubling shift gives prefix sums", async () => {
  const p = compileSync(`def scan(x: [n]) -> [n] {
  sh = 1
  repeat 4 {
    y[i] = x[i] + where(i >= sh, x[i - sh], 0)
    x = y
    sh = sh * 2
  }
  return x
}`);
  const x = randomTensor([13], { seed: 4 });
  let acc = 0;
  const want = Float64Array.from(x.data, (a) => (acc += a));
  assert.ok(maxDiff(await p.run({ x }, { backend: "interp" }), { ...x, data: want }) < 1e-12);
  if (adapter !== undefined) {
    assert.ok(relativeError(await p.run({ x }, { backend: "gpu" }), { ...x, data: want }) < 1e-5);
  }
});

Deno.test("repeat: reassigning a shape list inside the loop is an error, not ignored", () => {
  assert.throws(
    () =>
      compileSync(`def f(v: [n, e]) -> [n, e] {
  s = [n, e]
  repeat 2 { s = [e, n] }
  return v
}`),
    /shape list; it cannot be reassigned inside repeat/,
  );
});
