/**
 * Full key blocks run without the mask (`fullTiles.scores`), off against on: kernel time (median
 * of 5, timestamp queries) and first-run time (mostly shader compilation with an empty cache) of
 * causal, document, window-or-global and prefix-LM attention at n = 2048, d = 64, 8 heads. Run it
 * alternating, each setting with its own shader cache, and compare within one sitting:
 *
 *     MESA_SHADER_CACHE_DIR=/tmp/full-off deno run --allow-read --allow-env tools/full_timing.ts off
 *     MESA_SHADER_CACHE_DIR=/tmp/full-on deno run --allow-read --allow-env tools/full_timing.ts on
 *
 * `ONLY=causal,doc` picks variants.
 * @module
 */
import { compileSync, randomTensor } from "../mod.ts";
import { fullTiles } from "../compiler/limits.ts";
import { documents } from "../bench/variants.ts";

fullTiles.scores = Deno.args[0] === "on";
const n = 2048, heads = 8, d = 64;
const S = "q[i] . k[j] / sqrt(d)";
const program = (s: string, args = "") =>
  `def f(q: [n, d], k: [n, d], v: [n, e]${args}) -> [n, e] {
  s[i, j] = ${s}
  return softmax(s, axis=1) @ v
}`;
const x = {
  q: randomTensor([1, heads, n, d], { seed: 1 }),
  k: randomTensor([1, heads, n, d], { seed: 2 }),
  v: randomTensor([1, heads, n, d], { seed: 3 }),
  // The bench's documents of 100–600 tokens.
  doc: { shape: [n], data: documents(n) },
};
const all: [string, string][] = [
  ["exact", program(S)],
  ["causal", program(`where(j <= i, ${S}, -inf)`)],
  ["doc", program(`where(doc[i] == doc[j], ${S}, -inf)`, ", doc: [n]")],
  ["window", program(`where(abs(i - j) <= 16 or j < 4 or i < 4, ${S}, -inf)`)],
  ["prefix", program(`where(j <= i or j < 64, ${S}, -inf)`)],
];
const only = (Deno.env.get("ONLY") ?? "").split(",").filter((s) => s);
for (const [name, source] of all.filter(([n]) => only.length === 0 || only.includes(n))) {
  const p = compileSync(source);
  const inputs = name === "doc" ? x : { q: x.q, k: x.k, v: x.v };
  const t0 = performance.now();
  await p.profile(inputs, { backend: "gpu" });
  const first = performance.now() - t0;
  const ms: number[] = [];
  for (let r = 0; r < 5; r++) {
    const { stats } = await p.profile(inputs, { backend: "gpu", timing: true });
    ms.push(stats.kernels?.reduce((t, k) => t + k.ms, 0) ?? NaN);
  }
  ms.sort((a, b) => a - b);
  console.log(
    `${Deno.args[0] ?? "off"} ${name.padEnd(8)} kernel ${ms[2].toFixed(0)} ms, first run ${
      first.toFixed(0)
    } ms`,
  );
}
