/**
 * Online-softmax fusion: which programs fuse, that fusing preserves meaning (interpreter on the
 * fused IR = interpreter on the checked IR), and that the fused GPU kernel is right past the sizes
 * where lavapipe's loop budget would cut a non-unrolled kernel short.
 */
import assert from "node:assert/strict";
import { compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { interpret } from "../compiler/interp.ts";
import { getDevice } from "../runtime/device.ts";

const load = (f: string) => Deno.readTextFileSync(new URL(`../examples/${f}`, import.meta.url));
const adapter = await getDevice().then((d) => d.facts.description, () => undefined);

Deno.test("fusion: exact, causal_alibi and sliding_window each run as 1 dispatch", () => {
  for (const f of ["exact.attn", "causal_alibi.attn", "sliding_window.attn"]) {
    const p = compileSync(load(f));
    assert.equal(p.plan().kernels.length, 1, `${f}: ${p.plan().kernels.map((k) => k.name)}`);
    assert.ok(p.optimized.nodes.some((n) => n.op.op === "attention"), f);
  }
});

Deno.test("fusion: a user's new score modification fuses too (softcap + relative bias + mask)", () => {
  const src = `
def softcap(q: [n, d], k: [m, d], v: [m, e], bias: [m], mask: [m] = ones, cap = 20.0) -> [n, e] {
  s[i, j] = cap * tanh(q[i] . k[j] / sqrt(d) / cap) + bias[j] - 0.1 * abs(i - j)
  return softmax(where(mask > 0, s, -inf), axis=1) @ v
}`;
  const p = compileSync(src);
  assert.equal(p.plan().kernels.length, 1);
  const x = {
    q: randomTensor([2, 9, 8], { seed: 1 }),
    k: randomTensor([2, 11, 8], { seed: 2 }),
    v: randomTensor([2, 11, 5], { seed: 3 }),
    bias: randomTensor([11], { seed: 4 }),
  };
  const a = interpret(p.graph, x), b = interpret(p.optimized, x);
  assert.ok(relativeError(b, a) < 1e-13, `fused IR differs: ${relativeError(b, a)}`);
});

Deno.test("fusion: the fused IR computes what the checked IR computes, for every example", () => {
  const params: Record<string, Record<string, number>> = {
    "nystrom.attn": { landmarks: 4 },
    "skein.attn": { samples: 6 },
  };
  for (const f of Deno.readDirSync(new URL("../examples/", import.meta.url))) {
    if (!f.name.endsWith(".attn")) continue;
    const p = compileSync(load(f.name), { params: params[f.name] });
    const x: Record<string, Tensor> = {
      q: randomTensor([2, 13, 8], { seed: 5 }),
      k: randomTensor([2, 13, 8], { seed: 6 }),
      v: randomTensor([2, 13, 6], { seed: 7 }),
    };
    const a = interpret(p.graph, x), b = interpret(p.optimized, x);
    assert.ok(relativeError(b, a) < 1e-12, `${f.name}: ${relativeError(b, a)}`);
  }
});

Deno.test("fusion: a softmax that is also used elsewhere is not recomputed inside a fused pass", () => {
  const src = `
def twice(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  p = softmax(q @ k^T / sqrt(d), axis=1)
  return p @ v + p @ (2 * v)
}`;
  const p = compileSync(src);
  assert.ok(!p.optimized.nodes.some((n) => n.op.op === "attention"));
});

Deno.test("fusion: attentions whose log-sum-exp is used are not streamed again inside a mix", async () => {
  // flash_split.attn combines two halves' outputs with coefficients of their log-sum-exps: the
  // mix form matched y, but each half's pass had to run anyway for its lse.
  const src = await Deno.readTextFile(new URL("../examples/flash_split.attn", import.meta.url));
  const ops = compileSync(src).optimized.nodes.map((n) => n.op);
  assert.ok(!ops.some((o) => o.op === "attention_mix"));
  assert.equal(ops.filter((o) => o.op === "attention" && o.lse).length, 2);
});

Deno.test({
  name: "fusion: fused exact on the GPU is right at n = 1100, d = 64 (past lavapipe's loop budget)",
  ignore: adapter === undefined,
  fn: async () => {
    const p = compileSync(load("exact.attn"));
    const x = {
      q: randomTensor([1, 1100, 64], { seed: 11 }),
      k: randomTensor([1, 1100, 64], { seed: 12 }),
      v: randomTensor([1, 1100, 64], { seed: 13 }),
    };
    const want = await p.run(x, { backend: "interp" });
    const got = await p.run(x, { backend: "gpu", poison: true });
    const err = relativeError(got, want);
    assert.ok(err < 1e-5, `relative error ${err}`);
  },
});

Deno.test({
  name: "fusion: tile sizes 1, 3 and 8 query rows per invocation all agree (n = 65, 130; windows)",
  ignore: adapter === undefined,
  fn: async () => {
    const { attentionTile } = await import("../compiler/limits.ts");
    const before = attentionTile.rows;
    try {
      for (const rows of [1, 3, 8]) {
        attentionTile.rows = rows;
        for (const f of ["exact.attn", "causal_alibi.attn", "sliding_window.attn"]) {
          for (const n of [65, 130]) {
            const p = compileSync(load(f), {
              params: f.startsWith("sliding") ? { window: 7 } : {},
            });
            const x = {
              q: randomTensor([2, n, 12], { seed: n + rows }),
              k: randomTensor([2, n, 12], { seed: n + rows + 1 }),
              v: randomTensor([2, n, 6], { seed: n + rows + 2 }),
            };
            const want = await p.run(x, { backend: "interp" });
            const got = await p.run(x, { backend: "gpu", poison: true });
            const err = relativeError(got, want);
            assert.ok(err < 1e-5, `${f}, ${rows} rows, n = ${n}: relative error ${err}`);
          }
        }
      }
    } finally {
      attentionTile.rows = before;
    }
  },
});

Deno.test("memory: no plan allocates an n×n buffer (exact, windows, Nyström, YOSO, Skeinformer, linear, Performer)", () => {
  const params: Record<string, Record<string, number>> = { "nystrom.attn": { landmarks: 64 } };
  for (
    const f of [
      "exact",
      "causal_alibi",
      "sliding_window",
      "nystrom",
      "yoso",
      "skein",
      "linear",
      "performer",
    ]
  ) {
    const p = compileSync(load(`${f}.attn`), { params: params[`${f}.attn`] });
    const quadratic = p.plan().buffers.filter((b) =>
      b.shape.filter((d) => d === "n" || d === "m").length >= 2
    );
    assert.deepEqual(quadratic.map((b) => b.shape), [], f);
  }
});

Deno.test({
  name: "memory: fused exact at n = 4096 allocates far less than one n×n matrix (run accounting)",
  ignore: adapter === undefined,
  fn: async () => {
    const p = compileSync(load("exact.attn"));
    const n = 4096,
      x = {
        q: randomTensor([n, 16], { seed: 1 }),
        k: randomTensor([n, 16], { seed: 2 }),
        v: randomTensor([n, 16], { seed: 3 }),
      };
    const { output, stats } = await p.profile(x, { poison: true });
    assert.equal(stats.dispatches, 1);
    assert.ok(stats.peakBytes < (n * n * 4) / 16, `${stats.peakBytes} bytes allocated`);
    assert.ok(output.data.every(Number.isFinite));
  },
});

Deno.test({
  name: "region: Nyström's landmarks, softmax and pinv loop run as one workgroup kernel and agree",
  ignore: adapter === undefined,
  fn: async () => {
    for (const [n, m, d] of [[65, 8, 16], [257, 64, 16], [1000, 64, 80]]) {
      const p = compileSync(load("nystrom.attn"), { params: { landmarks: m } });
      const plan = p.plan();
      const region = plan.kernels.find((k) => k.name.startsWith("region_"));
      assert.ok(region, "the small values became one kernel");
      assert.ok(
        !plan.kernels.some((k) => /matmul_(50|63|65|67)/.test(k.name)),
        "no per-iteration matmuls",
      );
      const x = {
        q: randomTensor([2, n, d], { seed: n }),
        k: randomTensor([2, n, d], { seed: n + 1 }),
        v: randomTensor([2, n, 8], { seed: n + 2 }),
      };
      const want = await p.run(x, { backend: "interp" });
      const { output } = await p.profile(x, { poison: true });
      const err = relativeError(output, want);
      assert.ok(err < 1e-5, `n=${n} m=${m} d=${d}: ${err}`);
    }
  },
});

Deno.test("fusion: a dot product written sum[c](q[i, c] * k[j, c]) fuses as q[i] . k[j] does, and agrees on the GPU", async () => {
  const forms = [
    "sum[c](q[i, c] * k[j, c])",
    "sum[c](k[j, c] * q[i, c])", // the factors swapped
    "sum[c](q[i, c] * q[j, c]) - 0.5 * sum[c](q[i, c] * q[j, c])", // self-attention, twice
  ];
  for (const [f, form] of forms.entries()) {
    for (const result of ["softmax(s, axis=1) @ v", "sigmoid(s) @ v"]) {
      const p = compileSync(`def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = where(j <= i + 1, ${form} / sqrt(d), -inf)
  return ${result}
}`);
      assert.equal(p.plan().kernels.length, 1, `${form}, ${result}:\n${p.explain()}`);
      const x = {
        q: randomTensor([2, 13, 8], { seed: 1 + f }),
        k: randomTensor([2, 13, 8], { seed: 2 + f }),
        v: randomTensor([2, 13, 4], { seed: 3 + f }),
      };
      const want = await p.run(x, { backend: "interp" });
      const fused = interpret(p.optimized, x);
      assert.ok(relativeError(fused, want) < 1e-12, `${form}: the fused IR differs`);
      if (adapter === undefined) continue;
      const got = await p.run(x, { backend: "gpu", poison: true });
      assert.ok(relativeError(got, want) < 1e-5, `${form}, ${result}: GPU differs`);
    }
  }
  // A third factor is not the attention pass's own form, but the rows pass writes it as the dot
  // q[i] . (k[j] * w) (passes/rows.ts dotsOfContractions): k * w's rows first, then one pass.
  const p = compileSync(`def f(q: [n, d], k: [n, d], v: [n, e], w: [d]) -> [n, e] {
  s[i, j] = sum[c](q[i, c] * k[j, c] * w[c])
  return softmax(s, axis=1) @ v
}`);
  const passes = p.explain({ ir: true });
  assert.ok(!/^after attention fusion:/m.test(passes), passes);
  assert.ok(p.optimized.nodes.some((n) => n.op.op === "attention"), p.explain());
  assert.equal(p.plan().kernels.length, 2, p.explain());
});

Deno.test("fusion: row-normalized weights (w @ v) / sum(w, axis=1) take one pass and no n×n buffer, and agree on the GPU", async () => {
  const { LOOPS } = await import("../compiler/limits.ts");
  const QKV = "q: [n, d], k: [n, d], v: [n, e]";
  const programs = [
    // ReLU attention, the product first.
    `def f(${QKV}) -> [n, e] {
  w[i, j] = relu(q[i] . k[j] / sqrt(d))
  return (w @ v) / (sum(w, axis=1, keepdims=true) + 1e-6)
}`,
    // The row sum first, under a causal mask of weight 0.
    `def f(${QKV}) -> [n, e] {
  w[i, j] = where(j <= i, exp(-abs(q[i] . k[j])), 0.0)
  z = sum(w, axis=1, keepdims=true)
  return (w @ v) / (z + 1.0)
}`,
    // cosFormer: a reweighted product of non-negative features.
    `def f(${QKV}) -> [n, e] {
  w[i, j] = (relu(q)[i] . relu(k)[j]) * cos(pi * float(i - j) / (2.0 * float(n)))
  return (w @ v) / (sum(w, axis=1, keepdims=true) + 1e-3)
}`,
  ];
  const saved = { ...LOOPS };
  try {
    for (const split of [false, true]) {
      // Split: the key range runs in parts of 8 keys, the row sums combined from the parts.
      if (split) Object.assign(LOOPS, { budget: 60, chunk: 8, parts: 16 });
      for (const [t, src] of programs.entries()) {
        const p = compileSync(src);
        const a = p.optimized.nodes.find((n) => n.op.op === "attention");
        assert.ok(a?.op.op === "attention" && a.op.rowSum, `program ${t}:\n${p.explain()}`);
        assert.ok(p.optimized.nodes.some((n) => n.op.op === "attention_rowsum"), `program ${t}`);
        const plan = p.plan();
        assert.ok(!plan.buffers.some((b) => b.shape.filter((d) => d === "n").length > 1));
        for (const [n, d, e] of [[13, 5, 3], [70, 8, 4]]) {
          const x = {
            q: randomTensor([2, n, d], { seed: 10 * t + n }),
            k: randomTensor([2, n, d], { seed: 10 * t + n + 1 }),
            v: randomTensor([2, n, e], { seed: 10 * t + n + 2 }),
          };
          const want = await p.run(x, { backend: "interp" });
          const fused = interpret(p.optimized, x);
          assert.ok(relativeError(fused, want) < 1e-12, `program ${t}, n = ${n}: fused IR differs`);
          if (adapter === undefined) continue;
          const got = await p.run(x, { backend: "gpu", poison: true });
          const err = relativeError(got, want);
          assert.ok(err < 1e-5, `program ${t}, n = ${n}, split ${split}: GPU differs by ${err}`);
        }
        // The pass and the division; cosFormer's relu(q) and relu(k) are one dispatch before.
        const want = t === 2 ? 3 : 2;
        if (!split) assert.equal(plan.kernels.length, want, `program ${t}: ${p.explain()}`);
      }
    }
  } finally {
    Object.assign(LOOPS, saved);
  }
  // Not fused: a sum over the other axis, or weights with a third use.
  for (
    const tail of [
      "return (w @ v) / (sum(w, axis=0, keepdims=true)^T + 1.0)",
      "return (w @ v) / (sum(w, axis=1, keepdims=true) + 1.0) + sum(w, axis=0, keepdims=true)^T",
    ]
  ) {
    const p = compileSync(`def f(${QKV}) -> [n, e] {
  w[i, j] = relu(q[i] . k[j])
  ${tail}
}`);
    assert.ok(!p.optimized.nodes.some((n) => n.op.op === "attention_rowsum"), tail);
    const x = {
      q: randomTensor([2, 13, 4], { seed: 1 }),
      k: randomTensor([2, 13, 4], { seed: 2 }),
      v: randomTensor([2, 13, 4], { seed: 3 }),
    };
    const want = await p.run(x, { backend: "interp" });
    assert.ok(relativeError(interpret(p.optimized, x), want) < 1e-12, tail);
  }
});

Deno.test({
  name:
    "fusion: a softmax written out, exp(s - max(s)) / sum, is one pass with its own NaN rows, plain and split",
  ignore: adapter === undefined,
  fn: async () => {
    const { LOOPS } = await import("../compiler/limits.ts");
    // Queries i < 3 see no key: the written form makes their rows NaN (-inf - -inf).
    const score = "where(i >= 3 and j <= i, q[i] . k[j] / sqrt(d), -inf)";
    const forms = [
      "(w / sum(w, axis=1, keepdims=true)) @ v",
      "(w @ v) / sum(w, axis=1, keepdims=true)",
    ];
    const saved = { ...LOOPS };
    try {
      for (const split of [false, true]) {
        // A small loop budget sends the key loop through the split plan (kernels/split.ts).
        if (split) Object.assign(LOOPS, { budget: 120, chunk: 8, parts: 16 });
        for (const form of forms) {
          const p = compileSync(`def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = ${score}
  w = exp(s - max(s, axis=1, keepdims=true))
  return ${form}
}`);
          assert.ok(
            p.optimized.nodes.some((n) => n.op.op === "attention" && n.op.emptyNaN),
            p.explain(),
          );
          for (const n of split ? [300] : [13, 70]) {
            const x = {
              q: randomTensor([n, 8], { seed: n }),
              k: randomTensor([n, 8], { seed: n + 1 }),
              v: randomTensor([n, 5], { seed: n + 2 }),
            };
            const want = await p.run(x, { backend: "interp" });
            // The checked program (no passes) is the oracle of the rewrite's NaN rows.
            const checked = interpret(p.graph, x);
            const { output, stats } = await p.profile(x, { poison: true });
            assert.equal(stats.dispatches, split ? 2 : 1, p.explain()); // split: parts, merge
            const what = `${form}, n ${n}${split ? ", split" : ""}`;
            for (let r = 0; r < n; r++) {
              const row = (t: Tensor) => [...t.data.subarray(r * 5, r * 5 + 5)];
              const empty = r < 3;
              for (const t of [checked, want, output]) {
                assert.equal(row(t).every(Number.isNaN), empty, `${what}: row ${r}`);
              }
              if (!empty) {
                row(output).forEach((y, c) =>
                  assert.ok(Math.abs(y - row(checked)[c]) < 1e-5, `${what}: row ${r}, col ${c}`)
                );
              }
            }
          }
        }
      }
    } finally {
      Object.assign(LOOPS, saved);
    }
  },
});

Deno.test({
  name: "fusion: softmax-one written out, exp(s - m) / (exp(c - m) + sum), is one pass and a gate",
  ignore: adapter === undefined,
  fn: async () => {
    const score = "where(i >= 3 and j <= i, q[i] . k[j] / sqrt(d), -inf)";
    const forms = [
      "(w / (exp(-mx) + sum(w, axis=1, keepdims=true))) @ v",
      "(w @ v) / (sum(w, axis=1, keepdims=true) + exp(0.5 - mx))",
    ];
    for (const form of forms) {
      const p = compileSync(`def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = ${score}
  mx = max(s, axis=1, keepdims=true)
  w = exp(s - mx)
  return ${form}
}`);
      assert.equal(p.plan().kernels.length, 2, p.explain()); // the pass, then σ(lse - c) · y
      for (const n of [13, 70]) {
        const x = {
          q: randomTensor([n, 8], { seed: n }),
          k: randomTensor([n, 8], { seed: n + 1 }),
          v: randomTensor([n, 5], { seed: n + 2 }),
        };
        const checked = interpret(p.graph, x);
        const optimized = interpret(p.optimized, x);
        const gpu = await p.run(x, { backend: "gpu", poison: true });
        for (let r = 0; r < n * 5; r++) {
          const empty = r < 3 * 5; // queries i < 3 see no key: NaN as written
          for (const [name, t] of [["checked", checked], ["optimized", optimized], ["gpu", gpu]]) {
            const y = (t as Tensor).data[r];
            assert.equal(Number.isNaN(y), empty, `${form}, n ${n}: ${name} [${r}] = ${y}`);
            if (!empty) {
              const tol = name === "gpu" ? 1e-5 : 1e-12;
              assert.ok(Math.abs(y - checked.data[r]) < tol, `${form}, n ${n}: ${name} [${r}]`);
            }
          }
        }
      }
    }
  },
});
