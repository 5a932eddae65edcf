/**
 * Compile and run time of YOSO's table (scatter_add) on this adapter, for PRIVATE_TABLE_BUCKETS
 * and PARTIAL_TABLE_BUCKETS in compiler/limits.ts:
 *
 *   rm -rf ~/.cache/mesa_shader_cache   # lavapipe caches compiled shaders on disk
 *   deno run --allow-read bench/scatter_tables.ts N TAU E HEADS
 *
 * prints the first run's time (shader compiles included), then each kernel's median GPU time
 * over 5 profiled runs (timestamp queries).
 */
import { compile, randomTensor } from "../mod.ts";

const [n, tau, e, heads] = Deno.args.map(Number);
if (![n, tau, e, heads].every(Number.isInteger)) {
  console.error("usage: bench/scatter_tables.ts N TAU E HEADS   (integers)");
  Deno.exit(2);
}
const src = Deno.readTextFileSync(new URL("../examples/yoso.attn", import.meta.url));
const p = await compile(src, { entry: "yoso_sum", params: { tau } });
const x = {
  q: randomTensor([1, heads, n, 64], { seed: 1 }),
  k: randomTensor([1, heads, n, 64], { seed: 2 }),
  v: randomTensor([1, heads, n, e], { seed: 3 }),
};
const t0 = performance.now();
await p.run(x, { backend: "gpu" });
const first = performance.now() - t0;
const per: Record<string, number[]> = {};
let adapter = "";
for (let r = 0; r < 5; r++) {
  const { stats } = await p.profile(x, { timing: true });
  adapter = stats.adapter;
  for (const k of stats.kernels ?? []) (per[k.name] ??= []).push(k.ms);
}
const median = (v: number[]) => v.sort((a, b) => a - b)[v.length >> 1];
console.log(`${adapter}; n ${n}, tau ${tau}, e ${e}, heads ${heads}`);
console.log(`first run ${first.toFixed(0)} ms`);
for (const [k, v] of Object.entries(per)) console.log(`${k}: ${median(v).toFixed(1)} ms`);
