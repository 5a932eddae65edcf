/**
 * The main demo: compile the standard variants, run them on the reference interpreter (and the
 * GPU when there is one), and compare each with what it should approximate or equal, next to the
 * trivial baselines. Then one small sweep per approximation: its error as its budget grows.
 *
 *   deno task demo            (n = 512, d = 32, 2 heads; sweeps at n = 256, 1 head)
 *   deno task demo --n 1024 [--no-gpu] [--no-sweeps]
 */
import { compileSync, randomTensor, relativeError, type Tensor } from "./mod.ts";
import { softmaxAttention } from "./examples/reference.ts";
import { getDevice } from "./runtime/device.ts";
import { meanOfValues, normalizeRows } from "./testing.ts";

const started = performance.now();
const args = Deno.args;
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const n = flag("n", 512), d = flag("d", 32), heads = flag("heads", 2);
const noGpu = args.includes("--no-gpu"), sweeps = !args.includes("--no-sweeps");
const here = new URL("./examples/", import.meta.url);
const load = (f: string) => Deno.readTextFileSync(new URL(f, here));

/** One status line on stderr, overwritten in place (only when stderr is a terminal). */
const tty = Deno.stderr.isTerminal();
const progress = (msg: string) => {
  if (!tty) return;
  const s = ((performance.now() - started) / 1000).toFixed(1);
  Deno.stderr.writeSync(new TextEncoder().encode(`\x1b[2K\r[${s} s] ${msg}`));
};

type Inputs = Record<"q" | "k" | "v", Tensor>;
const qkv = (shape: number[]): Inputs => ({
  q: randomTensor(shape, { seed: 1 }),
  k: randomTensor(shape, { seed: 2 }),
  v: randomTensor(shape, { seed: 3 }),
});
const shape = [1, heads, n, d];
const inputs = qkv(shape);

const baseline = meanOfValues(inputs.v), baselineUnit = normalizeRows(baseline);

interface Run {
  y: Tensor;
  ms: number;
  dispatches: number;
  gpu?: { y: Tensor; ms: number; firstMs: number };
}
interface Row {
  variant: string;
  params: string;
  reference: string;
  error: number;
  base: number;
  run: Run;
}

const rows: Row[] = [];
const add = (
  variant: string,
  params: Record<string, number>,
  reference: string,
  ref: Tensor,
  r: Run,
  base = baseline,
) =>
  rows.push({
    variant,
    params: Object.entries(params).map(([k, v]) => `${k}=${v}`).join(" "),
    reference,
    error: relativeError(r.y, ref),
    base: relativeError(base, ref),
    run: r,
  });

progress("looking for a WebGPU adapter");
const adapter = noGpu ? undefined : await getDevice().then(
  (d) => d.facts.description,
  (e) => {
    console.log(`(no GPU columns: ${e.message})\n`);
    return undefined;
  },
);
const cache = new Map<string, Run>();
async function runAsync(file: string, params: Record<string, number> = {}): Promise<Run> {
  const key = file + JSON.stringify(params);
  if (cache.has(key)) return cache.get(key)!;
  const name = file.replace(".attn", "");
  progress(`${name}: compiling`);
  const p = compileSync(load(file), { params, file: `examples/${file}` });
  progress(`${name}: float64 interpreter`);
  let t0 = performance.now();
  const y = await p.run(inputs, { backend: "interp" });
  const run: Run = { y, ms: performance.now() - t0, dispatches: p.plan().kernels.length };
  if (adapter) {
    progress(`${name}: first GPU run (builds the shader pipelines)`);
    t0 = performance.now();
    await p.run(inputs, { backend: "gpu" });
    const firstMs = performance.now() - t0;
    progress(`${name}: GPU`);
    t0 = performance.now();
    const g = await p.run(inputs, { backend: "gpu" });
    run.gpu = { y: g, ms: performance.now() - t0, firstMs };
  }
  cache.set(key, run);
  return run;
}

const exactRun = await runAsync("exact.attn");
progress("direct float64 reference");
const direct = softmaxAttention(inputs.q, inputs.k, inputs.v, (s) => s);
add("exact", {}, "direct float64", direct, exactRun);
const exact = exactRun.y, exactUnit = normalizeRows(exact);

const nys = { landmarks: 64, iters: 6 };
add("nystrom", nys, "exact", exact, await runAsync("nystrom.attn", nys));
const yosoP = { tau: 8, hashes: 32 };
const yosoE = await runAsync("yoso_e.attn", { tau: 8 });
add("yoso_e", { tau: 8 }, "exact, unit rows", exactUnit, yosoE, baselineUnit);
const yoso = await runAsync("yoso.attn", yosoP);
add("yoso", yosoP, "yoso_e", yosoE.y, yoso, baselineUnit);
add("yoso", yosoP, "exact, unit rows", exactUnit, yoso, baselineUnit);
const sk = { samples: 256 };
add("skein", sk, "exact", exact, await runAsync("skein.attn", sk));
const perf = { features: 256 };
add("performer", perf, "exact", exact, await runAsync("performer.attn", perf));
add("linear", {}, "exact", exact, await runAsync("linear.attn"));
const alibi = { slope: 0.5 };
progress("direct float64 reference (causal ALiBi)");
const alibiRef = softmaxAttention(
  inputs.q,
  inputs.k,
  inputs.v,
  (s, i, j) => (j <= i ? s - 0.5 * (i - j) : -Infinity),
);
add("causal_alibi", alibi, "direct float64", alibiRef, await runAsync("causal_alibi.attn", alibi));
const win = { window: 32 };
progress("direct float64 reference (sliding window)");
const winRef = softmaxAttention(
  inputs.q,
  inputs.k,
  inputs.v,
  (s, i, j) => (Math.abs(i - j) <= 32 ? s : -Infinity),
);
add("sliding_window", win, "direct float64", winRef, await runAsync("sliding_window.attn", win));

// Sweeps: each approximation's error as its budget grows, on the interpreter at a small size.
const sweepN = 256, sweepShape = [1, 1, sweepN, d];
const sweepLines: string[] = [];
if (sweeps) {
  const x = qkv(sweepShape);
  const run = (file: string, params: Record<string, number>) => {
    progress(`sweep: ${file.replace(".attn", "")} ${JSON.stringify(params)}`);
    return compileSync(load(file), { params }).run(x, { backend: "interp" });
  };
  const ex = await run("exact.attn", {});
  const ye = await run("yoso_e.attn", { tau: 8 });
  const base = relativeError(meanOfValues(x.v), ex);
  const baseE = relativeError(normalizeRows(meanOfValues(x.v)), ye);
  const plan: [string, string, string, number[], Record<string, number>, Tensor, number][] = [
    ["nystrom", "nystrom.attn", "landmarks", [8, 16, 32, 64, 128, 256], { iters: 6 }, ex, base],
    ["skein", "skein.attn", "samples", [16, 32, 64, 128, 192, 256], {}, ex, base],
    ["performer", "performer.attn", "features", [16, 64, 256, 1024, 4096], {}, ex, base],
    ["yoso→yoso_e", "yoso.attn", "hashes", [8, 32, 128, 512], { tau: 8 }, ye, baseE],
  ];
  for (const [name, file, budget, grid, extra, ref, b] of plan) {
    const cells: string[] = [];
    for (const g of grid) {
      const err = relativeError(await run(file, { ...extra, [budget]: g }), ref);
      cells.push(`${g}: ${err.toFixed(2)}`);
    }
    sweepLines.push(
      `${name.padEnd(12)} ${budget.padEnd(9)} ${cells.join("  ")}   (mean-of-v ${b.toFixed(2)})`,
    );
  }
}
progress("");

console.log(`Attune demo: q/k/v ~ N(0, 1) of shape [${shape.join(", ")}] (batch, heads, n, d)`);
console.log(`interp = float64 reference interpreter; gpu = WebGPU on ${adapter ?? "(none)"}\n`);
const head = [
  "variant",
  "params",
  "compared with",
  "rel. error",
  "mean-of-v",
  "interp ms",
  "gpu vs interp",
  "gpu ms",
  "gpu 1st ms",
  "disp.",
];
const table = rows.map(({ run: r, ...row }) => [
  row.variant,
  row.params,
  row.reference,
  row.error.toExponential(2),
  row.base.toFixed(2),
  r.ms.toFixed(0),
  r.gpu ? relativeError(r.gpu.y, r.y).toExponential(2) : "-",
  r.gpu ? r.gpu.ms.toFixed(0) : "-",
  r.gpu ? r.gpu.firstMs.toFixed(0) : "-",
  String(r.dispatches),
]);
const widths = head.map((h, c) => Math.max(h.length, ...table.map((t) => t[c].length)));
const line = (cells: string[]) =>
  cells.map((s, c) => (c >= 3 ? s.padStart(widths[c]) : s.padEnd(widths[c]))).join("  ");
console.log(line(head));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const t of table) console.log(line(t));
console.log(
  `
rel. error = ‖y − ref‖₂ / ‖ref‖₂. Two baselines for scale: predicting zeros scores 1.00, and
predicting mean(v) for every row (uniform attention) scores the "mean-of-v" column against the
same reference. An approximation is only useful where it beats mean-of-v clearly.
direct float64 = softmax(q kᵀ/√d) v as plain loops (examples/reference.ts), no compiler code.
yoso, yoso_e: output rows are normalized to unit length (normalize(...)), so they are compared
  with unit rows: exact attention row-normalized, and mean(v) normalized. YOSO replaces softmax
  by an LSH-collision kernel; its own target is yoso_e (its expectation), and yoso_e against
  exact shows how far that kernel is from softmax.
performer: FAVOR+ is unbiased for the softmax kernel, but each kernel estimate's variance grows
  exponentially with ‖q‖² + ‖k‖² (here ‖q/d^¼‖² ≈ √d); with N(0, 1) inputs at d = ${d} it needs
  far more features than 256 to beat mean-of-v (see the sweep below).
linear: elu+1 attention is a different function; listed against exact for scale only.
gpu vs interp: float32 WebGPU result against the float64 interpreter (same seeds); disp. =
  GPU dispatches per run (softmax attention variants fuse into one).`,
);
if (adapter) {
  const first = [...cache.values()].reduce((s, r) => s + (r.gpu?.firstMs ?? 0), 0);
  const warm = [...cache.values()].reduce((s, r) => s + (r.gpu?.ms ?? 0), 0);
  console.log(
    `gpu 1st ms = the first run of each program, which builds its shader pipelines (WGSL →
  SPIR-V → machine code on ${adapter}): ${(first / 1000).toFixed(1)} s for the ${cache.size}
  programs, against ${(warm / 1000).toFixed(1)} s for their second runs. Attune caches pipelines
  per process; lavapipe also keeps compiled shaders on disk (~/.cache/mesa_shader_cache), so the
  first run on a machine with an empty cache costs far more than this (README, "Two commands").`,
  );
}
if (sweeps) {
  console.log(
    `\nError as the budget grows (interpreter, n = ${sweepN}, d = ${d}, 1 head, same seeds; ` +
      `budget: error):`,
  );
  for (const l of sweepLines) console.log(l);
  console.log(
    `yoso→yoso_e is sampled YOSO against its expectation; the others are against exact
attention. At samples = n Skeinformer samples every column and is exact; Nyström at landmarks = n
is exact only up to its 6-step pinv. Gaussian q and k give flat, high-rank attention, the hard case
for low-rank methods: see bench/results/fidelity_*.svg for n = 1024 and 4096 and peaked inputs.`,
  );
}
console.log(`\n(total ${((performance.now() - started) / 1000).toFixed(1)} s)`);
