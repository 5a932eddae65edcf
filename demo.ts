/**
 * The main demo: compile the standard variants, run them on the reference interpreter, and
 * compare each with what it should approximate or equal. Prints one table.
 *
 *   deno task demo            (n = 512, d = 32, 2 heads)
 *   deno task demo --n 1024
 */
import { compileSync, randomTensor, relativeError, type Tensor } from "./mod.ts";
import { softmaxAttention } from "./examples/reference.ts";
import { getDevice } from "./runtime/device.ts";

const args = Deno.args;
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const n = flag("n", 512), d = flag("d", 32), heads = flag("heads", 2);
const noGpu = args.includes("--no-gpu");
const here = new URL("./examples/", import.meta.url);
const load = (f: string) => Deno.readTextFileSync(new URL(f, here));

const shape = [1, heads, n, d];
const inputs = {
  q: randomTensor(shape, { seed: 1 }),
  k: randomTensor(shape, { seed: 2 }),
  v: randomTensor(shape, { seed: 3 }),
};

interface Row {
  variant: string;
  params: string;
  reference: string;
  error: number;
  ms: number;
  gpu?: { error: number; ms: number };
  dispatches: number;
}

const rows: Row[] = [];
const cache = new Map<string, Run>();
const add = (
  variant: string,
  params: Record<string, number>,
  reference: string,
  ref: Tensor,
  r: Run,
) =>
  rows.push({
    variant,
    params: Object.entries(params).map(([k, v]) => `${k}=${v}`).join(" "),
    reference,
    error: relativeError(r.y, ref),
    ms: r.ms,
    gpu: r.gpu && { error: relativeError(r.gpu.y, r.y), ms: r.gpu.ms },
    dispatches: r.dispatches,
  });

const adapter = noGpu ? undefined : await getDevice().then(
  (d) => d.facts.description,
  (e) => {
    console.log(`(no GPU columns: ${e.message})\n`);
    return undefined;
  },
);
const exactRun = await runAsync("exact.attn");
const direct = softmaxAttention(inputs.q, inputs.k, inputs.v, (s) => s);
add("exact", {}, "direct float64", direct, exactRun);
const exact = exactRun.y;

const nys = { landmarks: 64, iters: 6 };
add("nystrom", nys, "exact", exact, await runAsync("nystrom.attn", nys));
const yosoP = { tau: 8, hashes: 32 };
const yosoE = await runAsync("yoso_e.attn", { tau: 8 });
add("yoso_e", { tau: 8 }, "exact", exact, yosoE);
const yoso = await runAsync("yoso.attn", yosoP);
add("yoso", yosoP, "yoso_e", yosoE.y, yoso);
add("yoso", yosoP, "exact", exact, yoso);
const sk = { samples: 256 };
add("skein", sk, "exact", exact, await runAsync("skein.attn", sk));
const perf = { features: 256 };
add("performer", perf, "exact", exact, await runAsync("performer.attn", perf));
add("linear", {}, "exact", exact, await runAsync("linear.attn"));
const alibi = { slope: 0.5 };
add(
  "causal_alibi",
  alibi,
  "direct float64",
  softmaxAttention(
    inputs.q,
    inputs.k,
    inputs.v,
    (s, i, j) => (j <= i ? s - 0.5 * (i - j) : -Infinity),
  ),
  await runAsync("causal_alibi.attn", alibi),
);
const win = { window: 32 };
add(
  "sliding_window",
  win,
  "direct float64",
  softmaxAttention(
    inputs.q,
    inputs.k,
    inputs.v,
    (s, i, j) => (Math.abs(i - j) <= 32 ? s : -Infinity),
  ),
  await runAsync("sliding_window.attn", win),
);

interface Run {
  y: Tensor;
  ms: number;
  dispatches: number;
  gpu?: { y: Tensor; ms: number };
}

async function runAsync(file: string, params: Record<string, number> = {}): Promise<Run> {
  const key = file + JSON.stringify(params);
  if (cache.has(key)) return cache.get(key)!;
  const p = compileSync(load(file), { params, file: `examples/${file}` });
  let t0 = performance.now();
  const y = await p.run(inputs);
  const run: Run = { y, ms: performance.now() - t0, dispatches: p.plan().kernels.length };
  if (adapter) {
    await p.run(inputs, { backend: "gpu" }); // warm-up: compiles the pipelines
    t0 = performance.now();
    const g = await p.run(inputs, { backend: "gpu" });
    run.gpu = { y: g, ms: performance.now() - t0 };
  }
  cache.set(key, run);
  return run;
}

console.log(`Attune demo: q/k/v ~ N(0, 1) of shape [${shape.join(", ")}] (batch, heads, n, d)`);
console.log(`interp = float64 reference interpreter; gpu = WebGPU on ${adapter ?? "(none)"}\n`);
const head = [
  "variant",
  "params",
  "compared with",
  "rel. error",
  "interp ms",
  "gpu vs interp",
  "gpu ms",
  "disp.",
];
const table = rows.map((r) => [
  r.variant,
  r.params,
  r.reference,
  r.error.toExponential(2),
  r.ms.toFixed(0),
  r.gpu ? r.gpu.error.toExponential(2) : "-",
  r.gpu ? r.gpu.ms.toFixed(0) : "-",
  String(r.dispatches),
]);
const widths = head.map((h, c) => Math.max(h.length, ...table.map((t) => t[c].length)));
const line = (cells: string[]) =>
  cells.map((s, c) => (c >= 3 ? s.padStart(widths[c]) : s.padEnd(widths[c]))).join("  ");
console.log(line(head));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const t of table) console.log(line(t));
console.log(
  "\nrel. error = ‖y − ref‖₂ / ‖ref‖₂. Variants that compute a different function (yoso, linear)\n" +
    "are listed against exact for scale only; yoso's own target is yoso_e (its expectation).\n" +
    "gpu vs interp: float32 WebGPU result against the float64 interpreter (same seeds);\n" +
    "disp. = GPU dispatches per run (softmax attention variants fuse into one).",
);
