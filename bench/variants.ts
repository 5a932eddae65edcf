/**
 * Suite `variants` (issue #9): attention variants a researcher writes, each as an Attune program,
 * timed on the GPU against exact attention in the same run (n = 2048, d = 64, 8 heads), with its
 * dispatch count and its output checked against the float64 interpreter (all heads, same inputs).
 * Each ratio is the median over runs paired back to back with the baseline's: of wall time
 * (upload, kernels, readback) and of kernel time (timestamp queries).
 *
 *   deno task bench -- --suite variants [--quick] [--replot] [--only NAME,NAME]
 *
 * A variant the language cannot express yet (or that fails) is recorded with its error, not
 * skipped silently. Writes bench/results/variants.json and variants.svg (ratio to exact per
 * variant, with the issue's target where it names one). `--only` runs the named variants (names
 * up to their first space, e.g. `--only document,prefix-lm`) with their baselines and writes
 * nothing: for measuring one change. The suite ends with causal linear attention against non-causal
 * linear attention at n = 2048 to 16384 (`--only causal-linear` alone): the ratio at n = 8192
 * and each one's fitted log-log slope of time against n.
 */
import {
  compileSync,
  type Program,
  randomTensor,
  relativeError,
  type Tensor,
  tensor,
} from "../mod.ts";
import { getDevice } from "../runtime/device.ts";

/** One variant: its program, extra inputs beyond q, k, v, and the issue's targets. */
interface Variant {
  name: string;
  source: string;
  /** Extra inputs at sequence length n (per head: shape without the batch dims). */
  extra?: (n: number) => Record<string, { shape: number[]; data: number[] }>;
  /** Heads of k and v when fewer than q's (grouped-query attention). */
  kvHeads?: number;
  /** Target dispatches and ratio to exact (or to `against`). */
  dispatches?: number;
  ratio?: number;
  against?: string;
}

const SCORE = "q[i] . k[j] / sqrt(d)";
const attn = (name: string, args: string, score: string) =>
  `def ${name}(q: [n, d], k: [n, d], v: [n, e]${args}) -> [n, e] {
  s[i, j] = ${score}
  return softmax(s, axis=1) @ v
}`;

/** Document ids of packed sequences, documents of 100–600 tokens (fixed lengths, seeded). */
export function documents(n: number): number[] {
  const ids: number[] = [];
  let doc = 0, x = 12345;
  while (ids.length < n) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const len = 100 + (x % 501);
    for (let t = 0; t < len && ids.length < n; t++) ids.push(doc);
    doc++;
  }
  return ids;
}

const VARIANTS: Variant[] = [
  { name: "exact", source: attn("exact", "", SCORE) },
  { name: "causal", source: attn("causal", "", `where(j <= i, ${SCORE}, -inf)`) },
  {
    name: "t5 bias",
    source: attn("t5", ", bias: [33]", `${SCORE} + bias[clamp(j - i, -16, 16) + 16]`),
    extra: () => ({
      bias: { shape: [33], data: Array.from({ length: 33 }, (_, t) => Math.sin(t) * 0.5) },
    }),
    dispatches: 1,
  },
  {
    name: "alibi (per-head slopes)",
    source: `def alibi(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  slope = 2.0 ^ (-8.0 * float(head() + 1) / float(heads()))
  s[i, j] = where(j <= i, ${SCORE} - slope * float(i - j), -inf)
  return softmax(s, axis=1) @ v
}`,
    dispatches: 1,
  },
  {
    name: "gqa 8q / 2kv",
    source: attn("gqa", "", SCORE),
    kvHeads: 2,
    dispatches: 1,
    ratio: 1.0,
  },
  {
    name: "document mask",
    source: attn("docs", ", doc: [n]", `where(doc[i] == doc[j], ${SCORE}, -inf)`),
    extra: (n) => ({ doc: { shape: [n], data: documents(n) } }),
    dispatches: 1,
    ratio: 0.35,
  },
  {
    name: "query mask",
    source: attn("qmask", ", qm: [n]", `where(qm[i] > 0, ${SCORE}, -1e9)`),
    extra: (n) => ({
      qm: { shape: [n], data: Array.from({ length: n }, (_, t) => (t % 7 === 3 ? 0 : 1)) },
    }),
    dispatches: 1,
  },
  {
    name: "soft-capping",
    source: attn("softcap", ", cap = 30.0", `cap * tanh(${SCORE} / cap)`),
    dispatches: 1,
  },
  {
    name: "window 16 or 4 global",
    source: attn(
      "longformer",
      "",
      `where(abs(i - j) <= 16 or j < 4 or i < 4, ${SCORE}, -inf)`,
    ),
    ratio: 0.2,
  },
  {
    name: "prefix-lm 64",
    source: attn("prefix_lm", "", `where(j <= i or j < 64, ${SCORE}, -inf)`),
    ratio: 1.1,
    against: "causal",
  },
  {
    name: "sigmoid",
    source: `def sigmoid_attn(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = ${SCORE}
  return sigmoid(s - log(n)) @ v
}`,
    dispatches: 1,
    ratio: 1.0,
  },
  {
    name: "relu²",
    source: `def relu2_attn(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = ${SCORE}
  return relu(s)^2 / float(n) @ v
}`,
    dispatches: 1,
  },
  {
    name: "differential",
    source: `def diff_attn(q: [n, d], k: [n, d], v: [n, e], q2: [n, d], k2: [n, d],
              lam = 0.5) -> [n, e] {
  s1[i, j] = ${SCORE}
  s2[i, j] = q2[i] . k2[j] / sqrt(d)
  return (softmax(s1, axis=1) - lam * softmax(s2, axis=1)) @ v
}`,
    extra: (n) => ({
      q2: { shape: [n, 64], data: Array.from(randomTensor([n, 64], { seed: 11 }).data) },
      k2: { shape: [n, 64], data: Array.from(randomTensor([n, 64], { seed: 12 }).data) },
    }),
    dispatches: 1,
    ratio: 1.5,
  },
  {
    // Each (i, j) draws its uniform inside the fused pass (no n × n draws stored).
    name: "dropkey 25%",
    source: `def dropkey(q: [n, d], k: [n, d], v: [n, e], rate = 0.25) -> [n, e] {
  u = uniform([n, n], 7)
  s[i, j] = where(u[i, j] >= rate or i == j, ${SCORE}, -inf)
  return softmax(s, axis=1) @ v
}`,
    dispatches: 1,
  },
];

/** Timed runs per variant, each paired with one of its baseline's. */
const REPEATS = 5;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/**
 * One GPU run: its wall time (upload, kernels, readback) and its kernels' time from timestamp
 * queries (NaN where the adapter has none), pushed onto `into`.
 */
async function timed(
  p: Program,
  x: Record<string, Tensor>,
  into: { wall: number[]; kernel: number[] },
) {
  const t0 = performance.now();
  const run = await p.profile(x, { backend: "gpu", timing: true });
  into.wall.push(performance.now() - t0);
  into.kernel.push(run.stats.kernels?.reduce((t, k) => t + k.ms, 0) ?? NaN);
  return run;
}

/** Inputs with 8 heads: q, k, v random; extras repeated per head. */
function inputs(v: Variant, n: number, heads: number, d: number): Record<string, Tensor> {
  // q has `heads` heads; k and v have v.kvHeads (grouped) when given.
  const kv = v.kvHeads ?? heads;
  const x: Record<string, Tensor> = {
    q: randomTensor([1, heads, n, d], { seed: 1 }),
    k: randomTensor([1, kv, n, d], { seed: 2 }),
    v: randomTensor([1, kv, n, d], { seed: 3 }),
  };
  for (const [name, t] of Object.entries(v.extra?.(n) ?? {})) {
    const data = new Float64Array(heads * t.data.length);
    for (let h = 0; h < heads; h++) data.set(t.data, h * t.data.length);
    x[name] = tensor([1, heads, ...t.shape], data);
  }
  return x;
}

/** Run the suite; returns the rows written to bench/results/variants.json. */
export async function variants(args: string[]): Promise<void> {
  const quick = args.includes("--quick");
  const dir = new URL("./results/", import.meta.url);
  if (args.includes("--replot")) {
    // Redraw the SVG from the saved JSON (no measuring).
    const saved = JSON.parse(await Deno.readTextFile(new URL("variants.json", dir)));
    await Deno.writeTextFile(new URL("variants.svg", dir), plot(saved.results, saved.adapter));
    return;
  }
  const n = quick ? 256 : 2048, heads = 8, d = 64;
  const { facts } = await getDevice();
  const rows: Record<string, unknown>[] = [];
  // Each baseline's program and inputs, to time it again beside each variant measured against it.
  const baselines = new Map<string, { p: Program; x: Record<string, Tensor> }>();
  const only = args.includes("--only") ? args[args.indexOf("--only") + 1].split(",") : undefined;
  const first = (name: string) => name.split(" ")[0];
  const wanted = new Set(only?.map(first));
  for (const v of VARIANTS) if (wanted.has(first(v.name))) wanted.add(first(v.against ?? "exact"));
  for (const v of VARIANTS) {
    if (only && !wanted.has(first(v.name))) continue;
    const row: Record<string, unknown> = { variant: v.name, n, d, heads, source: v.source };
    try {
      const p = compileSync(v.source);
      const x = inputs(v, n, heads, d);
      const c0 = performance.now();
      await p.profile(x, { backend: "gpu" }); // warm-up: shader compiles
      // The first run's time: shader compilation unless ~/.cache/mesa_shader_cache has them.
      row.firstRunMs = Math.round(performance.now() - c0);
      // Runs alternate with the baseline's, each pair giving a ratio: this machine's speed drifts
      // by ±25% within a suite, and a pair run back to back shares it.
      const against = v.against ?? "exact";
      const base = against === v.name ? { p, x } : baselines.get(against);
      if (!base) throw new Error(`its baseline, ${against}, did not run`);
      const mine = { wall: [] as number[], kernel: [] as number[] };
      const theirs = { wall: [] as number[], kernel: [] as number[] };
      let out: Tensor | undefined, dispatches = 0;
      for (let r = 0; r < REPEATS; r++) {
        if (base.p !== p) await timed(base.p, base.x, theirs);
        const { output, stats } = await timed(p, x, mine);
        out = output;
        dispatches = stats.dispatches;
      }
      const want = await p.run(x, { backend: "interp" });
      Object.assign(row, {
        ms: median(mine.wall),
        kernelMs: median(mine.kernel),
        dispatches,
        errorVsInterp: relativeError(out!, want),
      });
      if (base.p === p) Object.assign(row, { ratio: 1, kernelRatio: 1 });
      else {
        row.ratio = median(mine.wall.map((t, r) => t / theirs.wall[r]));
        row.kernelRatio = median(mine.kernel.map((t, r) => t / theirs.kernel[r]));
      }
      if (VARIANTS.some((w) => (w.against ?? "exact") === v.name)) baselines.set(v.name, { p, x });
    } catch (e) {
      row.error = (e as Error).message.split("\n")[0].slice(0, 160);
    }
    if (v.against) row.against = v.against;
    if (v.dispatches !== undefined) row.targetDispatches = v.dispatches;
    if (v.ratio !== undefined) row.targetRatio = v.ratio;
    rows.push(row);
    console.log(
      row.error
        ? `${v.name.padEnd(22)} not run: ${row.error}`
        : `${v.name.padEnd(22)} ${(row.ms as number).toFixed(0).padStart(6)} ms, ${
          (row.ratio as number).toFixed(2)
        }× ${v.against ?? "exact"} (kernel time ${
          (row.kernelRatio as number).toFixed(2)
        }×), ${row.dispatches} dispatch${
          row.dispatches === 1 ? "" : "es"
        }, first run ${row.firstRunMs} ms, rel. error vs interpreter ${
          (row.errorVsInterp as number).toExponential(1)
        }${v.ratio !== undefined ? ` (target ≤ ${v.ratio}×)` : ""}${
          v.dispatches !== undefined ? ` (target ${v.dispatches} dispatch)` : ""
        }`,
    );
  }
  const scan = only && !wanted.has("causal-linear")
    ? undefined
    : await scanScaling(quick, heads, d);
  if (scan) {
    const at = scan.sizes.indexOf(scan.at);
    const row: Record<string, unknown> = {
      variant: `causal linear (n = ${scan.at})`,
      n: scan.at,
      d,
      heads,
      source: scan.source,
      ms: scan.causalMs[at],
      dispatches: scan.dispatches,
      errorVsInterp: scan.errorVsInterp,
      ratio: scan.ratio,
      against: "linear",
      targetRatio: 2,
    };
    rows.push(row);
    console.log(
      `${String(row.variant).padEnd(22)} ${scan.causalMs[at].toFixed(0).padStart(6)} ms, ${
        scan.ratio.toFixed(2)
      }× non-causal linear (target ≤ 2×), ${scan.dispatches} dispatches, rel. error vs ` +
        `interpreter ${scan.errorVsInterp.toExponential(1)} (n = ${scan.check}); fitted log-log ` +
        `slope over n = ${scan.sizes.join(", ")}: causal ${scan.slope.causal.toFixed(3)} ` +
        `(target ≤ 1.15), non-causal ${scan.slope.linear.toFixed(3)}`,
    );
  }
  if (only) return;
  const report = {
    suite: "variants",
    adapter: facts.description,
    fallbackAdapter: facts.isFallback,
    date: new Date().toISOString(),
    note:
      `times are medians of ${REPEATS} within this run; each ratio is the median of ${REPEATS} ` +
      "runs each paired with one of its baseline's, back to back (wall: upload, kernels and " +
      "readback; kernel: timestamp queries around the dispatches); compare ratios, not times",
    results: rows,
    causalLinear: scan,
  };
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(new URL("variants.json", dir), JSON.stringify(report, null, 2) + "\n");
  await Deno.writeTextFile(new URL("variants.svg", dir), plot(rows, facts.description));
  console.log(`adapter: ${facts.description}; wrote bench/results/variants.json and variants.svg`);
}

/**
 * Causal linear attention (examples/causal_linear.attn: cumsum, one chunked scan pass) against
 * non-causal linear attention (examples/linear.attn) at growing n, with `heads` heads: each size's
 * ratio is the median of REPEATS runs paired back to back, and the fitted log-log slope of each
 * one's median time against n says whether it is O(n). The output is checked against the
 * interpreter at the smallest size (the float64 scan at 16k keys takes minutes).
 */
async function scanScaling(quick: boolean, heads: number, d: number) {
  const sizes = quick ? [256, 512, 1024] : [2048, 4096, 8192, 16384];
  const at = quick ? 1024 : 8192;
  const read = (name: string) =>
    Deno.readTextFile(new URL(`../examples/${name}.attn`, import.meta.url));
  const source = await read("causal_linear");
  const causal = compileSync(source), linear = compileSync(await read("linear"));
  const causalMs: number[] = [], linearMs: number[] = [], ratios: number[] = [];
  let dispatches = 0, errorVsInterp = NaN;
  for (const n of sizes) {
    const x = {
      q: randomTensor([1, heads, n, d], { seed: 1 }),
      k: randomTensor([1, heads, n, d], { seed: 2 }),
      v: randomTensor([1, heads, n, d], { seed: 3 }),
    };
    for (const p of [causal, linear]) await p.profile(x, { backend: "gpu" }); // compiles
    const mine = { wall: [] as number[], kernel: [] as number[] };
    const theirs = { wall: [] as number[], kernel: [] as number[] };
    for (let r = 0; r < REPEATS; r++) {
      await timed(linear, x, theirs);
      const { output, stats } = await timed(causal, x, mine);
      dispatches = stats.dispatches;
      if (n === sizes[0] && r === 0) {
        errorVsInterp = relativeError(output, await causal.run(x, { backend: "interp" }));
      }
    }
    causalMs.push(median(mine.wall));
    linearMs.push(median(theirs.wall));
    ratios.push(median(mine.wall.map((t, r) => t / theirs.wall[r])));
    console.log(
      `  scan: n = ${n}: causal linear ${causalMs.at(-1)!.toFixed(0)} ms, non-causal ` +
        `${linearMs.at(-1)!.toFixed(0)} ms, ratio ${ratios.at(-1)!.toFixed(2)}`,
    );
  }
  const slope = (ys: number[]) => {
    const xs = sizes.map(Math.log), ls = ys.map(Math.log);
    const mx = xs.reduce((a, b) => a + b) / xs.length;
    const my = ls.reduce((a, b) => a + b) / ls.length;
    return xs.reduce((t, x, k) => t + (x - mx) * (ls[k] - my), 0) /
      xs.reduce((t, x) => t + (x - mx) ** 2, 0);
  };
  return {
    source,
    sizes,
    at,
    causalMs,
    linearMs,
    ratios,
    ratio: ratios[sizes.indexOf(at)],
    slope: { causal: slope(causalMs), linear: slope(linearMs) },
    dispatches,
    errorVsInterp,
    check: sizes[0],
  };
}

/** Horizontal bars: each variant's time as a ratio to its baseline, target marked. */
function plot(rows: Record<string, unknown>[], adapter: string): string {
  const W = 720, L = 190, bar = 18, gap = 8, top = 40;
  const H = top + rows.length * (bar + gap) + 30;
  const max = Math.max(2, ...rows.map((r) => (typeof r.ratio === "number" ? r.ratio : 0)));
  const X = (v: number) => L + (v / max) * (W - L - 60);
  const items = rows.map((r, k) => {
    const y = top + k * (bar + gap);
    const label = `<text x="${L - 8}" y="${y + 13}" text-anchor="end">${r.variant}</text>`;
    if (typeof r.ratio !== "number") {
      return `${label}<text x="${L + 4}" y="${y + 13}" fill="#888">not run</text>`;
    }
    const target = typeof r.targetRatio === "number"
      ? `<line x1="${X(r.targetRatio)}" y1="${y - 2}" x2="${X(r.targetRatio)}" y2="${
        y + bar + 2
      }" stroke="#d62728" stroke-width="2"/>`
      : "";
    return `${label}<rect x="${L}" y="${y}" width="${
      X(r.ratio) - L
    }" height="${bar}" fill="#1f77b4"/>` +
      `<text x="${X(r.ratio) + 4}" y="${y + 13}">${r.ratio.toFixed(2)}×${
        r.against ? ` ${r.against}` : ""
      }${
        typeof r.kernelRatio === "number" ? ` (kernels ${r.kernelRatio.toFixed(2)}×)` : ""
      } · ${r.dispatches} disp.</text>${target}`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="18">wall time as a ratio to exact attention (or the named baseline; red: target; kernels: timestamp queries), n = 2048, d = 64, 8 heads; ${adapter}</text>
<line x1="${X(1)}" y1="${top - 6}" x2="${X(1)}" y2="${H - 26}" stroke="#999" stroke-dasharray="4"/>
${items.join("\n")}
</svg>
`;
}
