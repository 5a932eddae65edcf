/**
 * Lowering: IR → an execution plan of kernels over buffers. Elementwise chains and small
 * contractions are inlined into the kernels that read them (inline.ts), connected sets of small
 * values become one-workgroup regions (regions.ts), `repeat` loops outside regions are unrolled
 * up to LOOP_UNROLL iterations and run as host loops past it (`ExecPlan.loops`),
 * independent kernels share dispatches (schedule.ts), and runs whose loops pass lavapipe's budget
 * get a long form with split loops (kernels/split.ts). It knows no device: the runtime executes the
 * plan as it is.
 */
import type { Dim, Graph, LeadCount, Node } from "../ir/types.ts";
import { nodesById, useCounts } from "../ir/walks.ts";
import { typicalSizes } from "../ir/cost.ts";
import { HEAVY } from "../wgsl/ops.ts";
import { inputSliceKey, nodeSliceKey, type SymbolSlots } from "../wgsl/syntax.ts";
import { type BindingKey, decodeKey } from "../wgsl/keys.ts";
import {
  attentionWithRows,
  elementTrips,
  nodeKernels,
  regionCost,
  regionKernel,
  splitKernels,
  withTrips,
} from "../../kernels/index.ts";
import { DEFAULT_STORAGE_BUFFERS, HOST_DRAW_ELEMENTS, LOOP_UNROLL, LOOPS } from "../limits.ts";
import type { ExecPlan, LowerOptions, PlannedKernel } from "./plan.ts";
import type { NodeKernel } from "../wgsl/kernel.ts";
import { inlinedNodes, partialTables } from "./inline.ts";
import { findRegions, outerDeps, type Region } from "./regions.ts";
import { schedule, scheduleAround } from "./schedule.ts";
import { checkPlan } from "./check.ts";
import { expandLogsumexp } from "./expand.ts";
import { intMagnitudes } from "./intrange.ts";

/** What lowering one graph holds while it walks the graph. */
interface Lowering {
  graph: Graph;
  options: LowerOptions;
  byId: Map<number, Node>;
  inline: Set<number>;
  /** The scatter_adds stored as partial tables: how many tables each (`partialTables`). */
  chunks: Map<number, number>;
  /** Inlined values also stored, for readers that cannot inline them (fused attention). */
  alsoStored: Set<number>;
  /** The run's sizes, for a long plan (`LowerOptions.runSizes`). */
  run?: (d: Dim) => number;
  slots: SymbolSlots;
  plan: ExecPlan;
  /** The buffer holding each computed node. */
  env: Map<number, number>;
  /** Reads of each node (each output counts one). */
  uses: Map<number, number>;
  /** The buffer of each attention's row log-sum-exp or weight sum (`lse`, `rowSum`). */
  lse: Map<number, number>;
  /** Attention results whose only reader replaces some of their rows (`r[J] = rows`). */
  rowsInto: Map<number, Node>;
  /** Buffers of each loop's results. */
  loopValues: Map<number, number[]>;
  /** Ids for the copy nodes host loops add (past every id of the graph). */
  nextId: number;
  typical: (d: Dim) => number;
}

/** Lower a graph to a plan: fused attention kernels, elementwise chains inlined into consumers. */
export function lowerGraph(checked: Graph, options: LowerOptions = {}): ExecPlan {
  const graph = expandLogsumexp(checked);
  const byId = nodesById(graph);
  const chunks = partialTables(graph, byId);
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
  // head(), heads(), batch() and batches() (ops, or atoms of a fused score) read the run's
  // leading-dim counts, which follow the symbols.
  if (
    options.inputSlices ||
    [...byId.values()].some((n) => /"(op|kind)":"lead"/.test(JSON.stringify(n.op)))
  ) {
    for (const k of ["heads()", "batches()"] satisfies LeadCount[]) slots.set(k, slots.size + 4);
  }
  // Three slots per input (keep, group, first: `sliceOf`); nodes bound to its buffer find them
  // through `InputAliases`.
  if (options.inputSlices) {
    for (const d of graph.inputs) {
      for (const part of ["", "/group", "/first"]) {
        slots.set(inputSliceKey(d.name) + part, slots.size + 4);
      }
    }
  }
  const plan: ExecPlan = {
    buffers: [],
    kernels: [],
    inputs: [],
    outputs: [],
    slots,
    guards: [],
    hostDraws: [],
    storedInts: [],
    loops: [],
  };
  const L: Lowering = {
    graph,
    options,
    byId,
    inline,
    chunks,
    alsoStored,
    run,
    slots,
    plan,
    env: options.inputSlices ? new InputAliases(graph, plan, slots) : new Map(),
    uses: useCounts(graph),
    lse: new Map(),
    rowsInto: new Map(),
    loopValues: new Map(),
    nextId: Math.max(0, ...byId.keys()) + 1,
    typical: typicalSizes(graph),
  };
  for (const n of byId.values()) {
    const x = byId.get(n.args[0]);
    if (n.op.op !== "set_rows" || x?.op.op !== "attention" || L.uses.get(x.id) !== 1) continue;
    const [idx, rows] = [byId.get(n.args[1])!, byId.get(n.args[2])!];
    if (inline.has(idx.id) || inline.has(rows.id) || rows.type.shape.length !== 2) continue;
    if (idx.type.shape.length !== 1 || idx.op.op === "input" || rows.op.op === "input") continue;
    L.rowsInto.set(x.id, n);
  }
  for (const n of byId.values()) guardRandint(L, n);
  const maxStorage = options.maxStorageBuffers ?? DEFAULT_STORAGE_BUFFERS;
  const regions =
    (options.regions === false || options.fuseElementwise === false
      ? []
      : findRegions(graph, byId, inline, L.typical, slots, maxStorage))
      // A long run computes a region whose loops would pass the budget as ordinary kernels.
      .filter((r) => !run || regionCost(r, byId, inline, slots).trips(run) <= LOOPS.budget);
  emitInOrder(L, regions);
  plan.outputs = graph.outputs.map((o) => L.env.get(o)!);
  // Stored ints: in a buffer of their own, or in a region's arena (what it does not inline).
  const magnitude = intMagnitudes(byId);
  const inRegion = new Set(regions.flatMap((r) => r.nodes.map((n) => n.id)));
  // A sum or matmul of ints accumulates in float32 even where it is computed inline.
  const accumulated = (n: Node) =>
    n.op.op === "matmul" || (n.op.op === "reduce" && n.op.fn !== "max" && n.op.fn !== "min");
  for (const n of byId.values()) {
    const stored = L.env.has(n.id) || (inRegion.has(n.id) && !inline.has(n.id)) || accumulated(n);
    if (n.type.dtype !== "int" || n.op.op === "input" || !stored) continue;
    plan.storedInts.push({ node: n, magnitude: magnitude(n.id) });
  }
  if (options.mergeKernels !== false && options.fuseElementwise !== false) {
    const merged = scheduleAround(
      plan,
      (ks) => schedule(ks, slots, maxStorage, L.typical, run),
    );
    plan.kernels = merged.kernels;
    plan.loops = merged.loops;
  }
  if (options.inputSlices) {
    plan.inputSlots = new Map(graph.inputs.map((d) => [d.name, slots.get(inputSliceKey(d.name))!]));
  } else {
    let sliced: ExecPlan | undefined;
    plan.inputSlices = () => (sliced ??= lowerGraph(graph, { ...options, inputSlices: true }));
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
 * The buffer of each node, keeping `nodeSliceKey(id)` in the slots pointing at an input's slice
 * slots exactly while node `id` is bound to that input's buffer (the input, a reshape of it, a
 * loop carry starting from it), so that kernels read it through `sliceOf`.
 */
class InputAliases extends Map<number, number> {
  constructor(readonly graph: Graph, readonly plan: ExecPlan, readonly slots: SymbolSlots) {
    super();
  }
  override set(id: number, buffer: number): this {
    const input = this.plan?.inputs.find((i) => i.buffer === buffer);
    if (input) this.slots.set(nodeSliceKey(id), this.slots.get(inputSliceKey(input.decl.name))!);
    else this.slots?.delete(nodeSliceKey(id));
    return super.set(id, buffer);
  }
}

/**
 * Kernel `k` placed in the plan over `bindings` (a grid kernel: its output, then the buffers
 * behind its reads; a region: every buffer it binds), writing `writes` (a grid kernel: its output).
 */
function planned(
  k: NodeKernel,
  bindings: number[],
  writes: number[],
  elementTrips?: PlannedKernel["elementTrips"],
): PlannedKernel {
  // A grid kernel binds its output first; further writes (an attention's row log-sum-exp) last.
  const reads = k.launch.kind === "slice"
    ? bindings.filter((b) => !writes.includes(b))
    : bindings.slice(1).filter((b) => !writes.slice(1).includes(b));
  return {
    name: k.name,
    wgsl: k.wgsl,
    specialize: k.specialize,
    launch: k.launch,
    features: k.features,
    bindings,
    writes,
    reads: k.reads,
    io: [{ name: k.name, reads, writes }],
    trips: k.trips!,
    elementTrips,
    part: k.part,
    notes: k.notes,
  };
}

function newBuffer(L: Lowering, shape: Dim[]): number {
  const id = L.plan.buffers.length;
  L.plan.buffers.push({ id, shape });
  return id;
}

/**
 * The buffer behind a binding key: a node's (or a vec4 view of it), or the buffers lowering
 * gave a region's arena and a split kernel's partial results.
 */
function bufferOf(L: Lowering, key: BindingKey, own: { arena?: number; partial?: number } = {}) {
  const t = decodeKey(key);
  const buffer = "node" in t
    ? L.env.get(t.node)
    : "vec4" in t
    ? L.env.get(t.vec4)
    : "arena" in t
    ? own.arena
    : own.partial;
  if (buffer === undefined) throw new Error(`internal: no buffer for binding key ${key}`);
  return buffer;
}

/** Top-level nodes in order, each region contracted to one item placed after all it reads. */
function emitInOrder(L: Lowering, regions: Region[]): void {
  const { graph } = L;
  const regionOf = new Map(regions.flatMap((r) => r.nodes.map((n) => [n.id, r] as const)));
  const items = graph.nodes.flatMap((n): (Node | Region)[] => {
    const r = regionOf.get(n.id);
    return r === undefined ? [n] : r.nodes[0] === n ? [r] : [];
  });
  const done = new Set<number>(graph.nodes.filter((n) => n.op.op === "input").map((n) => n.id));
  const topLevel = new Set(graph.nodes.map((n) => n.id));
  const ready = (it: Node | Region) =>
    ("nodes" in it ? it.nodes : [it]).every((n) =>
      outerDeps(n).every((a) => done.has(a) || regionOf.get(a) === it || !topLevel.has(a))
    );
  const pending = [...items];
  while (pending.length) {
    const i = pending.findIndex(ready);
    const it = pending.splice(i < 0 ? 0 : i, 1)[0];
    if ("nodes" in it) {
      emitRegion(L, it);
      it.nodes.forEach((n) => done.add(n.id));
    } else {
      visit(L, [it]);
      done.add(it.id);
    }
  }
}

/** Emit the kernels of `nodes` (a loop's body once per iteration: unrolled). */
function visit(L: Lowering, nodes: Node[]): void {
  const { env, inline } = L;
  for (const n of nodes) {
    switch (n.op.op) {
      case "input": {
        const decl = L.graph.inputs.find((i) => i.node === n.id)!;
        const buffer = newBuffer(L, n.type.shape);
        L.plan.inputs.push({ decl, buffer });
        env.set(n.id, buffer);
        break;
      }
      case "reshape":
        // A reshape of a stored value is the same buffer; of an inlined one, it is computed (and
        // stored too where a fused pass reads it: `alsoStored`).
        if (inline.has(n.id) && !L.alsoStored.has(n.id)) break;
        if (env.has(n.args[0])) {
          env.set(n.id, env.get(n.args[0])!);
          break;
        }
        emit(L, n);
        break;
      case "loop": {
        if (n.op.count > LOOP_UNROLL) {
          hostLoop(L, n);
          break;
        }
        let carried = n.args.map((a) => env.get(a)!);
        for (let it = 0; it < n.op.count; it++) {
          for (const b of n.op.body) {
            if (b.op.op === "carry") env.set(b.id, carried[b.op.index]);
          }
          visit(L, n.op.body.filter((b) => b.op.op !== "carry"));
          carried = n.op.results.map((r) => env.get(r)!);
        }
        L.loopValues.set(n.id, carried);
        break;
      }
      case "loop_result":
        env.set(n.id, L.loopValues.get(n.args[0])![n.op.index]);
        break;
      case "carry":
        break;
      case "attention":
        if (!L.rowsInto.has(n.id)) emit(L, n); // else emitted with its row replacement
        break;
      case "attention_lse":
      case "attention_rowsum":
        env.set(n.id, L.lse.get(n.args[0])!);
        break;
      case "random":
        if (inline.has(n.id)) break;
        if (hostDraw(L, n)) break;
        emit(L, n);
        break;
      default:
        if (!inline.has(n.id) || L.alsoStored.has(n.id)) emit(L, n);
    }
  }
}

/**
 * A loop past LOOP_UNROLL iterations as a host loop (`ExecPlan.loops`): each carried value gets
 * a buffer of its own, filled from the loop's arguments before the loop; the body's dispatches
 * are planned once and end by copying each result into its carried buffer. The plan's size does
 * not depend on the count.
 */
function hostLoop(L: Lowering, n: Node): void {
  if (n.op.op !== "loop") return;
  const carries = n.op.body.filter((b) => b.op.op === "carry");
  // A carried value has its initial value's type (the carry node itself may be dead code).
  const shapeOf = (index: number) => L.byId.get(n.args[index])!.type;
  const held = n.args.map((_, i) => newBuffer(L, shapeOf(i).shape));
  n.args.forEach((a, i) => copy(L, a, held[i], shapeOf(i)));
  const start = L.plan.kernels.length;
  for (const c of carries) if (c.op.op === "carry") L.env.set(c.id, held[c.op.index]);
  visit(L, n.op.body.filter((b) => b.op.op !== "carry"));
  // A result held in another carried buffer (a swap) is copied aside first: the copies into the
  // carried buffers must not read a buffer another of them overwrites.
  const sources = n.op.results.map((r, i) => {
    const b = L.env.get(r)!;
    return held.includes(b) && b !== held[i] ? copyAside(L, r, shapeOf(i)) : r;
  });
  sources.forEach((r, i) => {
    if (L.env.get(r) !== held[i]) copy(L, r, held[i], shapeOf(i));
  });
  L.plan.loops.push({ start, end: L.plan.kernels.length, count: n.op.count });
  L.loopValues.set(n.id, held);
}

/** A dispatch copying node `from`'s value into buffer `to` (a plain elementwise kernel). */
function copy(L: Lowering, from: number, to: number, type: Node["type"]): void {
  const id = L.nextId++;
  const node: Node = { id, op: { op: "reshape" }, args: [from], type };
  const req = { byId: L.byId, slots: L.slots, inline: new Set<number>(), chunks: L.chunks };
  const [k] = nodeKernels(node, req);
  const bindings = [to, ...k.reads.map((r) => bufferOf(L, r))];
  L.plan.kernels.push(planned({ ...k, name: `copy_${from}`, trips: () => 0 }, bindings, [to]));
}

/** Node `from`'s value copied into a new buffer, under a new node id; returns that id. */
function copyAside(L: Lowering, from: number, type: Node["type"]): number {
  const buffer = newBuffer(L, type.shape);
  copy(L, from, buffer, type);
  const id = L.nextId++;
  L.byId.set(id, { id, op: { op: "reshape" }, args: [from], type });
  L.env.set(id, buffer);
  return id;
}

/**
 * A random draw whose arguments are constants and whose size does not grow with the sequence is
 * drawn on the host (`ExecPlan.hostDraws`); returns whether `n` is one.
 */
function hostDraw(L: Lowering, n: Node): boolean {
  const args = n.args.map((a) => L.byId.get(a)!);
  if (n.op.op !== "random" || !args.every((a) => a.op.op === "const")) return false;
  if (n.type.shape.reduce<number>((p, d) => p * L.typical(d), 1) > HOST_DRAW_ELEMENTS) {
    return false;
  }
  const value = (a: Node) => (a.op.op === "const" ? a.op.value : 0);
  const buffer = newBuffer(L, n.type.shape);
  L.plan.hostDraws.push({
    buffer,
    node: n,
    seed: value(args[0]),
    hi: args[1] ? Math.floor(value(args[1])) : undefined,
  });
  L.env.set(n.id, buffer);
  return true;
}

function guardSegments(L: Lowering, n: Node): void {
  if (n.op.op !== "segment_mean") return;
  const m = n.op.segments;
  L.plan.guards.push({
    node: n,
    rows: L.byId.get(n.args[0])!.type.shape[0],
    min: m,
    what: `segment_mean: ${m} segments but only {rows} rows`,
    hint: `use at most {rows} segments (landmarks ≤ n)`,
  });
}

/**
 * randint's hi, when a constant or a size, is checked before the run like the interpreter checks
 * it while running (a data-dependent hi below 1 draws zeros on the GPU; docs).
 */
function guardRandint(L: Lowering, n: Node): void {
  if (n.op.op !== "random" || n.op.kind !== "randint") return;
  let hi = L.byId.get(n.args[1])!;
  while (hi.op.op === "cast" || hi.op.op === "reshape") hi = L.byId.get(hi.args[0])!;
  const rows = hi.op.op === "const" ? hi.op.value : hi.op.op === "dim" ? hi.op.name : undefined;
  if (rows === undefined) return;
  L.plan.guards.push({
    node: n,
    rows,
    min: 1,
    what: "randint: hi must be at least 1, got {rows}",
    hint: "draw from a range of at least one value",
  });
}

/** Emit the kernels computing node `n` into a new buffer (or, for set_rows, in place). */
function emit(L: Lowering, n: Node): void {
  const { byId, slots, inline, chunks, plan, env } = L;
  const req = { byId, slots, inline, chunks, f16: L.options.f16 };
  const reads = (keys: BindingKey[]) => keys.map((k) => bufferOf(L, k));
  const timed = (node: Node, ks: NodeKernel[]) => withTrips(node, ks, byId, inline, chunks);
  if (n.op.op === "segment_mean") guardSegments(L, n);
  const fused = n.op.op === "set_rows" ? L.rowsInto.get(n.args[0]) : undefined;
  if (fused) {
    // r[J] = rows on an attention result: one attention kernel that writes the rows too.
    const x = byId.get(n.args[0])!;
    const [k] = timed(x, [attentionWithRows(x, byId, slots, n.args[1], n.args[2], req.f16)]);
    const write = newBuffer(L, n.type.shape);
    plan.kernels.push(planned(k, [write, ...reads(k.reads)], [write]));
    env.set(n.id, write);
    return;
  }
  if (n.op.op === "set_rows" && L.uses.get(n.args[0]) === 1 && !inline.has(n.args[0])) {
    // In place: the replaced rows are written straight into x's buffer, which nothing else
    // reads, instead of copying x first.
    const x = env.get(n.args[0]);
    if (x !== undefined && !plan.inputs.some((i) => i.buffer === x)) {
      const [, scatter] = timed(n, nodeKernels(n, { byId, slots, inline, chunks }));
      plan.kernels.push(planned(scatter, [x, ...reads(scatter.reads)], [x]));
      env.set(n.id, x);
      return;
    }
  }
  // An attention with `lse` (`rowSum`) also writes its rows' log-sum-exp (sum of weights) into a
  // buffer of its own.
  const lse = n.op.op === "attention" && (n.op.lse || n.op.rowSum)
    ? newBuffer(L, [n.type.shape[0]])
    : undefined;
  if (lse !== undefined) L.lse.set(n.id, lse);
  const kernels = timed(n, nodeKernels(n, req));
  const run = L.run;
  const split = run && kernels.some((k) => k.trips!(run) > LOOPS.budget)
    ? splitKernels(n, req)
    : undefined;
  if (split) {
    // Partial results per chunk of the long loop, then their combination (kernels/split.ts).
    const partial = newBuffer(L, split.partial);
    const write = newBuffer(L, n.type.shape);
    const [first, combine] = timed(n, [split.first, split.combine]);
    plan.kernels.push(planned(first, [partial, ...reads(first.reads)], [partial]));
    const combined = combine.reads.map((r) => bufferOf(L, r, { partial }));
    plan.kernels.push(planned(combine, [write, ...combined], [write]));
    if (split.lse && lse !== undefined) {
      const [k] = timed(n, [split.lse]);
      plan.kernels.push(planned(k, [lse, partial], [lse]));
    }
    env.set(n.id, write);
    return;
  }
  const tables = chunks.get(n.id);
  const write = newBuffer(L, tables ? [tables, ...n.type.shape] : n.type.shape);
  const perElement = elementTrips(n, byId, inline, chunks);
  // Kernels with a scratch buffer (kernels/causal.ts) write it; the node's later kernels read it.
  const parts = kernels.find((k) => k.scratch)?.scratch;
  const scratch = parts && plan.buffers.push({ id: plan.buffers.length, shape: [], parts }) - 1;
  // An attention with `lse` also writes its rows' log-sum-exp into a buffer of its own.
  const also = lse === undefined ? [] : [lse];
  for (const k of kernels) {
    const trips = k.part ? perElement : undefined;
    const to = k.scratch ? scratch! : write;
    const from = k.reads.map((r) => bufferOf(L, r, { partial: scratch }));
    plan.kernels.push(planned(k, [to, ...from, ...also], [to, ...also], trips));
  }
  env.set(n.id, write);
}

/** Emit a region's one kernel: its outputs get buffers, its arena one buffer of parts. */
function emitRegion(L: Lowering, region: Region): void {
  const { byId, plan, env } = L;
  for (const n of region.nodes) if (n.op.op === "segment_mean") guardSegments(L, n);
  const k = regionKernel(region, byId, L.inline, L.chunks, L.slots);
  for (const id of region.outputs) env.set(id, newBuffer(L, byId.get(id)!.type.shape));
  const arena = plan.buffers.push({ id: plan.buffers.length, shape: [], parts: k.arena }) - 1;
  const buffer = (key: BindingKey) => bufferOf(L, key, { arena });
  plan.kernels.push(planned(k, k.reads.map(buffer), k.writes.map(buffer)));
}
