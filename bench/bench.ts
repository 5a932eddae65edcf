/**
 * Benchmarks, measured as ratios within one run on one adapter (the report names it).
 *
 *   deno task bench -- --suite fusion [--quick]
 *   deno task bench -- --suite fidelity [--quick]   (bench/fidelity.ts: error against budget)
 *   deno task bench -- --suite scaling [--quick]    (bench/scaling.ts: compile time against size)
 *   deno task bench -- --suite variants [--quick]   (bench/variants.ts: attention variants vs exact)
 *
 * Suite `fusion`: fused exact attention against the same program compiled with fusion disabled
 * (n = 2048, d = 64, 8 heads), with GFLOP/s (4·n²·d per head); then exact and the approximations
 * as n grows. Each figure is the median of several timed runs after a warm-up; every run includes
 * the upload, one submit and the readback. Writes bench/results/<suite>.json and an SVG plot.
 */
import { compileSync, type Program, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { getDevice } from "../runtime/device.ts";

const args = Deno.args;
const suite = args.includes("--suite") ? args[args.indexOf("--suite") + 1] : "fusion";
const quick = args.includes("--quick");
if (suite === "fidelity") {
  const { fidelity } = await import("./fidelity.ts");
  await fidelity(args);
  Deno.exit(0);
}
if (suite === "scaling") {
  const { scaling } = await import("./scaling.ts");
  await scaling(args);
  Deno.exit(0);
}
if (suite === "variants") {
  const { variants } = await import("./variants.ts");
  await variants(args);
  Deno.exit(0);
}
if (suite !== "fusion") {
  console.error(`unknown suite ${suite}; available: fusion, fidelity, scaling, variants`);
  Deno.exit(2);
}
const dir = new URL("./results/", import.meta.url);
if (args.includes("--replot")) {
  // Redraw the SVG from the saved JSON (no measuring).
  const saved = JSON.parse(await Deno.readTextFile(new URL(`${suite}.json`, dir)));
  await Deno.writeTextFile(new URL(`${suite}.svg`, dir), plot(saved.results, saved.adapter));
  Deno.exit(0);
}
const { facts } = await getDevice();
const load = (f: string) => Deno.readTextFileSync(new URL(`../examples/${f}`, import.meta.url));

function qkv(n: number, heads: number, d: number): Record<string, Tensor> {
  const shape = [1, heads, n, d];
  return {
    q: randomTensor(shape, { seed: 1 }),
    k: randomTensor(shape, { seed: 2 }),
    v: randomTensor(shape, { seed: 3 }),
  };
}

async function time(p: Program, x: Record<string, Tensor>, reps: number) {
  const warm = await p.profile(x);
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await p.profile(x);
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return { ms: ms[Math.floor(ms.length / 2)], output: warm.output, stats: warm.stats };
}

const results: Record<string, unknown>[] = [];
const heads = 8, d = 64;

// 1. Fused against unfused exact attention.
{
  const n = quick ? 512 : 2048;
  const x = qkv(n, heads, d);
  const fused = compileSync(load("exact.attn"));
  const unfused = compileSync(load("exact.attn"), { fuse: false });
  const a = await time(fused, x, 3);
  const b = await time(unfused, x, quick ? 2 : 1);
  const gflops = (4 * n * n * d * heads) / (a.ms * 1e6);
  const row = {
    case: "exact fused vs unfused",
    n,
    d,
    heads,
    fusedMs: a.ms,
    unfusedMs: b.ms,
    speedup: b.ms / a.ms,
    fusedGflops: gflops,
    unfusedGflops: (4 * n * n * d * heads) / (b.ms * 1e6),
    fusedDispatches: a.stats.dispatches,
    unfusedDispatches: b.stats.dispatches,
    fusedBytes: a.stats.peakBytes,
    unfusedBytes: b.stats.peakBytes,
    agreement: relativeError(a.output, b.output),
  };
  results.push(row);
  console.log(
    `exact n=${n}: fused ${a.ms.toFixed(0)} ms (${
      gflops.toFixed(2)
    } GFLOP/s, ${a.stats.dispatches} dispatch), ` +
      `unfused ${b.ms.toFixed(0)} ms (${b.stats.dispatches} dispatches): ${
        row.speedup.toFixed(1)
      }×`,
  );
}

// 2. Exact and the approximations as n grows (all on the GPU, same adapter, same run).
const variants: [string, string, Record<string, number>][] = [
  ["exact", "exact.attn", {}],
  ["nystrom", "nystrom.attn", { landmarks: 64 }],
  ["yoso", "yoso.attn", { hashes: 32, tau: 8 }],
  ["skein", "skein.attn", { samples: 256 }],
];
const sizes = quick ? [256, 512] : [512, 1024, 2048, 4096, 8192];
const budgetMs = quick ? 5_000 : 30_000;
const skip = new Set<string>();
for (const n of sizes) {
  const x = qkv(n, heads, d);
  for (const [name, file, params] of variants) {
    if (skip.has(name)) continue;
    const p = compileSync(load(file), { params: { ...params } });
    let r;
    try {
      r = await time(p, x, 3);
    } catch (e) {
      // A limit (e.g. an unfused intermediate over the binding size) ends this variant's curve.
      results.push({
        case: "scaling",
        variant: name,
        params,
        n,
        d,
        heads,
        error: (e as Error).message,
      });
      console.log(`${name.padEnd(8)} n=${String(n).padStart(5)}: ${(e as Error).message}`);
      skip.add(name);
      continue;
    }
    results.push({
      case: "scaling",
      variant: name,
      params,
      n,
      d,
      heads,
      ms: r.ms,
      dispatches: r.stats.dispatches,
      bytes: r.stats.peakBytes,
    });
    console.log(
      `${name.padEnd(8)} n=${String(n).padStart(5)}: ${
        r.ms.toFixed(0).padStart(7)
      } ms, ${r.stats.dispatches} dispatches, ${(r.stats.peakBytes / 2 ** 20).toFixed(1)} MiB`,
    );
    if (r.ms > budgetMs) {
      console.log(`  (${name}: over ${budgetMs / 1000} s; larger n skipped)`);
      skip.add(name);
    }
  }
}

// How many times faster than fused exact attention each approximation ran, per n, in this run.
const speedups: Record<string, Record<string, number>> = {};
for (const r of results) {
  if (r.case !== "scaling" || r.variant === "exact" || typeof r.ms !== "number") continue;
  const exact = results.find((e) => e.case === "scaling" && e.variant === "exact" && e.n === r.n);
  if (typeof exact?.ms !== "number") continue;
  (speedups[String(r.variant)] ??= {})[String(r.n)] = exact.ms / r.ms;
}
for (const [variant, byN] of Object.entries(speedups)) {
  const line = Object.entries(byN).map(([n, x]) => `n=${n} ${x.toFixed(1)}×`).join(", ");
  console.log(`${variant.padEnd(8)} vs fused exact: ${line}`);
}
const report = {
  suite,
  adapter: facts.description,
  fallbackAdapter: facts.isFallback,
  date: new Date().toISOString(),
  note: "times are medians within this run on this adapter; compare ratios, not absolute times",
  speedupOverExact: speedups,
  results,
};
await Deno.mkdir(dir, { recursive: true });
await Deno.writeTextFile(new URL(`${suite}.json`, dir), JSON.stringify(report, null, 2) + "\n");
await Deno.writeTextFile(new URL(`${suite}.svg`, dir), plot(results, facts.description));
console.log(`adapter: ${facts.description}; wrote bench/results/${suite}.json and ${suite}.svg`);

/** Time against n on log–log axes, one line per variant. */
function plot(rows: Record<string, unknown>[], adapter: string): string {
  const pts = rows.filter((r) => r.case === "scaling") as {
    variant: string;
    n: number;
    ms: number;
  }[];
  if (!pts.length) return "<svg xmlns='http://www.w3.org/2000/svg'/>";
  const W = 660, H = 400, L = 80, B = 50;
  const xs = pts.map((p) => Math.log2(p.n)), ys = pts.map((p) => Math.log10(p.ms));
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) + 1e-9];
  const [y0, y1] = [Math.floor(Math.min(...ys)), Math.ceil(Math.max(...ys) + 1e-9)];
  const X = (v: number) => L + ((v - x0) / (x1 - x0)) * (W - L - 20);
  const Y = (v: number) => H - B - ((v - y0) / (y1 - y0)) * (H - B - 30);
  const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
  const names = [...new Set(pts.map((p) => p.variant))];
  const lines = names.map((name, k) => {
    const ps = pts.filter((p) => p.variant === name);
    const path = ps.map((p) => `${X(Math.log2(p.n)).toFixed(1)},${Y(Math.log10(p.ms)).toFixed(1)}`)
      .join(" ");
    return `<polyline fill="none" stroke="${colors[k % 5]}" stroke-width="2" points="${path}"/>` +
      `<text x="${L + 12}" y="${44 + 18 * k}" fill="${colors[k % 5]}">${name}</text>`;
  });
  const xt = [...new Set(pts.map((p) => p.n))].map((n) =>
    `<text x="${X(Math.log2(n))}" y="${H - B + 18}" text-anchor="middle">${n}</text>`
  );
  const yt = Array.from(
    { length: y1 - y0 + 1 },
    (_, i) =>
      `<text x="${L - 8}" y="${Y(y0 + i) + 4}" text-anchor="end">${10 ** (y0 + i)} ms</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${L}" y="18">time per run vs n (8 heads, d = 64), log–log; ${adapter}</text>
<line x1="${L}" y1="${H - B}" x2="${W - 20}" y2="${H - B}" stroke="black"/>
<line x1="${L}" y1="${H - B}" x2="${L}" y2="30" stroke="black"/>
${xt.join("\n")}
${yt.join("\n")}
${lines.join("\n")}
<text x="${(W + L) / 2}" y="${H - 10}" text-anchor="middle">n</text>
</svg>
`;
}
