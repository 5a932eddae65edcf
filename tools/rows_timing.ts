/**
 * The fused attention kernel at a given number of query rows per invocation
 * (`attentionTile.rows`), for exact, sigmoid and causal attention at n = 2048, d = 64, 8 heads:
 * each kernel's time from timestamp queries (median of 3) and the first run's time (shader
 * compilation when the cache lacks the kernel). Run it once per row count, alternating, each with
 * its own shader cache, and compare within one sitting:
 *
 *     MESA_SHADER_CACHE_DIR=/tmp/rows8 deno run --allow-read --allow-env tools/rows_timing.ts 8
 *     MESA_SHADER_CACHE_DIR=/tmp/rows16 deno run --allow-read --allow-env tools/rows_timing.ts 16
 * @module
 */
import { compileSync, randomTensor } from "../mod.ts";
import { attentionTile } from "../compiler/limits.ts";

attentionTile.rows = Number(Deno.args[0] ?? attentionTile.rows);
const n = 2048, heads = 8, d = 64;
const score = "q[i] . k[j] / sqrt(d)";
const program = (s: string, result = "softmax(s, axis=1) @ v") =>
  `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = ${s}
  return ${result}
}`;
const x = {
  q: randomTensor([1, heads, n, d], { seed: 1 }),
  k: randomTensor([1, heads, n, d], { seed: 2 }),
  v: randomTensor([1, heads, n, d], { seed: 3 }),
};
for (
  const [name, source] of [
    ["exact", program(score)],
    ["sigmoid", program(score, "sigmoid(s - log(n)) @ v")],
    ["causal", program(`where(j <= i, ${score}, -inf)`)],
  ]
) {
  const p = compileSync(source);
  const t0 = performance.now();
  await p.profile(x, { backend: "gpu" });
  const first = performance.now() - t0;
  const ms: number[] = [];
  for (let r = 0; r < 3; r++) {
    const { stats } = await p.profile(x, { backend: "gpu", timing: true });
    ms.push(stats.kernels?.reduce((t, k) => t + k.ms, 0) ?? NaN);
  }
  ms.sort((a, b) => a - b);
  console.log(
    `${attentionTile.rows} rows: ${name.padEnd(8)} kernel ${ms[1].toFixed(0)} ms, ` +
      `first run ${first.toFixed(0)} ms`,
  );
}
