/**
 * An index-notation contraction `s[i, j] = sum[a](x[i, a] * k[j, a])` on the GPU, compiled with
 * and without the contractions pass (compiler/passes/contract.ts), in one process: medians of 3
 * timed runs after one that compiles, upload and readback included.
 *
 *     deno run --allow-read tools/contract_timing.ts [n = 2048] [d = 64]
 * @module
 */
import { compileSync, randomTensor, relativeError } from "../mod.ts";
import { PASSES } from "../compiler/passes/pipeline.ts";

const SOURCE = `def f(x: [n, d], k: [m, d]) -> [n, m] {
  s[i, j] = sum[a](x[i, a] * k[j, a])
  return s
}`;
const n = Number(Deno.args[0] ?? 2048), d = Number(Deno.args[1] ?? 64);
const x = { x: randomTensor([n, d], { seed: 1 }), k: randomTensor([n, d], { seed: 2 }) };
const asMatmul = compileSync(SOURCE);
const at = PASSES.findIndex((p) => p.name === "contractions");
const [pass] = PASSES.splice(at, 1);
const asWritten = compileSync(SOURCE);
PASSES.splice(at, 0, pass);
const ms: Record<string, number[]> = { written: [], matmul: [] };
for (let r = 0; r < 4; r++) {
  for (const [name, p] of [["written", asWritten], ["matmul", asMatmul]] as const) {
    const t0 = performance.now();
    await p.run(x, { backend: "gpu" });
    if (r > 0) ms[name].push(performance.now() - t0); // the first run compiles
  }
}
const median = (a: number[]) => a.sort((p, q) => p - q)[1];
const [w, m] = [median(ms.written), median(ms.matmul)];
const err = relativeError(
  await asMatmul.run(x, { backend: "gpu" }),
  await asWritten.run(x, { backend: "interp" }),
);
console.log(
  `n = ${n}, d = ${d}: as written ${w.toFixed(0)} ms, as matmul ${m.toFixed(0)} ms ` +
    `(${(w / m).toFixed(2)}×); matmul vs interpreter ${err.toExponential(1)}`,
);
