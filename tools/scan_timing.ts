/**
 * Causal linear attention written with `cumsum` (O(n): prefix sums of φ(k)ᵀv and φ(k)) against
 * non-causal examples/linear.attn, on the GPU in one process: medians of 3 timed runs after one
 * that compiles, one (batch, head) slice, upload and readback included; then the fitted log-log
 * slope of time against n for each.
 *
 *     deno run --allow-read tools/scan_timing.ts [d = 64] [n ... = 2048 4096 8192]
 * @module
 */
import { compileSync, randomTensor } from "../mod.ts";
const CAUSAL = Deno.readTextFileSync(
  new URL("../examples/causal_linear.attn", import.meta.url),
);
const d = Number(Deno.args[0] ?? 64);
const sizes = Deno.args.length > 1 ? Deno.args.slice(1).map(Number) : [2048, 4096, 8192];
const causal = compileSync(CAUSAL);
const linear = compileSync(
  Deno.readTextFileSync(new URL("../examples/linear.attn", import.meta.url)),
);
const res: Record<string, number[]> = { causal: [], linear: [] };
for (const n of sizes) {
  const q = randomTensor([1, n, d], { seed: 1 }), k = randomTensor([1, n, d], { seed: 2 });
  const v = randomTensor([1, n, d], { seed: 3 });
  const t: Record<string, number[]> = { causal: [], linear: [] };
  for (let r = 0; r < 4; r++) {
    for (const [name, p] of [["causal", causal], ["linear", linear]] as const) {
      const t0 = performance.now();
      await p.run({ q, k, v }, { backend: "gpu" });
      if (r > 0) t[name].push(performance.now() - t0); // the first run compiles
    }
  }
  for (const name of ["causal", "linear"]) {
    const med = t[name].sort((a, b) => a - b)[1];
    res[name].push(med);
  }
  console.log(
    `n = ${n}, d = e = ${d}: causal ${res.causal.at(-1)!.toFixed(0)} ms, non-causal ${
      res.linear.at(-1)!.toFixed(0)
    } ms, ratio ${(res.causal.at(-1)! / res.linear.at(-1)!).toFixed(2)}`,
  );
}
const slope = (ys: number[]) => {
  const xs = sizes.map(Math.log), ls = ys.map(Math.log);
  const mx = xs.reduce((a, b) => a + b) / xs.length, my = ls.reduce((a, b) => a + b) / ls.length;
  return xs.reduce((s, x, i) => s + (x - mx) * (ls[i] - my), 0) /
    xs.reduce((s, x) => s + (x - mx) ** 2, 0);
};
console.log(
  `log-log slope: causal ${slope(res.causal).toFixed(3)}, non-causal ${
    slope(res.linear).toFixed(3)
  }`,
);
