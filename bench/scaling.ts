/**
 * Compile and plan time against program size (`deno task bench -- --suite scaling [--quick]`).
 *
 * Two families of programs, each at 1, 2, 5, 10 and 20 times a base size:
 * - `nystrom×k`: an entry calling examples/nystrom.attn k times in a chain (each call's output
 *   feeds the next call's values), so the IR is k copies of the largest example;
 * - `chain×k`: k·100 straight-line elementwise statements over [n, d].
 * Each row is the median of a few runs of parse + check + passes (`compileSync`) and of lowering
 * (`plan()`), with the IR and plan sizes. Linear growth shows as a flat time per IR node. Writes
 * bench/results/scaling.json and scaling.svg. Needs no GPU.
 */
import { compileSync } from "../mod.ts";

const FACTORS = [1, 2, 5, 10, 20];

function nystromTimes(k: number): { source: string; entry: string } {
  const base = Deno.readTextFileSync(new URL("../examples/nystrom.attn", import.meta.url));
  const lines = [
    "def scaled(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {",
    "  y0 = nystrom(q, k, v)",
  ];
  for (let i = 1; i < k; i++) lines.push(`  y${i} = nystrom(q, k, v + 0.001 * y${i - 1})`);
  lines.push(`  return y${k - 1}`, "}");
  return { source: `${base}\n${lines.join("\n")}\n`, entry: "scaled" };
}

function chainTimes(k: number): { source: string; entry: string } {
  const lines = ["def chain(x: [n, d]) -> [n, d] {", "  y0 = x"];
  for (let i = 1; i < 100 * k; i++) lines.push(`  y${i} = y${i - 1} * 0.999 + ${(i % 7) / 100}`);
  lines.push(`  return y${100 * k - 1}`, "}");
  return { source: lines.join("\n") + "\n", entry: "chain" };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Row {
  family: string;
  factor: number;
  lines: number;
  irNodes: number;
  dispatches: number;
  compileMs: number;
  planMs: number;
  usPerNode: number;
}

/** Measure every family at every factor; writes the JSON and the SVG. */
export async function scaling(args: string[]): Promise<void> {
  const quick = args.includes("--quick");
  const reps = quick ? 1 : 3;
  const rows: Row[] = [];
  // Warm the compiler up (JIT), so the first row is not charged for it.
  compileSync(nystromTimes(1).source, { entry: "scaled" }).plan();
  for (const [family, make] of [["nystrom", nystromTimes], ["chain", chainTimes]] as const) {
    for (const factor of quick ? FACTORS.slice(0, 3) : FACTORS) {
      const { source, entry } = make(factor);
      const compileMs: number[] = [], planMs: number[] = [];
      let irNodes = 0, dispatches = 0;
      for (let r = 0; r < reps; r++) {
        const t0 = performance.now();
        const p = compileSync(source, { entry });
        const t1 = performance.now();
        const plan = p.plan();
        compileMs.push(t1 - t0);
        planMs.push(performance.now() - t1);
        irNodes = p.graph.nodes.length;
        dispatches = plan.kernels.length;
      }
      const row: Row = {
        family,
        factor,
        lines: source.split("\n").length,
        irNodes,
        dispatches,
        compileMs: median(compileMs),
        planMs: median(planMs),
        usPerNode: (1000 * (median(compileMs) + median(planMs))) / irNodes,
      };
      rows.push(row);
      console.log(
        `${family}×${factor}: ${row.lines} lines, ${irNodes} IR nodes, ${dispatches} dispatches, ` +
          `compile ${row.compileMs.toFixed(0)} ms, plan ${row.planMs.toFixed(0)} ms ` +
          `(${row.usPerNode.toFixed(0)} µs per node)`,
      );
    }
  }
  const dir = new URL("./results/", import.meta.url);
  const result = {
    suite: "scaling",
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    rows,
  };
  await Deno.writeTextFile(new URL("scaling.json", dir), JSON.stringify(result, null, 2) + "\n");
  await Deno.writeTextFile(new URL("scaling.svg", dir), plot(rows));
  console.log("wrote bench/results/scaling.json and scaling.svg");
}

/** Compile + plan time per IR node against the size factor, one line per family. */
function plot(rows: Row[]): string {
  const W = 560, H = 320, L = 60, B = 40, T = 30, R = 120;
  const maxF = Math.max(...rows.map((r) => r.factor));
  const maxY = Math.max(...rows.map((r) => r.usPerNode)) * 1.15;
  const x = (f: number) => L + ((W - L - R) * Math.log(f)) / Math.log(maxF);
  const y = (v: number) => H - B - ((H - B - T) * v) / maxY;
  const colors: Record<string, string> = { nystrom: "#1f77b4", chain: "#d62728" };
  const lines = Object.entries(colors).map(([family, color]) => {
    const pts = rows.filter((r) => r.family === family);
    if (!pts.length) return "";
    const path = pts.map((r) => `${x(r.factor).toFixed(1)},${y(r.usPerNode).toFixed(1)}`).join(" ");
    const last = pts.at(-1)!;
    return `<polyline fill="none" stroke="${color}" stroke-width="2" points="${path}"/>` +
      pts.map((r) => `<circle cx="${x(r.factor)}" cy="${y(r.usPerNode)}" r="3" fill="${color}"/>`)
        .join("") +
      `<text x="${x(last.factor) + 8}" y="${
        y(last.usPerNode) + 4
      }" font-size="12">${family}</text>`;
  }).join("");
  const ticks = FACTORS.filter((f) => f <= maxF).map((f) =>
    `<text x="${x(f)}" y="${H - B + 16}" font-size="11" text-anchor="middle">${f}×</text>`
  ).join("");
  const yTicks = [0, 0.5, 1].map((t) =>
    `<text x="${L - 6}" y="${y(t * maxY) + 4}" font-size="11" text-anchor="end">${
      (t * maxY).toFixed(0)
    }</text>`
  ).join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<text x="${L}" y="18" font-size="13">compile + plan time per IR node (µs) against program size</text>
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#444"/>
<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#444"/>
${ticks}${yTicks}${lines}
<text x="${(W - R + L) / 2}" y="${
    H - 6
  }" font-size="11" text-anchor="middle">size factor (log scale): flat lines are linear growth</text>
</svg>
`;
}
