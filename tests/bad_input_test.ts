/**
 * Bad input never crashes or loses data: each case a careless or hostile user hit (issue "Bad
 * input never crashes, hangs or loses data") gets a named Attune error whose first line is pinned
 * here, and output files are written whole or not at all.
 */
import assert from "node:assert/strict";
import {
  CompileError,
  compileSync,
  decodeNpy,
  encodeNpy,
  NpyError,
  randomTensor,
  readNpy,
  tensor,
  UsageError,
  writeNpy,
} from "../mod.ts";
import { writeFileAtomic } from "../runtime/npy.ts";
import { FRONTEND_LIMITS } from "../compiler/limits.ts";
import { cli, denoCommand } from "./cli_helpers.ts";

const EXACT = `def f(q: [n, d], k: [m, d], v: [m, e], km: [m] = ones) -> [n, e] {
  s = q @ k^T
  s = where(km > 0, s, -1e9)
  return softmax(s, axis=1) @ v
}`;

function rand(shape: number[], seed = 1) {
  return randomTensor(shape, { seed });
}

/** The first line of the message of what `f` throws, checking its class. */
async function firstLine(
  f: () => unknown,
  kind: new (...args: never[]) => Error,
): Promise<string> {
  try {
    await f();
  } catch (e) {
    assert.ok(e instanceof kind, `expected ${kind.name}, got ${(e as Error).name}: ${e}`);
    return (e as Error).message.split("\n")[0];
  }
  throw new assert.AssertionError({ message: `expected ${kind.name}, nothing was thrown` });
}

// --- The API ------------------------------------------------------------------------------------

Deno.test("api: compile of a non-string is a UsageError, not a TypeError or a 1:NaN location", async () => {
  for (const bad of [42, undefined, null, { text: "def" }]) {
    assert.match(
      await firstLine(() => compileSync(bad as unknown as string), UsageError),
      /^compile takes the program text as a string, got (number|undefined|null|object);/,
    );
  }
});

Deno.test('api: seeds the generator does not take are refused (NaN, 1.5, "7", -1, 2^32)', async () => {
  const p = compileSync(EXACT);
  const inputs = { q: rand([3, 4]), k: rand([5, 4], 2), v: rand([5, 2], 3) };
  for (const seed of [NaN, 1.5, "7", -1, 2 ** 32]) {
    assert.match(
      await firstLine(() => p.run(inputs, { seed: seed as number, backend: "interp" }), UsageError),
      /^run's seed must be a whole number from 0 to 4294967295 \(the generator's u32 key\), got /,
    );
  }
  assert.equal((await p.run(inputs, { seed: 2 ** 32 - 1, backend: "interp" })).shape.join(), "3,2");
  await firstLine(() => randomTensor([2], { seed: 0.5 }), UsageError);
});

Deno.test('api: an unknown backend ("GPU", "cuda") is a UsageError, not a silent interpreter run', async () => {
  const p = compileSync(EXACT);
  const inputs = { q: rand([3, 4]), k: rand([5, 4], 2), v: rand([5, 2], 3) };
  for (const backend of ["GPU", "cuda"]) {
    assert.equal(
      await firstLine(() => p.run(inputs, { backend: backend as "gpu" }), UsageError),
      `unknown backend "${backend}": use interp, gpu or auto`,
    );
  }
});

Deno.test("api: fractional, negative or missing dims are refused by tensor() and run()", async () => {
  assert.equal(
    await firstLine(() => tensor([4.5, 8], new Float64Array(36)), UsageError),
    "tensor: a shape is an array of whole numbers ≥ 0, got [4.5, 8]",
  );
  await firstLine(() => tensor([-1], []), UsageError);
  await firstLine(() => randomTensor([2, 0.5]), UsageError);
  const p = compileSync(EXACT);
  const base = { k: rand([5, 4], 2), v: rand([5, 2], 3) };
  assert.match(
    await firstLine(
      () =>
        p.run({ ...base, q: { shape: [4.5, 8], data: new Float64Array(36) } }, {
          backend: "interp",
        }),
      CompileError,
    ),
    /input q has shape \[4\.5, 8\]; a shape is an array of whole numbers ≥ 0$/,
  );
  assert.match(
    await firstLine(
      () =>
        p.run({ ...base, q: { shape: undefined as unknown as number[], data: [1] } }, {
          backend: "interp",
        }),
      CompileError,
    ),
    /input q has shape undefined; a shape is an array of whole numbers ≥ 0$/,
  );
  // A plain number array where a matrix belongs: its rank is named.
  assert.match(
    await firstLine(() => p.run({ ...base, q: [1, 2, 3] }, { backend: "interp" }), CompileError),
    /input q should have rank 2 \(\[n, d\]\) but has shape \[3\]$/,
  );
});

Deno.test("api: a 2-D [m, m] tensor given for a [m] mask is refused, not read as m batches", async () => {
  const p = compileSync(EXACT);
  const inputs = { q: rand([3, 4]), k: rand([5, 4], 2), v: rand([5, 2], 3) };
  assert.match(
    await firstLine(
      () => p.run({ ...inputs, km: rand([5, 5], 4) }, { backend: "interp" }),
      CompileError,
    ),
    /input km is declared \[m\] but has shape \[5, 5\]: its leading dim \[5\] would be a batch dim that q \(shape \[3, 4\]\) does not have$/,
  );
  // A mask over batches beside batched q, k, v still broadcasts: [B, m] with [B, H, n, d].
  const batched = { q: rand([2, 3, 3, 4]), k: rand([2, 3, 5, 4], 2), v: rand([2, 3, 5, 2], 3) };
  const y = await p.run({ ...batched, km: tensor([2, 5], [1, 1, 0, 1, 1, 1, 0, 1, 1, 1]) }, {
    backend: "interp",
  });
  assert.deepEqual(y.shape, [2, 3, 3, 2]);
});

// --- .npy files ---------------------------------------------------------------------------------

/** A version-2 .npy with this header text (padded) and no data. */
function npyWithHeader(header: string): Uint8Array {
  const text = header + " ".repeat((64 - ((12 + header.length + 1) % 64)) % 64) + "\n";
  const bytes = new Uint8Array(12 + text.length);
  bytes.set([0x93, ...new TextEncoder().encode("NUMPY"), 2, 0]);
  new DataView(bytes.buffer).setUint32(8, text.length, true);
  bytes.set(new TextEncoder().encode(text), 12);
  return bytes;
}

Deno.test("npy: a header nested 3,800 deep is an NpyError, not a stack overflow", async () => {
  const deep = "{'descr': '<f8', 'fortran_order': False, 'shape': (), 'x': " + "[".repeat(3800) +
    "]".repeat(3800) + "}";
  assert.match(
    await firstLine(() => decodeNpy(npyWithHeader(deep), "deep.npy"), NpyError),
    /^npy: cannot parse the header dictionary \(brackets nested more than 32 deep at character \d+ of /,
  );
});

Deno.test("npy: a dimension past 2^53 is named as such", async () => {
  const huge = "{'descr': '<f8', 'fortran_order': False, 'shape': (9007199254740993,), }";
  assert.match(
    await firstLine(() => decodeNpy(npyWithHeader(huge), "huge.npy"), NpyError),
    /^npy: the header's 'shape' has a dimension of 9007199254740993, past 2\^53 - 1/,
  );
});

Deno.test("npy: a write that fails part-way leaves the previous file intact and no temporary", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/out.npy`;
    const good = tensor([3], [1, 2, 3]);
    await writeNpy(path, good);
    const before = await Deno.readFile(path);
    const bytes = encodeNpy(tensor([4096], new Float64Array(4096).fill(7)));
    // A disk that fills up after half the file: the first write lands, the second fails.
    let calls = 0;
    const failing = async (file: Deno.FsFile, b: Uint8Array) => {
      if (calls++ > 0) throw new Error("No space left on device (os error 28)");
      return await file.write(b.subarray(0, b.length >> 1));
    };
    await assert.rejects(() => writeFileAtomic(path, bytes, failing), /No space left/);
    assert.ok(calls === 2, "the failing writer ran twice");
    assert.deepEqual(await Deno.readFile(path), before);
    assert.deepEqual([...(await readNpy(path)).data], [1, 2, 3]);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["out.npy"]);
    // A complete write replaces it.
    await writeFileAtomic(path, bytes);
    assert.equal((await readNpy(path)).data[4095], 7);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["out.npy"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- The command line ---------------------------------------------------------------------------

Deno.test("cli: numbers are parsed strictly: no empty strings, blanks, hex or out-of-range seeds", async () => {
  const cases: [string[], string][] = [
    [
      ["explain", "x.attn", "--param", "landmarks= "],
      'attune: --param landmarks expects a decimal number, true or false, got " "',
    ],
    [
      ["explain", "x.attn", "--param", "landmarks=0x10"],
      'attune: --param landmarks expects a decimal number, true or false, got "0x10"',
    ],
    [
      ["explain", "x.attn", "--size", "n=1e3x"],
      'attune: --size n expects a whole number, got "1e3x"',
    ],
    [
      ["run", "x.attn", "-o", "y.npy", "--seed", ""],
      'attune: --seed expects a whole number from 0 to 4294967295, got ""',
    ],
    [
      ["run", "x.attn", "-o", "y.npy", "--seed", "4294967296"],
      'attune: --seed expects a whole number from 0 to 4294967295, got "4294967296"',
    ],
    [
      ["run", "x.attn", "-o", "y.npy", "--seed", "0x10"],
      'attune: --seed expects a whole number from 0 to 4294967295, got "0x10"',
    ],
  ];
  for (const [argv, first] of cases) {
    const r = await cli(argv);
    assert.equal(r.code, 2, argv.join(" "));
    assert.equal(r.err.split("\n")[0], first);
  }
});

Deno.test("cli: an input, parameter or option given twice is refused, not last-one-wins", async () => {
  const cases: [string[], string][] = [
    [
      ["run", "x.attn", "--in", "q=a.npy", "--in", "q=b.npy", "-o", "y.npy"],
      "attune: --in q is given twice",
    ],
    [
      ["check", "x.attn", "--param", "landmarks=8", "--param=landmarks=16"],
      "attune: --param landmarks is given twice",
    ],
    [["run", "x.attn", "-o", "a.npy", "--out", "b.npy"], "attune: --out is given twice"],
    [
      ["run", "x.attn", "-o", "a.npy", "--seed", "1", "--seed", "2"],
      "attune: --seed is given twice",
    ],
  ];
  for (const [argv, first] of cases) {
    const r = await cli(argv);
    assert.equal(r.code, 2, argv.join(" "));
    assert.equal(r.err.split("\n")[0], first);
  }
});

Deno.test("cli: a directory as the program is named, not an uncaught IsADirectory", async () => {
  const examples = new URL("../examples/", import.meta.url).pathname;
  const r = await cli(["check", "examples/"], new URL("..", import.meta.url).pathname);
  assert.equal(r.code, 1);
  assert.equal(
    r.err,
    "error: examples/ is a directory; give one FILE.attn (e.g. examples/exact.attn)",
  );
  assert.ok(examples.length > 0);
});

Deno.test("cli: --out is checked before any compute, and may not name the program or an input", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/p.attn`, EXACT);
    await writeNpy(`${dir}/q.npy`, rand([3, 4]));
    // The inputs k and v do not exist: reaching them would be a different error, so each of these
    // must be caught before the inputs are read, let alone the program run.
    const run = (out: string) =>
      cli(
        ["run", "p.attn", "--in", "q=q.npy", "--in", "k=k.npy", "--in", "v=v.npy", "-o", out],
        dir,
      );
    const cases: [string, string][] = [
      [
        "nodir/y.npy",
        `error: --out nodir/y.npy: the directory ${dir}/nodir does not exist; create it first`,
      ],
      [".", "error: --out . is a directory; name a file in it"],
      ["p.attn", "error: --out p.attn is the program file; writing it would destroy the source"],
      ["./q.npy", "error: --out ./q.npy is also an input (--in q.npy); write to another file"],
    ];
    for (const [out, first] of cases) {
      const r = await run(out);
      assert.equal(r.code, 1, out);
      assert.equal(r.err.split("\n")[0], first);
    }
    assert.equal(await Deno.readTextFile(`${dir}/p.attn`), EXACT);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- Programs the checker must refuse, with the span of the text that produced them -----------

Deno.test("check: duplicate parameter names in a signature are refused", async () => {
  assert.equal(
    await firstLine(() => compileSync(`def f(a: [n], a: [n]) -> [n] { return a }`), CompileError),
    "<program>:1:15: parameter a of f is declared twice",
  );
});

Deno.test("check: constants outside float32's range are refused where written, not at the GPU", async () => {
  assert.equal(
    await firstLine(
      () => compileSync(`def f(a: [n]) -> [n] {\n  return a * 1e39\n}`),
      CompileError,
    ),
    "<program>:2:14: 1e+39 is outside float32's range (±3.4028235e38): the GPU would compute with inf",
  );
  // Folded at compile time: 1e20 * 1e20 is past the range too.
  assert.match(
    await firstLine(
      () => compileSync(`def f(a: [n]) -> [n] { return a + 1e20 * 1e20 }`),
      CompileError,
    ),
    /^<program>:1:\d+: 1e\+40 is outside float32's range/,
  );
  // inf itself is fine (it is representable), and so is -3e38.
  compileSync(`def f(a: [n]) -> [n] { return max(a, -inf) + -3e38 }`);
  // Below the smallest normal float32 a constant reads as 0 on the GPU (fuzz: abs(i - j) < 1e-46
  // held for i == j on the interpreter only); 0 and 1.2e-38 are fine.
  assert.equal(
    await firstLine(
      () =>
        compileSync(`def f(a: [n]) -> [n] {
  return where(abs(a) < 1e-46, 1.0, a)
}`),
      CompileError,
    ),
    "<program>:2:25: 1e-46 is below float32's smallest normal number (1.1754944e-38): the GPU would compute with 0",
  );
  compileSync(`def f(a: [n]) -> [n] { return a * 0.0 + 1.2e-38 }`);
});

Deno.test("check: sizes past u32 (zeros([1e11]), a parameter 1e308) are refused at their span", async () => {
  assert.equal(
    await firstLine(
      () => compileSync(`def f(a: [n]) -> [n] { return a + sum(zeros([100000000000])) }`),
      CompileError,
    ),
    "<program>:1:46: a size of 100000000000 is past 4294967295, the largest a GPU index (u32) can address",
  );
  const nystrom = Deno.readTextFileSync(new URL("../examples/nystrom.attn", import.meta.url));
  assert.match(
    await firstLine(() => compileSync(nystrom, { params: { landmarks: 1e308 } }), CompileError),
    /: a size of 1e\+308 is past 4294967295, the largest a GPU index \(u32\) can address$/,
  );
});

Deno.test("check: a chain of 400 functions is a CompileError, not a stack overflow", async () => {
  // 2,000 overflowed the stack before the call-depth bound; 400 is past it and within the text cap.
  const lines = ["def g0(x: [n]) -> [n] { return x + 1.0 }"];
  for (let i = 1; i < 400; i++) {
    lines.push(`def g${i}(x: [n]) -> [n] { return g${i - 1}(x) * 0.5 }`);
  }
  lines.push(`def f(x: [n]) -> [n] { return g399(x) }`);
  assert.match(
    await firstLine(() => compileSync(lines.join("\n")), CompileError),
    /^<program>:\d+:\d+: calls nest more than 256 deep here \(g\d+ ← g\d+ ← g\d+ ← g\d+ ← …\)$/,
  );
});

Deno.test("check: exponential inlining stops at the node bound within seconds", async () => {
  const lines = ["def g0(x: [n]) -> [n] { return x + 1.0 }"];
  for (let i = 1; i < 16; i++) {
    lines.push(`def g${i}(x: [n]) -> [n] { return g${i - 1}(x) + g${i - 1}(x * 0.5) }`);
  }
  lines.push(`def f(x: [n]) -> [n] { return g15(x) }`);
  assert.match(
    await firstLine(() => compileSync(lines.join("\n")), CompileError),
    /^<program>:\d+:\d+: the program expands to more than 50,000 operations once its functions are inlined$/,
  );
});

Deno.test("cli: works with read permission scoped to the examples folder (no grammar file read)", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const out = await new Deno.Command(denoCommand(), {
    args: [
      "run",
      `--allow-read=${root}examples`,
      `${root}cli.ts`,
      "check",
      `${root}examples/nystrom.attn`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  assert.match(text, /nystrom\.attn: ok/);
});

// --- Size of programs -------------------------------------------------------------------------

Deno.test("plan: a 2,300-statement straight-line program plans (no stack overflow) and runs", async () => {
  const lines = ["def f(x: [n, d]) -> [n, d] {", "  y0 = x"];
  for (let i = 1; i < 2300; i++) lines.push(`  y${i} = y${i - 1} * 0.999 + ${(i % 7) / 100}`);
  lines.push("  return y2299", "}");
  // The graph, not the text, is what overflowed: past the text cap, so the cap is lifted here.
  const saved = FRONTEND_LIMITS.sourceChars;
  FRONTEND_LIMITS.sourceChars = 1 << 20;
  let p;
  try {
    p = compileSync(lines.join("\n"));
  } finally {
    FRONTEND_LIMITS.sourceChars = saved;
  }
  const plan = p.plan();
  // Inlined expressions are cut every INLINE_DEPTH nodes: many kernels, none 9,000 ops deep.
  assert.ok(plan.kernels.length > 10, `${plan.kernels.length} kernels`);
  const y = await p.run({ x: randomTensor([3, 2]) }, { backend: "interp" });
  assert.ok(y.data.every(Number.isFinite));
});

Deno.test("plan: ten chained copies of the largest example compile and plan, about 10× the IR", () => {
  const base = Deno.readTextFileSync(new URL("../examples/nystrom.attn", import.meta.url));
  const entry = (k: number) => {
    const lines = [
      "def scaled(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {",
      "  y0 = nystrom(q, k, v)",
    ];
    for (let i = 1; i < k; i++) lines.push(`  y${i} = nystrom(q, k, v + 0.001 * y${i - 1})`);
    lines.push(`  return y${k - 1}`, "}");
    return compileSync(`${base}\n${lines.join("\n")}\n`, { entry: "scaled" });
  };
  const one = entry(1), ten = entry(10);
  assert.ok(ten.graph.nodes.length <= 10 * one.graph.nodes.length + 10);
  assert.ok(ten.plan().kernels.length <= 10 * one.plan().kernels.length);
});

const gpu = await (await import("../runtime/device.ts")).getDevice().then(() => true, () => false);

Deno.test({
  name:
    "gpu: zero-width heads (d = 0, e = 0) run and agree with the interpreter (was a WGSL error)",
  ignore: !gpu,
  async fn() {
    const p = compileSync(`def f(q: [n, d], k: [m, d], v: [m, e]) -> [n, e] {
  return softmax(q @ k^T, axis=1) @ v
}`);
    for (const [d, e] of [[0, 4], [4, 0], [0, 0]]) {
      const x = { q: rand([5, d]), k: rand([6, d], 2), v: rand([6, e], 3) };
      const want = await p.run(x, { backend: "interp" });
      const got = await p.run(x, { backend: "gpu", poison: true });
      assert.deepEqual(got.shape, want.shape, `d=${d} e=${e}`);
      for (let i = 0; i < want.data.length; i++) {
        assert.ok(Math.abs(got.data[i] - want.data[i]) <= 1e-6, `d=${d} e=${e} at ${i}`);
      }
    }
  },
});

Deno.test({
  name: "gpu: a sliding window wider than i32 (window = 1e11) runs and agrees (was a WGSL error)",
  ignore: !gpu,
  async fn() {
    const src = Deno.readTextFileSync(new URL("../examples/sliding_window.attn", import.meta.url));
    const p = compileSync(src, { params: { window: 1e11 } });
    const x = { q: rand([9, 4]), k: rand([9, 4], 2), v: rand([9, 3], 3) };
    const want = await p.run(x, { backend: "interp" });
    const got = await p.run(x, { backend: "gpu", poison: true });
    for (let i = 0; i < want.data.length; i++) {
      assert.ok(Math.abs(got.data[i] - want.data[i]) <= 1e-5, `at ${i}`);
    }
  },
});

Deno.test("check: a literal past float64's range (1e400) is refused, not read as inf", async () => {
  assert.equal(
    await firstLine(
      () => compileSync(`def f(q: [n, d]) -> [n, d] { return clamp(q, -1e400, 1e400) }`),
      CompileError,
    ),
    "<program>:1:46: this number is outside float32's range (±3.4028235e38): the GPU would compute with inf",
  );
});

Deno.test("cli: option names that are also Object.prototype names are plain names", async () => {
  const examples = new URL("../examples/", import.meta.url).pathname;
  const r = await cli(["check", "exact.attn", "--param", "constructor=1"], examples);
  assert.equal(r.code, 1);
  assert.match(r.err, /exact has no parameter constructor/);
  const twice = await cli([
    "check",
    "exact.attn",
    "--param",
    "toString=1",
    "--param",
    "toString=2",
  ]);
  assert.equal(twice.err.split("\n")[0], "attune: --param toString is given twice");
});

Deno.test("check: program text past 32,768 characters is refused before parsing (5,000 defs took 15 s)", async () => {
  const lines = ["def g0(x: [n]) -> [n] { return x + 1.0 }"];
  for (let i = 1; i < 5000; i++) {
    lines.push(`def g${i}(x: [n]) -> [n] { return g${i - 1}(x) * 0.5 }`);
  }
  assert.match(
    await firstLine(() => compileSync(lines.join("\n")), CompileError),
    /^<program>:\d+:\d+: the program is [\d,]+ characters long, over the 32,768 Attune reads$/,
  );
});

Deno.test("check: % 0 and // 0 with a constant zero are refused (the backends disagreed on them)", async () => {
  for (const op of ["%", "//"]) {
    assert.match(
      await firstLine(
        () => compileSync(`def f(k: [n, d]) -> [n] { return int(sum(k, axis=1) * 7) ${op} 0 }`),
        CompileError,
      ),
      new RegExp(
        `^<program>:1:\\d+: ${
          op.replace("/", "\\/")
        } by zero: the (remainder|quotient) has no value$`,
      ),
    );
  }
});
