/**
 * Host memory of a GPU run split by slices: peak RSS (sampled) and the executor's own count
 * (`RunStats.peakHostBytes`) against the bytes of inputs and output as the host holds them
 * (float64). Splitting is forced with `maxBindingBytes`.
 *
 *   deno run --allow-read bench/host_memory.ts [slices=4096] [chunks=16]
 */
import { compileSync } from "../mod.ts";
import { execute } from "../runtime/executor.ts";

const slices = Number(Deno.args[0] ?? 4096);
const chunks = Number(Deno.args[1] ?? 16);
const [n, d] = [64, 32];
const p = compileSync(Deno.readTextFileSync(new URL("../examples/linear.attn", import.meta.url)));
const tensor = () => {
  const data = new Float64Array(slices * n * d);
  for (let i = 0; i < data.length; i++) data[i] = Math.random() - 0.5;
  return { shape: [slices, n, d], data, dtype: "float" as const };
};
const inputs = { q: tensor(), k: tensor(), v: tensor() };
const inBytes = 3 * inputs.q.data.byteLength;
const outBytes = slices * n * d * 8;
const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`;
// Peak RSS, sampled every 2 ms while the run awaits the device (and once at the end).
let peakRss = 0;
const sample = () => peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
const sampler = setInterval(sample, 2);
const hwm = () => peakRss;
const before = Deno.memoryUsage().rss;
// The largest per-slice buffer sets the chunk: slices / chunks slices per chunk.
const perSlice = Math.max(n * d, n * n) * 4;
const maxBindingBytes = perSlice * Math.ceil(slices / chunks);
const t = performance.now();
const { output, stats } = await execute(p.optimized, p.plan(), inputs, { maxBindingBytes });
sample();
clearInterval(sampler);
const s = ((performance.now() - t) / 1000).toFixed(1);
const peakHost = (stats as { peakHostBytes?: number }).peakHostBytes;
console.log(
  `${slices} slices in ${chunks} chunks (${s} s): inputs ${mb(inBytes)}, output ${
    mb(output.data.byteLength)
  }; RSS before ${mb(before)}, peak RSS ${mb(hwm())} (${
    ((hwm() - before) / (inBytes + outBytes)).toFixed(2)
  }× in+out above the start)` +
    (peakHost === undefined
      ? ""
      : `; peakHostBytes ${mb(peakHost)} (${
        (peakHost / (inBytes + outBytes)).toFixed(2)
      }× in+out)`),
);
