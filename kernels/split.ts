/**
 * Long loops. lavapipe (Mesa ≤ 22) ends a shader invocation's loops after LOOPS.budget iterations
 * in total, silently. Every kernel of a plan therefore states its `trips` (loop iterations one
 * invocation makes, a function of the run's sizes), inlined heavy values counted into their
 * consumer; the executor checks them before a run.
 *
 * Plans are made before sizes are known. When a run's sizes push some kernel past the budget, the
 * executor runs the plan's long form instead (`lowerGraph` with `runSizes`): heavy values are
 * stored rather than inlined, and each kernel still over the budget is split when its kind
 * allows:
 * - a reduction or dot over a long axis: partial results per chunk of ≤ LOOPS.chunk elements
 *   (at most LOOPS.parts chunks), then a kernel combining them;
 * - softmax / normalize over a long axis: per chunk the (max, Σ exp) or Σ x² statistics, then a
 *   kernel per element combining them and writing the result;
 * - a matmul with a long K: partial products over slices of K, then their sum;
 * - fused attention over many keys: per key block each row's online-softmax carrier (max, sum,
 *   accumulator), then an exact combine (rescaled to the largest max).
 * The chunk count is computed in WGSL from the sizes table, so the split kernels are correct for
 * any size. Normal-size plans are unchanged. */
import type { Dim, Node } from "../compiler/ir/types.ts";
import { LOOPS, splitBlock } from "../compiler/limits.ts";
import { coords, dim, f32, size, splitUsed, strides } from "../compiler/wgsl/syntax.ts";
import { REDUCE_INIT, reduceStep } from "../compiler/wgsl/ops.ts";
import { heavyValue, Reader } from "../compiler/wgsl/reader.ts";
import { PARTIAL } from "../compiler/wgsl/keys.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import type { KernelRequest } from "./common.ts";
import { loop, readTrips, type Sizes } from "./trips.ts";
import { matmulKernels } from "./matmul.ts";
import { attentionKernels } from "./attention.ts";
import { isNan, rowLse } from "./flash.ts";

/** A node computed by two kernels: partial results per chunk, then their combination. */
export interface SplitKernels {
  /** Per-slice shape of the partial-results buffer (written by `first`, read as PARTIAL). */
  partial: Dim[];
  first: NodeKernel;
  /** Reads PARTIAL (binding a0) and possibly node ids. */
  combine: NodeKernel;
  /** For an attention with `lse`: writes the rows' log-sum-exp (as `out`) from PARTIAL. */
  lse?: NodeKernel;
}

type Split = (n: Node, req: KernelRequest) => SplitKernels;

/** Split forms by op: the ops whose long loop can be cut into chunks. */
const SPLITS: Partial<Record<Node["op"]["op"], Split>> = {
  reduce: splitReduce,
  dot: splitReduce,
  matmul: splitMatmul,
  softmax: splitRowwise,
  normalize: splitRowwise,
  attention: splitAttention,
};

/**
 * The split form of `n` for a run whose sizes push its loop past the budget, or undefined for
 * kinds that have none (top-k, probabilities, attention with rows replaced, scatters, regions).
 */
export function splitKernels(n: Node, req: KernelRequest): SplitKernels | undefined {
  return SPLITS[n.op.op]?.(n, req);
}

/** A kernel summing the P partial results of each output element (`fn`: the reduction). */
function combineSum(
  n: Node,
  req: KernelRequest,
  len: string,
  fn: keyof typeof REDUCE_INIT,
  name: string,
): NodeKernel {
  const { byId, inline, chunks, slots } = req;
  const P = LOOPS.parts;
  const out = n.type.shape;
  const outSize = size(out, slots);
  const reader = new Reader(byId, inline, chunks, slots, [PARTIAL]);
  const k = kernel(
    n,
    reader,
    out,
    slots,
    `let kused = ${splitUsed(len)};
  var acc = ${REDUCE_INIT[fn]};
  for (var p = 0u; p < kused; p = p + 1u) {
    let x = a0[(s * ${P}u + p) * ${outSize} + r];
    acc = ${reduceStep(fn)};
  }
  out[s * ${outSize} + r] = ${fn === "mean" ? `acc / f32(${len})` : "acc"};`,
  );
  return { ...k, name: `${k.name}_${name}`, trips: () => P };
}

/** WGSL: chunk `kp`'s range [klo, khi) of a loop over `len` (returns when the chunk is unused). */
const chunkRange = (len: string) =>
  `let kused = ${splitUsed(len)};
  if (kp >= kused) { return; }
  let kblk = (${len} + kused - 1u) / kused;
  let klo = min(kp * kblk, ${len});
  let khi = min(klo + kblk, ${len});`;

/** A reduction or dot product: partial reductions per chunk, then their combination. */
function splitReduce(n: Node, req: KernelRequest): SplitKernels {
  const { byId, inline, chunks, slots } = req;
  const op = n.op as Extract<Node["op"], { op: "reduce" }> | { op: "dot" };
  const P = LOOPS.parts;
  const out = n.type.shape;
  const outSize = size(out, slots);
  const a = byId.get(n.args[0])!.type.shape;
  const len = dim(op.op === "reduce" ? a[op.axis] : a[a.length - 1], slots);
  const reader = new Reader(byId, inline, chunks, slots);
  const range = { lo: "klo", hi: "khi" };
  const { pre } = heavyValue(n, out.map((_, i) => `c${i}`), reader, range);
  const body = `let kp = r / ${outSize};
  let r2 = r % ${outSize};
  ${coords(out, slots, "r2")}
  ${chunkRange(len)}
  ${pre}
  out[(s * ${P}u + kp) * ${outSize} + r2] = acc;`;
  const first = kernel(n, reader, [P, ...out], slots, body);
  const fn = op.op === "dot" ? "sum" : op.fn;
  const rt = (sz: Sizes) => readTrips(byId, inline, chunks, sz);
  const lenD = op.op === "reduce" ? a[op.axis] : a[a.length - 1];
  return {
    partial: [P, ...out],
    first: {
      ...first,
      name: `${first.name}_part`,
      trips: (sz) =>
        loop(
          splitBlock(sz(lenD)),
          n.args.reduce((t, x) => t + rt(sz)(x), 0),
        ),
    },
    combine: combineSum(n, req, len, fn, "combine"),
  };
}

/** A matmul: partial products per chunk of the inner axis (its own kernel), then their sum. */
function splitMatmul(n: Node, req: KernelRequest): SplitKernels {
  const [first] = matmulKernels(n, { ...req, split: true });
  const K = dim(req.byId.get(n.args[0])!.type.shape.at(-1)!, req.slots);
  return {
    partial: [LOOPS.parts, ...n.type.shape],
    first: { ...first, name: `${first.name}_part` },
    combine: combineSum(n, req, K, "sum", "combine"),
  };
}

/**
 * softmax or normalize: statistics per chunk of each fiber (max and sum of exponentials, or the
 * sum of squares), then per element their combination and the value.
 */
function splitRowwise(n: Node, req: KernelRequest): SplitKernels {
  const { byId, inline, chunks, slots } = req;
  const op = n.op as { op: "softmax" | "normalize"; axis: number };
  const P = LOOPS.parts;
  const out = n.type.shape;
  const outSize = size(out, slots);
  const axis = op.axis;
  const fiber = out.filter((_, i) => i !== axis);
  const fiberSize = size(fiber, slots);
  const len = dim(out[axis], slots);
  const lenD = out[axis];
  const soft = op.op === "softmax";
  const W = soft ? 2 : 1;
  const fc = out.map((_, i) => (i === axis ? "k" : `f${i < axis ? i : i - 1}`));
  const reader = new Reader(byId, inline, chunks, slots);
  const x = reader.at(n.args[0], fc);
  const ninf = f32(-Infinity);
  const stats = soft
    ? `var m = ${ninf};
  for (var k = klo; k < khi; k = k + 1u) { m = max(m, ${x}); }
  var z = 0.0;
  if (m > ${ninf}) { for (var k = klo; k < khi; k = k + 1u) { z = z + exp(${x} - m); } }
  out[ob] = m;
  out[ob + 1u] = z;`
    : `var q = 0.0;
  for (var k = klo; k < khi; k = k + 1u) { let x = ${x}; q = q + x * x; }
  out[ob] = q;`;
  const firstBody = `let kp = r / ${fiberSize};
  let r2 = r % ${fiberSize};
  ${coords(fiber, slots, "r2", "f")}
  ${chunkRange(len)}
  let ob = ((s * ${P}u + kp) * ${fiberSize} + r2) * ${W}u;
  ${stats}`;
  const first = kernel(n, reader, [P, ...fiber], slots, firstBody);
  // Per element: combine the chunks' statistics of its fiber, then write its value.
  const r2 = new Reader(byId, inline, chunks, slots, [PARTIAL]);
  const c = out.map((_, i) => `c${i}`);
  const fst = strides(fiber, slots);
  const fr = c.filter((_, i) => i !== axis).map((x, i) => `${x} * ${fst[i]}`).join(" + ") ||
    "0u";
  const xv = r2.at(n.args[0], c);
  const at = (p: string, w: number) =>
    `a0[((s * ${P}u + ${p}) * ${fiberSize} + fr) * ${W}u${w ? ` + ${w}u` : ""}]`;
  const combineBody = `${coords(out, slots, "r")}
  let fr = ${fr};
  let kused = ${splitUsed(len)};
  ${
    soft
      ? `var mx = ${ninf};
  for (var p = 0u; p < kused; p = p + 1u) { mx = max(mx, ${at("p", 0)}); }
  var l = 0.0;
  for (var p = 0u; p < kused; p = p + 1u) {
    let mp = ${at("p", 0)};
    if (mp > ${ninf}) { l = l + ${at("p", 1)} * exp(mp - mx); }
  }
  out[s * ${outSize} + r] = select(exp(${xv} - mx) / l, 0.0, mx == ${ninf});`
      : `var q = 0.0;
  for (var p = 0u; p < kused; p = p + 1u) { q = q + ${at("p", 0)}; }
  out[s * ${outSize} + r] = ${xv} / max(sqrt(q), 1e-12);`
  }`;
  const combine = kernel(n, r2, out, slots, combineBody);
  const rt = (sz: Sizes) => readTrips(byId, inline, chunks, sz)(n.args[0]);
  return {
    partial: [P, ...fiber, W],
    first: {
      ...first,
      name: `${first.name}_part`,
      trips: (sz) => (soft ? 2 : 1) * loop(splitBlock(sz(lenD)), rt(sz)),
    },
    combine: { ...combine, name: `${combine.name}_combine`, trips: (sz) => 2 * P + rt(sz) },
  };
}

/** Fused attention: a partial softmax·V per chunk of keys (its own kernel), then their merge. */
function splitAttention(n: Node, req: KernelRequest): SplitKernels {
  const { byId, slots } = req;
  const P = LOOPS.parts;
  const outSize = size(n.type.shape, slots);
  const [first] = attentionKernels(n, { ...req, split: true });
  const src = (k: number) => byId.get(n.args[k])!.type.shape;
  const [q, key, v] = [src(0), src(1), src(2)];
  const rows = dim(q[0], slots), cols = dim(key[0], slots), e = dim(v[1], slots);
  const ninf = f32(-Infinity);
  const at = (w: string) => `a0[((s * ${P}u + p) * ${rows} + i) * (${e} + 2u) + ${w}]`;
  // Summed weights (no softmax): each part's accumulator is its partial sum.
  const sum = `let i = r / ${e};
  let c = r % ${e};
  var acc = 0.0;
  for (var p = 0u; p < ${splitUsed(cols)}; p = p + 1u) { acc = acc + ${at("2u + c")}; }
  out[s * ${outSize} + r] = acc;`;
  // The parts' largest max, and whether any part's sum is NaN: a NaN sum is a NaN score
  // (flash.ts), so the row is NaN even when no score was finite.
  const maxOfParts = `let kused = ${splitUsed(cols)};
  var mx = ${ninf};
  var bad = false;
  for (var p = 0u; p < kused; p = p + 1u) { mx = max(mx, ${at("0u")}); bad = bad | ${
    isNan(at("1u"))
  }; }`;
  const body = `let i = r / ${e};
  let c = r % ${e};
  ${maxOfParts}
  var l = 0.0;
  var acc = 0.0;
  for (var p = 0u; p < kused; p = p + 1u) {
    let mp = ${at("0u")};
    // A part whose weight underflows to 0 (its max far below the row's) adds nothing; taken,
    // its 0 / 0 made the row NaN (probe 6: 70,000 keys, one of them 100 above the rest).
    let w = ${at("1u")} * exp(mp - mx);
    if (mp > ${ninf} && w != 0.0) {
      // Each part's accumulator is its weighted mean (flash.ts): a running mean of the means.
      let ln = l + w;
      acc = acc * (l / ln) + ${at("2u + c")} * (w / ln);
      l = ln;
    }
  }
  // A +inf score makes the row NaN (inf - inf), also where a log-sum-exp output had its parts
  // store a sum of 1 for it.
  let nan = bad || bitcast<u32>(mx) == 0x7f800000u;
  out[s * ${outSize} + r] = ${
    n.op.op === "attention" && n.op.emptyNaN
      ? `select(acc, ${f32(NaN)}, nan || !(l > 0.0))` // a row no part counted is NaN
      : `select(select(0.0, acc, l > 0.0), ${f32(NaN)}, nan)`
  };`;
  const summed = n.op.op === "attention" && n.op.weights === "score";
  const combine = kernel(n, [PARTIAL], n.type.shape, slots, summed ? sum : body);
  // The row log-sum-exp from the parts' (max, sum): a NaN sum is a NaN score (flash.ts).
  const lseBody = `let i = r;
  ${maxOfParts}
  var l = 0.0;
  for (var p = 0u; p < kused; p = p + 1u) {
    let mp = ${at("0u")};
    if (mp > ${ninf}) { l = l + ${at("1u")} * exp(mp - mx); }
  }
  out[s * ${rows} + r] = ${rowLse("mx", "l", "bad")};`;
  // Summed weights with row sums: each part's sum slot holds its partial sum of weights.
  const rowSumBody = `let i = r;
  var l = 0.0;
  for (var p = 0u; p < ${splitUsed(cols)}; p = p + 1u) { l = l + ${at("1u")}; }
  out[s * ${rows} + r] = l;`;
  const lse = n.op.op === "attention" && (n.op.lse || n.op.rowSum)
    ? kernel(n, [PARTIAL], [q[0]], slots, summed ? rowSumBody : lseBody)
    : undefined;
  return {
    // Each row's carrier takes e + 2 ≤ 3e floats.
    partial: [P, q[0], v[1], 3],
    first: { ...first, name: `${first.name}_part` },
    combine: { ...combine, name: `${combine.name}_combine`, trips: () => 2 * P },
    lse: lse && { ...lse, name: `${lse.name}_lse`, trips: () => 2 * P },
  };
}
