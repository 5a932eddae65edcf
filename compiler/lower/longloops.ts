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
 * any size. Normal-size plans are unchanged.
 */
import type { Dim, Node } from "../ir/types.ts";
import {
  coords,
  dim,
  ELEMENTWISE,
  f32,
  HEAVY,
  heavyValue,
  kernel,
  type NodeKernel,
  nodeKernels,
  Reader,
  REDUCE_INIT,
  reduceStep,
  size,
  splitBlock,
  splitUsed,
  strides,
  type SymbolSlots,
} from "../wgsl.ts";
import { LOOPS, MATMUL_TILE } from "../limits.ts";

/** Binding key of a split kernel's partial-results buffer (not a node id). */
export const PARTIAL = -2;

type Sizes = (d: Dim) => number;

/** Loop iterations of one loop over `len` elements, reading with `inner` extra trips each. */
const loop = (len: number, inner: number) => len * (1 + inner);

/**
 * Loop iterations one read of node `id` at a coordinate costs inside a kernel: an inlined
 * heavy value runs its loop (and the reads inside it); an inlined elementwise value costs what
 * its operands cost; a partial-table scatter sums its tables; a stored value costs nothing.
 */
export function readTrips(
  byId: Map<number, Node>,
  inline: Set<number>,
  sz: Sizes,
): (id: number) => number {
  const memo = new Map<number, number>();
  const rt = (id: number): number => {
    if (memo.has(id)) return memo.get(id)!;
    const n = byId.get(id)!;
    let t = 0;
    if (n.op.op === "scatter_add" && n.op.chunks && !inline.has(id)) t = n.op.chunks;
    else if (inline.has(id)) t = HEAVY.has(n.op.op) ? ownLoop(n, byId, sz, rt) : args(n, rt);
    if (inline.has(id) && n.op.op === "random") t += 10; // the Philox rounds
    memo.set(id, t);
    return t;
  };
  return rt;
}

const args = (n: Node, rt: (id: number) => number) => n.args.reduce((t, a) => t + rt(a), 0);

/** The loop of a heavy node computing one element (reads included). */
function ownLoop(n: Node, byId: Map<number, Node>, sz: Sizes, rt: (id: number) => number) {
  const shape = (k: number) => byId.get(n.args[k])!.type.shape;
  switch (n.op.op) {
    case "reduce":
      return loop(sz(shape(0)[n.op.axis]), rt(n.args[0]));
    case "matmul":
    case "dot":
      return loop(sz(shape(0).at(-1)!), rt(n.args[0]) + rt(n.args[1]));
    case "bits":
      return loop(sz(shape(0).at(-1)!), rt(n.args[0]));
    case "segment_mean":
      return loop(Math.ceil(sz(shape(0)[0]) / n.op.segments) + 1, rt(n.args[0]));
  }
  return args(n, rt);
}

/**
 * Loop trips one invocation of a node's own grid kernel makes per element it computes: the node's
 * loop (a HEAVY node's contraction, the Philox rounds of a random draw) and those of the values
 * inlined into it, at given sizes. Undefined for kernels with other loops (softmax, topk,
 * scatter, ...). `lower.ts` uses it to keep loop-heavy parts out of merged dispatches that run
 * many elements per invocation.
 */
export function elementTrips(
  n: Node,
  byId: Map<number, Node>,
  inline: Set<number>,
): ((sz: Sizes) => number) | undefined {
  const heavy = HEAVY.has(n.op.op), random = n.op.op === "random";
  if (!heavy && !random && !ELEMENTWISE.has(n.op.op)) return undefined;
  return (sz) => {
    const rt = readTrips(byId, inline, sz);
    return heavy ? ownLoop(n, byId, sz, rt) : args(n, rt) + (random ? 11 : 0);
  };
}

/**
 * `kernels` (those `nodeKernels` made for `n`, in order) with their `trips`: loop iterations
 * of one invocation at given sizes, the loops of inlined values it reads included.
 */
export function withTrips(
  n: Node,
  kernels: NodeKernel[],
  byId: Map<number, Node>,
  inline: Set<number>,
): NodeKernel[] {
  return kernels.map((k, i) => k.trips ? k : { ...k, trips: kernelTrips(n, k, i, byId, inline) });
}

function kernelTrips(
  n: Node,
  k: NodeKernel,
  index: number,
  byId: Map<number, Node>,
  inline: Set<number>,
): (sz: Sizes) => number {
  const shape = (i: number) => byId.get(n.args[i])!.type.shape;
  const stored = (id: number) => {
    const a = byId.get(id)!;
    return !inline.has(id) && !(a.op.op === "scatter_add" && a.op.chunks);
  };
  return (sz) => {
    const rt = readTrips(byId, inline, sz);
    const op = n.op;
    switch (op.op) {
      case "reduce":
      case "dot":
      case "bits":
      case "segment_mean":
        return ownLoop(n, byId, sz, rt);
      case "softmax": {
        const len = sz(n.type.shape[op.axis]);
        return 2 * loop(len, rt(n.args[0])) + len;
      }
      case "normalize": {
        const len = sz(n.type.shape[op.axis]);
        return loop(len, 4 * rt(n.args[0])) + 2 * len;
      }
      case "matmul": {
        const K = sz(shape(0).at(-1)!);
        const cols = sz(n.type.shape.at(-1)!);
        const [a, b] = n.args;
        const fast = stored(a) || stored(b);
        const allVec = fast && K % 4 === 0 && (!stored(b) || cols % MATMUL_TILE === 0);
        const split = typeof k.threads[0] === "number" && k.threads.length > n.type.shape.length;
        const len = split ? splitBlock(K) : K;
        const inner = MATMUL_TILE * (rt(a) + rt(b));
        return allVec ? loop(Math.ceil(len / 4), 4 * inner) : loop(len, inner);
      }
      case "scatter_add": {
        if (op.chunks) {
          const keys = sz(shape(0).at(-1)!);
          const used = Math.max(1, Math.min(op.chunks, Math.ceil(keys / LOOPS.chunk)));
          return loop(Math.ceil(keys / used), rt(n.args[0]) + 4 * rt(n.args[1])) + op.size;
        }
        if (index === 0) return 0; // zeroing the table
        const chans = shape(1).slice(1).reduce<number>((p, d) => p * sz(d), 1);
        // One compare-exchange round per channel when uncontended.
        return rt(n.args[0]) + 2 * loop(chans, rt(n.args[1]));
      }
      case "topk": {
        const len = sz(shape(0).at(-1)!);
        const vec = stored(n.args[0]) && len % 4 === 0;
        return vec ? Math.ceil(len / 4) : loop(len, rt(n.args[0]));
      }
      case "set_rows":
        return index === 0 ? 0 : sz(shape(1)[0]);
      case "random":
        return 10 + args(n, rt);
      default: {
        // Elementwise; four elements per invocation when a reduction inside is read as vec4.
        const quad = k.threads.some((t) => typeof t === "object" && "ceilDiv" in t);
        return quad ? vec4Trips(n.id, byId, inline, sz, rt, true) : args(n, rt);
      }
    }
  };
}

/** Trips of `Reader.at4` on `id`: inlined reductions run once for four lanes. */
function vec4Trips(
  id: number,
  byId: Map<number, Node>,
  inline: Set<number>,
  sz: Sizes,
  rt: (id: number) => number,
  self = false,
): number {
  const n = byId.get(id)!;
  if (!inline.has(id) && !self) return 4 * rt(id);
  if (n.op.op === "reduce" && n.type.shape.length) {
    return loop(sz(byId.get(n.args[0])!.type.shape[n.op.axis]), 4 * rt(n.args[0]));
  }
  if (["unary", "binary", "broadcast"].includes(n.op.op)) {
    return n.args.reduce((t, a) => t + vec4Trips(a, byId, inline, sz, rt), 0);
  }
  return 4 * rt(id);
}

/** A node computed by two kernels: partial results per chunk, then their combination. */
export interface SplitKernels {
  /** Per-slice shape of the partial-results buffer (written by `first`, read as PARTIAL). */
  partial: Dim[];
  first: NodeKernel;
  /** Reads PARTIAL (binding a0) and possibly node ids. */
  combine: NodeKernel;
}

/**
 * The split form of `n` for a run whose sizes push its loop past the budget, or undefined for
 * kinds that have none (top-k, probabilities, attention with rows replaced, scatters, regions).
 */
export function splitKernels(
  n: Node,
  byId: Map<number, Node>,
  slots: SymbolSlots,
  inline: Set<number>,
  f16 = false,
): SplitKernels | undefined {
  const P = LOOPS.parts;
  const out = n.type.shape;
  const outSize = size(out, slots);
  const op = n.op;
  const src = (k: number) => byId.get(n.args[k])!.type.shape;
  const combineSum = (len: string, fn: keyof typeof REDUCE_INIT, name: string): NodeKernel => {
    const reader = new Reader(byId, inline, slots, [PARTIAL]);
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
  };
  const chunk = (len: string) =>
    `let kused = ${splitUsed(len)};
  if (kp >= kused) { return; }
  let kblk = (${len} + kused - 1u) / kused;
  let klo = min(kp * kblk, ${len});
  let khi = min(klo + kblk, ${len});`;
  switch (op.op) {
    case "reduce":
    case "dot": {
      const a = src(0);
      const len = dim(op.op === "reduce" ? a[op.axis] : a[a.length - 1], slots);
      const reader = new Reader(byId, inline, slots);
      const { pre } = heavyValue(n, out.map((_, i) => `c${i}`), reader);
      const head = `for (var k = 0u; k < ${len}; k = k + 1u)`;
      if (!pre.includes(head)) return undefined;
      const body = `let kp = r / ${outSize};
  let r2 = r % ${outSize};
  ${coords(out, slots, "r2")}
  ${chunk(len)}
  ${pre.replace(head, "for (var k = klo; k < khi; k = k + 1u)")}
  out[(s * ${P}u + kp) * ${outSize} + r2] = acc;`;
      const first = kernel(n, reader, [P, ...out], slots, body);
      const fn = op.op === "dot" ? "sum" : op.fn;
      const rt = (sz: Sizes) => readTrips(byId, inline, sz);
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
        combine: combineSum(len, fn, "combine"),
      };
    }
    case "matmul": {
      const [first] = nodeKernels(n, byId, slots, inline, { split: true });
      const K = dim(src(0).at(-1)!, slots);
      return {
        partial: [P, ...out],
        first: { ...first, name: `${first.name}_part` },
        combine: combineSum(K, "sum", "combine"),
      };
    }
    case "softmax":
    case "normalize": {
      const axis = op.axis;
      const fiber = out.filter((_, i) => i !== axis);
      const fiberSize = size(fiber, slots);
      const len = dim(out[axis], slots);
      const lenD = out[axis];
      const soft = op.op === "softmax";
      const W = soft ? 2 : 1;
      const fc = out.map((_, i) => (i === axis ? "k" : `f${i < axis ? i : i - 1}`));
      const reader = new Reader(byId, inline, slots);
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
  ${chunk(len)}
  let ob = ((s * ${P}u + kp) * ${fiberSize} + r2) * ${W}u;
  ${stats}`;
      const first = kernel(n, reader, [P, ...fiber], slots, firstBody);
      // Per element: combine the chunks' statistics of its fiber, then write its value.
      const r2 = new Reader(byId, inline, slots, [PARTIAL]);
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
      const rt = (sz: Sizes) => readTrips(byId, inline, sz)(n.args[0]);
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
    case "attention": {
      const [first] = nodeKernels(n, byId, slots, inline, { f16, split: true });
      const [q, key, v] = [src(0), src(1), src(2)];
      const rows = dim(q[0], slots), cols = dim(key[0], slots), e = dim(v[1], slots);
      const ninf = f32(-Infinity);
      const at = (w: string) => `a0[((s * ${P}u + p) * ${rows} + i) * (${e} + 2u) + ${w}]`;
      const body = `let i = r / ${e};
  let c = r % ${e};
  let kused = ${splitUsed(cols)};
  var mx = ${ninf};
  for (var p = 0u; p < kused; p = p + 1u) { mx = max(mx, ${at("0u")}); }
  var l = 0.0;
  var acc = 0.0;
  for (var p = 0u; p < kused; p = p + 1u) {
    let mp = ${at("0u")};
    if (mp > ${ninf}) {
      // Each part's accumulator is its weighted mean (flash.ts): a running mean of the means.
      let w = ${at("1u")} * exp(mp - mx);
      let ln = l + w;
      acc = acc * (l / ln) + ${at("2u + c")} * (w / ln);
      l = ln;
    }
  }
  out[s * ${outSize} + r] = select(0.0, acc, l > 0.0);`;
      const combine = kernel(n, [PARTIAL], out, slots, body);
      return {
        // Each row's carrier takes e + 2 ≤ 3e floats.
        partial: [P, q[0], v[1], 3],
        first: { ...first, name: `${first.name}_part` },
        combine: { ...combine, name: `${combine.name}_combine`, trips: () => 2 * P },
      };
    }
  }
  return undefined;
}
