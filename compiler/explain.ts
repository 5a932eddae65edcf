/**
 * What `Program.explain()` and `attune explain` print, built from the compiler's data (never from
 * another printer's text): the summary (signature, dispatches, buffer memory at typical sizes, the
 * passes that changed the IR, each attention kernel's form and tile classes, why each unfused
 * softmax did not fuse), then the IR after each pass that changed it, then the GPU plan.
 */
import type { Dim, Graph, Node, Score } from "./ir/types.ts";
import { showGraph, showScore, showType } from "./ir/print.ts";
import { whyNotFused } from "./passes/attention.ts";
import { dispatchesPerRun, type ExecPlan, invocations, type PlannedKernel } from "./lower/plan.ts";
import { masksKeys, tileCounts } from "../kernels/tiles.ts";
import { mixScore } from "../kernels/streams.ts";
import { sizeOf } from "./tensor.ts";
import { allNodes, nodesById } from "./ir/walks.ts";

/** What explain reads: the checked IR, the graph after each pass, the optimized IR, its plan. */
export interface ExplainInput {
  graph: Graph;
  passes: { pass: string; graph: Graph }[];
  optimized: Graph;
  plan: ExecPlan;
}

/** What to show; `hints` spell the options that change the text (CLI flags or API options). */
export interface ExplainTextOptions {
  wgsl: boolean;
  ir: boolean;
  /** Sizes to estimate memory and tiles at; symbols left out take `typicalSizes`'. */
  sizes: Record<string, number>;
  hints: { sizes: string; ir: string };
}

/** The summary, the IR when asked, then the GPU plan. */
export function explainText(x: ExplainInput, o: ExplainTextOptions): string {
  return [
    ...summaryLines(x, o),
    ...(o.ir ? ["", irText(x)] : []),
    "",
    planText(x.plan, o.wgsl),
  ].join("\n");
}

/**
 * Signature, parameters, size symbols, dispatches, buffer memory at typical sizes, the passes
 * that changed the IR, and the attention block.
 */
export function summaryLines(x: ExplainInput, o: Omit<ExplainTextOptions, "wgsl">): string[] {
  const perRun = dispatchesPerRun(x.plan);
  const sizes = typicalSizes(x.graph, o.sizes);
  const at = Object.entries(sizes).map(([k, v]) => `${k} = ${v}`).join(", ");
  const changed = changedStages(x).map((s) => s.pass);
  return [
    ...signatureLines(x.graph),
    `dispatches: ${x.plan.kernels.length} (kernels below)` +
    (perRun === x.plan.kernels.length
      ? ""
      : `; a run makes ${perRun}: host loops repeat their bodies`),
    `buffers: ${x.plan.buffers.length}, ${showBytes(planBytes(x.plan, sizes))} per (batch, ` +
    `head) slice${at ? ` at ${at}` : ""} (float32; ${o.hints.sizes} for others)`,
    `optimizer: ${changed.length ? changed.join(", ") : "no pass"} changed the IR` +
    (o.ir ? "" : ` (${o.hints.ir} shows it)`),
    ...attentionLines(x.optimized, x.plan, sizes),
  ];
}

/** Signature (with inferred result types), parameters and size symbols of a checked program. */
export function signatureLines(graph: Graph): string[] {
  const outs = graph.outputs.map((o) => showType(graph.nodes.find((n) => n.id === o)!.type));
  const sig = graph.inputs.map((i) => {
    const fill = i.default === undefined
      ? ""
      : ` = ${i.default === 1 ? "ones" : i.default === 0 ? "zeros" : i.default}`;
    return `${i.name}: ${showType(i.type)}${fill}`;
  }).join(", ");
  const show = (k: string, v: number | boolean) =>
    graph.paramTypes?.[k] === "float" && Number.isInteger(v) ? (v as number).toFixed(1) : String(v);
  const params = Object.entries(graph.params).map(([k, v]) => `${k} = ${show(k, v)}`).join(", ");
  return [
    `${graph.entry}(${sig}) -> ${outs.length === 1 ? outs[0] : `(${outs.join(", ")})`}`,
    `params: ${params || "(none)"}`,
    `size symbols: ${Object.keys(graph.symbols).join(", ") || "(none)"}`,
  ];
}

/** The checked IR, then the IR after each pass that changed it. */
export function irText(x: Pick<ExplainInput, "graph" | "passes">): string {
  return [
    showGraph(x.graph),
    ...changedStages(x).flatMap(({ pass, shown }) => ["", `after ${pass}:`, shown]),
  ].join("\n");
}

/** The passes that changed the IR, each with the IR it left. */
function changedStages(x: Pick<ExplainInput, "graph" | "passes">) {
  let last = showGraph(x.graph);
  return x.passes.flatMap(({ pass, graph }) => {
    const shown = showGraph(graph);
    if (shown === last) return [];
    last = shown;
    return [{ pass, shown }];
  });
}

/** The dispatches in order with their threads per slice, each host loop's line before its body. */
export function planText(plan: ExecPlan, wgsl: boolean): string {
  const kernels = plan.kernels.map((k, i) =>
    `  ${String(i).padStart(3)}  ${k.name.padEnd(22)} threads/slice ${showLaunch(k)}` +
    (wgsl ? `\n${k.wgsl.replace(/^/gm, "       ")}` : "")
  );
  // Outer loops first, indented to the kernel names.
  const listed = kernels.flatMap((line, i) => [
    ...plan.loops.filter((l) => l.start === i).sort((a, b) => b.end - a.end).map((l) =>
      `       repeat ×${l.count}: dispatches ${l.start}–${l.end - 1}`
    ),
    line,
  ]);
  return ["GPU plan (kernel, threads per (batch, head) slice):", ...listed].join("\n");
}

function showLaunch(k: PlannedKernel): string {
  if (k.launch.kind === "slice") return "one workgroup";
  const regions = k.launch.regions ? `${k.launch.regions} workgroup(s) + ` : "";
  return regions +
    k.launch.parts.map((p) =>
      `[${
        p.map((t) =>
          typeof t !== "object"
            ? t
            : "max" in t
            ? `max(${t.max[0]}, ${t.max[1]})`
            : `⌈${t.ceilDiv[0]}/${t.ceilDiv[1]}⌉`
        ).join(", ")
      }]`
    ).join(" + ");
}

const FORMS = {
  softmax: "softmax(score) @ v, one streaming pass (online softmax)",
  weights: "f(score) @ v summed without normalization, one streaming pass",
  probs: "softmax(score) itself, one pass (scores stored, then normalized)",
};

/**
 * Each fused pass (the form recognized, its score, and for masks its (query tile, key block)
 * pairs by class at these sizes; leaves read from data are unknown here, so their blocks count as
 * partial), then each softmax left unfused with the reason.
 */
export function attentionLines(
  optimized: Graph,
  plan: ExecPlan,
  sizes: Record<string, number>,
): string[] {
  // Loop bodies too: attention inside `repeat` is fused there.
  const byId = nodesById(optimized);
  const fused = allNodes(optimized.nodes).flatMap((n) => {
    if (n.op.op === "attention_mix") return mixLines(n, byId, sizes);
    if (n.op.op !== "attention" && n.op.op !== "probs") return [];
    const score = (n.op as { score: Score }).score;
    const sum = n.op.op === "attention" && n.op.weights === "score";
    const form = n.op.op === "probs" ? FORMS.probs : sum ? FORMS.weights : FORMS.softmax;
    const lse = n.op.op === "attention" && n.op.lse
      ? "; also each row's log-sum-exp"
      : n.op.op === "attention" && n.op.rowSum
      ? "; also each row's sum of weights"
      : "";
    const written = n.op.op === "attention" && n.op.emptyNaN
      ? "; written out as exp(s - max(s)) / sum: a row with no finite score is NaN"
      : "";
    const lines = [
      `%${n.id} ${n.op.op}: ${form}${lse}${written}`,
      `  score = ${showScore(score)}`,
    ];
    // Summed weights are not tested by blocks (kernels/attention.ts).
    if (masksKeys(score) && !sum) {
      const c = tileCounts(n, n.args.map((a) => byId.get(a)!), sizes);
      lines.push(
        `  tiles: ${c.empty} empty (skipped), ${c.partial} partial, ${c.full} full` +
          " (masks on data or on head() and batch() count as partial here)",
      );
      const kernel = plan.kernels.find((k) => k.name === `${n.op.op}_${n.id}`);
      lines.push(...(kernel?.notes ?? []).map((note) => `  ${note}`));
    }
    return lines;
  });
  const unfused = [...whyNotFused(optimized)].map(([id, why]) => {
    const n = byId.get(id)!;
    return `%${id} softmax${n.name ? ` (${n.name})` : ""} did not fuse: ${why}`;
  });
  const all = [...fused, ...unfused];
  return all.length ? ["attention:", ...all.map((l) => `  ${l}`)] : [];
}

function mixLines(n: Node, byId: Map<number, Node>, sizes: Record<string, number>): string[] {
  if (n.op.op !== "attention_mix") return [];
  const streams = n.op.streams;
  // Key blocks are skipped where every stream masks them: the max of the scores says where.
  const all: Node = { ...n, op: { op: "attention", score: mixScore(streams) } };
  const c = streams.every((t) => masksKeys(t.score)) &&
    tileCounts(all, n.args.map((a) => byId.get(a)!), sizes);
  return [
    `%${n.id} attention_mix: Σ_t coef_t · softmax(score_t) @ v, one streaming pass with ` +
    `an online softmax per stream (${streams.length} streams)`,
    ...streams.map((t, k) =>
      `  stream ${k} (a = %${n.args[t.q]}, b = %${n.args[t.k]}): coef = ${
        showScore(t.coef)
      }, score = ${showScore(t.score)}`
    ),
    ...(c
      ? [
        `  tiles (every stream): ${c.empty} empty (skipped), ${c.partial} partial, ${c.full} ` +
        "full (masks on data or on head() and batch() count as partial here)",
      ]
      : []),
  ];
}

/**
 * The sizes explain estimates memory at: each size symbol that only ever sizes the last axis
 * of inputs (a feature width such as d or e) is 64, one that only sizes axes before a matrix's
 * rows (heads declared in the program, `q: [h, n, d]`) 8, every other one (token counts) 1024;
 * `given` overrides.
 */
export function typicalSizes(g: Graph, given: Record<string, number> = {}): Record<string, number> {
  const sizes: Record<string, number> = {};
  for (const s of Object.keys(g.symbols)) {
    // Each use's place: 1 the last axis, 0 a matrix's rows, -1 an axis before those.
    const uses = g.inputs.flatMap((i) =>
      i.type.shape.flatMap((d, k) => d === s ? [Math.sign(k - i.type.shape.length + 2)] : [])
    );
    const only = (place: number) => uses.length > 0 && uses.every((u) => u === place);
    sizes[s] = given[s] ?? (only(1) ? 64 : only(-1) ? 8 : 1024);
  }
  return sizes;
}

/** Bytes of the plan's buffers for one (batch, head) slice at these sizes (float32). */
export function planBytes(plan: ExecPlan, sizes: Record<string, number>): number {
  const value = (d: Dim) => typeof d === "number" ? d : sizes[d] ?? 1024;
  const elements = (shape: Dim[]) => sizeOf(shape.map(value));
  return plan.buffers.reduce(
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
