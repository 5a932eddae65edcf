/**
 * Loop trips. lavapipe (Mesa ≤ 22) ends a shader invocation's loops after LOOPS.budget iterations
 * in total, silently. Every kernel of a plan therefore states its `trips` (loop iterations one
 * invocation makes, a function of the run's sizes), inlined heavy values counted into their
 * consumer; the executor checks them before a run, and lowering splits what passes the budget
 * (kernels/split.ts).
 */
import type { Dim, Node } from "../compiler/ir/types.ts";
import { LOOPS, MATMUL_TILE, splitBlock } from "../compiler/limits.ts";
import { ELEMENTWISE, HEAVY } from "../compiler/wgsl/ops.ts";
import type { NodeKernel } from "../compiler/wgsl/kernel.ts";

export type Sizes = (d: Dim) => number;

/** Loop iterations of one loop over `len` elements, reading with `inner` extra trips each. */
export const loop = (len: number, inner: number) => len * (1 + inner);

/**
 * Loop iterations one read of node `id` at a coordinate costs inside a kernel: an inlined
 * heavy value runs its loop (and the reads inside it); an inlined elementwise value costs what
 * its operands cost; a partial-table scatter sums its tables; a stored value costs nothing.
 */
export function readTrips(
  byId: Map<number, Node>,
  inline: Set<number>,
  chunks: ReadonlyMap<number, number>,
  sz: Sizes,
): (id: number) => number {
  const memo = new Map<number, number>();
  const rt = (id: number): number => {
    if (memo.has(id)) return memo.get(id)!;
    const n = byId.get(id)!;
    let t = 0;
    if (chunks.has(id) && !inline.has(id)) t = chunks.get(id)!;
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
  if (!HEAVY.has(n.op.op)) return args(n, rt);
  const contraction = n.op.op === "matmul" || n.op.op === "dot";
  const reads = contraction ? rt(n.args[0]) + rt(n.args[1]) : rt(n.args[0]);
  // segment_mean is counted with one trip of margin over its longest segment.
  const len = loopLength(n, byId)(sz) + (n.op.op === "segment_mean" ? 1 : 0);
  return loop(len, reads);
}

/** Iterations of the loop computing one element of a HEAVY node, at given sizes. */
export function loopLength(n: Node, byId: Map<number, Node>): (sz: (d: Dim) => number) => number {
  const a = byId.get(n.args[0])!.type.shape;
  switch (n.op.op) {
    case "matmul":
    case "dot":
    case "bits":
      return (sz) => sz(a.at(-1)!);
    case "reduce": {
      const axis = n.op.axis;
      return (sz) => sz(a[axis]);
    }
    case "segment_mean": {
      const m = n.op.segments;
      return (sz) => Math.ceil(sz(a[0]) / m);
    }
  }
  return () => 1;
}

/**
 * Loop trips one invocation of a node's own grid kernel makes per element it computes: the node's
 * loop (a HEAVY node's contraction, the Philox rounds of a random draw) and those of the values
 * inlined into it, at given sizes. Undefined for kernels with other loops (softmax, topk,
 * scatter, ...). Lowering (compiler/lower/schedule.ts) uses it to keep loop-heavy parts out of merged dispatches that run
 * many elements per invocation.
 */
export function elementTrips(
  n: Node,
  byId: Map<number, Node>,
  inline: Set<number>,
  chunks: ReadonlyMap<number, number>,
): ((sz: Sizes) => number) | undefined {
  const heavy = HEAVY.has(n.op.op), random = n.op.op === "random";
  if (!heavy && !random && !ELEMENTWISE.has(n.op.op)) return undefined;
  return (sz) => {
    const rt = readTrips(byId, inline, chunks, sz);
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
  chunks: ReadonlyMap<number, number>,
): NodeKernel[] {
  return kernels.map((k, i) =>
    k.trips ? k : { ...k, trips: kernelTrips(n, k, i, byId, inline, chunks) }
  );
}

function kernelTrips(
  n: Node,
  k: NodeKernel,
  index: number,
  byId: Map<number, Node>,
  inline: Set<number>,
  chunks: ReadonlyMap<number, number>,
): (sz: Sizes) => number {
  const shape = (i: number) => byId.get(n.args[i])!.type.shape;
  const stored = (id: number) => !inline.has(id) && !chunks.has(id);
  return (sz) => {
    const rt = readTrips(byId, inline, chunks, sz);
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
        const tables = chunks.get(n.id);
        if (tables) {
          const keys = sz(shape(0).at(-1)!);
          const used = Math.max(1, Math.min(tables, Math.ceil(keys / LOOPS.chunk)));
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
