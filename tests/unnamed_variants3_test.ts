/**
 * A third generality probe (issue #9): attention variants that no issue, example, bench or the
 * earlier probes name (tests/unnamed_variants_test.ts, tests/unnamed_variants2_test.ts,
 * tests/thresholds_probe_test.ts, tests/new_features_probe_test.ts), each written as a researcher
 * would from docs/language.md: gpt-oss sinks, StreamingLLM, interleaved RoPE, multi-head latent
 * attention, causal FAVOR+, linear cosFormer, gated linear attention, NSA-style block selection,
 * 2-D neighborhood attention and awkward extremes. Each compiles, its interpreter output is finite,
 * and on the GPU (poisoned buffers, awkward sizes, fresh random data) it agrees with the float64
 * interpreter. Dispatch counts are asserted only where the docs promise them; the probe's findings
 * are the ignored tests named "FINDING" at the end.
 */
import assert from "node:assert/strict";
import { randomTensor, type Tensor, tensor } from "../mod.ts";
import {
  agree,
  agreeAtSizes,
  compiled,
  compilesFusesFinite,
  CROSS,
  disagreement,
  inputs,
  perHead,
  QKV,
  SCORE,
  type Sizes,
  softmaxOf,
  type Variant,
} from "./probe_helpers.ts";
import { getDevice } from "../runtime/device.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);
/** Fresh per run; every failure message carries it. */
const SEED = Math.floor(Math.random() * 2 ** 30);

/**
 * A per-head table [H, ...] of rank above q's: it must carry the run's leading dims as 1s, or q's
 * leading dims read as batch dims the table lacks (see the finding on per-head tables).
 */
const headTable = (lead: number[], shape: number[], seed: number) =>
  randomTensor([...lead.slice(0, -1).map(() => 1), 1, lead.at(-1) ?? 1, ...shape], { seed });

/** gpt-oss: a learned sink logit per head joins each row's softmax denominator. */
const SINKS = ({ lead, seed }: Sizes) => ({
  sink: perHead(lead, (h) => 0.3 * h - 0.4 + (seed % 7) / 10),
});

/** MLA's query, latent c of rank 3 and projections. */
const mlaInputs = ({ lead, n, m, d, e, seed }: Sizes) => ({
  q: randomTensor([...lead, n, d], { seed }),
  c: randomTensor([...lead, m, 3], { seed: seed + 1 }),
  Wk: randomTensor([3, d], { seed: seed + 2 }),
  Wv: randomTensor([3, e], { seed: seed + 3 }),
});

/** The interleaved (GPT-J) rotary embedding of x's rows at positions i + offset. */
const ROPE = `def rope(x: [n, d], offset, base = 10000.0) -> [n, d] {
  theta = base ^ (-2.0 * float(arange(d) // 2) / float(d))
  r[i, c] = x[i, c] * cos(float(i + offset) * theta[c]) +
    where(c % 2 == 0, -x[i, c + 1], x[i, c - 1]) * sin(float(i + offset) * theta[c])
  return r
}
`;

const VARIANTS: Variant[] = [
  {
    name: "gpt-oss sinks [H] at head(), by logsumexp, causal",
    source: `def sinks_lse(${QKV}, sink: [h]) -> [n, e] {
  s[i, j] = where(j <= i, ${SCORE}, -inf)
  y = softmax(s, axis=1) @ v
  l = logsumexp(s, axis=1)
  r[i, c] = y[i, c] * sigmoid(l[i] - sink[head()])
  return r
}`,
    extra: SINKS,
    dispatches: 2, // one flash pass with its log-sum-exp, one elementwise gate
    fused: "attention",
  },
  {
    name: "gpt-oss sinks [H], a (y, lse) function merged with the sink, grouped heads",
    source: `def flash(q: [n, d], k: [m, d], v: [m, e]) -> ([n, e], [n]) {
  s[i, j] = where(j <= i + m - n, ${SCORE}, -inf)
  return softmax(s, axis=1) @ v, logsumexp(s, axis=1)
}

def sinks_pair(${CROSS}, sink: [h]) -> [n, e] {
  y, l = flash(q, k, v)
  top = max(l, sink[head()])
  w = exp(l - top) / (exp(l - top) + exp(sink[head()] - top))
  r[i, c] = y[i, c] * w[i]
  return r
}`,
    extra: SINKS,
    cross: true,
    kvHeads: 1,
    fused: "attention",
  },
  {
    name: "gpt-oss sinks [H] by hand: exp(s - mx) over exp(sink - mx) + row sum",
    source: `def sinks_hand(${QKV}, sink: [h]) -> [n, e] {
  s[i, j] = where(j <= i, ${SCORE}, -inf)
  mx = max(max(s, axis=1, keepdims=true), sink[head()])
  w = exp(s - mx)
  return (w @ v) / (exp(sink[head()] - mx) + sum(w, axis=1, keepdims=true))
}`,
    extra: SINKS,
  },
  {
    name: "StreamingLLM: 4 sink tokens plus a causal window of 8",
    source: softmaxOf(
      "streaming",
      ", W = 8, S = 4",
      `where(j <= i and (i - j < W or j < S), ${SCORE}, -inf)`,
    ),
    dispatches: 1,
    fused: "attention",
  },
  {
    name: "StreamingLLM over a KV cache (n queries at the end of m keys)",
    source: softmaxOf(
      "streaming_kv",
      ", W = 8, S = 4",
      `where(j <= i + m - n and (i + m - n - j < W or j < S), ${SCORE}, -inf)`,
      CROSS,
    ),
    cross: true,
    dispatches: 1,
    fused: "attention",
  },
  {
    name: "interleaved (GPT-J) RoPE on q and k over a KV cache, causal",
    source: `${ROPE}
def rope_kv(${CROSS}) -> [n, e] {
  qr = rope(q, m - n)
  kr = rope(k, 0)
  s[i, j] = where(j <= i + m - n, qr[i] . kr[j] / sqrt(d), -inf)
  return softmax(s, axis=1) @ v
}`,
    cross: true,
    fused: "attention",
  },
  {
    name: "rotate-half RoPE by column slices: two dot products per score",
    source: `def rope_halves(${QKV}, base = 10000.0, half = 4) -> [n, e] {
  pos = float(arange(n))
  theta = base ^ (-float(arange(half)) / float(half))
  ang[i, c] = pos[i] * theta[c]
  q1 = q[:, :half]
  q2 = q[:, half:2 * half]
  k1 = k[:, :half]
  k2 = k[:, half:2 * half]
  qa = q1 * cos(ang) - q2 * sin(ang)
  qb = q2 * cos(ang) + q1 * sin(ang)
  ka = k1 * cos(ang) - k2 * sin(ang)
  kb = k2 * cos(ang) + k1 * sin(ang)
  s[i, j] = where(j <= i, (qa[i] . ka[j] + qb[i] . kb[j]) / sqrt(2.0 * float(half)), -inf)
  return softmax(s, axis=1) @ v
}`,
  },
  {
    name: "multi-head latent attention: k, v from a latent c [m, r], causal over a cache",
    source: `def mla(q: [n, d], c: [m, r], Wk: [r, d], Wv: [r, e]) -> [n, e] {
  k = c @ Wk
  v = c @ Wv
  s[i, j] = where(j <= i + m - n, q[i] . k[j] / sqrt(d), -inf)
  return softmax(s, axis=1) @ v
}`,
    own: mlaInputs,
    cross: true,
    fused: "attention",
  },
  {
    name: "MLA with absorbed weights: scores and values in the latent space",
    source: `def mla_absorbed(q: [n, d], c: [m, r], Wk: [r, d], Wv: [r, e]) -> [n, e] {
  qc = q @ Wk^T
  s[i, j] = where(j <= i + m - n, qc[i] . c[j] / sqrt(d), -inf)
  return (softmax(s, axis=1) @ c) @ Wv
}`,
    own: mlaInputs,
    cross: true,
    fused: "attention",
  },
  {
    name: "causal FAVOR+ (positive random features, prefix sums)",
    source: `def favor_causal(${QKV}, features = 16, seed = 11) -> [n, e] {
  W = randn([d, features], seed)
  qs = q / d^0.25
  ks = k / d^0.25
  fq = exp(qs @ W - sum(qs * qs, axis=1, keepdims=true) / 2) / sqrt(features)
  fk = exp(ks @ W - sum(ks * ks, axis=1, keepdims=true) / 2) / sqrt(features)
  kv[j, a, c] = fk[j, a] * v[j, c]
  S = cumsum(kv, axis=0)
  z = cumsum(fk, axis=0)
  num[i, c] = sum[a](fq[i, a] * S[i, a, c])
  den[i] = sum[a](fq[i, a] * z[i, a])
  y[i, c] = num[i, c] / den[i]
  return y
}`,
    fused: "causal_contract",
  },
  {
    name: "cosFormer in linear form (cos(a - b) = cos a cos b + sin a sin b)",
    source: `def cosformer_linear(${QKV}) -> [n, e] {
  ang = pi / 2.0 * float(arange(n)) / float(n)
  fq = relu(q)
  fk = relu(k)
  qc[i, a] = fq[i, a] * cos(ang[i])
  qs[i, a] = fq[i, a] * sin(ang[i])
  kc[j, a] = fk[j, a] * cos(ang[j])
  ks[j, a] = fk[j, a] * sin(ang[j])
  num = qc @ (kc^T @ v) + qs @ (ks^T @ v)
  den = qc @ sum(kc, axis=0) + qs @ sum(ks, axis=0)
  y[i, c] = num[i, c] / (den[i] + 1e-6)
  return y
}`,
    positive: true,
  },
  {
    name: "causal cosFormer in linear form (two prefix-sum states)",
    source: `def cosformer_causal(${QKV}) -> [n, e] {
  ang = pi / 2.0 * float(arange(n)) / float(n)
  fq = relu(q)
  fk = relu(k)
  qc[i, a] = fq[i, a] * cos(ang[i])
  qs[i, a] = fq[i, a] * sin(ang[i])
  kc[j, a] = fk[j, a] * cos(ang[j])
  ks[j, a] = fk[j, a] * sin(ang[j])
  kvc[j, a, c] = kc[j, a] * v[j, c]
  kvs[j, a, c] = ks[j, a] * v[j, c]
  Sc = cumsum(kvc, axis=0)
  Ss = cumsum(kvs, axis=0)
  zc = cumsum(kc, axis=0)
  zs = cumsum(ks, axis=0)
  num[i, c] = sum[a](qc[i, a] * Sc[i, a, c]) + sum[a](qs[i, a] * Ss[i, a, c])
  den[i] = sum[a](qc[i, a] * zc[i, a]) + sum[a](qs[i, a] * zs[i, a])
  y[i, c] = num[i, c] / (den[i] + 1e-6)
  return y
}`,
    positive: true,
  },
  {
    name: "stick-breaking as a direct sum over the keys between (O(n^3) as written)",
    source: `def stick_sum(${QKV}) -> [n, e] {
  s[i, j] = ${SCORE}
  a[i, j] = where(j < i,
    sigmoid(s[i, j]) * exp(sum[t](where(t > j and t < i, log(sigmoid(-s[i, t])), 0.0))), 0.0)
  return a @ v
}`,
  },
  {
    name: "gated linear attention, per-channel gates, quadratic (masked) form",
    source: `def gla_quadratic(${QKV}, g: [n, d]) -> [n, e] {
  F = cumsum(log(sigmoid(g + 3.0)), axis=0)
  qf = q * exp(F)
  kf = k * exp(-F)
  w[i, j] = where(j <= i, qf[i] . kf[j], 0.0)
  return w @ v
}`,
    extra: ({ lead, n, d, seed }) => ({ g: randomTensor([...lead, n, d], { seed }) }),
    positive: true,
    fused: "attention",
  },
  {
    name: "gated linear attention, per-channel gates, scan form",
    source: `def gla_scan(${QKV}, g: [n, d]) -> [n, e] {
  F = cumsum(log(sigmoid(g + 3.0)), axis=0)
  kv[j, a, c] = k[j, a] * exp(-F[j, a]) * v[j, c]
  S = cumsum(kv, axis=0)
  y[i, c] = sum[a](q[i, a] * exp(F[i, a]) * S[i, a, c])
  return y
}`,
    extra: ({ lead, n, d, seed }) => ({ g: randomTensor([...lead, n, d], { seed }) }),
    positive: true,
    fused: "causal_contract",
  },
  {
    name: "per-head temperature [H] and window 8 * 2^head() in one mask",
    source: softmaxOf(
      "head_window",
      ", temp: [h]",
      `where(j <= i and float(i - j) < 8.0 * 2.0 ^ float(head()), ${SCORE} * temp[head()], -inf)`,
    ),
    extra: ({ lead }) => ({ temp: perHead(lead, (h) => 0.5 + 0.75 * h) }),
    dispatches: 1,
    fused: "attention",
  },
  {
    name: "NSA-style: top-2 of 16-key block means plus a local window, causal",
    source: `def nsa(${QKV}, blk = 16, nb = 8, top = 2, win = 4) -> [n, e] {
  b = arange(n) // blk
  ksum = scatter_add(b, k, nb)
  cnt = scatter_add(b, ones([n]), nb)
  kb[t, c] = ksum[t, c] / max(cnt[t], 1.0)
  bs[i, t] = where(t * blk <= i, q[i] . kb[t], -inf)
  pick = topk(bs, top)
  s[i, j] = where(j <= i and (pick[i, 0] == j // blk or pick[i, 1] == j // blk or i - j < win),
    ${SCORE}, -inf)
  return softmax(s, axis=1) @ v
}`,
    fused: "attention",
  },
  {
    name: "2-D neighborhood attention on a W-wide grid, per-head 2-D relative bias [H, 3, 3]",
    source: softmaxOf(
      "natten",
      ", rpb: [h, a, b], W = 5, K = 1",
      `where(abs(i // W - j // W) <= K and abs(i % W - j % W) <= K,
    ${SCORE} + rpb[head(), j // W - i // W + K, j % W - i % W + K], -inf)`,
    ),
    extra: ({ lead, seed }) => ({ rpb: headTable(lead, [3, 3], seed) }),
    dispatches: 1,
    fused: "attention",
  },
  {
    name: "NATTEN proper: the 3 x 3 window clamped inside the grid, bias [H, 5, 5]",
    source: `def natten_clamped(${QKV}, rpb: [h, a, b], W = 5, K = 1) -> [n, e] {
  rs = clamp(arange(n) // W - K, 0, n // W - 2 * K - 1)
  cs = clamp(arange(n) % W - K, 0, W - 2 * K - 1)
  s[i, j] = where(j // W >= rs[i] and j // W <= rs[i] + 2 * K and
    j % W >= cs[i] and j % W <= cs[i] + 2 * K,
    ${SCORE} + rpb[head(), j // W - i // W + 2 * K, j % W - i % W + 2 * K], -inf)
  return softmax(s, axis=1) @ v
}`,
    extra: ({ lead, seed }) => ({ rpb: headTable(lead, [5, 5], seed) }),
    dispatches: 1,
    fused: "attention",
  },
  {
    // Lo et al. 2025: relu(exp(x) - 1) over the row sum of |exp(x) - 1| (may attend to nothing).
    name: "softpick, causal",
    source: `def softpick(${QKV}) -> [n, e] {
  s[i, j] = where(j <= i, ${SCORE}, -inf)
  mx = max(s, axis=1, keepdims=true)
  t = exp(s - mx) - exp(-mx)
  return (relu(t) @ v) / (sum(abs(t), axis=1, keepdims=true) + 1e-6)
}`,
  },
  {
    name: "packed documents: RoPE positions and a document mask from int inputs",
    source: `${ROPE}
def packed(${QKV}, pos: int[n], doc: int[n], base = 10000.0) -> [n, e] {
  theta = base ^ (-2.0 * float(arange(d) // 2) / float(d))
  qr[i, c] = q[i, c] * cos(float(pos[i]) * theta[c]) +
    where(c % 2 == 0, -q[i, c + 1], q[i, c - 1]) * sin(float(pos[i]) * theta[c])
  kr[j, c] = k[j, c] * cos(float(pos[j]) * theta[c]) +
    where(c % 2 == 0, -k[j, c + 1], k[j, c - 1]) * sin(float(pos[j]) * theta[c])
  s[i, j] = where(doc[i] == doc[j] and j <= i, qr[i] . kr[j] / sqrt(d), -inf)
  return softmax(s, axis=1) @ v
}`,
    extra: ({ n }) => {
      // Documents of 5, 1, 9, 5, 1, 9, ... tokens, positions counted from each start.
      const doc: number[] = [], pos: number[] = [];
      for (let t = 0, id = 0; t < n; id++) {
        for (let p = 0; p < [5, 1, 9][id % 3] && t < n; p++, t++) [doc[t], pos[t]] = [id, p];
      }
      return { pos: tensor([n], pos, "int"), doc: tensor([n], doc, "int") };
    },
    fused: "attention",
  },
  {
    // Leviathan et al. 2024: each query masks the keys earlier queries chose to forget.
    name: "selective attention: minus a prefix sum over queries of relu(scores), causal",
    source: `def selective(${QKV}) -> [n, e] {
  s = q @ k^T / sqrt(d)
  f[i, j] = where(j < i and j > 0, relu(s[i, j]), 0.0)
  F = cumsum(f, axis=0)
  t[i, j] = where(j <= i, ${SCORE} - where(i > 0, F[i - 1, j], 0.0), -inf)
  return softmax(t, axis=1) @ v
}`,
    fused: "attention",
  },
  {
    // Arora et al. 2024: exp(x) by its second-order Taylor series, 1 + x + x^2 / 2 > 0.
    name: "Based: Taylor feature attention, causal, row-normalized",
    source: `def based(${QKV}) -> [n, e] {
  w[i, j] = where(j <= i, 1.0 + ${SCORE} + (${SCORE})^2 / 2.0, 0.0)
  return (w @ v) / sum(w, axis=1, keepdims=true)
}`,
    dispatches: 2, // the pass with its row sums, the division
    fused: "attention_rowsum",
  },
  {
    name: "every row of head 1 masked (zeros there), causal elsewhere",
    source: softmaxOf("dead_head", "", `where(head() != 1 and j <= i, ${SCORE}, -inf)`),
    dispatches: 1,
    fused: "attention",
  },
];

const variant = (prefix: string) => VARIANTS.find((v) => v.name.startsWith(prefix))!;

Deno.test("unnamed variants 3: each compiles, fuses as the docs say, and is finite on the interpreter", async () => {
  await compilesFusesFinite(VARIANTS, SEED);
});

Deno.test("unnamed variants 3: explain says why the two-dot-product RoPE score does not fuse", () => {
  const text = compiled(variant("rotate-half").source).explain({ ir: false });
  assert.match(text, /softmax did not fuse: it holds two dot products/);
});

/** The interpreter's outputs of two programs on the same inputs, within float64 rounding. */
async function same(what: string, a: string, b: string, x: Record<string, Tensor>, tol = 1e-9) {
  const [ya, yb] = await Promise.all([a, b].map((s) => compiled(s).run(x, { backend: "interp" })));
  const bad = disagreement(ya, yb, tol);
  assert.equal(bad, undefined, `${what}, seed ${SEED}: ${bad}`);
}

Deno.test("unnamed variants 3: equivalent forms agree on the interpreter", async () => {
  const x = inputs(variant("gpt-oss sinks [H] at"), [2, 3], 13, 13, 8, 5, SEED);
  // The three sink programs: by logsumexp, by a (y, lse) merge, by hand.
  await same(
    "sinks lse / pair",
    variant("gpt-oss sinks [H] at").source,
    variant("gpt-oss sinks [H], a").source,
    x,
  );
  await same(
    "sinks lse / hand",
    variant("gpt-oss sinks [H] at").source,
    variant("gpt-oss sinks [H] by").source,
    x,
  );
  // A sink of -inf is plain causal attention; the lse form of +inf gives zeros.
  const causal = softmaxOf("causal", ", sink: [h]", `where(j <= i, ${SCORE}, -inf)`);
  const minus = { ...x, sink: tensor([3], [-Infinity, -Infinity, -Infinity]) };
  await same("sink -inf", variant("gpt-oss sinks [H] at").source, causal, minus);
  const plus = await compiled(variant("gpt-oss sinks [H] at").source).run(
    { ...x, sink: tensor([3], [Infinity, Infinity, Infinity]) },
    { backend: "interp" },
  );
  assert.ok(plus.data.every((y) => y === 0), "a sink of +inf takes every row's weight");
  // MLA: the absorbed weights change the order of products only.
  const mla = inputs(variant("multi-head latent"), [3], 13, 20, 8, 5, SEED);
  await same(
    "MLA / absorbed",
    variant("multi-head latent").source,
    variant("MLA with").source,
    mla,
  );
  // Gated linear attention: masked quadratic form and scan form.
  const gla = inputs(
    variant("gated linear attention, per-channel gates, quadratic"),
    [3],
    13,
    13,
    8,
    5,
    SEED,
  );
  await same(
    "GLA quadratic / scan",
    variant("gated linear attention, per-channel gates, quadratic").source,
    variant("gated linear attention, per-channel gates, scan").source,
    gla,
    1e-7,
  );
  // cosFormer: the linear forms against their quadratic forms (cos(a - b) reweighting).
  const cosq = (causal: boolean) =>
    `def cosq(${QKV}) -> [n, e] {
  w[i, j] = where(${
      causal ? "j <= i" : "true"
    }, (relu(q[i]) . relu(k[j])) * cos(pi / 2.0 * float(i - j) / float(n)), 0.0)
  return (w @ v) / (sum(w, axis=1, keepdims=true) + 1e-6)
}`;
  const cx = inputs(variant("cosFormer in linear"), [3], 13, 13, 8, 5, SEED);
  await same(
    "cosFormer linear / quadratic",
    variant("cosFormer in linear").source,
    cosq(false),
    cx,
    1e-7,
  );
  await same(
    "causal cosFormer linear / quadratic",
    variant("causal cosFormer").source,
    cosq(true),
    cx,
    1e-7,
  );
  // Stick-breaking written as a direct sum against the prefix-sum form of the first probe.
  const sbCumsum = `def sb(${QKV}) -> [n, e] {
  s[i, j] = ${SCORE}
  l[i, j] = where(j < i, log(1.0 - sigmoid(s[i, j])), 0.0)
  c = cumsum(l, axis=1)
  tot = sum(l, axis=1, keepdims=true)
  a[i, j] = where(j < i, sigmoid(s[i, j]) * exp(tot[i, 0] - c[i, j]), 0.0)
  return a @ v
}`;
  await same("stick-breaking sum / cumsum", variant("stick-breaking").source, sbCumsum, cx, 1e-7);
});

Deno.test("unnamed variants 3: a masked head is zero rows, the others are not", async () => {
  const v = variant("every row of head 1");
  const [n, e] = [7, 2];
  const y = await compiled(v.source).run(inputs(v, [2, 3], n, n, 8, e, SEED), {
    backend: "interp",
  });
  for (let t = 0; t < y.data.length; t++) {
    const head = Math.floor(t / (n * e)) % 3;
    if (head === 1) assert.equal(y.data[t], 0, `at ${t} (seed ${SEED})`);
    else assert.notEqual(y.data[t], 0, `at ${t} (seed ${SEED})`);
  }
});

Deno.test({
  name: "unnamed variants 3: GPU (poisoned) agrees with the interpreter at awkward sizes",
  ignore: adapter === undefined,
  async fn() {
    // (lead dims, n, m, d, e): 3 heads; a batch of 2 by 3 heads; one token and e = 1.
    await agreeAtSizes(VARIANTS, [[[3], 13, 20, 8, 5], [[2, 3], 65, 13, 12, 9], [
      [1, 1],
      1,
      1,
      8,
      1,
    ]], SEED);
  },
});

Deno.test({
  name: "unnamed variants 3: skipped key blocks of the new masks agree with the interpreter",
  ignore: adapter === undefined,
  async fn() {
    // n = 200 and m = 200: four key blocks of 64, most provably empty for the windowed masks.
    const runs: [string, number[], number, number, (s: string) => string][] = [
      ["StreamingLLM: 4", [3], 200, 200, (s) => s],
      ["StreamingLLM over", [3], 70, 200, (s) => s],
      ["StreamingLLM over", [3], 200, 70, (s) => s],
      ["2-D neighborhood", [3], 200, 200, (s) => s.replace("W = 5", "W = 13")],
      ["NATTEN proper", [3], 200, 200, (s) => s.replace("W = 5", "W = 13")],
      ["per-head temperature", [4], 200, 200, (s) => s],
      ["every row of head 1", [2, 3], 200, 200, (s) => s],
      ["packed documents", [2], 200, 200, (s) => s],
      [
        "NSA-style",
        [2],
        300,
        300,
        (s) => s.replace("nb = 8", "nb = 19").replace("top = 2", "top = 3"),
      ],
    ];
    for (const [prefix, lead, n, m, edit] of runs) {
      const v = variant(prefix);
      const seed = SEED + n + m;
      const x = inputs(v, lead, n, m, 8, 3, seed);
      await agree(`${v.name}, lead ${lead} n ${n} m ${m}, seed ${seed}`, edit(v.source), x);
    }
  },
});

/** Integers of magnitude up to `hi`: their dot products are exact in float32 below 2^24. */
const ints = (shape: number[], seed: number, hi: number): Tensor => {
  const t = randomTensor(shape, { seed });
  return { ...t, data: t.data.map((x) => Math.round(Math.max(-1, Math.min(1, x / 3)) * hi)) };
};

Deno.test({
  name: "unnamed variants 3: extremes (d = 1, scores of 1e6 and 1e-6, infinite sinks) agree",
  ignore: adapter === undefined,
  async fn() {
    const sinks = variant("gpt-oss sinks [H] at"), hand = variant("gpt-oss sinks [H] by");
    for (
      const prefix of ["gpt-oss sinks [H] at", "StreamingLLM over", "2-D", "NSA", "interleaved"]
    ) {
      const v = variant(prefix), seed = SEED + 1;
      await agree(`${v.name}, d = 1, seed ${seed}`, v.source, inputs(v, [2], 13, 20, 1, 3, seed));
    }
    // Unscaled scores q . k of integers up to 8e6 (exact in float32): each row is nearly one-hot.
    const unscaled = sinks.source.replace(SCORE, "q[i] . k[j]");
    for (const n of [13, 65]) {
      const seed = SEED + n;
      const x = inputs(sinks, [3], n, n, 8, 5, seed);
      const huge = {
        ...x,
        q: ints(x.q.shape, seed, 1000),
        k: ints(x.k.shape, seed + 1, 1000),
        sink: tensor([3], [1e6, -1e6, 0]),
      };
      await agree(`scores to 8e6, n ${n}, seed ${seed}`, unscaled, huge);
      const tiny = {
        ...x,
        q: randomTensor(x.q.shape, { seed, scale: 1e-3 }),
        k: randomTensor(x.k.shape, { seed: seed + 1, scale: 1e-3 }),
        sink: tensor([3], [0, -20, 20]),
      };
      await agree(`scores of 1e-6, n ${n}, seed ${seed}`, sinks.source, tiny);
      // Infinite sinks: -inf is plain attention; +inf zeros (lse form) and NaN (by hand: inf - inf).
      const inf = { ...x, sink: tensor([3], [-Infinity, Infinity, 0]) };
      await agree(`infinite sinks, n ${n}, seed ${seed}`, sinks.source, inf);
      await agree(`infinite sinks by hand, n ${n}, seed ${seed}`, hand.source, inf);
    }
  },
});

/** Hard-max attention: each row keeps the keys whose q·k reaches a threshold taken elsewhere. */
const hardmax = (prelude: string, score: string, cmp = ">=") =>
  `def hardmax(${QKV}) -> [n, e] {
  ${prelude}
  t[i, j] = where(${score} ${cmp} top[i], ${score}, -inf)
  return softmax(t, axis=1) @ v
}`;

/** Thresholds from a stored q·k that the score reads itself: not fused, so the GPU agrees. */
const STORED_THRESHOLDS: [string, string][] = [
  [
    "index-notation contraction, read as s[i, j]",
    hardmax(
      `s[i, j] = sum[c](q[i, c] * k[j, c])
  top = max(s, axis=1)`,
      "s[i, j]",
    ),
  ],
  [
    "index-notation dot, read as s[i, j]",
    hardmax(
      `s[i, j] = q[i] . k[j]
  top = max(s, axis=1)`,
      "s[i, j]",
    ),
  ],
  [
    "max written in index notation, both dots the same expression",
    hardmax(
      "top[i] = max[j](q[i] . k[j])",
      "q[i] . k[j]",
    ),
  ],
];

Deno.test({
  name: "unnamed variants 3: hard-max thresholds written in index notation agree on the GPU",
  ignore: adapter === undefined,
  async fn() {
    for (const [what, source] of STORED_THRESHOLDS) {
      for (const [n, d] of [[13, 8], [65, 12]]) {
        const seed = SEED + n;
        const x = inputs({ name: "q, k, v", source: "" }, [3], n, n, d, 3, seed);
        await agree(`${what}, n ${n} d ${d}, seed ${seed}`, source, x);
      }
    }
  },
});

// Finding 1 (wrong answer; fixed): the guard that kept a thresholded score unfused (probe 2's
// finding 1) looked for the score reading the stored q @ k^T node itself. When the score writes
// q[i] . k[j] afresh and the threshold comes from a stored q @ k^T (or from any other kernel's
// q·k: the diagonal sum(q * k, axis=1), a gather then dot after topk, a transposed (k @ q^T)^T),
// the score fused, the pass recomputed q·k in its own summation order, and the row's best key
// failed `>= top` by an ulp. Reproducer (3 heads, n = 13, d = 8):
//   s = q @ k^T; top = max(s, axis=1)
//   t[i, j] = where(q[i] . k[j] >= top[i], q[i] . k[j], -inf); return softmax(t, axis=1) @ v
// Observed: 3 dispatches (matmul, reduce, attention); about 7 of 39 GPU rows were zeros,
// relative error 0.49 (at d = 13 it agreed). Now a leaf computed from both q and k, read under a
// step, keeps the score unfused (passes/attention.ts `build`), and every form below agrees; the
// generator reaches these forms (tests/programs.ts HARD_MAX).
const RECOMPUTED_THRESHOLDS: [string, string][] = [
  [
    "stored q @ k^T max, score written q[i] . k[j]",
    hardmax(
      `s = q @ k^T
  top = max(s, axis=1)`,
      "q[i] . k[j]",
    ),
  ],
  [
    "max of q @ k^T scaled after, score q[i] . k[j] / sqrt(d)",
    hardmax(
      "top = max(q @ k^T, axis=1) / sqrt(d)",
      "q[i] . k[j] / sqrt(d)",
    ),
  ],
  [
    "transposed (k @ q^T)^T",
    hardmax(
      `st = (k @ q^T)^T
  top = max(st, axis=1)`,
      "q[i] . k[j]",
    ),
  ],
  [
    "index-notation contraction max, score q[i] . k[j]",
    hardmax(
      `s[i, j] = sum[c](q[i, c] * k[j, c])
  top = max(s, axis=1)`,
      "q[i] . k[j]",
    ),
  ],
  [
    "second largest by topk, gathered and dotted",
    hardmax(
      `T = topk(q @ k^T, 2)
  top[i] = q[i] . k[T[i, 1]]`,
      "q[i] . k[j]",
    ),
  ],
  [
    "keys scoring at most the diagonal sum(q * k)",
    hardmax("top = sum(q * k, axis=1)", "q[i] . k[j]", "<="),
  ],
];

Deno.test({
  name:
    "unnamed variants 3: a score beside a threshold from another q·k kernel stays unfused and keeps its best key",
  ignore: adapter === undefined,
  async fn() {
    const failures: string[] = [];
    for (const [what, source] of RECOMPUTED_THRESHOLDS) {
      for (const [n, d] of [[13, 8], [65, 12]]) {
        const seed = SEED + n;
        const x = inputs({ name: "q, k, v", source: "" }, [3], n, n, d, 3, seed);
        await agree(`${what}, n ${n} d ${d}, seed ${seed}`, source, x).catch((e) =>
          failures.push(String(e).split("\n")[0])
        );
      }
    }
    assert.deepEqual(failures, []);
  },
});

// Finding 2 (missed fusion; fixed): passes/written.ts took softmax-one's sink only as a constant
// c in exp(c - mx) beside mx = max(s, axis=1, keepdims=true). gpt-oss's learned per-head sink is
// sink[head()], and its stable form takes the max over the sink too, mx = max(max(s, axis=1,
// keepdims=true), c). Reproducer:
//   s[i, j] = where(j <= i, q[i] . k[j] / sqrt(d), -inf)
//   mx = max(s, axis=1, keepdims=true); w = exp(s - mx)
//   return (w @ v) / (exp(sink[head()] - mx) + sum(w, axis=1, keepdims=true))
// Observed: 4 dispatches (matmul storing the n×n scores, their row max, a streaming pass, the
// division; 5.26 MiB per slice at n = 1024). Now any c constant along the keys, and the stable
// shift, are one flash pass with its log-sum-exp and one gate: 2 dispatches (a gather of one
// element per slice, sink[head()], is inlined where it is read: lower/inline.ts). Softpick
// (relu(exp(s - mx) - exp(-mx)) over the row sum of |exp(s - mx) - exp(-mx)|) still stores the
// scores twice in 6 dispatches.
const HAND_SINKS: [string, string][] = [
  [
    "sink[head()] beside the row max",
    `def f(${QKV}, sink: [h]) -> [n, e] {
  s[i, j] = where(j <= i, ${SCORE}, -inf)
  mx = max(s, axis=1, keepdims=true)
  w = exp(s - mx)
  return (w @ v) / (exp(sink[head()] - mx) + sum(w, axis=1, keepdims=true))
}`,
  ],
  [
    "a constant sink inside the max",
    `def f(${QKV}, sink: [h], c = 0.5) -> [n, e] {
  s[i, j] = where(j <= i, ${SCORE}, -inf)
  mx = max(max(s, axis=1, keepdims=true), c)
  w = exp(s - mx)
  return (w @ v) / (exp(c - mx) + sum(w, axis=1, keepdims=true))
}`,
  ],
  ["sink[head()] inside the max (gpt-oss)", variant("gpt-oss sinks [H] by hand").source],
];

Deno.test({
  name:
    "unnamed variants 3: a per-head or max-including sink written by hand is one flash pass and a gate",
  fn() {
    for (const [what, source] of HAND_SINKS) {
      const p = compiled(source);
      assert.equal(p.plan().kernels.length, 2, `${what}:\n${p.explain({ ir: false })}`);
    }
  },
});

// The edges where the two written forms differ from each other: a row the mask empties is NaN
// with the plain shift (x - max(x) = -inf - -inf) and 0 with the stable one (its shift is c); a
// sink of +inf makes the stable form NaN and the plain one 0; -inf is no sink. The optimized
// program (one pass and a gate) must give the checked program's values, NaN where it is NaN.
Deno.test({
  name:
    "unnamed variants 3: hand-written sinks keep the checked program's empty rows and ±inf sinks",
  ignore: adapter === undefined,
  async fn() {
    const n = 13, lead = [2, 3];
    for (const [what, source] of HAND_SINKS) {
      const masked = source.replace("where(j <= i,", "where(j <= i and qm[i] > 0,")
        .replace("sink: [h]", "sink: [h], qm: [n]");
      assert.notEqual(masked, source, what);
      const p = compiled(masked);
      const x = inputs({ name: what, source: "" }, lead, n, n, 8, 5, SEED);
      const qm = randomTensor([...lead, n], { seed: SEED + 9 });
      const sink = tensor([3], [Infinity, -Infinity, 0.3]);
      const y = { ...x, qm, sink };
      // The interpreter runs the program as checked; the GPU runs it optimized.
      const want = await p.run(y, { backend: "interp" });
      const gpu = await p.run(y, { backend: "gpu", poison: true });
      const at = want.data.findIndex((w, k) => Number.isNaN(w) !== Number.isNaN(gpu.data[k]));
      assert.equal(at, -1, `${what}: at ${at}: gpu ${gpu.data[at]}, interp ${want.data[at]}`);
      assert.ok(want.data.some((w) => Number.isNaN(w) || w === 0), `${what}: no empty row`);
      assert.equal(disagreement(gpu, want), undefined, `${what}, seed ${SEED}`);
    }
  },
});

Deno.test("unnamed variants 3: hand-written sinks agree with the logsumexp form on the interpreter", async () => {
  const x = inputs(variant("gpt-oss sinks [H] at"), [2, 3], 13, 13, 8, 5, SEED);
  const lse = variant("gpt-oss sinks [H] at").source;
  for (const [what, source] of HAND_SINKS) {
    await same(
      what,
      source,
      source.includes("c = 0.5") ? lse.replace("sink[head()])", "0.5)") : lse,
      x,
    );
  }
});

// Finding 3 (confusing error; fixed): a per-head table of rank above q's, `rpb: [h, a, b]` read at
// rpb[head(), ...] (NATTEN's relative bias), could not be passed as [H, 3, 3] beside q [H, n, d]:
// "input q is declared [n, d] but has shape [3, 13, 8]: its leading dim [3] would be a batch dim
// that rpb (shape [3, 3, 3]) does not have", while rank-1 and rank-2 per-head tables were
// accepted. Matrices and higher now set the batch dims between them (compiler/bind.ts); only a
// vector or scalar may not add batch dims of its own.
Deno.test({
  name: "unnamed variants 3: a per-head table [H, 3, 3] beside q [H, n, d] binds, and agrees",
  ignore: adapter === undefined,
  async fn() {
    const v = variant("2-D neighborhood");
    const x = inputs(v, [3], 13, 13, 8, 5, SEED);
    const rpb = randomTensor([3, 3, 3], { seed: SEED });
    await agree(`rpb [3, 3, 3], seed ${SEED}`, v.source, { ...x, rpb });
    // The same table with its leading 1 (the old workaround) gives the same values.
    const lead = { ...rpb, shape: [1, 3, 3, 3] };
    const p = compiled(v.source);
    const [a, b] = await Promise.all(
      [rpb, lead].map((t) => p.run({ ...x, rpb: t }, { backend: "interp" })),
    );
    assert.deepEqual([...a.data], [...b.data]);
  },
});

// Finding 4 (confusing error; fixed): a column slice beside an index in index notation,
// `s[i, j] = q[i, :4] . k[j, :4]` (a score over the first channels, as differential attention's
// halves), failed with "unknown name i" at the i that the statement itself defines, and the hint
// "did you mean q?". It now reads the slice first (q[:, :4]) and then its rows at i; an index
// after a slice (`q[:2, i]`) is an error that says so, at its position.
Deno.test({
  name: "unnamed variants 3: a column slice beside an index subscript reads the slice's rows",
  ignore: adapter === undefined,
  async fn() {
    const halves = softmaxOf("sliced", "", "q[i, :4] . k[j, :4] - q[i, 4:8] . k[j, 4:8]");
    const written = `def sliced(${QKV}) -> [n, e] {
  q1 = q[:, :4]
  k1 = k[:, :4]
  q2 = q[:, 4:8]
  k2 = k[:, 4:8]
  s[i, j] = q1[i] . k1[j] - q2[i] . k2[j]
  return softmax(s, axis=1) @ v
}`;
    const x = inputs({ name: "halves", source: "" }, [2, 3], 13, 13, 8, 3, SEED);
    await same("q[i, :4] against q1 = q[:, :4]", halves, written, x);
    await agree(`halves, seed ${SEED}`, halves, x);
    try {
      compiled(softmaxOf("late", "", "q[:2, i] . k[j, :2]"));
      assert.fail("an index after a slice compiled");
    } catch (e) {
      assert.match(String(e), /2:\d+: q\[:2, i\]: the subscript i follows a slice/);
    }
  },
});

// Finding 5 (missed fusion; fixed): a row computed inside the dot, `q[i] . (k[j] * w)` with a
// per-channel w: [d], `q[i] . (k[j] + b)`, or a token-shifted key `q[i] . (0.5 * k[j] +
// 0.5 * k[j - 1])`, was not fused: 4 dispatches (a dot kernel storing the n×n scores, softmax,
// matmul; 9.5 MiB per slice at n = 1024), where writing `kw = k * w` first fused. The rows pass
// (passes/rows.ts) now reads such an operand as the rows of a matrix computed first: one kernel
// for the rows, one flash pass.
Deno.test({
  name: "unnamed variants 3: a row computed inside the dot (k[j] * w, k[j] + b, a token shift, " +
    "(q[i] * t[i])) fuses after its rows' kernel, and agrees on the GPU",
  ignore: adapter === undefined,
  async fn() {
    for (
      const score of [
        "q[i] . (k[j] * w)",
        "q[i] . (k[j] + w)",
        "q[i] . (0.5 * k[j] + 0.5 * k[j - 1])",
        "(q[i] * t[i]) . k[j]",
      ]
    ) {
      const source = softmaxOf("rowdot", ", w: [d], t: [n]", score);
      const p = compiled(source);
      assert.ok(
        p.optimized.nodes.some((n) => n.op.op === "attention"),
        `${score}:\n${p.explain()}`,
      );
      for (const [lead, n, d] of [[[3], 13, 8], [[2, 3], 65, 12]] as const) {
        const seed = SEED + n;
        const x = inputs({ name: score, source: "" }, [...lead], n, n, d, 3, seed);
        const extra = {
          w: randomTensor([d], { seed: seed + 5 }),
          t: randomTensor([...lead, n], { seed: seed + 6 }),
        };
        const dispatches = await agree(`${score}, n ${n} d ${d}, seed ${seed}`, source, {
          ...x,
          ...extra,
        });
        assert.equal(dispatches, 2, `${score}: the rows' kernel and one flash pass`);
      }
    }
  },
});
