/**
 * Language features, each run on the float64 interpreter and compared with a direct float64
 * computation written here (plain loops over plain arrays, no Attune code).
 */
import assert from "node:assert/strict";
import {
  assertCloseTo,
  compileSync,
  type Program,
  randomTensor,
  type Tensor,
  tensor,
} from "../mod.ts";
import { fillRandom } from "../compiler/rng.ts";

// ---------------------------------------------------------------------------------------------
// Helpers.

function compile(lines: string[], params?: Record<string, number | boolean>): Program {
  return compileSync(lines.join("\n") + "\n", { file: "t.attn", params });
}

function run(
  lines: string[],
  inputs: Record<string, Tensor>,
  options: { params?: Record<string, number | boolean>; seed?: number } = {},
): Promise<Tensor> {
  return compile(lines, options.params).run(inputs, { seed: options.seed, backend: "interp" });
}

const rand = (shape: number[], seed: number): Tensor => randomTensor(shape, { seed });

function strides(shape: number[]): number[] {
  const st = shape.map(() => 1);
  for (let i = shape.length - 2; i >= 0; i--) st[i] = st[i + 1] * shape[i + 1];
  return st;
}

/** Element of `t` at a multi-index. */
function at(t: Tensor, ...idx: number[]): number {
  assert.equal(idx.length, t.shape.length, "at: wrong number of indices");
  const st = strides(t.shape);
  return t.data[idx.reduce((o, x, k) => o + x * st[k], 0)];
}

/** A tensor whose element at each multi-index is f(index). */
function build(shape: number[], f: (...idx: number[]) => number, dtype: Tensor["dtype"] = "float") {
  const size = shape.reduce((a, b) => a * b, 1);
  const st = strides(shape);
  const data = new Float64Array(size);
  for (let flat = 0; flat < size; flat++) {
    const idx = shape.map((d, k) => Math.floor(flat / st[k]) % d);
    data[flat] = f(...idx);
  }
  return { shape: [...shape], data, dtype } as Tensor;
}

function close(actual: Tensor, expected: Tensor, atol = 1e-12, rtol = 1e-10): void {
  assert.deepEqual(actual.shape, expected.shape, "shape");
  assertCloseTo(actual, expected, { atol, rtol });
}

/** A [lead..., rest...] tensor's slice at the leading multi-index `lead`. */
function slice(t: Tensor, lead: number[]): Tensor {
  const rest = t.shape.slice(lead.length);
  const n = rest.reduce((a, b) => a * b, 1);
  const st = strides(t.shape.slice(0, lead.length));
  const off = lead.reduce((o, x, k) => o + x * st[k], 0) * n;
  return { shape: rest, data: t.data.slice(off, off + n), dtype: t.dtype };
}

// ---------------------------------------------------------------------------------------------
// Arithmetic and linear algebra.

Deno.test("matmul broadcasts batch dims: [b, n, k] @ [1, k, m] and [k, m]", async () => {
  const a = rand([3, 4, 5], 1), w = rand([1, 5, 2], 2), w2 = rand([5, 2], 3);
  const y = await run(
    [
      "def f(a: [b, n, k], w: [1, k, m], w2: [k, m]) {",
      "  return a @ w + a @ w2",
      "}",
    ],
    { a, w, w2 },
  );
  const want = build([3, 4, 2], (b, i, j) => {
    let s = 0;
    for (let k = 0; k < 5; k++) s += at(a, b, i, k) * (at(w, 0, k, j) + at(w2, k, j));
    return s;
  });
  close(y, want);
});

Deno.test("matmul with a vector: matrix-vector, vector-matrix, vector-vector", async () => {
  const a = rand([4, 3], 1), x = rand([3], 2), z = rand([4], 3);
  const p = compile([
    "def f(a: [n, k], x: [k], z: [n]) {",
    "  return (a @ x) * (z @ a)[0] + x @ x",
    "}",
  ]);
  assert.match(p.explain(), /^f\(.*\) -> \[n\]$/m);
  const y = await p.run({ a, x, z }, { backend: "interp" });
  let za0 = 0, xx = 0;
  for (let i = 0; i < 4; i++) za0 += at(z, i) * at(a, i, 0);
  for (let k = 0; k < 3; k++) xx += at(x, k) ** 2;
  const want = build([4], (i) => {
    let s = 0;
    for (let k = 0; k < 3; k++) s += at(a, i, k) * at(x, k);
    return s * za0 + xx;
  });
  close(y, want);
});

Deno.test("^T swaps the last two axes, also under a batch dim", async () => {
  const a = rand([2, 3, 4], 5);
  const y = await run(["def f(a: [b, n, k]) {", "  return a^T", "}"], { a });
  close(y, build([2, 4, 3], (b, i, j) => at(a, b, j, i)));
});

Deno.test("elementwise operators: // and % floor, ^, comparisons, and/or/not", async () => {
  const x = tensor([6], [-7, -2.5, 0, 3, 7.5, 9]);
  const y = await run(
    [
      "def f(x: [n]) {",
      "  a = x // 2 + 10 * (x % 4)",
      "  b = where(x >= 0 and not (x == 3) or x < -5, 1, 0)",
      "  return a + 100 * b + abs(x)^0.5",
      "}",
    ],
    { x },
  );
  const want = build([6], (i) => {
    const v = x.data[i];
    const a = Math.floor(v / 2) + 10 * (v - 4 * Math.floor(v / 4));
    const b = (v >= 0 && v !== 3) || v < -5 ? 1 : 0;
    return a + 100 * b + Math.sqrt(Math.abs(v));
  });
  close(y, want);
});

Deno.test("reductions with axis and keepdims; without axis they reduce everything", async () => {
  const x = rand([3, 4], 7);
  const p = compile([
    "def f(x: [n, d]) {",
    "  a = sum(x, axis=0)",
    "  b = mean(x, axis=1, keepdims=true)",
    "  c = max(x, axis=-1)",
    "  e = min(x, axis=0, keepdims=true)",
    "  g = prod(x, axis=1)",
    "  h = norm(x, axis=1, keepdims=true)",
    "  return x * 0 + a + b + c[0] * sum(x) + e + max(x) + g[1] + h",
    "}",
  ]);
  assert.match(p.explain(), /^f\(.*\) -> \[n, d\]$/m);
  const y = await p.run({ x }, { backend: "interp" });
  const col = (j: number, f: (a: number, b: number) => number, init: number) =>
    [0, 1, 2].reduce((acc, i) => f(acc, at(x, i, j)), init);
  const row = (i: number, f: (a: number, b: number) => number, init: number) =>
    [0, 1, 2, 3].reduce((acc, j) => f(acc, at(x, i, j)), init);
  const add = (a: number, b: number) => a + b;
  const total = [0, 1, 2].reduce((s, i) => s + row(i, add, 0), 0);
  const maxAll = Math.max(...x.data);
  const want = build(
    [3, 4],
    (i, j) =>
      col(j, add, 0) + row(i, add, 0) / 4 + row(0, Math.max, -Infinity) * total +
      col(j, Math.min, Infinity) + maxAll + row(1, (a, b) => a * b, 1) +
      Math.sqrt(row(i, (a, b) => a + b * b, 0)),
  );
  close(y, want);
});

Deno.test("softmax along axis 1 and 0; a fully -inf row gives zeros, not NaN", async () => {
  const s = rand([4, 5], 11);
  const keep = build([4, 5], (i, j) => (i === 2 ? 0 : j <= i + 1 ? 1 : 0));
  const p = compile([
    "def f(s: [n, m], keep: [n, m]) {",
    "  return softmax(where(keep > 0, s, -inf), axis=1) + 10 * softmax(s, axis=0)",
    "}",
  ]);
  const y = await p.run({ s, keep }, { backend: "interp" });
  const want = build([4, 5], (i, j) => {
    let rowMax = -Infinity, rowSum = 0;
    for (let k = 0; k < 5; k++) if (at(keep, i, k)) rowMax = Math.max(rowMax, at(s, i, k));
    for (let k = 0; k < 5; k++) if (at(keep, i, k)) rowSum += Math.exp(at(s, i, k) - rowMax);
    const masked = at(keep, i, j) ? Math.exp(at(s, i, j) - rowMax) / rowSum : 0;
    let colSum = 0;
    for (let k = 0; k < 4; k++) colSum += Math.exp(at(s, k, j));
    return masked + 10 * Math.exp(at(s, i, j)) / colSum;
  });
  close(y, want);
  for (let j = 0; j < 5; j++) assert.ok(Number.isFinite(at(y, 2, j)));
});

Deno.test("normalize divides by max(‖x‖₂, 1e-12); a zero row stays zero", async () => {
  const x = build([3, 4], (i, j) => (i === 1 ? 0 : (i + 1) * (j - 1.5)));
  const y = await run(["def f(x: [n, d]) {", "  return normalize(x, axis=1)", "}"], { x });
  const want = build([3, 4], (i, j) => {
    let s = 0;
    for (let k = 0; k < 4; k++) s += at(x, i, k) ** 2;
    return at(x, i, j) / Math.max(Math.sqrt(s), 1e-12);
  });
  close(y, want);
});

Deno.test("where, clamp, max(a, b), eye, zeros, ones, full", async () => {
  const x = rand([3, 3], 4);
  const y = await run(
    [
      "def f(x: [n, n]) {",
      "  a = where(x > 0, x, 2 * x) + clamp(x, -0.5, 0.5) + max(x, 0.25)",
      "  return a + eye(n) + zeros([n, n]) + ones(n) + full([1, n], 3)",
      "}",
    ],
    { x },
  );
  const want = build([3, 3], (i, j) => {
    const v = at(x, i, j);
    return (v > 0 ? v : 2 * v) + Math.min(Math.max(v, -0.5), 0.5) + Math.max(v, 0.25) +
      (i === j ? 1 : 0) + 1 + 3;
  });
  close(y, want);
});

// ---------------------------------------------------------------------------------------------
// Index notation.

Deno.test("index notation: q[i] . k[j] per (i, j), with i - j arithmetic (causal ALiBi)", async () => {
  const q = rand([5, 3], 1), k = rand([6, 3], 2);
  const y = await run(
    [
      "def f(q: [n, d], k: [m, d], slope = 0.5) {",
      "  s[i, j] = where(j <= i, q[i] . k[j] - slope * (i - j), -inf)",
      "  return s",
      "}",
    ],
    { q, k },
  );
  const want = build([5, 6], (i, j) => {
    if (j > i) return -Infinity;
    let s = 0;
    for (let c = 0; c < 3; c++) s += at(q, i, c) * at(k, j, c);
    return s - 0.5 * (i - j);
  });
  assert.deepEqual(y.shape, [5, 6]);
  for (let f = 0; f < want.data.length; f++) {
    if (want.data[f] === -Infinity) assert.equal(y.data[f], -Infinity);
    else assert.ok(Math.abs(y.data[f] - want.data[f]) < 1e-12, `element ${f}`);
  }
});

Deno.test("index notation: a 1-D convolution with affine subscripts reads 0 outside", async () => {
  const v = rand([7, 3], 3), w = rand([5], 4);
  const y = await run(
    [
      "def f(v: [n, e], w: [taps]) {",
      "  y[i, c] = v[i, c] + sum[t](w[t] * v[i + t - taps // 2, c])",
      "  return y",
      "}",
    ],
    { v, w },
  );
  const want = build([7, 3], (i, c) => {
    let s = at(v, i, c);
    for (let t = 0; t < 5; t++) {
      const r = i + t - 2;
      if (r >= 0 && r < 7) s += at(w, t) * at(v, r, c);
    }
    return s;
  });
  close(y, want);
});

Deno.test("index notation: reductions over index variables (sum, mean, max over two)", async () => {
  const x = rand([3, 4, 5], 9);
  const y = await run(
    [
      "def f(x: [h, n, m]) {",
      "  a[i] = mean[g](x[g, i, 0]) + max[g, t](x[g, i, t]) + sum[t](x[0, i, t] * t)",
      "  return a",
      "}",
    ],
    { x },
  );
  const want = build([4], (i) => {
    let mean = 0, mx = -Infinity, s = 0;
    for (let g = 0; g < 3; g++) mean += at(x, g, i, 0) / 3;
    for (let g = 0; g < 3; g++) for (let t = 0; t < 5; t++) mx = Math.max(mx, at(x, g, i, t));
    for (let t = 0; t < 5; t++) s += at(x, 0, i, t) * t;
    return mean + mx + s;
  });
  close(y, want);
});

Deno.test("index notation: trailing axes of a partially indexed tensor broadcast", async () => {
  const x = rand([4, 3], 1), w = rand([4], 2);
  const y = await run(["def f(x: [n, d], w: [n]) {", "  y[i] = x[i] * w[i]", "  return y", "}"], {
    x,
    w,
  });
  close(y, build([4, 3], (i, c) => at(x, i, c) * at(w, i)));
});

// ---------------------------------------------------------------------------------------------
// Gather, row assignment, scatter, bits, topk, segment_mean.

Deno.test("gather k[S]: rows by int index; indices outside the tensor read 0", async () => {
  const k = rand([5, 3], 1);
  const S = tensor([4], [3, 0, 7, -1], "int");
  const y = await run(["def f(k: [n, d], S: int[m]) {", "  return k[S]", "}"], { k, S });
  close(y, build([4, 3], (r, c) => (r === 0 ? at(k, 3, c) : r === 1 ? at(k, 0, c) : 0)));
});

Deno.test("gather with two index tensors and a scalar subscript", async () => {
  const x = rand([4, 5], 3);
  const I = tensor([3], [1, 3, 0], "int"), J = tensor([3], [4, 0, 2], "int");
  const y = await run(
    ["def f(x: [n, m], I: int[r], J: int[r]) {", "  return x[I, J] + x[2][J]", "}"],
    { x, I, J },
  );
  close(y, build([3], (r) => at(x, I.data[r], J.data[r]) + at(x, 2, J.data[r])));
});

Deno.test("row assignment r[J] = rows replaces rows J of a copy; others (and x) are kept", async () => {
  const x = rand([5, 3], 1), rows = rand([2, 3], 2);
  const J = tensor([2], [4, 1], "int");
  const y = await run(
    [
      "def f(x: [n, d], J: int[m], rows: [m, d]) {",
      "  r = x",
      "  r[J] = rows",
      "  return r + x",
      "}",
    ],
    { x, J, rows },
  );
  close(
    y,
    build(
      [5, 3],
      (i, c) => at(x, i, c) + (i === 4 ? at(rows, 0, c) : i === 1 ? at(rows, 1, c) : at(x, i, c)),
    ),
  );
});

Deno.test("scatter_add sums values into buckets per leading row; out-of-range dropped", async () => {
  const idx = tensor([2, 5], [0, 2, 2, 9, 1, 3, 3, 3, 0, -1], "int");
  const vals = rand([5, 2], 4);
  const y = await run(
    ["def f(idx: int[h, n], vals: [n, e]) {", "  return scatter_add(idx, vals, 4)", "}"],
    { idx, vals },
  );
  const want = build([2, 4, 2], (h, b, c) => {
    let s = 0;
    for (let j = 0; j < 5; j++) if (at(idx, h, j) === b) s += at(vals, j, c);
    return s;
  });
  close(y, want);
});

Deno.test("bits packs a bool last axis little-endian: Σ 2^k x[k]", async () => {
  const x = rand([3, 4, 6], 8);
  const y = await run(["def f(x: [h, n, 6]) {", "  return bits(x > 0)", "}"], { x });
  assert.equal(y.dtype, "int");
  close(
    y,
    build([3, 4], (h, i) => {
      let c = 0;
      for (let k = 0; k < 6; k++) if (at(x, h, i, k) > 0) c += 2 ** k;
      return c;
    }),
  );
});

Deno.test("topk: largest first, ties to the lower index, NaN last, k past the end", async () => {
  // NaN inputs are refused, so the program makes its own NaN where x is -7.
  const x = tensor([2, 5], [1, 3, 3, 2, 3, 5, -7, -1, 5, 0]);
  const src = ["def f(x: [r, n], k = 3) {", "  return topk(where(x == -7, log(-1.0), x), k)", "}"];
  const p = compile(src);
  const y = await p.run({ x }, { backend: "interp" });
  assert.equal(y.dtype, "int");
  assert.deepEqual(y.shape, [2, 3]);
  assert.deepEqual([...y.data], [1, 2, 4, 0, 3, 4]);
  const all = await compile(src, { k: 6 }).run({ x }, { backend: "interp" });
  assert.deepEqual([...all.data], [1, 2, 4, 3, 0, 5, 0, 3, 4, 2, 1, 5]);
});

Deno.test("segment_mean: n = 7 rows, m = 3 segments → sizes 2, 2, 3 (first k1 = (s+1)m − n)", async () => {
  const x = rand([7, 2], 6);
  const y = await run(["def f(x: [n, d]) {", "  return segment_mean(x, 3)", "}"], { x });
  const sizes = [2, 2, 3];
  const starts = [0, 2, 4];
  close(
    y,
    build([3, 2], (g, c) => {
      let s = 0;
      for (let r = starts[g]; r < starts[g] + sizes[g]; r++) s += at(x, r, c);
      return s / sizes[g];
    }),
  );
});

Deno.test("segment_mean: n = 10, m = 4 → s = 2, k1 = 2: sizes 2, 2, 3, 3; n = 8 → equal", async () => {
  const p = compile(["def f(x: [n, d], m = 4) {", "  return segment_mean(x, m)", "}"]);
  for (const [n, sizes] of [[10, [2, 2, 3, 3]], [8, [2, 2, 2, 2]], [4, [1, 1, 1, 1]]] as const) {
    const x = rand([n, 3], n);
    const y = await p.run({ x }, { backend: "interp" });
    let start = 0;
    const starts = sizes.map((len) => (start += len) - len);
    close(
      y,
      build([4, 3], (g, c) => {
        let s = 0;
        for (let r = starts[g]; r < starts[g] + sizes[g]; r++) s += at(x, r, c);
        return s / sizes[g];
      }),
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Loops and functions.

Deno.test("repeat: Newton's method for sqrt converges", async () => {
  const a = tensor([4], [2, 9, 0.25, 1e4]);
  const y = await run(
    [
      "def f(a: [n], iters = 30) {",
      "  x = a",
      "  repeat iters {",
      "    x = 0.5 * (x + a / x)",
      "  }",
      "  return x",
      "}",
    ],
    { a },
  );
  close(y, build([4], (i) => Math.sqrt(a.data[i])), 1e-12, 1e-14);
});

Deno.test("repeat: two carried values update in sequence; nested loops; repeat 0", async () => {
  const z = tensor([1], [0]);
  const y = await run(
    [
      "def f(z: [one]) {",
      "  a = z",
      "  b = z + 1",
      "  c = z",
      "  repeat 10 {",
      "    t = a + b",
      "    a = b",
      "    b = t",
      "    repeat 3 {",
      "      c = c + 1",
      "    }",
      "  }",
      "  repeat 0 {",
      "    a = a * 100",
      "  }",
      "  return a * 1000 + c",
      "}",
    ],
    { z },
  );
  // After 10 Fibonacci steps from (0, 1): a = F(10) = 55; c counts 30 increments.
  assert.deepEqual([...y.data], [55 * 1000 + 30]);
});

Deno.test("repeat: power iteration finds the dominant eigenvector", async () => {
  // A symmetric matrix with eigenvalues 5, 2, 1 and dominant eigenvector (1, 1, 1)/√3.
  const a = tensor([3, 3], [3, 1, 1, 1, 3, 1, 1, 1, 3]);
  const y = await run(
    [
      "def f(a: [n, n]) {",
      "  x = ones(n) + 0.1 * a[0]",
      "  repeat 60 {",
      "    x = normalize(a @ x)",
      "  }",
      "  return x",
      "}",
    ],
    { a },
  );
  close(y, tensor([3], [1, 1, 1].map((v) => v / Math.sqrt(3))), 1e-10);
});

Deno.test("user functions unify their size names per call and are inlined", async () => {
  const q = rand([4, 3], 1), k = rand([6, 3], 2);
  const p = compile([
    "def gram(a: [m, c], scale = 1) -> [m, m] {",
    "  return scale * a @ a^T",
    "}",
    "def f(q: [n, d], k: [l, d]) {",
    "  return sum(gram(q), axis=1) + sum(gram(k, scale=2))",
    "}",
  ]);
  assert.match(p.explain(), /^f\(q: \[n, d\], k: \[l, d\]\) -> \[n\]$/m);
  const y = await p.run({ q, k }, { backend: "interp" });
  const dot = (t: Tensor, i: number, j: number) =>
    [0, 1, 2].reduce((s, c) => s + at(t, i, c) * at(t, j, c), 0);
  let kk = 0;
  for (let i = 0; i < 6; i++) for (let j = 0; j < 6; j++) kk += 2 * dot(k, i, j);
  close(y, build([4], (i) => [0, 1, 2, 3].reduce((s, j) => s + dot(q, i, j), 0) + kk));
});

// ---------------------------------------------------------------------------------------------
// Randomness.

Deno.test("random draws: same seed → same values; other seed or stream → other values", async () => {
  const q = rand([4, 3], 1);
  const src = (...body: string[]) => ["def f(q: [n, d], seed = 7) {", ...body, "}"];
  const draw = (seed?: number) =>
    run(src("  return randn([2, n], seed)"), { q }, { params: seed === undefined ? {} : { seed } });
  const a1 = await draw(), a2 = await draw(), b = await draw(8);
  assert.deepEqual([...a1.data], [...a2.data]);
  assert.notDeepEqual([...a1.data], [...b.data]);
  // The documented keying: key (seed, stream), counter (element index, slice, 0, 0).
  const ref = new Float64Array(8);
  fillRandom(ref, "randn", { seed: 7, stream: 0, slice: 0 });
  assert.deepEqual([...a1.data], [...ref]);
  // Two call sites are two streams (0, 1, ... in source order); stream= pins one explicitly.
  const ab = await run(
    src("  a = randn([2, n], seed)", "  b = randn([2, n], seed)", "  return a - b"),
    { q },
  );
  assert.ok(ab.data.some((x) => x !== 0), "two call sites drew the same numbers");
  const ac = await run(
    src("  a = randn([2, n], seed)", "  c = randn([2, n], seed, stream=0)", "  return a - c"),
    { q },
  );
  assert.ok(ac.data.every((x) => x === 0), "stream=0 should repeat the first call site's draw");
  const s5 = await run(src("  return uniform([2, n], seed, stream=5)"), { q });
  const ref5 = new Float64Array(8);
  fillRandom(ref5, "uniform", { seed: 7, stream: 5, slice: 0 });
  assert.deepEqual([...s5.data], [...ref5]);
});

Deno.test("random draws: run({ seed }) overrides; each batch slice draws independently", async () => {
  const q = rand([2, 4, 3], 1);
  const p = compile(["def f(q: [n, d], seed = 7) {", "  return gumbel([n], seed)", "}"]);
  const y = await p.run({ q }, { backend: "interp" });
  assert.notDeepEqual([...slice(y, [0]).data], [...slice(y, [1]).data]);
  const ref = new Float64Array(4);
  fillRandom(ref, "gumbel", { seed: 7, stream: 0, slice: 1 });
  assert.deepEqual([...slice(y, [1]).data], [...ref]);
  const o1 = await p.run({ q }, { seed: 123, backend: "interp" }),
    o2 = await p.run({ q }, { seed: 123, backend: "interp" });
  assert.deepEqual([...o1.data], [...o2.data]);
  assert.notDeepEqual([...o1.data], [...y.data]);
  const viaParam = await compile(
    ["def f(q: [n, d], seed = 7) {", "  return gumbel([n], seed)", "}"],
    { seed: 123 },
  ).run({ q }, { backend: "interp" });
  assert.deepEqual([...viaParam.data], [...o1.data]);
});

Deno.test("randint draws integers in [0, hi)", async () => {
  const q = rand([50, 3], 1);
  const y = await run(["def f(q: [n, d]) {", "  return randint([n, 4], n // 10, 3)", "}"], { q });
  assert.equal(y.dtype, "int");
  assert.ok(y.data.every((x) => Number.isInteger(x) && x >= 0 && x < 5));
  assert.equal(new Set(y.data).size, 5);
});

// ---------------------------------------------------------------------------------------------
// Leading batch dims.

const EXACT = [
  "def exact(q: [n, d], k: [m, d], v: [m, e], mask: [m] = ones) -> [n, e] {",
  "  s = q @ k^T / sqrt(d)",
  "  return softmax(where(mask > 0, s, -1e9), axis=1) @ v",
  "}",
];

/** Exact attention by hand for one slice. */
function attention(q: Tensor, k: Tensor, v: Tensor, mask?: Tensor): Tensor {
  const [n, d] = q.shape, [m] = k.shape, e = v.shape[1];
  return build([n, e], (i, c) => {
    const s = Array.from({ length: m }, (_, j) => {
      if (mask && !(mask.data[j] > 0)) return -1e9;
      let x = 0;
      for (let t = 0; t < d; t++) x += at(q, i, t) * at(k, j, t);
      return x / Math.sqrt(d);
    });
    const mx = Math.max(...s);
    const w = s.map((x) => Math.exp(x - mx));
    const z = w.reduce((a, b) => a + b, 0);
    return w.reduce((acc, wj, j) => acc + (wj / z) * at(v, j, c), 0);
  });
}

Deno.test("leading batch dims: each slice equals running on the slice alone", async () => {
  const p = compile(EXACT);
  const q = rand([2, 3, 5, 4], 1), k = rand([2, 3, 6, 4], 2), v = rand([2, 3, 6, 2], 3);
  const y = await p.run({ q, k, v }, { backend: "interp" });
  assert.deepEqual(y.shape, [2, 3, 5, 2]);
  for (let b = 0; b < 2; b++) {
    for (let h = 0; h < 3; h++) {
      const [qs, ks, vs] = [q, k, v].map((t) => slice(t, [b, h]));
      const alone = await p.run({ q: qs, k: ks, v: vs }, { backend: "interp" });
      assert.deepEqual([...slice(y, [b, h]).data], [...alone.data]);
      close(alone, attention(qs, ks, vs), 1e-12);
    }
  }
});

Deno.test("leading batch dims: an input with fewer leading dims is shared (k, v per batch)", async () => {
  const p = compile(EXACT);
  const q = rand([2, 3, 5, 4], 1), k = rand([2, 6, 4], 2), v = rand([6, 2], 3);
  const y = await p.run({ q, k, v }, { backend: "interp" });
  assert.deepEqual(y.shape, [2, 3, 5, 2]);
  for (let b = 0; b < 2; b++) {
    for (let h = 0; h < 3; h++) {
      close(slice(y, [b, h]), attention(slice(q, [b, h]), slice(k, [b]), v), 1e-12);
    }
  }
});

Deno.test("a [b, n] mask broadcasts over the heads of [b, h, n, d] queries", async () => {
  const p = compile(EXACT);
  const q = rand([2, 3, 5, 4], 1), k = rand([2, 3, 5, 4], 2), v = rand([2, 3, 5, 2], 3);
  const mask = tensor([2, 5], [1, 1, 1, 0, 0, 1, 0, 1, 1, 1]);
  const y = await p.run({ q, k, v, mask }, { backend: "interp" });
  for (let b = 0; b < 2; b++) {
    for (let h = 0; h < 3; h++) {
      const [qs, ks, vs] = [q, k, v].map((t) => slice(t, [b, h]));
      const want = attention(qs, ks, vs, slice(mask, [b]));
      close(slice(y, [b, h]), want, 1e-12);
      const alone = await p.run({ q: qs, k: ks, v: vs, mask: slice(mask, [b]) }, {
        backend: "interp",
      });
      assert.deepEqual([...slice(y, [b, h]).data], [...alone.data]);
    }
  }
});

Deno.test("an empty batch dim gives an empty result of the right shape", async () => {
  const p = compile(["def f(q: [n, d]) {", "  return q * 2", "}"]);
  const y = await p.run({ q: { shape: [0, 5, 4], data: new Float64Array(0), dtype: "float" } }, {
    backend: "interp",
  });
  // Today: shape [1, 5, 4] full of NaN (bindInputs merges batch sizes 1 and 0 with Math.max).
  assert.deepEqual(y.shape, [0, 5, 4]);
  assert.equal(y.data.length, 0);
});

// ---------------------------------------------------------------------------------------------
// explain().

Deno.test("explain() shows the signature with the inferred output shape, params and IR", () => {
  const p = compile([
    "def f(q: [n, d], k: [m, d], mask: [m] = ones, landmarks = 4) {",
    "  s = softmax(q @ k^T, axis=1)",
    "  return segment_mean(s^T, landmarks)",
    "}",
  ], { landmarks: 2 });
  const text = p.explain();
  const first = text.split("\n")[0];
  assert.equal(first, "f(q: [n, d], k: [m, d], mask: [m] = ones) -> [2, n]");
  assert.match(text, /^params: landmarks = 2$/m);
  assert.match(text, /^size symbols: n, d, m$/m);
  assert.match(text, /segment_mean\{segments=2\}/);
  assert.match(text, /\[n, m\] = softmax\{axis=1\}/);
});

// ---------------------------------------------------------------------------------------------
// Calls of user functions with tensor defaults.

Deno.test("a call may leave out a tensor parameter with a default: a filled tensor of its shape", async () => {
  const lib = [
    "def g(q: [n, d], w: [n] = ones, b: [c] = zeros, c = 3, s = 2.0) {",
    "  return (q^T * w)^T * s + sum(b)",
    "}",
  ];
  const q = rand([5, 4], 1);
  const left = await run([...lib, "def f(q: [n, d]) {", "  return g(q)", "}"], { q });
  const given = await run(
    [...lib, "def f(q: [n, d]) {", "  return g(q, ones([n]), zeros([3]))", "}"],
    { q },
  );
  assertCloseTo(left, given, { rtol: 0 });
  // A zeros default and a number default, in a different position.
  const z = await run([
    "def h(q: [n, d], w: [n] = 0.5) {",
    "  return (q^T * w)^T",
    "}",
    "def f(q: [n, d]) {",
    "  return h(q)",
    "}",
  ], { q });
  assertCloseTo(z, { ...q, data: q.data.map((x) => x * 0.5) }, { rtol: 1e-15 });
  // A default whose size no argument sets is an error that says so.
  assert.throws(
    () =>
      compile([
        "def h(q: [n, d], w: [m] = ones) {",
        "  return q",
        "}",
        "def f(q: [n, d]) {",
        "  return h(q)",
        "}",
      ]),
    /t\.attn:5:10: h: cannot size the default of w: no argument sets m/,
  );
});
