/**
 * Lowering: IR → an execution plan of kernels over buffers. This first lowering is the unfused
 * baseline: one kernel per IR node (reshapes alias their operand's buffer, `repeat` loops are
 * unrolled). It knows no device: the runtime executes the plan as it is.
 */
import { type Dim, type Graph, type InputDecl, type Node, nodesById } from "./ir.ts";
import {
  ELEMENTWISE,
  type NodeKernel,
  nodeKernels,
  READS_BY_COORDINATE,
  type SymbolSlots,
} from "./wgsl.ts";

/** A kernel placed in the plan: which buffer it writes and which it reads. */
export interface PlannedKernel extends NodeKernel {
  write: number;
  readBuffers: number[];
}

/** Everything the runtime needs to run a program. Buffer shapes are per (batch, head) slice. */
export interface ExecPlan {
  buffers: { id: number; shape: Dim[] }[];
  kernels: PlannedKernel[];
  inputs: { decl: InputDecl; buffer: number }[];
  output: number;
  /** Conditions on sizes checked before a run (the interpreter checks the same while running). */
  guards: { node: Node; rows: Dim; min: number; what: string; hint: string }[];
  /** Slot of each size symbol in the sizes buffer (slots 0–2 hold slices and the seed override). */
  slots: SymbolSlots;
}

/** Options of `lowerGraph`. */
export interface LowerOptions {
  /** Inline elementwise producers into their consumers' kernels (default true). */
  fuseElementwise?: boolean;
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
  const slots: SymbolSlots = new Map(Object.keys(graph.symbols).map((s, i) => [s, i + 3]));
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
