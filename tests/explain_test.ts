/**
 * `Program.explain()` gives what `attune explain` gives: the summary first (with the attention
 * block: each fused kernel's form and mask tile classes, why a softmax did not fuse), then the IR
 * (unless `ir: false`), then the GPU plan. Tile counts are checked against a brute-force count
 * over every (query, key) pair of each block.
 */
import assert from "node:assert/strict";
import { compileSync, UsageError } from "../mod.ts";
import { attentionTile, keyTile } from "../compiler/limits.ts";
import { cli } from "./cli_helpers.ts";

/** Causal with an offset: rows below 3 see no key; ragged last tiles at n = 203. */
const SHIFTED = `def shifted(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = where(j <= i - 3, q[i] . k[j] / sqrt(d), -inf)
  return softmax(s, axis=1) @ v
}`;

/** Two dot products in one score: one streaming pass holds one q·k. */
const TWO = `def two(q: [n, d], k: [n, d], v: [n, e], q2: [n, d], k2: [n, d]) -> [n, e] {
  return softmax(q @ k^T + q2 @ k2^T, axis=1) @ v
}`;

/** (query tile, key block) pairs by class, each pair's keys tested one by one. */
function bruteTiles(n: number, seen: (i: number, j: number) => boolean) {
  const count = { empty: 0, partial: 0, full: 0 };
  for (let ib = 0; ib < n; ib += attentionTile.rows) {
    for (let jb = 0; jb < n; jb += keyTile.keys) {
      let some = false, all = true;
      for (let i = ib; i < Math.min(ib + attentionTile.rows, n); i++) {
        for (let j = jb; j < Math.min(jb + keyTile.keys, n); j++) {
          const s = seen(i, j);
          [some, all] = [some || s, all && s];
        }
      }
      count[!some ? "empty" : all ? "full" : "partial"]++;
    }
  }
  return count;
}

Deno.test("Program.explain(): summary first, with the recognized form and tile classes of a masked pass", () => {
  const text = compileSync(SHIFTED).explain({ sizes: { n: 203 } });
  const lines = text.split("\n");
  assert.equal(lines[0], "shifted(q: [n, d], k: [n, d], v: [n, e]) -> [n, e]");
  assert.equal(lines[1], "params: (none)");
  assert.equal(lines[2], "size symbols: n, d, e");
  assert.match(lines[3], /^dispatches: 1 \(kernels below\)$/);
  assert.match(lines[4], /per \(batch, head\) slice at n = 203, d = 64, e = 64 \(float32; /);
  assert.match(lines[5], /^optimizer: .*attention fusion.* changed the IR$/);
  const at = lines.indexOf("attention:");
  assert.equal(at, 6, text);
  assert.match(
    lines[at + 1],
    /^ {2}%\d+ attention: softmax\(score\) @ v, one streaming pass \(online softmax\)$/,
  );
  assert.match(lines[at + 2], /^ {4}score = where\(/);
  const c = bruteTiles(203, (i, j) => j <= i - 3);
  assert.ok(c.empty > 0 && c.partial > 0 && c.full > 0, JSON.stringify(c));
  assert.equal(
    lines[at + 3],
    `    tiles: ${c.empty} empty (skipped), ${c.partial} partial, ${c.full} full ` +
      "(masks on data or on head() and batch() count as partial here)",
  );
  // Then the IR, checked and after each pass, then the plan.
  const ir = lines.findIndex((l) => /^%0: \[n, d\] = input\{name="q"\}/.test(l));
  const after = lines.indexOf("after attention fusion:");
  const plan = lines.indexOf("GPU plan (kernel, threads per (batch, head) slice):");
  assert.ok(at < ir && ir < after && after < plan, text);
  assert.match(lines[plan + 1], /^ {4}0 {2}attention_\d+ +threads\/slice /);
});

Deno.test("Program.explain(): each softmax that did not fuse, with why", () => {
  const text = compileSync(TWO).explain();
  const lines = text.split("\n");
  const at = lines.indexOf("attention:");
  assert.ok(at > 0 && at < lines.findIndex((l) => l.startsWith("%0:")), text);
  assert.match(
    text,
    /^ {2}%\d+ softmax did not fuse: it holds two dot products \(%\d+·%\d+ and %\d+·%\d+\); one pass streams one q·k/m,
  );
  assert.doesNotMatch(text, /^ {2}%\d+ attention:/m, "nothing fused");
});

Deno.test("Program.explain(): ir: false leaves the IR out; wgsl: true adds the kernels' source", () => {
  const p = compileSync(SHIFTED);
  const short = p.explain({ ir: false });
  assert.match(short, /^optimizer: .* changed the IR \(ir: true shows it\)$/m);
  assert.doesNotMatch(short, /^%\d+/m);
  assert.doesNotMatch(short, /^after /m);
  assert.match(short, /slice at n = 1024, d = 64, e = 64 /);
  assert.doesNotMatch(short, /@compute/);
  assert.match(p.explain({ wgsl: true, ir: false }), /@compute/);
});

Deno.test("Program.explain() and `attune explain` differ only in how they name their options", async () => {
  const file = new URL("../examples/sliding_window.attn", import.meta.url).pathname;
  const p = compileSync(Deno.readTextFileSync(file));
  for (
    const [flags, options] of [[[], { ir: false }], [["--ir", "--size", "n=77"], {
      sizes: { n: 77 },
    }]] as const
  ) {
    const r = await cli(["explain", file, ...flags]);
    assert.equal(r.code, 0, r.err);
    const api = p.explain(options)
      .replace("sizes: { NAME: N } for others", "--size NAME=N for others")
      .replace("(ir: true shows it)", "(--ir shows it)");
    assert.equal(api, r.out, flags.join(" "));
  }
});

Deno.test("Program.explain(): sizes must be whole numbers naming size symbols", () => {
  const p = compileSync(SHIFTED);
  assert.throws(() => p.explain({ sizes: { m: 8 } }), UsageError);
  assert.throws(() => p.explain({ sizes: { n: -1 } }), UsageError);
  assert.throws(() => p.explain({ sizes: { n: 2.5 } }), UsageError);
  assert.throws(() => p.explain({ sizes: null as unknown as Record<string, number> }), UsageError);
  assert.match(p.explain({ sizes: { n: 0 } }), /tiles: 0 empty \(skipped\), 0 partial, 0 full/);
});

Deno.test("Program.explain(): a float parameter shows as a float (16.0), an int as an int", () => {
  const p = compileSync(
    `def g(x: [n], scale = 16.0, reps = 3, t: float = 2, on = true) -> [n] {
  return x * scale
}`,
    { params: { reps: 4 } },
  );
  const line = p.explain().split("\n").find((l) => l.startsWith("params:"));
  assert.equal(line, "params: scale = 16.0, reps = 4, t = 2.0, on = true");
});
