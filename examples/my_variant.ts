// A new variant, property-tested against exact attention: sigmoid attention (Ramapuram et al.,
// 2024), sigmoid(q·k/√d − log m) per pair instead of a softmax over the row.
// Run: deno run examples/my_variant.ts (no permissions needed)
import { compile } from "../mod.ts";
import {
  assertProperty,
  attentionInputs,
  compareWithExact,
  keyPermutationProperty,
  makeInputs,
  paddingInvarianceProperty,
} from "../testing.ts";

const source = `
def sigmoid_attn(q: [n, d], k: [m, d], v: [m, e], mask: [m] = ones) -> [n, e] {
  w = where(mask > 0, sigmoid(q @ k^T / sqrt(d) - log(sum(mask))), 0)
  return w @ v
}`;

/** Compile, check two symmetries on random inputs, and report the error against exact. */
export async function main(runs = 50): Promise<number> {
  const program = await compile(source);
  const inputs = attentionInputs({ maxN: 33, cross: true, masks: ["none", "padding", "random"] });
  await assertProperty(keyPermutationProperty(program, { inputs }), { numRuns: runs });
  await assertProperty(paddingInvarianceProperty(program, { inputs }), { numRuns: runs });
  const x = makeInputs({ batch: [2, 4], n: 64, m: 64, d: 32, e: 32, seed: 7, mask: "padding" });
  const r = await compareWithExact(program, x);
  console.log(
    `sigmoid attention vs softmax: relative error ${r.relativeError.toFixed(3)} ` +
      `(uniform attention scores ${r.baselines.mean.relativeError.toFixed(3)}), ` +
      `row cosine min ${r.cosineMin.toFixed(3)}, spectral ${r.relativeSpectralError.toFixed(3)}`,
  );
  return r.relativeError;
}

if (import.meta.main) await main();
