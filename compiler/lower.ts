/**
 * Lowering: IR → an execution plan of kernels over buffers. This first lowering is the unfused
 * baseline: one kernel per IR node (reshapes alias their operand's buffer, `repeat` loops are
 * unrolled). It knows no device: the runtime executes the plan as it is.
 */
import { type Dim, type Graph, type InputDecl, type Node, nodesById } from "./ir.ts";
import {
  copyKernel,
  ELEMENTWISE,
  LOOP_WORKGROUP,
  loopKernel,
  type NodeKernel,
  nodeKernels,
  READS_BY_COORDINATE,
  type SymbolSlots,
} from "./wgsl.ts";

/** A kernel placed in the plan: which buffer it writes and which it reads. */
export interface PlannedKernel extends NodeKernel {
  /** Buffer bound at binding 1 (`out`). */
  write: number;
  /** Buffers bound at bindings 2, 3, ... in order. */
  readBuffers: number[];
}

/** Everything the runtime needs to run a program. Buffer shapes are per (batch, head) slice. */
export interface ExecPlan {
  /** Every buffer with its per-slice shape. */
  buffers: { id: number; shape: Dim[] }[];
  /** Dispatches in order. */
  kernels: PlannedKernel[];
  /** Which buffer each input is uploaded to. */
  inputs: { decl: InputDecl; buffer: number }[];
  /** The buffer holding the result. */
  output: number;
  /** Conditions on sizes checked before a run (the interpreter checks the same while running). */
  guards: { node: Node; rows: Dim; min: number; what: string; hint: string }[];
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
   * Run small `repeat` loops as one single-workgroup kernel each (default false). It cuts the
   * Nyström pinv from 24 dispatches to 2, but on lavapipe it measured slower (n = 2048, 8 heads:
   * 390 ms vs 215 ms a run), since one workgroup per slice uses less of the CPU than tiled
   * per-op matmuls. Worth enabling where dispatch overhead dominates (real GPUs).
   */
  loopKernels?: boolean;
}

/** Ops that only move elements. */
const LAYOUT = new Set(["transpose", "reshape", "broadcast"]);

/** Ops cheap enough to recompute in every consumer rather than store. */
const CHEAP = new Set(["const", "dim", "iota", "fill", "eye"]);

/**
 * The nodes that need no buffer: elementwise values read only by kernels that read by
 * coordinate, and used once (or cheap to recompute). Everything else is materialized.
 */
export function inlinedNodes(graph: Graph, byId: Map<number, Node>): Set<number> {
  const consumers = new Map<number, string[]>();
  const use = (id: number, by: string) => consumers.set(id, [...(consumers.get(id) ?? []), by]);
  for (const n of byId.values()) {
    for (const a of n.args) use(a, n.op.op);
    if (n.op.op === "loop") { for (const r of n.op.results) use(r, "loop"); }
  }
  use(graph.output, "output");
  const inline = new Set<number>();
  for (const n of byId.values()) {
    const by = consumers.get(n.id) ?? [];
    if (!ELEMENTWISE.has(n.op.op) || by.length === 0) continue;
    if (!by.every((c) => READS_BY_COORDINATE.has(c))) continue;
    if (by.length === 1 || CHEAP.has(n.op.op)) inline.add(n.id);
  }
  // A matmul, dot or topk reads each operand element many times, so what is inlined there is
  // recomputed per use: keep only small, cheap expressions (layout changes, constants, a few
  // adds and multiplies, like 13·I − P); anything with gathers or transcendentals, or larger,
  // is stored first.
  const cost = (id: number): number => {
    if (!inline.has(id)) return 0;
    const n = byId.get(id)!;
    if (n.op.op === "gather" || (n.op.op === "unary" && !["neg", "abs"].includes(n.op.fn))) {
      return 99;
    }
    const own = LAYOUT.has(n.op.op) || CHEAP.has(n.op.op) ? 0 : 1;
    return own + n.args.reduce((sum, a) => sum + cost(a), 0);
  };
  for (const n of byId.values()) {
    if (n.op.op !== "matmul" && n.op.op !== "dot" && n.op.op !== "topk") continue;
    for (const a of n.args) if (cost(a) > 4) inline.delete(a);
  }
  return inline;
}

/** Lower a graph to a plan: fused attention kernels, elementwise chains inlined into consumers. */
export function lowerGraph(graph: Graph, options: LowerOptions = {}): ExecPlan {
  const byId = nodesById(graph);
  const inline = options.fuseElementwise === false ? new Set<number>() : inlinedNodes(graph, byId);
  const slots: SymbolSlots = new Map(Object.keys(graph.symbols).map((s, i) => [s, i + 4]));
  const plan: ExecPlan = { buffers: [], kernels: [], inputs: [], output: -1, slots, guards: [] };
  const env = new Map<number, number>();
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
          if (options.loopKernels === true && smallLoop(n)) break;
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
        default:
          if (!inline.has(n.id)) emit(n);
      }
    }
  };
  /** Try to run a whole loop as one kernel (small static shapes, few loop trips, ≤ 8 buffers). */
  const smallLoop = (n: Node): boolean => {
    if (n.op.op !== "loop") return false;
    const body = n.op.body.filter((b) => b.op.op !== "carry");
    const carries = n.op.body.filter((b) => b.op.op === "carry");
    const stored = body.filter((b) => !inline.has(b.id));
    const numeric = (b: Node) => b.type.shape.every((d) => typeof d === "number");
    if (!stored.every((b) => ELEMENTWISE.has(b.op.op) || b.op.op === "matmul")) return false;
    if (![...stored, ...carries].every(numeric)) return false;
    const elems = (b: Node) => (b.type.shape as number[]).reduce((p, d) => p * d, 1);
    const perPhase = (b: Node) => {
      const k = b.op.op === "matmul" ? byId.get(b.args[0])!.type.shape.at(-1) as number : 1;
      return Math.ceil(elems(b) / LOOP_WORKGROUP) * k;
    };
    const trips = n.op.count * [...stored, ...carries].reduce((t, b) => t + perPhase(b), 0);
    // lavapipe cuts an invocation off after 65,535 loop iterations in total: stay well below.
    if (trips > 40_000) return false;
    const order = carries.map((c) => c.op.op === "carry" ? c.op.index : 0);
    const inits = order.map((i) => n.args[i]);
    const results = order.map((i) => n.op.op === "loop" ? n.op.results[i] : 0);
    if (!inits.every((i) => env.has(i) || inline.has(i))) return false;
    const k = loopKernel(n, stored, carries, results, byId, inline, slots);
    if (k.reads.length + 2 > 8) return false;
    const dummy = newBuffer([1]);
    carries.forEach((c, i) => {
      const buffer = newBuffer(c.type.shape);
      const init = copyKernel(c, inits[i], byId, inline, slots);
      plan.kernels.push({
        ...init,
        write: buffer,
        readBuffers: init.reads.map((r) => env.get(r)!),
      });
      env.set(c.id, buffer);
    });
    for (const b of stored) env.set(b.id, newBuffer(b.type.shape));
    plan.kernels.push({ ...k, write: dummy, readBuffers: k.reads.map((r) => env.get(r)!) });
    const byIndex = new Map(
      carries.map((c) => [c.op.op === "carry" ? c.op.index : 0, env.get(c.id)!]),
    );
    loopValues.set(n.id, n.op.results.map((_, i) => byIndex.get(i)!));
    return true;
  };
  const emit = (n: Node) => {
    const args = n.args.map((a) => byId.get(a)!);
    if (n.op.op === "segment_mean") {
      const m = n.op.segments;
      plan.guards.push({
        node: n,
        rows: args[0].type.shape[0],
        min: m,
        what: `segment_mean: ${m} segments but only {rows} rows`,
        hint: `use at most {rows} segments (landmarks ≤ n)`,
      });
    }
    const write = newBuffer(n.type.shape);
    for (const k of nodeKernels(n, byId, slots, inline)) {
      plan.kernels.push({ ...k, write, readBuffers: k.reads.map((r) => env.get(r)!) });
    }
    env.set(n.id, write);
  };
  visit(graph.nodes);
  plan.output = env.get(graph.output)!;
  return plan;
}
