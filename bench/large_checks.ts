/**
 * GPU-against-interpreter checks at sizes too slow for the test suite (issue: a merged dispatch
 * that read unwritten values; long loops). Same seed on both backends, poisoned buffers.
 *
 *   deno run --allow-read bench/large_checks.ts
 */
import { compileSync, randomTensor, relativeError } from "../mod.ts";

const src = Deno.readTextFileSync(new URL("../examples/skein.attn", import.meta.url));
for (const [n, samples] of [[4096, 512], [8192, 1024]]) {
  const p = compileSync(src, { params: { samples }, file: "skein.attn" });
  const [q, k, v] = [1, 2, 3].map((seed) => randomTensor([1, n, 64], { seed }));
  const t0 = performance.now();
  const gpu = await p.run({ q, k, v }, { backend: "gpu", seed: 11, poison: true });
  const t1 = performance.now();
  const ref = await p.run({ q, k, v }, { backend: "interp", seed: 11 });
  console.log(
    `skein n=${n} samples=${samples} d=64: GPU vs interpreter relative error ` +
      `${relativeError(gpu, ref).toExponential(2)} (GPU ${(t1 - t0).toFixed(0)} ms with compile, ` +
      `${p.plan().kernels.length} dispatches in the plan)`,
  );
}
