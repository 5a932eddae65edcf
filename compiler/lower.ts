/**
 * Lowering: IR → an execution plan of kernels over buffers. This first lowering is the unfused
 * baseline: one kernel per IR node (reshapes alias their operand's buffer, `repeat` loops are
 * unrolled). It knows no device: the runtime executes the plan as it is.
 */
import type { Dim, Graph, InputDecl, Node } from "./ir/types.ts";
import { nodesById } from "./ir/walks.ts";
import { typicalSizes } from "./ir/cost.ts";
import { ARENA, findRegions, outerDeps, type Region, regionKernel } from "./region.ts";
import {
  ELEMENTWISE,
  HEAVY,
  mergeKernels,
  type NodeKernel,
  nodeKernels,
  READS_BY_COORDINATE,
  type SymbolSlots,
  type ThreadDim,
  VEC4_KEYS,
} from "./wgsl.ts";
import { attentionWithRows } from "./wgsl.ts";
import {
  DEFAULT_STORAGE_BUFFERS,
  HEAVY_RECOMPUTE_BUDGET,
  HOST_DRAW_ELEMENTS,
  HYBRID_ELEMENTS,
  HYBRID_TRIPS,
  LOOPS,
  MATMUL_TILE,
  PARTIAL_TABLE_BUCKETS,
  SCATTER_CHUNKS,
} from "./limits.ts";
import { elementTrips, PARTIAL, splitKernels, withTrips } from "./longloops.ts";

/** A kernel placed in the plan: which buffer it writes and which it reads. */
export interface PlannedKernel extends NodeKernel {
  /** Buffer bound at binding 1 (`out`). */
  write: number;
  /** Buffers bound at bindings 2, 3, ... in order. */
  readBuffers: number[];
  /** A merged dispatch: buffers at bindings 1, 2, ... (instead of write, readBuffers). */
  bindings?: number[];
  /** A merged dispatch: the invocations per slice of each part, laid end to end. */
  parts?: ThreadDim[][];
  /** A merged dispatch: the buffers its parts write. */
  writes?: number[];
  /** A merged dispatch: how many regions (one workgroup per slice each) come first. */
  regions?: number;
  /**
   * What each part of the dispatch reads and writes (buffers; one entry for an unmerged kernel).
   * A part's reads are the buffers it needs written before it starts (a region's own arena and
   * outputs, written and read inside it, are writes only). `checkPlan` verifies these.
   */
  io?: KernelIO[];
  /**
   * Loop trips one invocation makes per element of a grid kernel (see `elementTrips`), where
   * known: a merged dispatch with a region runs HYBRID_ELEMENTS elements per invocation.
   */
  elementTrips?: (size: (d: Dim) => number) => number;
}

/** The buffers one part of a dispatch reads and writes. */
export interface KernelIO {
  /** The part's kernel. */
  name: string;
  /** Buffers it reads that must be written before the dispatch. */
  reads: number[];
  /** Buffers it writes. */
  writes: number[];
}

/** Everything the runtime needs to run a program. Buffer shapes are per (batch, head) slice. */
export interface ExecPlan {
  /** Every buffer with its per-slice shape (an arena: the arrays it holds back to back). */
  buffers: { id: number; shape: Dim[]; parts?: Dim[][] }[];
  /** Dispatches in order. */
  kernels: PlannedKernel[];
  /** Which buffer each input is uploaded to. */
  inputs: { decl: InputDecl; buffer: number }[];
  /** The buffer holding the result. */
  output: number;
  /**
   * The plan for a run whose sizes push some kernel's `trips` past LOOPS.budget: lowered for
   * those sizes, long loops split (see longloops.ts). Absent on such plans themselves.
   */
  long?: (size: (d: Dim) => number) => ExecPlan;
  /** Conditions on sizes checked before a run (the interpreter checks the same while running). */
  guards: { node: Node; rows: Dim; min: number; what: string; hint: string }[];
  /**
   * Random draws whose arguments are constants and whose size does not grow with the sequence
   * (projection matrices like YOSO's hyperplanes): values of the seed alone, drawn on the host
   * with the same Philox bits as the interpreter and uploaded with the inputs, not dispatched.
   */
  hostDraws: { buffer: number; node: Node; seed: number; hi?: number }[];
  /**
   * Slot of each size symbol in the sizes buffer. Slots 0–3 hold the slices in this run, the
   * seed-override flag, the seed, and the index of the first slice (runs may be split).
   */
  slots: SymbolSlots;
}

/** Options of `lowerGraph`. */
export interface LowerOptions {
  /** Inline elementwise producers into their consumers' kernels (default true). */
  fuseElementwise?: boolean;
  /**
   * Merge independent kernels of the same dependency level into one dispatch (default true).
   */
  mergeKernels?: boolean;
  /**
   * Storage buffers one dispatch may bind, the sizes table included (default 16; Program plans
   * with the device's own limit when it is lower, e.g. WebGPU's guaranteed 8).
   */
  maxStorageBuffers?: number;
  /**
   * Fused attention computes q·k in half precision (`shader-f16`; opt-in, default false). The
   * softmax and the P·V accumulation stay f32. Needs an adapter with `shader-f16`.
   */
  f16?: boolean;
  /**
   * Compute connected sets of small values (and the `repeat` loops over them) as one
   * single-workgroup dispatch each (default true; see region.ts).
   */
  regions?: boolean;
  /**
   * Lower for a run at these sizes whose loops pass LOOPS.budget (`ExecPlan.long`): heavy values
   * with loops over LOOPS.chunk are stored, kernels over the budget split, regions over it and
   * long kernels left unmerged.
   */
  runSizes?: (d: Dim) => number;
}

/** Ops that only move elements. */
const LAYOUT = new Set(["transpose", "reshape", "broadcast"]);

/** Ops cheap enough to recompute in every consumer rather than store. */
const CHEAP = new Set(["const", "dim", "iota", "fill", "eye"]);

/**
 * The nodes that need no buffer, computed inside the kernels that read them:
 * - elementwise values read only by kernels that read by coordinate, used once (or cheap to
 *   recompute);
 * - contractions and reductions (HEAVY) whose every element is read about once by such kernels
 *   (YOSO's hash bits inside the table scatter, a reduction inside the map that consumes it),
 *   or whose recomputation stays within HEAVY_RECOMPUTE_BUDGET.
 * Decisions go from consumers to producers, counting how often each value would be evaluated.
 */
export function inlinedNodes(
  graph: Graph,
  byId: Map<number, Node>,
): { inline: Set<number>; alsoStored: Set<number> } {
  const size = typicalSizes(graph);
  const elems = (n: Node) => n.type.shape.reduce<number>((p, d) => p * size(d), 1);
  const consumers = new Map<number, (Node | undefined)[]>();
  const use = (id: number, by?: Node) => consumers.set(id, [...(consumers.get(id) ?? []), by]);
  const order: Node[] = [];
  const visit = (nodes: Node[]) => {
    for (const n of nodes) {
      order.push(n);
      for (const a of n.args) use(a, n);
      if (n.op.op === "loop") {
        for (const r of n.op.results) use(r);
        visit(n.op.body);
      }
    }
  };
  visit(graph.nodes);
  use(graph.output);
  const arg = (c: Node, k: number) => byId.get(c.args[k])!;
  // Operand elements one element of `c` reads.
  const perElement = (c: Node): number => {
    switch (c.op.op) {
      case "matmul":
      case "dot":
        return size(arg(c, 0).type.shape.at(-1)!);
      case "reduce":
        return size(arg(c, 0).type.shape[c.op.axis]);
      case "bits":
        return size(arg(c, 0).type.shape.at(-1)!);
      case "segment_mean":
        return Math.ceil(size(arg(c, 0).type.shape[0]) / c.op.segments);
      default:
        return 1;
    }
  };
  // Reads of operand k by the kernel that stores `c`.
  const kernelReads = (c: Node, k: number): number => {
    const a = arg(c, k);
    switch (c.op.op) {
      case "softmax": // a max pass, then an exp pass that keeps its values in the output
        return 2 * elems(a);
      case "matmul": {
        const [m, n] = c.type.shape.slice(-2).map(size);
        return (elems(c) / n) * perElement(c) * Math.ceil((k === 0 ? n : m) / MATMUL_TILE);
      }
      case "topk":
        return elems(a) * size(a.type.shape.at(-1)!);
      case "scatter_add":
        // Partial tables: each key's code is read once per channel, its values once per group.
        return k === 0 ? elems(a) * (elems(arg(c, 1)) / size(a.type.shape.at(-1)!)) : elems(a) *
          (elems(arg(c, 0)) / size(a.type.shape[0]));
      default:
        return elems(c) * perElement(c);
    }
  };
  const inline = new Set<number>();
  const evals = new Map<number, number>();
  // Ops of an elementwise expression down to stored values; gathers and transcendentals count 99.
  // Ops per element of an expression over the values `within` admits (others are buffer reads):
  // gathers, transcendentals and loops count 99.
  const costOf = (within: (n: Node) => boolean) => {
    const memo = new Map<number, number>();
    const cost = (id: number): number => {
      const n = byId.get(id)!;
      if (!within(n)) return 0;
      if (!memo.has(id)) {
        const heavy = HEAVY.has(n.op.op) || n.op.op === "gather" ||
          (n.op.op === "unary" && !["neg", "abs"].includes(n.op.fn));
        const own = heavy ? 99 : LAYOUT.has(n.op.op) || CHEAP.has(n.op.op) ? 0 : 1;
        memo.set(id, own + n.args.reduce((t, a) => t + cost(a), 0));
      }
      return memo.get(id)!;
    };
    return cost;
  };
  const exprCost = costOf((n) => ELEMENTWISE.has(n.op.op));
  // Cheap values that a fused kernel must read from a buffer (attention's q and k) are stored
  // for it, and recomputed by every kernel that reads by coordinate, which then need not wait.
  const alsoStored = new Set<number>();
  for (const n of order.reverse()) {
    const all = consumers.get(n.id) ?? [];
    const by = all.filter((c) => c && READS_BY_COORDINATE.has(c.op.op));
    if (by.length === 0) continue;
    if (by.length < all.length) {
      const direct = all.filter((c) => !by.includes(c));
      const fusedReaders = direct.every((c) => c && ["attention", "probs"].includes(c.op.op));
      if (!fusedReaders || !ELEMENTWISE.has(n.op.op) || exprCost(n.id) > 4) continue;
      alsoStored.add(n.id);
    }
    let total = 0;
    for (const c of by as Node[]) {
      c.args.forEach((a, k) => {
        if (a !== n.id) return;
        total += inline.has(c.id) ? evals.get(c.id)! * perElement(c) : kernelReads(c, k);
      });
    }
    // A matmul keeps its register-tiled kernel: inlined, each element would be a plain dot
    // product with two loads per multiply-add (measured ~10× slower on lavapipe for YOSO's
    // hash projections inlined into the bits that read them).
    if (n.op.op === "matmul") continue;
    const heavy = HEAVY.has(n.op.op);
    if (heavy) {
      const extra = (total - elems(n)) * perElement(n);
      if (total > elems(n) * 1.001 && extra > HEAVY_RECOMPUTE_BUDGET) continue;
      // A loop inside a consumer's loop multiplies their trips: Performer's global max of a row
      // max ran n · features trips per invocation, past lavapipe's budget from n ≈ 1000, which
      // forced the split plan (11 dispatches). Stored, the consumer loops n times.
      if ((by as Node[]).some((c) => perElement(c) * perElement(n) > LOOPS.chunk)) continue;
    } else if (!ELEMENTWISE.has(n.op.op)) continue;
    // An elementwise value read by several kernels is recomputed in each: fine when it is a
    // few arithmetic ops over stored values (Skeinformer's scaled q, k and v).
    else if (by.length > 1 && !CHEAP.has(n.op.op) && exprCost(n.id) > 4) continue;
    inline.add(n.id);
    evals.set(n.id, total);
  }
  // A matmul, dot or topk reads each operand element many times, so what is inlined there is
  // recomputed per use: keep only small, cheap expressions (layout changes, constants, a few
  // adds and multiplies, like 13·I − P); anything with gathers, transcendentals or loops, or
  // larger, is stored first.
  for (const n of byId.values()) {
    if (n.op.op !== "matmul" && n.op.op !== "dot" && n.op.op !== "topk") continue;
    for (const a of n.args) {
      if (costOf((m) => inline.has(m.id))(a) > 4) {
        inline.delete(a);
        alsoStored.delete(a);
      }
    }
  }
  for (const id of alsoStored) if (!inline.has(id)) alsoStored.delete(id);
  return { inline, alsoStored };
}

/**
 * Mark the scatter_adds that can be stored as partial tables: small tables (≤
 * PARTIAL_TABLE_BUCKETS buckets, a private array per invocation) read only by kernels that read by coordinate (they sum the
 * partials); a table that is the output or read by a fused attention kernel is built with
 * atomics instead.
 */
function partialTables(graph: Graph, byId: Map<number, Node>): Map<number, Node> {
  const direct = new Set<number>([graph.output]);
  for (const n of byId.values()) {
    if (!READS_BY_COORDINATE.has(n.op.op)) n.args.forEach((a) => direct.add(a));
    if (n.op.op === "loop") n.op.results.forEach((r) => direct.add(r));
  }
  const out = new Map(byId);
  for (const n of byId.values()) {
    if (n.op.op !== "scatter_add" || n.op.size > PARTIAL_TABLE_BUCKETS || direct.has(n.id)) {
      continue;
    }
    // More keys than the tables can take (lavapipe's loop budget) keep the atomic form.
    const keys = n.args.length ? byId.get(n.args[0])!.type.shape.at(-1) : undefined;
    if (typeof keys === "number" && keys > SCATTER_CHUNKS.count * LOOPS.chunk) continue;
    const chans = byId.get(n.args[1])!.type.shape.slice(1);
    if (chans.length > 1 && !chans.every((d) => typeof d === "number")) continue;
    out.set(n.id, { ...n, op: { ...n.op, chunks: SCATTER_CHUNKS.count } });
  }
  return out;
}

/** Lower a graph to a plan: fused attention kernels, elementwise chains inlined into consumers. */
export function lowerGraph(graph: Graph, options: LowerOptions = {}): ExecPlan {
  const byId = partialTables(graph, nodesById(graph));
  const { inline, alsoStored } = options.fuseElementwise === false
    ? { inline: new Set<number>(), alsoStored: new Set<number>() }
    : inlinedNodes(graph, byId);
  const run = options.runSizes;
  if (run) {
    // A long run stores its heavy values (no kernel repeats a loop per element of its own long
    // loop), so that each can be split.
    for (const id of inline) {
      const n = byId.get(id)!;
      if (HEAVY.has(n.op.op)) {
        inline.delete(id);
        alsoStored.delete(id);
      }
    }
  }
  const slots: SymbolSlots = new Map(Object.keys(graph.symbols).map((s, i) => [s, i + 4]));
  const plan: ExecPlan = {
    buffers: [],
    kernels: [],
    inputs: [],
    output: -1,
    slots,
    guards: [],
    hostDraws: [],
  };
  const env = new Map<number, number>();
  // A read key is a node id, or a vec4 view of one (see `vec4Key`).
  const bufferOf = (key: number) => env.get(key <= -VEC4_KEYS ? -key - VEC4_KEYS : key)!;
  const loopValues = new Map<number, number[]>();
  const newBuffer = (shape: Dim[]) => {
    const id = plan.buffers.length;
    plan.buffers.push({ id, shape });
    return id;
  };
  const visit = (nodes: Node[]) => {
    for (const n of nodes) {
      switch (n.op.op) {
        case "input": {
          const decl = graph.inputs.find((i) => i.node === n.id)!;
          const buffer = newBuffer(n.type.shape);
          plan.inputs.push({ decl, buffer });
          env.set(n.id, buffer);
          break;
        }
        case "reshape":
          // A reshape of a stored value is the same buffer; of an inlined one, it is computed.
          if (inline.has(n.id)) break;
          if (env.has(n.args[0])) {
            env.set(n.id, env.get(n.args[0])!);
            break;
          }
          emit(n);
          break;
        case "loop": {
          let carried = n.args.map((a) => env.get(a)!);
          for (let it = 0; it < n.op.count; it++) {
            for (const b of n.op.body) {
              if (b.op.op === "carry") env.set(b.id, carried[b.op.index]);
            }
            visit(n.op.body.filter((b) => b.op.op !== "carry"));
            carried = n.op.results.map((r) => env.get(r)!);
          }
          loopValues.set(n.id, carried);
          break;
        }
        case "loop_result":
          env.set(n.id, loopValues.get(n.args[0])![n.op.index]);
          break;
        case "carry":
          break;
        case "attention":
          if (!rowsInto.has(n.id)) emit(n); // else emitted with its row replacement
          break;
        case "random":
          if (inline.has(n.id)) break;
          if (hostDraw(n)) break;
          emit(n);
          break;
        default:
          if (!inline.has(n.id) || alsoStored.has(n.id)) emit(n);
      }
    }
  };
  const uses = new Map<number, number>([[graph.output, 1]]);
  for (const n of byId.values()) {
    for (const a of n.args) uses.set(a, (uses.get(a) ?? 0) + 1);
    if (n.op.op === "loop") { for (const r of n.op.results) uses.set(r, (uses.get(r) ?? 0) + 1); }
  }
  // Attention results whose only reader replaces some of their rows (`r[J] = rows`).
  const rowsInto = new Map<number, Node>();
  for (const n of byId.values()) {
    const x = byId.get(n.args[0]);
    if (n.op.op !== "set_rows" || x?.op.op !== "attention" || uses.get(x.id) !== 1) continue;
    const [idx, rows] = [byId.get(n.args[1])!, byId.get(n.args[2])!];
    if (inline.has(idx.id) || inline.has(rows.id) || rows.type.shape.length !== 2) continue;
    if (idx.type.shape.length !== 1 || idx.op.op === "input" || rows.op.op === "input") continue;
    rowsInto.set(x.id, n);
  }
  const size = typicalSizes(graph);
  const hostDraw = (n: Node): boolean => {
    const args = n.args.map((a) => byId.get(a)!);
    if (n.op.op !== "random" || !args.every((a) => a.op.op === "const")) return false;
    if (n.type.shape.reduce<number>((p, d) => p * size(d), 1) > HOST_DRAW_ELEMENTS) return false;
    const value = (a: Node) => (a.op.op === "const" ? a.op.value : 0);
    const buffer = newBuffer(n.type.shape);
    plan.hostDraws.push({
      buffer,
      node: n,
      seed: value(args[0]),
      hi: args[1] ? Math.floor(value(args[1])) : undefined,
    });
    env.set(n.id, buffer);
    return true;
  };
  const guardSegments = (n: Node) => {
    if (n.op.op !== "segment_mean") return;
    const m = n.op.segments;
    plan.guards.push({
      node: n,
      rows: byId.get(n.args[0])!.type.shape[0],
      min: m,
      what: `segment_mean: ${m} segments but only {rows} rows`,
      hint: `use at most {rows} segments (landmarks ≤ n)`,
    });
  };
  // randint's hi, when a constant or a size, is checked before the run like the interpreter
  // checks it while running (a data-dependent hi below 1 draws zeros on the GPU; docs).
  const guardRandint = (n: Node) => {
    if (n.op.op !== "random" || n.op.kind !== "randint") return;
    let hi = byId.get(n.args[1])!;
    while (hi.op.op === "cast" || hi.op.op === "reshape") hi = byId.get(hi.args[0])!;
    const rows = hi.op.op === "const" ? hi.op.value : hi.op.op === "dim" ? hi.op.name : undefined;
    if (rows === undefined) return;
    plan.guards.push({
      node: n,
      rows,
      min: 1,
      what: "randint: hi must be at least 1, got {rows}",
      hint: "draw from a range of at least one value",
    });
  };
  for (const n of byId.values()) guardRandint(n);
  const emit = (n: Node) => {
    if (n.op.op === "segment_mean") guardSegments(n);
    const self = byId.get(n.id)!;
    const fused = n.op.op === "set_rows" ? rowsInto.get(n.args[0]) : undefined;
    if (fused) {
      // r[J] = rows on an attention result: one attention kernel that writes the rows too.
      const x = byId.get(n.args[0])!;
      const [k] = withTrips(
        x,
        [
          attentionWithRows(x, byId, slots, n.args[1], n.args[2], options.f16),
        ],
        byId,
        inline,
      );
      const write = newBuffer(n.type.shape);
      plan.kernels.push({ ...k, write, readBuffers: k.reads.map(bufferOf) });
      env.set(n.id, write);
      return;
    }
    if (n.op.op === "set_rows" && uses.get(n.args[0]) === 1 && !inline.has(n.args[0])) {
      // In place: the replaced rows are written straight into x's buffer, which nothing else
      // reads, instead of copying x first.
      const x = env.get(n.args[0]);
      if (x !== undefined && !plan.inputs.some((i) => i.buffer === x)) {
        const [, scatter] = withTrips(self, nodeKernels(self, byId, slots, inline), byId, inline);
        plan.kernels.push({
          ...scatter,
          write: x,
          readBuffers: scatter.reads.map(bufferOf),
        });
        env.set(n.id, x);
        return;
      }
    }
    const chunks = self.op.op === "scatter_add" ? self.op.chunks : undefined;
    const kernels = withTrips(
      self,
      nodeKernels(self, byId, slots, inline, { f16: options.f16 }),
      byId,
      inline,
    );
    const split = run && kernels.some((k) => k.trips!(run) > LOOPS.budget)
      ? splitKernels(self, byId, slots, inline, options.f16)
      : undefined;
    if (split) {
      // Partial results per chunk of the long loop, then their combination (longloops.ts).
      const partial = newBuffer(split.partial);
      const write = newBuffer(n.type.shape);
      const [first, combine] = withTrips(self, [split.first, split.combine], byId, inline);
      plan.kernels.push({ ...first, write: partial, readBuffers: first.reads.map(bufferOf) });
      plan.kernels.push({
        ...combine,
        write,
        readBuffers: combine.reads.map((r) => (r === PARTIAL ? partial : bufferOf(r))),
      });
      env.set(n.id, write);
      return;
    }
    const write = newBuffer(chunks ? [chunks, ...n.type.shape] : n.type.shape);
    const perElement = elementTrips(self, byId, inline);
    for (const k of kernels) {
      const trips = k.part ? perElement : undefined;
      plan.kernels.push({ ...k, write, readBuffers: k.reads.map(bufferOf), elementTrips: trips });
    }
    env.set(n.id, write);
  };
  const maxStorage = options.maxStorageBuffers ?? DEFAULT_STORAGE_BUFFERS;
  const regions =
    (options.regions === false || options.fuseElementwise === false
      ? []
      : findRegions(graph, byId, inline, size, slots, maxStorage))
      // A long run computes a region whose loops would pass the budget as ordinary kernels.
      .filter((r) => !run || regionKernel(r, byId, inline, slots).trips(run) <= LOOPS.budget);
  const emitRegion = (region: Region) => {
    for (const n of region.nodes) if (n.op.op === "segment_mean") guardSegments(n);
    const k = regionKernel(region, byId, inline, slots);
    for (const id of region.outputs) env.set(id, newBuffer(byId.get(id)!.type.shape));
    const arena = plan.buffers.push({ id: plan.buffers.length, shape: [], parts: k.arena }) - 1;
    const buffer = (key: number) => (key === ARENA ? arena : env.get(key)!);
    const bindings = k.reads.map(buffer);
    const writes = k.writes.map(buffer);
    plan.kernels.push({
      ...k,
      write: arena,
      readBuffers: bindings.filter((b) => !writes.includes(b)),
      bindings,
      writes,
    });
  };
  // Top-level nodes in order, each region contracted to one item placed after all it reads.
  const regionOf = new Map(regions.flatMap((r) => r.nodes.map((n) => [n.id, r] as const)));
  const items = graph.nodes.flatMap((n): (Node | Region)[] => {
    const r = regionOf.get(n.id);
    return r === undefined ? [n] : r.nodes[0] === n ? [r] : [];
  });
  const done = new Set<number>(graph.nodes.filter((n) => n.op.op === "input").map((n) => n.id));
  const ready = (it: Node | Region) =>
    ("nodes" in it ? it.nodes : [it]).every((n) =>
      outerDeps(n).every((a) => done.has(a) || regionOf.get(a) === it || !topLevel.has(a))
    );
  const topLevel = new Set(graph.nodes.map((n) => n.id));
  const pending = [...items];
  while (pending.length) {
    const i = pending.findIndex(ready);
    const it = pending.splice(i < 0 ? 0 : i, 1)[0];
    if ("nodes" in it) {
      emitRegion(it);
      it.nodes.forEach((n) => done.add(n.id));
    } else {
      visit([it]);
      done.add(it.id);
    }
  }
  plan.output = env.get(graph.output)!;
  plan.kernels = plan.kernels.map((k) => ({
    ...k,
    io: k.io ?? [{ name: k.name, reads: k.readBuffers, writes: k.writes ?? [k.write] }],
  }));
  if (options.mergeKernels !== false && options.fuseElementwise !== false) {
    plan.kernels = schedule(plan.kernels, slots, maxStorage, size, run);
  }
  if (!run) {
    const long = new Map<string, ExecPlan>();
    plan.long = (sz) => {
      const key = Object.keys(graph.symbols).map((s) => sz(s)).join(",");
      if (!long.has(key)) long.set(key, lowerGraph(graph, { ...options, runSizes: sz }));
      return long.get(key)!;
    };
  }
  checkPlan(plan);
  return plan;
}

/**
 * Check a plan's data flow (run on every plan `lowerGraph` makes; tests run it too): every
 * buffer a dispatch reads was written by an earlier dispatch, an input upload or a host draw;
 * no part of a merged dispatch reads or writes a buffer another part of it writes (parts run in
 * no set order); each dispatch's parts account for all of its bindings; the output is written.
 * A violation is a compiler bug: it throws an internal error naming the dispatch and buffer.
 */
export function checkPlan(plan: ExecPlan): void {
  const written = new Set<number>([
    ...plan.inputs.map((i) => i.buffer),
    ...plan.hostDraws.map((h) => h.buffer),
  ]);
  const fail = (i: number, k: PlannedKernel, what: string): never => {
    throw new Error(`internal: plan check: dispatch ${i} (${k.name}) ${what}`);
  };
  plan.kernels.forEach((k, i) => {
    const io = k.io ?? [{ name: k.name, reads: k.readBuffers, writes: k.writes ?? [k.write] }];
    const bound = new Set(k.bindings ?? [k.write, ...k.readBuffers]);
    const covered = new Set(io.flatMap((p) => [...p.reads, ...p.writes]));
    for (const b of bound) if (!covered.has(b)) fail(i, k, `binds buffer ${b} no part uses`);
    const writes = new Set(k.writes ?? [k.write]);
    for (const p of io) {
      for (const b of p.writes) if (!writes.has(b)) fail(i, k, `part ${p.name} writes ${b}`);
      for (const q of io) {
        if (q === p) continue;
        const clash = q.writes.find((b) => p.reads.includes(b) || p.writes.includes(b));
        if (clash !== undefined) {
          fail(i, k, `part ${p.name} uses buffer ${clash}, which part ${q.name} writes`);
        }
      }
    }
    for (const p of io) {
      for (const b of p.reads) {
        if (!written.has(b)) {
          fail(i, k, `part ${p.name} reads buffer ${b}, which nothing before it writes`);
        }
      }
    }
    for (const b of writes) written.add(b);
  });
  if (!written.has(plan.output)) {
    throw new Error(`internal: plan check: output buffer ${plan.output} is never written`);
  }
}

/**
 * Loop trips of an invocation of a merged grid dispatch: the sum of its parts' (`group` is
 * copied). lavapipe runs eight invocations as one SIMD group; a group whose lanes fall in two
 * parts runs both parts' loops, one after the other with the other lanes masked, against one
 * budget (measured: linear attention's kᵀv, 15,000 trips, merged with its key sum over n =
 * 60,000, gave a relative error of 0.16, each alone was right).
 */
function mergedTrips(group: PlannedKernel[]): (sz: (d: Dim) => number) => number {
  const parts = [...group];
  return (sz) => parts.reduce((t, k) => t + (k.trips ? k.trips(sz) : Infinity), 0);
}

/**
 * Order kernels by dependency level (a kernel runs after every kernel that writes what it reads
 * or writes, or reads what it writes) and merge the template kernels of each level into as few
 * dispatches as the binding limit allows.
 */
function schedule(
  kernels: PlannedKernel[],
  slots: SymbolSlots,
  maxStorage: number,
  typical: (d: Dim) => number,
  run?: (d: Dim) => number,
) {
  // Loop trips of one invocation of a merged dispatch with a region: the regions' own, or
  // HYBRID_ELEMENTS elements of the grid parts (each at most the largest part's trips), plus
  // the loop over them. Unknown trips count as unbounded.
  function hybridTrips(group: PlannedKernel[]): (sz: (d: Dim) => number) => number;
  function hybridTrips(group: PlannedKernel[], sz: (d: Dim) => number): number;
  function hybridTrips(group: PlannedKernel[], at?: (d: Dim) => number) {
    // The grid parts' loops add up: the lanes of one SIMD group may take elements of several
    // parts, each part's code running in turn with the others masked (see `mergedTrips`).
    const grid = group.filter((k) => !k.workgroupPerSlice);
    const f = (sz: (d: Dim) => number) =>
      Math.max(
        0,
        ...group.filter((k) => k.workgroupPerSlice).map((k) => k.trips!(sz)),
        grid.length
          ? HYBRID_ELEMENTS *
              (1 + grid.reduce((t, k) => t + (k.elementTrips ? k.elementTrips(sz) : Infinity), 0)) +
            1
          : 0,
      );
    return at ? f(at) : f;
  }
  const writesOf = (k: PlannedKernel) => k.writes ?? [k.write];
  const level: number[] = [];
  kernels.forEach((k, i) => {
    const w = new Set(writesOf(k));
    const r = new Set(k.readBuffers);
    let lv = 0;
    for (let j = 0; j < i; j++) {
      const wj = writesOf(kernels[j]);
      const hazard = wj.some((b) => r.has(b) || w.has(b)) ||
        kernels[j].readBuffers.some((b) => w.has(b));
      if (hazard) lv = Math.max(lv, level[j] + 1);
    }
    level.push(lv);
  });
  const out: PlannedKernel[] = [];
  for (let lv = 0; lv <= Math.max(-1, ...level); lv++) {
    const here = kernels.filter((_, i) => level[i] === lv);
    let group: PlannedKernel[] = [];
    const flush = () => {
      if (group.length === 1) out.push(group[0]);
      if (group.length > 1) {
        const merged = mergeKernels(
          group.map((k) =>
            k.workgroupPerSlice
              ? { kernel: k, write: k.write, readBuffers: k.bindings!, writes: k.writes }
              : { kernel: k, write: k.write, readBuffers: k.readBuffers }
          ),
          slots,
        );
        const regions = group.filter((k) => k.workgroupPerSlice);
        out.push({
          name: [...regions, ...group.filter((k) => !k.workgroupPerSlice)].map((k) => k.name)
            .join("+"),
          wgsl: merged.wgsl,
          threads: [],
          reads: [],
          write: merged.writes[0],
          readBuffers: merged.bindings.filter((b) => !merged.writes.includes(b)),
          bindings: merged.bindings,
          writes: merged.writes,
          parts: group.filter((k) => !k.workgroupPerSlice).map((k) => k.threads),
          regions: merged.regions,
          io: group.flatMap((k) => k.io!),
          trips: regions.length ? hybridTrips(group) : mergedTrips(group),
        });
        // A long run's dispatch stays within the loop budget: else its parts run apart.
        if (run && out.at(-1)!.trips!(run) > LOOPS.budget) out.splice(-1, 1, ...group);
      }
      group = [];
    };
    // A long region would hold the grid parts' workgroups back (measured on lavapipe: Nyström's
    // 29K-trip region merged with its two maps took 474 ms at n = 8192 against 278 apart).
    // In a long run (`runSizes`), a kernel with long loops stays alone.
    const alone = (k: PlannedKernel) =>
      !k.part || (k.workgroupPerSlice && k.trips!(typical) > HYBRID_TRIPS) ||
      (run !== undefined && k.trips!(run) > LOOPS.budget / HYBRID_ELEMENTS);
    // Next to a region, each grid invocation computes HYBRID_ELEMENTS elements: a part with long
    // loops (a reduction over n) would pass lavapipe's loop budget of 65,535 trips per
    // invocation, after which loops end early and results are silently wrong (issue #7:
    // Skeinformer's sum(vs, axis=0) at n ≥ 4094). Such parts merge only among grid kernels.
    const loopy = (k: PlannedKernel) =>
      !k.workgroupPerSlice && hybridTrips([k], typical) > HYBRID_TRIPS;
    const withRegion = here.some((k) => !alone(k) && k.workgroupPerSlice);
    const batches = withRegion
      ? [here.filter((k) => alone(k) || !loopy(k)), here.filter((k) => !alone(k) && loopy(k))]
      : [here];
    for (const batch of batches) {
      for (const k of batch) {
        if (alone(k)) {
          out.push(k);
          continue;
        }
        const buffers = new Set(
          [...group, k].flatMap((g) => g.bindings ?? [g.write, ...g.readBuffers]),
        );
        if (group.length && buffers.size + 1 > maxStorage) flush();
        group.push(k);
      }
      flush();
    }
  }
  return out;
}
