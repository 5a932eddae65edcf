/**
 * What `attune explain` prints: the text `Program.explain` gives (compiler/explain.ts) with the
 * command line's flags, and all of it as data for `--json`.
 */
import type { Dim, Graph, Program, TensorType, ThreadDim } from "../mod.ts";
import { showGraph } from "../compiler/ir/print.ts";
import * as report from "../compiler/explain.ts";
import type { Args } from "./args.ts";

/** `explainJson` with the memory estimate of the summary: sizes used and bytes per slice. */
export function explainData(p: Program, given: Record<string, number>) {
  const sizes = report.typicalSizes(p.graph, given);
  return {
    ...explainJson(p),
    typicalSizes: sizes,
    bufferBytesPerSlice: report.planBytes(p.plan(), sizes),
  };
}

/** What `attune explain` prints: a summary, the IR with `--ir`, and the GPU plan. */
export function explainText(p: Program, args: Args): string {
  return report.explainText(
    { graph: p.graph, passes: p.passes, optimized: p.optimized, plan: p.plan() },
    {
      wgsl: args.wgsl,
      ir: args.ir,
      sizes: args.sizes,
      hints: { sizes: "--size NAME=N", ir: "--ir" },
    },
  );
}

/** What `attune explain --json` prints: IR after each pass, kernels, buffers, dispatch count. */
export interface ExplainJson {
  /** The compiled function. */
  entry: string;
  /** Compile-time parameters with their values. */
  params: Graph["params"];
  /** The tensor inputs with their declared kinds and shapes. */
  inputs: { name: string; dtype: TensorType["dtype"]; shape: TensorType["shape"] }[];
  /** The results' types, in the order the program returns them. */
  outputs: TensorType[];
  /** Size symbols. */
  symbols: string[];
  /** The IR as checked, one line per node. */
  ir: string[];
  /** The IR after each optimization pass that changed it. */
  passes: { pass: string; ir: string[] }[];
  /** GPU dispatches per run. */
  dispatches: number;
  /** The plan's buffers with their per-slice shapes (arenas: their parts). */
  buffers: { id: number; shape: Dim[]; parts: ThreadDim[][] | undefined }[];
  /** Random draws made on the host: the buffer and the IR node of each. */
  hostDraws: { buffer: number; node: number }[];
  /** The dispatches in order. */
  kernels: {
    name: string;
    threads: ThreadDim[][];
    workgroupPerSlice: boolean;
    regions: number;
    bindings: number[];
    writes: number[];
    wgsl: string;
  }[];
}

/** What `attune explain --json` prints: IR after each pass, kernels, buffers, dispatch count. */
export function explainJson(p: Program): ExplainJson {
  const g = p.graph;
  const plan = p.plan();
  return {
    entry: g.entry,
    params: g.params,
    inputs: g.inputs.map((i) => ({ name: i.name, dtype: i.type.dtype, shape: i.type.shape })),
    outputs: g.outputs.map((o) => g.nodes.find((n) => n.id === o)!.type),
    symbols: Object.keys(g.symbols),
    ir: showGraph(g).split("\n"),
    passes: p.passes.map((s) => ({ pass: s.pass, ir: showGraph(s.graph).split("\n") })),
    dispatches: plan.kernels.length,
    buffers: plan.buffers.map((b) => ({ id: b.id, shape: b.shape, parts: b.parts })),
    hostDraws: plan.hostDraws.map((h) => ({ buffer: h.buffer, node: h.node.id })),
    kernels: plan.kernels.map((k) => ({
      name: k.name,
      threads: k.launch.kind === "grid" ? k.launch.parts : [[]],
      workgroupPerSlice: k.launch.kind === "slice",
      regions: k.launch.kind === "grid" ? k.launch.regions : 0,
      bindings: k.bindings,
      writes: k.writes,
      wgsl: k.wgsl,
    })),
  };
}
