/**
 * Fidelity suite: relative error of the approximations against exact attention as their budget
 * grows (Nyström landmarks, YOSO hashes, Skeinformer samples), at n = 1024 and 4096, d = 64, on
 * two input families, several seeds per point. Every plot carries the mean-of-v baseline (predict
 * mean(v) for every row) as a horizontal line.
 *
 *   deno task bench -- --suite fidelity [--quick] [--seeds 3] [--heads 2] [--replot]
 *
 * Everything runs compiled on the WebGPU adapter (float32); the exact reference is the fused
 * exact program on the same adapter, checked once per family against the direct float64 loops of
 * examples/reference.ts (the agreement is in the JSON). Writes bench/results/fidelity.json and
 * fidelity_{nystrom,yoso,skein}.svg.
 */
import { compileSync, type Program, randomTensor, relativeError, type Tensor } from "../mod.ts";
import { softmaxAttention } from "../examples/reference.ts";
import { getDevice } from "../runtime/device.ts";
import { meanOfValues, normalizeRows } from "../testing.ts";

/** One plotted point or line: errors over seeds. */
interface Point {
  kind: "curve" | "line";
  method: string;
  /** What the output is compared with. */
  reference: string;
  /** Legend label. */
  label: string;
  family: string;
  n: number;
  /** The budget (landmarks, hashes, samples); absent for horizontal lines. */
  budget?: number;
  errors: number[];
  mean: number;
  min: number;
  max: number;
}

const METHODS = {
  nystrom: { file: "nystrom.attn", budget: "landmarks", extra: { iters: 6 } },
  yoso: { file: "yoso.attn", budget: "hashes", extra: { tau: 8 } },
  skein: { file: "skein.attn", budget: "samples", extra: {} },
} as const;
type Method = keyof typeof METHODS;

const FAMILIES = {
  gaussian: "q, k, v ~ N(0, 1)",
  peaked: "z, ε, v ~ N(0, 1); q = 1.25·z, k = 1.25·(z + 0.5·ε): keys are noisy copies of " +
    "the queries, so each softmax row concentrates on its own key",
} as const;
type Family = keyof typeof FAMILIES;

const dir = new URL("./results/", import.meta.url);
const load = (f: string) => Deno.readTextFileSync(new URL(`../examples/${f}`, import.meta.url));

/** What one run measures: sizes, budgets, seeds and heads. */
interface Settings {
  seeds: number;
  heads: number;
  d: number;
  sizes: number[];
  grids: Record<Method, number[]>;
}

function settings(args: string[]): Settings {
  const flag = (name: string, dflt: number) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : dflt;
  };
  const quick = args.includes("--quick");
  return {
    seeds: flag("seeds", quick ? 2 : 3),
    heads: flag("heads", 2),
    d: 64,
    sizes: quick ? [256, 512] : [1024, 4096],
    grids: {
      nystrom: quick ? [16, 32, 64] : [16, 32, 64, 128, 256],
      yoso: quick ? [8, 32, 128] : [8, 16, 32, 64, 128, 256],
      skein: quick ? [32, 128, 512] : [32, 64, 128, 256, 512, 1024],
    },
  };
}

/** A point before its errors are summarized. */
type RawPoint = Omit<Point, "errors" | "mean" | "min" | "max">;

/**
 * The state of a run: compiled programs, first-run times, errors gathered per point, the
 * reference check and peakedness, and the progress line.
 */
class Run {
  readonly programs = new Map<string, Program>();
  /** First GPU run of each program: mostly pipeline (shader) compilation on this adapter. */
  readonly coldMs: Record<string, number> = {};
  readonly raw = new Map<string, RawPoint & { e: number[] }>();
  readonly referenceCheck: Record<string, number> = {};
  readonly peakedness: Record<string, number> = {};
  readonly t0 = performance.now();

  progress(msg: string): void {
    if (!Deno.stderr.isTerminal()) return;
    const s = ((performance.now() - this.t0) / 1000).toFixed(0);
    Deno.stderr.writeSync(new TextEncoder().encode(`\x1b[2K\r[${s} s] ${msg}`));
  }

  program(file: string, params: Record<string, number>): Program {
    const key = file + JSON.stringify(params);
    if (!this.programs.has(key)) this.programs.set(key, compileSync(load(file), { params }));
    return this.programs.get(key)!;
  }

  async gpu(file: string, params: Record<string, number>, x: Inputs, seed: number) {
    const key = `${file.replace(".attn", "")} ${JSON.stringify(params)}`;
    const p = this.program(file, params);
    const t = performance.now();
    const y = await p.run(x, { backend: "gpu", seed });
    if (!(key in this.coldMs)) this.coldMs[key] = performance.now() - t;
    return y;
  }

  record(p: RawPoint, err: number): void {
    const key = [p.method, p.reference, p.label, p.family, p.n, p.budget].join("|");
    if (!this.raw.has(key)) this.raw.set(key, { ...p, e: [] });
    this.raw.get(key)!.e.push(err);
  }

  /** The errors of each point, with their mean, min and max over seeds. */
  points(): Point[] {
    return [...this.raw.values()].map(({ e, ...p }) => ({
      ...p,
      errors: e,
      mean: e.reduce((a, b) => a + b, 0) / e.length,
      min: Math.min(...e),
      max: Math.max(...e),
    }));
  }
}

export async function fidelity(args: string[]): Promise<void> {
  if (args.includes("--replot")) {
    const saved = JSON.parse(await Deno.readTextFile(new URL("fidelity.json", dir)));
    await writePlots(saved.points, saved.adapter, saved.heads, saved.seeds);
    return;
  }
  const set = settings(args);
  const { facts } = await getDevice();
  const run = new Run();
  for (const n of set.sizes) {
    for (const family of Object.keys(FAMILIES) as Family[]) {
      for (let s = 0; s < set.seeds; s++) await measure(run, set, n, family, s);
    }
  }
  run.progress("");
  const points = run.points();
  const seconds = (performance.now() - run.t0) / 1000;
  printPoints(points);
  const report = {
    suite: "fidelity",
    adapter: facts.description,
    fallbackAdapter: facts.isFallback,
    date: new Date().toISOString(),
    seconds,
    d: set.d,
    heads: set.heads,
    seeds: set.seeds,
    sizes: set.sizes,
    ...ABOUT,
    referenceCheck: run.referenceCheck,
    peakedness: { note: ABOUT_PEAKEDNESS, ...run.peakedness },
    firstRunMs: run.coldMs,
    points,
  };
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(new URL("fidelity.json", dir), JSON.stringify(report, null, 2) + "\n");
  await writePlots(points, facts.description, set.heads, set.seeds);
  console.log(
    `adapter: ${facts.description}; ${set.heads} heads, d = ${set.d}, ${set.seeds} seeds; ` +
      `${seconds.toFixed(0)} s; wrote bench/results/fidelity.json and fidelity_*.svg`,
  );
}

/** What the report says about its settings, error and reference. */
const ABOUT = {
  families: FAMILIES,
  settings: {
    nystrom: "landmarks varied; iters = 6, no conv",
    yoso: "hashes varied; tau = 8; compared with YOSO-E (its expectation, row-normalized) " +
      "and with row-normalized softmax attention",
    skein: "samples varied (pilot rows = sampled columns = samples)",
  },
  error: "‖y − ref‖₂ / ‖ref‖₂ over all heads of one input; mean, min and max over seeds " +
    "(seed s draws the inputs and the method's randomness)",
  reference: "fused exact attention on the same adapter (float32); its agreement with the " +
    "direct float64 loops of examples/reference.ts at the smallest n, seed 1, is referenceCheck",
};
const ABOUT_PEAKEDNESS = "mean over the first 256 query rows of head 0 (smallest n, seed 1) of " +
  "the largest softmax weight in the row";

/** One input (size, family, seed): exact attention, the baselines, then every method's curve. */
async function measure(run: Run, set: Settings, n: number, family: Family, s: number) {
  const x = inputs(family, [1, set.heads, n, set.d], s);
  const seed = s + 1;
  const at = `n=${n} ${family} seed ${seed}/${set.seeds}`;
  run.progress(`${at}: exact`);
  const exact = await run.gpu("exact.attn", {}, x, seed);
  if (s === 0 && n === set.sizes[0]) {
    const direct = softmaxAttention(x.q, x.k, x.v, (v) => v);
    run.referenceCheck[family] = relativeError(exact, direct);
    run.peakedness[family] = meanMaxWeight(x, 256);
  }
  const base = meanOfValues(x.v);
  const line = (method: string, reference: string, label: string, err: number) =>
    run.record({ kind: "line", method, reference, label, family, n }, err);
  line("nystrom", "exact", "mean-of-v baseline", relativeError(base, exact));
  line("skein", "exact", "mean-of-v baseline", relativeError(base, exact));
  // YOSO's outputs are unit rows (normalize(...)), so it is compared with unit rows.
  const exactN = normalizeRows(exact), baseN = normalizeRows(base);
  run.progress(`${at}: yoso_e`);
  const yosoE = await run.gpu("yoso_e.attn", { tau: 8 }, x, seed);
  line("yoso", "yoso_e", "mean-of-v baseline vs YOSO-E", relativeError(baseN, yosoE));
  line("yoso", "softmax", "mean-of-v baseline vs softmax", relativeError(baseN, exactN));
  line("yoso", "softmax", "YOSO-E (expectation) vs softmax", relativeError(yosoE, exactN));
  for (const method of Object.keys(METHODS) as Method[]) {
    const { file, budget, extra } = METHODS[method];
    for (const b of set.grids[method]) {
      if (method === "skein" && b > n) continue;
      run.progress(`${at}: ${method} ${budget}=${b}`);
      const y = await run.gpu(file, { ...extra, [budget]: b }, x, seed);
      const curve = { kind: "curve" as const, method, family, n, budget: b };
      if (method === "yoso") {
        run.record(
          { ...curve, reference: "yoso_e", label: "YOSO vs YOSO-E" },
          relativeError(y, yosoE),
        );
        run.record(
          { ...curve, reference: "softmax", label: "YOSO vs softmax" },
          relativeError(y, exactN),
        );
      } else {
        run.record({ ...curve, reference: "exact", label: method }, relativeError(y, exact));
      }
    }
  }
}

/** The curves, then the baselines, one line each. */
function printPoints(points: Point[]): void {
  for (const p of points.filter((p) => p.kind === "curve")) {
    console.log(
      `${p.family.padEnd(8)} n=${String(p.n).padStart(4)} ${p.label.padEnd(15)} ` +
        `${METHODS[p.method as Method].budget}=${String(p.budget).padEnd(4)} ` +
        `error ${p.mean.toFixed(3)} [${p.min.toFixed(3)}, ${p.max.toFixed(3)}]`,
    );
  }
  for (const p of points.filter((p) => p.kind === "line")) {
    console.log(
      `${p.family.padEnd(8)} n=${String(p.n).padStart(4)} ${p.method.padEnd(7)} ${p.label}: ` +
        `${p.mean.toFixed(3)} [${p.min.toFixed(3)}, ${p.max.toFixed(3)}]`,
    );
  }
}

type Inputs = Record<"q" | "k" | "v", Tensor>;

function inputs(family: Family, shape: number[], s: number): Inputs {
  const base = 100 * (s + 1) + (family === "peaked" ? 50 : 0);
  const v = randomTensor(shape, { seed: base + 3 });
  if (family === "gaussian") {
    return {
      q: randomTensor(shape, { seed: base + 1 }),
      k: randomTensor(shape, { seed: base + 2 }),
      v,
    };
  }
  const z = randomTensor(shape, { seed: base + 1 }), eps = randomTensor(shape, { seed: base + 2 });
  const q = new Float64Array(z.data.length), k = new Float64Array(z.data.length);
  for (let i = 0; i < q.length; i++) {
    q[i] = 1.25 * z.data[i];
    k[i] = 1.25 * (z.data[i] + 0.5 * eps.data[i]);
  }
  return { q: { ...z, data: q }, k: { ...z, data: k }, v };
}

/** Mean over the first `rows` queries of head 0 of the largest softmax weight in the row. */
function meanMaxWeight(x: Inputs, rows: number): number {
  const [n, d] = x.q.shape.slice(-2);
  let total = 0;
  const s = new Float64Array(n);
  for (let i = 0; i < rows; i++) {
    let mx = -Infinity;
    for (let j = 0; j < n; j++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += x.q.data[i * d + c] * x.k.data[j * d + c];
      s[j] = dot / Math.sqrt(d);
      if (s[j] > mx) mx = s[j];
    }
    let z = 0;
    for (let j = 0; j < n; j++) z += Math.exp(s[j] - mx);
    total += 1 / z;
  }
  return total / rows;
}

const COLORS: Record<string, string> = {
  nystrom: "#1f77b4",
  skein: "#2ca02c",
  "YOSO vs YOSO-E": "#1f77b4",
  "YOSO vs softmax": "#d62728",
  "YOSO-E (expectation) vs softmax": "#d62728",
  "mean-of-v baseline": "#555",
  "mean-of-v baseline vs YOSO-E": "#1f77b4",
  "mean-of-v baseline vs softmax": "#d62728",
};

async function writePlots(points: Point[], adapter: string, heads: number, seeds: number) {
  for (const method of Object.keys(METHODS) as Method[]) {
    const svg = plot(points.filter((p) => p.method === method), method, adapter, heads, seeds);
    await Deno.writeTextFile(new URL(`fidelity_${method}.svg`, dir), svg);
  }
}

/** A 2×2 grid of panels (rows: input family, columns: n), log–log, one SVG per method. */
function plot(pts: Point[], method: Method, adapter: string, heads: number, seeds: number) {
  const families = [...new Set(pts.map((p) => p.family))];
  const sizes = [...new Set(pts.map((p) => p.n))].sort((a, b) => a - b);
  const PW = 380, PH = 260, L = 60, T = 56, GAP = 40, B = 40;
  const W = L + sizes.length * (PW + GAP), H = T + families.length * (PH + GAP + B) + 70;
  const ys = pts.flatMap((p) => [p.min, p.max]).filter((v) => v > 0).map(Math.log10);
  // Errors below 1e-3 (Skeinformer sampling every column is exact up to float32) sit on the floor.
  const [y0, y1] = [Math.max(-3, Math.floor(Math.min(...ys))), Math.ceil(Math.max(...ys))];
  const budgets = pts.filter((p) => p.budget).map((p) => Math.log2(p.budget!));
  const [x0, x1] = [Math.min(...budgets), Math.max(...budgets)];
  const out: string[] = [];
  const { budget } = METHODS[method];
  const title = {
    nystrom: "Nyströmformer (6-step pinv): relative error vs exact softmax attention",
    yoso: "YOSO (τ = 8): relative error of unit rows vs YOSO-E and vs row-normalized softmax",
    skein: "Skeinformer: relative error vs exact softmax attention",
  }[method];
  out.push(`<text x="${L}" y="20" font-size="14" font-weight="bold">${title}</text>`);
  out.push(
    `<text x="${L}" y="38">d = 64, ${heads} heads, mean of ${seeds} seeds (bars: min–max); ` +
      `dashed: baselines; errors under 1e-3 drawn at the floor; ${adapter}</text>`,
  );
  families.forEach((family, r) => {
    sizes.forEach((n, c) => {
      const ox = L + c * (PW + GAP), oy = T + r * (PH + GAP + B);
      const X = (b: number) => ox + ((Math.log2(b) - x0) / (x1 - x0 || 1)) * PW;
      const Y = (e: number) => oy + PH - ((Math.max(Math.log10(e), y0) - y0) / (y1 - y0 || 1)) * PH;
      out.push(
        `<rect x="${ox}" y="${oy}" width="${PW}" height="${PH}" fill="none" stroke="#999"/>`,
      );
      out.push(
        `<text x="${ox + PW / 2}" y="${oy - 6}" text-anchor="middle">${family}, n = ${n}</text>`,
      );
      for (let e = y0; e <= y1; e++) {
        out.push(
          `<line x1="${ox}" x2="${ox + PW}" y1="${Y(10 ** e)}" y2="${Y(10 ** e)}" stroke="#eee"/>`,
          `<text x="${ox - 4}" y="${Y(10 ** e) + 4}" text-anchor="end">${
            e >= 0 ? 10 ** e : `1e${e}`
          }</text>`,
        );
      }
      const grid = [...new Set(pts.filter((p) => p.budget).map((p) => p.budget!))];
      for (const b of grid) {
        out.push(`<text x="${X(b)}" y="${oy + PH + 16}" text-anchor="middle">${b}</text>`);
      }
      out.push(
        `<text x="${ox + PW / 2}" y="${oy + PH + 32}" text-anchor="middle">${budget}</text>`,
      );
      const here = pts.filter((p) => p.family === family && p.n === n);
      for (const p of here.filter((p) => p.kind === "line")) {
        const y = Y(p.mean), color = COLORS[p.label] ?? "#555";
        const dash = p.label.startsWith("YOSO-E") ? "2,3" : "6,4";
        out.push(
          `<line x1="${ox}" x2="${ox + PW}" y1="${y}" y2="${y}" stroke="${color}" ` +
            `stroke-dasharray="${dash}" stroke-width="1.5"/>`,
        );
      }
      for (const label of new Set(here.filter((p) => p.kind === "curve").map((p) => p.label))) {
        const cs = here.filter((p) => p.label === label).sort((a, b) => a.budget! - b.budget!);
        const color = COLORS[label] ?? "#000";
        out.push(
          `<polyline fill="none" stroke="${color}" stroke-width="2" points="${
            cs.map((p) => `${X(p.budget!).toFixed(1)},${Y(p.mean).toFixed(1)}`).join(" ")
          }"/>`,
        );
        for (const p of cs) {
          out.push(
            `<line x1="${X(p.budget!)}" x2="${X(p.budget!)}" y1="${Y(p.min)}" y2="${Y(p.max)}" ` +
              `stroke="${color}"/>`,
            `<circle cx="${X(p.budget!)}" cy="${Y(p.mean)}" r="3" fill="${color}"/>`,
          );
        }
      }
    });
  });
  // Legend.
  const labels = [...new Set(pts.map((p) => `${p.kind}|${p.label}`))];
  labels.forEach((kl, i) => {
    const [kind, label] = kl.split("|");
    const x = L + (i % 2) * 380, y = H - 50 + Math.floor(i / 2) * 18;
    const color = COLORS[label] ?? "#555";
    const dash = kind === "curve" ? "" : label.startsWith("YOSO-E") ? "2,3" : "6,4";
    out.push(
      `<line x1="${x}" x2="${x + 30}" y1="${y - 4}" y2="${y - 4}" stroke="${color}" ` +
        `stroke-width="2" stroke-dasharray="${dash}"/>`,
      `<text x="${x + 36}" y="${y}">${label}</text>`,
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
    `font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
${out.join("\n")}
</svg>
`;
}
