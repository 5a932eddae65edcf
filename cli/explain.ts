/**
 * What `attune explain` prints: the summary (dispatches, buffer memory at typical sizes, the
 * passes that changed the IR), the GPU plan, and all of it as data for `--json`.
 */
import type { Dim, Graph, Program, TensorType, ThreadDim } from "../mod.ts";
import { showGraph, showScore } from "../compiler/ir/print.ts";
import { whyNotFused } from "../compiler/passes/attention.ts";
import { sizeOf } from "../compiler/tensor.ts";
import { dispatchesPerRun, invocations } from "../compiler/lower/plan.ts";
import type { Args } from "./args.ts";
import { masksKeys, tileCounts } from "../kernels/tiles.ts";
import type { Node, Score } from "../compiler/ir/types.ts";
import { mixScore } from "../kernels/streams.ts";

/**
 * Each fused pass (the form recognized, its score, and for masks its (query tile, key block)
 * pairs by class at these sizes; leaves read from data are unknown here, so their blocks count as
 * partial), then each softmax left unfused with the reason.
 */
function attentionLines(p: Program, sizes: Record<string, number>): string[] {
  const byId = new Map(p.optimized.nodes.map((n) => [n.id, n]));
  const forms = {
    softmax: "softmax(score) @ v, one streaming pass (online softmax)",
    weights: "f(score) @ v summed without normalization, one streaming pass",
    probs: "softmax(score) itself, one pass (scores stored, then normalized)",
  };
  const fused = p.optimized.nodes.flatMap((n) => {
    if (n.op.op === "attention_mix") {
      const streams = n.op.streams;
      // Key blocks are skipped where every stream masks them: the max of the scores says where.
      const all: Node = { ...n, op: { op: "attention", score: mixScore(streams) } };
      const c = streams.every((t) => masksKeys(t.score)) &&
        tileCounts(all, n.args.map((a) => byId.get(a)!), sizes);
      return [
        `%${n.id} attention_mix: Σ_t coef_t · softmax(score_t) @ v, one streaming pass with ` +
        `an online softmax per stream (${streams.length} streams)`,
        ...streams.map((t, k) =>
          `  stream ${k}: coef = ${showScore(t.coef)}, score = ${showScore(t.score)}`
        ),
        ...(c
          ? [
            `  tiles (every stream): ${c.empty} empty (skipped), ${c.partial} partial, ${c.full} ` +
            "full (masks on data count as partial here)",
          ]
          : []),
      ];
    }
    if (n.op.op !== "attention" && n.op.op !== "probs") return [];
    const score = (n.op as { score: Score }).score;
    const sum = n.op.op === "attention" && n.op.weights === "score";
    const form = n.op.op === "probs" ? forms.probs : sum ? forms.weights : forms.softmax;
    const lse = n.op.op === "attention" && n.op.lse ? "; also each row's log-sum-exp" : "";
    const lines = [`%${n.id} ${n.op.op}: ${form}${lse}`, `  score = ${showScore(score)}`];
    // Summed weights are not tested by blocks (kernels/attention.ts).
    if (masksKeys(score) && !sum) {
      const c = tileCounts(n, n.args.map((a) => byId.get(a)!), sizes);
      lines.push(
        `  tiles: ${c.empty} empty (skipped), ${c.partial} partial, ${c.full} full` +
          " (masks on data count as partial here)",
      );
      const kernel = p.plan().kernels.find((k) => k.name === `${n.op.op}_${n.id}`);
      lines.push(...(kernel?.notes ?? []).map((note) => `  ${note}`));
    }
    return lines;
  });
  const unfused = [...whyNotFused(p.optimized)].map(([id, why]) => {
    const n = byId.get(id)!;
    return `%${id} softmax${n.name ? ` (${n.name})` : ""} did not fuse: ${why}`;
  });
  const all = [...fused, ...unfused];
  return all.length ? ["attention:", ...all.map((l) => `  ${l}`)] : [];
}

/**
 * The sizes `explain` estimates memory at: each size symbol that only ever sizes the last axis
 * of inputs (a feature width such as d or e) is 64, every other one (token counts) 1024;
 * `given` overrides.
 */
function typicalSizes(g: Graph, given: Record<string, number> = {}): Record<string, number> {
  const sizes: Record<string, number> = {};
  for (const s of Object.keys(g.symbols)) {
    const uses = g.inputs.flatMap((i) =>
      i.type.shape.flatMap((d, k) => d === s ? [k === i.type.shape.length - 1] : [])
    );
    sizes[s] = given[s] ?? (uses.length > 0 && uses.every((last) => last) ? 64 : 1024);
  }
  return sizes;
}

/** Bytes of the plan's buffers for one (batch, head) slice at these sizes (float32). */
function planBytes(p: Program, sizes: Record<string, number>): number {
  const value = (d: Dim) => typeof d === "number" ? d : sizes[d] ?? 1024;
  const elements = (shape: Dim[]) => sizeOf(shape.map(value));
  return p.plan().buffers.reduce(
    (t, b) =>
      t +
      4 * (b.parts ? b.parts.reduce((s, q) => s + invocations(q, value), 0) : elements(b.shape)),
    0,
  );
}

function showBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let u = -1;
  do {
    n /= 1024;
    u++;
  } while (n >= 1024 && u < units.length - 1);
  return `${n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0)} ${units[u]}`;
}

/** `explainJson` with the memory estimate of the summary: sizes used and bytes per slice. */
export function explainData(p: Program, given: Record<string, number>) {
  const sizes = typicalSizes(p.graph, given);
  return { ...explainJson(p), typicalSizes: sizes, bufferBytesPerSlice: planBytes(p, sizes) };
}

/** What `attune explain` prints: a summary, the GPU plan, and the IR with `--ir`. */
export function explainText(p: Program, args: Args): string {
  const full = p.explain({ wgsl: args.wgsl });
  const split = full.indexOf("\nGPU plan: ");
  const [irPart, planPart] = [full.slice(0, split), full.slice(split + 1)];
  const header = irPart.split("\n").slice(0, 3); // signature, params, size symbols
  const ir = irPart.split("\n").slice(4).join("\n");
  const plan = p.plan();
  const perRun = dispatchesPerRun(plan);
  const sizes = typicalSizes(p.graph, args.sizes);
  const at = Object.entries(sizes).map(([k, v]) => `${k} = ${v}`).join(", ");
  let last = showGraph(p.graph);
  const changed = p.passes.filter(({ graph }) => {
    const shown = showGraph(graph);
    const differs = shown !== last;
    last = shown;
    return differs;
  }).map((s) => s.pass);
  const summary = [
    ...header,
    `dispatches: ${plan.kernels.length} (kernels below)` +
    (perRun === plan.kernels.length
      ? ""
      : `; a run makes ${perRun}: host loops repeat their bodies`),
    `buffers: ${plan.buffers.length}, ${showBytes(planBytes(p, sizes))} per (batch, head) slice` +
    (at ? ` at ${at}` : "") + " (float32; --size NAME=N for others)",
    `optimizer: ${changed.length ? changed.join(", ") : "no pass"} changed the IR` +
    (args.ir ? "" : " (--ir shows it)"),
    ...attentionLines(p, sizes),
  ];
  return [
    ...summary,
    ...(args.ir ? ["", ir] : []),
    "",
    planPart.replace(/^GPU plan: .*/, "GPU plan (kernel, threads per (batch, head) slice):"),
  ].join("\n");
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
