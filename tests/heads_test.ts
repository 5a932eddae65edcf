/**
 * Heads and groups: head(), heads(), batch(), batches() in programs (0 to 3 leading dims), ALiBi
 * with its slopes computed in the program (one dispatch), and grouped/multi-query attention (k and
 * v with fewer heads than q), each checked against a float64 per-head loop written here, and the
 * GPU against the interpreter with poisoned buffers.
 */
import assert from "node:assert/strict";
import { compileSync, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { interpret } from "../compiler/interp.ts";
import { getDevice } from "../runtime/device.ts";
import { execute } from "../runtime/executor.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);

const ALIBI = `def alibi(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  slope = 2.0 ^ (-8.0 * float(head() + 1) / float(heads()))
  s[i, j] = where(j <= i, q[i] . k[j] / sqrt(d) - slope * float(i - j), -inf)
  return softmax(s, axis=1) @ v
}`;

const EXACT = `def exact(q: [n, d], k: [m, d], v: [m, e]) -> [n, e] {
  return softmax(q @ k^T / sqrt(d), axis=1) @ v
}`;

/** Every slice's place, written into its rows: head + 10 heads + 100 batch + 1000 batches. */
const WHERE = `def where_am_i(q: [n, d]) -> [n, d] {
  return q * 0.0 + float(head() + 10 * heads() + 100 * batch() + 1000 * batches())
}`;

/** Row r of slice `s` of a [..., rows, w] tensor. */
function rowOf(t: Tensor, s: number, r: number): number[] {
  const [rows, w] = t.shape.slice(-2);
  const at = (s * rows + r) * w;
  return [...t.data.subarray(at, at + w)];
}

/**
 * softmax_j(score(h, i, j)) v_j per slice of q [..., H, n, d], k/v [..., Hk, m, ·] (Hk divides H:
 * q head h reads k/v head floor(h / (H / Hk))), in float64.
 */
function perHead(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  score: (qk: number, h: number, H: number, i: number, j: number) => number,
): Tensor {
  const last3 = (t: Tensor) => [1, ...t.shape].slice(-3);
  const [H, n, d] = last3(q), [Hk, m] = last3(k), e = v.shape.at(-1)!;
  const slices = q.data.length / (n * d);
  const out = new Float64Array(slices * n * e);
  for (let s = 0; s < slices; s++) {
    const h = s % H, sk = Math.floor(s / H) * Hk + Math.floor(h / (H / Hk));
    for (let i = 0; i < n; i++) {
      const qi = rowOf(q, s, i);
      const sc = Array.from({ length: m }, (_, j) => {
        const kj = rowOf(k, sk, j);
        return score(qi.reduce((t, x, c) => t + x * kj[c], 0), h, H, i, j);
      });
      const mx = Math.max(...sc);
      const w = sc.map((x) => (mx === -Infinity ? 0 : Math.exp(x - mx)));
      const z = w.reduce((a, b) => a + b, 0);
      for (let j = 0; j < m; j++) {
        const vj = rowOf(v, sk, j);
        for (let c = 0; c < e; c++) out[(s * n + i) * e + c] += (w[j] / z) * vj[c];
      }
    }
  }
  return { shape: [...q.shape.slice(0, -1), e], data: out, dtype: "float" };
}

const alibiScore = (d: number) => (qk: number, h: number, H: number, i: number, j: number) =>
  j <= i ? qk / Math.sqrt(d) - 2 ** (-8 * (h + 1) / H) * (i - j) : -Infinity;
const exactScore = (d: number) => (qk: number) => qk / Math.sqrt(d);

Deno.test("head(), heads(), batch(), batches() with 0, 1, 2 and 3 leading dims (interpreter)", async () => {
  const p = compileSync(WHERE);
  // [] → one slice; [H] → heads only; [B, H]; [A, B, H] → batch() flattens [A, B].
  for (const lead of [[], [3], [2, 3], [2, 2, 3]]) {
    const x = await p.run({ q: randomTensor([...lead, 2, 1], { seed: 1 }) }, {
      backend: "interp",
    });
    const heads = lead.at(-1) ?? 1, slices = lead.reduce((a, b) => a * b, 1);
    const batches = slices / heads;
    for (let s = 0; s < slices; s++) {
      const want = (s % heads) + 10 * heads + 100 * Math.floor(s / heads) + 1000 * batches;
      assert.deepEqual(rowOf(x, s, 1), [want], `leading dims [${lead}], slice ${s}`);
    }
  }
});

Deno.test("head() with a [b, n] mask beside [b, h, n, d] queries counts along h", async () => {
  const p = compileSync(`def f(q: [n, d], mask: [n]) -> [n] {
  return mask * 0.0 + float(head()) + 10.0 * float(batch())
}`);
  const x = await p.run({
    q: randomTensor([2, 3, 4, 2], { seed: 1 }),
    mask: randomTensor([2, 4], { seed: 2 }),
  }, { backend: "interp" });
  assert.deepEqual(x.shape, [2, 3, 4]);
  for (let s = 0; s < 6; s++) assert.equal(x.data[s * 4 + 3], (s % 3) + 10 * Math.floor(s / 3));
});

Deno.test("ALiBi with in-program slopes: interpreter = a float64 per-head loop, one dispatch", async () => {
  const p = compileSync(ALIBI);
  assert.equal(p.plan().kernels.length, 1);
  for (const [lead, n, d, e] of [[[5], 13, 3, 5], [[2, 3], 7, 4, 1], [[], 1, 2, 3]] as const) {
    const q = randomTensor([...lead, n, d], { seed: n }),
      k = randomTensor([...lead, n, d], { seed: n + 1 }),
      v = randomTensor([...lead, n, e], { seed: n + 2 });
    const got = await p.run({ q, k, v }, { backend: "interp" });
    const err = relativeError(got, perHead(q, k, v, alibiScore(d)));
    assert.ok(err < 1e-12, `[${lead}], n = ${n}: relative error ${err}`);
  }
});

Deno.test("grouped (8 q / 2 kv) and multi-query (8 / 1) attention: interpreter = a per-head loop", async () => {
  const p = compileSync(EXACT);
  assert.equal(p.plan().kernels.length, 1);
  for (const [qLead, kvLead] of [[[8], [2]], [[8], [1]], [[2, 8], [2, 2]], [[3, 6], [3, 3]]]) {
    const q = randomTensor([...qLead, 7, 3], { seed: 1 }),
      k = randomTensor([...kvLead, 13, 3], { seed: 2 }),
      v = randomTensor([...kvLead, 13, 5], { seed: 3 });
    const got = await p.run({ q, k, v }, { backend: "interp" });
    const err = relativeError(got, perHead(q, k, v, exactScore(3)));
    assert.ok(err < 1e-12, `q [${qLead}], kv [${kvLead}]: relative error ${err}`);
    // Given first, the smaller k and v group the same way.
    const again = await p.run({ k, v, q }, { backend: "interp" });
    assert.deepEqual([...again.data], [...got.data]);
  }
});

Deno.test("grouped ALiBi: in-program slopes per q head, k/v heads grouped", async () => {
  const p = compileSync(ALIBI);
  const q = randomTensor([8, 13, 4], { seed: 7 }),
    k = randomTensor([2, 13, 4], { seed: 8 }),
    v = randomTensor([2, 13, 3], { seed: 9 });
  const got = await p.run({ q, k, v }, { backend: "interp" });
  const err = relativeError(got, perHead(q, k, v, alibiScore(4)));
  assert.ok(err < 1e-12, `relative error ${err}`);
});

Deno.test("head counts that do not divide, and groups outside the heads dim, are errors", () => {
  const p = compileSync(EXACT, { file: "gqa.attn" });
  const first = (x: Record<string, Tensor>) => {
    try {
      interpret(p.graph, x);
    } catch (e) {
      return (e as Error).message.split("\n")[0];
    }
    return "no error";
  };
  const r = (shape: number[]) => randomTensor(shape, { seed: 1 });
  assert.equal(
    first({ q: r([8, 5, 4]), k: r([3, 6, 4]), v: r([3, 6, 2]) }),
    "gqa.attn:1:22: input k has batch dims [3] that do not match [8] of the other inputs",
  );
  assert.equal(
    first({ q: r([4, 5, 4]), k: r([6, 6, 4]), v: r([6, 6, 2]) }),
    "gqa.attn:1:22: input k has batch dims [6] that do not match [4] of the other inputs",
  );
  // Only the heads dim (the last leading dim) groups: a batch dim of 2 against 4 is a mistake.
  assert.equal(
    first({ q: r([4, 2, 5, 4]), k: r([2, 2, 6, 4]), v: r([2, 2, 6, 2]) }),
    "gqa.attn:1:22: input k has batch dims [2, 2] that do not match [4, 2] of the other inputs",
  );
});

Deno.test({
  name:
    "heads on the GPU (poisoned): slice places, ALiBi slopes, GQA 8/2 and MQA 8/1 = interpreter",
  ignore: adapter === undefined,
  fn: async () => {
    const cases: [string, Record<string, Tensor>][] = [
      ["where", { q: randomTensor([2, 2, 3, 5, 1], { seed: 1 }) }],
      ["alibi", {
        q: randomTensor([2, 3, 13, 5], { seed: 2 }),
        k: randomTensor([2, 3, 13, 5], { seed: 3 }),
        v: randomTensor([2, 3, 13, 3], { seed: 4 }),
      }],
      ["alibi", {
        q: randomTensor([8, 7, 4], { seed: 5 }),
        k: randomTensor([2, 7, 4], { seed: 6 }),
        v: randomTensor([2, 7, 3], { seed: 7 }),
      }],
      ["exact", {
        q: randomTensor([2, 8, 7, 3], { seed: 8 }),
        k: randomTensor([2, 2, 65, 3], { seed: 9 }),
        v: randomTensor([2, 2, 65, 5], { seed: 10 }),
      }],
      ["exact", {
        q: randomTensor([8, 13, 3], { seed: 11 }),
        k: randomTensor([1, 13, 3], { seed: 12 }),
        v: randomTensor([1, 13, 5], { seed: 13 }),
      }],
    ];
    const src: Record<string, string> = { where: WHERE, alibi: ALIBI, exact: EXACT };
    for (const [name, x] of cases) {
      const p = compileSync(src[name]);
      const want = await p.run(x, { backend: "interp" });
      const got = await p.run(x, { backend: "gpu", poison: true });
      const err = relativeError(got, want);
      assert.ok(err < 1e-5, `${name} [${x.q.shape}] / [${x.k?.shape}]: relative error ${err}`);
    }
    // Split into chunks of slices (a forced small binding limit), head() counts the whole run.
    const p = compileSync(ALIBI);
    const x = cases[1][1];
    const opts = { poison: true, maxBindingBytes: 13 * 5 * 4 * 2 };
    const { output, stats } = await execute(p.optimized, p.plan(), x, opts);
    assert.equal(stats.dispatches, 3, "one dispatch per chunk of two slices");
    const err = relativeError(output, await p.run(x, { backend: "interp" }));
    assert.ok(err < 1e-5, `chunked: relative error ${err}`);
  },
});

Deno.test("heads: a vector read at head() (a per-head temperature) is read inside the fused pass: 1 dispatch, the interpreter's values on the GPU", async () => {
  const program = (index: string) =>
    `def f(q: [n, d], k: [n, d], v: [n, e], temp: [h]) -> [n, e] {
  s[i, j] = where(j <= i, q[i] . k[j] / temp[${index}] + temp[0], -inf)
  return softmax(s, axis=1) @ v
}`;
  for (const index of ["head()", "heads() - 1 - head()", "batch() * heads() + head()"]) {
    const p = compileSync(program(index));
    assert.equal(p.plan().kernels.length, 1, `${index}:\n${p.explain()}`);
    // 3 heads and 2 batches; temp of 4 (in range for some indices, past the end for others:
    // an index outside reads 0, as a gather does, and the division by it makes NaN rows).
    const x: Record<string, Tensor> = {
      q: randomTensor([2, 3, 13, 8], { seed: 1 }),
      k: randomTensor([2, 3, 13, 8], { seed: 2 }),
      v: randomTensor([2, 3, 13, 4], { seed: 3 }),
      temp: { shape: [4], data: Float64Array.from([0.5, 1.5, 2.5, 3.5]), dtype: "float" },
    };
    const agree = (got: Tensor, want: Tensor, tol: number, what: string) => {
      for (let t = 0; t < want.data.length; t++) {
        assert.equal(Number.isNaN(got.data[t]), Number.isNaN(want.data[t]), `${what}: at ${t}`);
      }
      const finite = (y: Tensor) => ({ ...y, data: y.data.map((v) => (Number.isNaN(v) ? 0 : v)) });
      assert.ok(relativeError(finite(got), finite(want)) < tol, what);
    };
    const want = await p.run(x, { backend: "interp" });
    agree(interpret(p.optimized, x), want, 1e-12, `${index}, optimized`);
    if (adapter === undefined) continue;
    agree(await p.run(x, { backend: "gpu", poison: true }), want, 1e-5, `${index}, GPU`);
  }
  // An index read from data is not a per-slice constant: it stays a gather of its own.
  const p = compileSync(`def f(q: [n, d], k: [n, d], v: [n, e], temp: [h], at: int[1]) -> [n, e] {
  s[i, j] = q[i] . k[j] / temp[at[0] + head()]
  return softmax(s, axis=1) @ v
}`);
  assert.ok(p.plan().kernels.length > 1, p.explain());
});
