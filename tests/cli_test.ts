/**
 * Command-line habits: --help and --version on stdout, --flag=value and -o, paths relative to
 * the caller's directory, the explain summary, `check --json` diagnostics for editors, and which
 * backend `run` used. Also the library's input leniency (plain arrays) and its exports.
 */
import assert from "node:assert/strict";
import { callerDir, resolvePath, VERSION } from "../cli.ts";
import { cli } from "./cli_helpers.ts";
import { getDevice } from "../runtime/device.ts";
import {
  AttuneError,
  CompileError,
  compileSync,
  decodeNpy,
  NpyError,
  readNpy,
  type Tensor,
  tensor,
  whichBackend,
  writeNpy,
} from "../mod.ts";

const EXAMPLES = new URL("../examples/", import.meta.url).pathname;

Deno.test("cli: --help and -h print the usage on stdout and exit 0, anywhere in the line", async () => {
  for (const argv of [["--help"], ["-h"], ["help"], ["run", "x.attn", "--help"], ["check", "-h"]]) {
    const r = await cli(argv);
    assert.equal(r.code, 0, argv.join(" "));
    assert.match(r.out, /^attune \d+\.\d+\.\d+: /);
    assert.match(r.out, /attune run FILE\.attn --in NAME=PATH\.npy/);
    assert.equal(r.err, "");
  }
  // No arguments and usage errors: the usage on stderr, exit 2.
  const none = await cli([]);
  assert.equal(none.code, 2);
  assert.equal(none.out, "");
  assert.match(none.err, /usage:/);
  const bad = await cli(["check", "a.attn", "--nope"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /^attune: unknown option --nope/);
  const misplaced = await cli(["check", "a.attn", "--seed=3"]);
  assert.match(misplaced.err, /^attune: --seed goes with run, not check/);
  const two = await cli(["check", "a.attn", "b.attn"]);
  assert.match(two.err, /^attune: check takes one FILE\.attn, got a\.attn b\.attn/);
  const valued = await cli(["explain", "a.attn", "--json=yes"]);
  assert.match(valued.err, /^attune: --json takes no value/);
});

Deno.test("cli: --version prints deno.json's version, which VERSION embeds", async () => {
  const config = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));
  assert.equal(VERSION, config.version, "cli.ts VERSION must equal deno.json's version");
  const r = await cli(["--version"]);
  assert.equal(r.code, 0);
  assert.equal(r.out, `attune ${config.version}`);
});

Deno.test("cli: relative paths are taken from the caller's directory", async () => {
  // As `deno task attune check nystrom.attn` from examples/ (INIT_CWD = examples/).
  const here = await cli(["check", "nystrom.attn"], EXAMPLES);
  assert.equal(here.code, 0, here.err);
  assert.equal(here.out, "nystrom.attn: ok");
  const elsewhere = await cli(["check", "nystrom.attn"], "/tmp");
  assert.equal(elsewhere.code, 1);
  assert.match(elsewhere.err, /^error: .*nystrom\.attn/);
  // Without INIT_CWD access (the test has no --allow-env) the caller is the working directory.
  assert.equal(callerDir(), Deno.cwd());
  assert.equal(resolvePath("/a/b", "c.attn"), "/a/b/c.attn");
  assert.equal(resolvePath("/a/b/", "../c.attn"), "/a/b/../c.attn");
  assert.equal(resolvePath("/a/b", "/abs/c.attn"), "/abs/c.attn");
  assert.equal(resolvePath("C:\\work", "c.attn"), "C:\\work\\c.attn");
  assert.equal(resolvePath("/a", "C:\\x\\c.attn"), "C:\\x\\c.attn");
});

Deno.test("cli: run takes --flag=value, -o, relative --in/--out, and says which backend ran", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp" });
  try {
    const t = (shape: number[], f: (i: number) => number): Tensor =>
      tensor(shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => f(i)));
    const q = t([2, 5, 3], (i) => Math.sin(i)), k = t([2, 5, 3], (i) => Math.cos(i));
    const v = t([2, 5, 4], (i) => (i % 7) / 7);
    const f8 = { dtype: "<f8" } as const;
    await writeNpy(`${dir}/q.npy`, q, f8);
    await writeNpy(`${dir}/k.npy`, k, f8);
    await writeNpy(`${dir}/v.npy`, v, f8);
    const exact = `${EXAMPLES}exact.attn`;
    const r = await cli(
      [
        "run",
        exact,
        "--in=q=q.npy",
        "--in",
        "k=k.npy",
        "--in=v=v.npy",
        "--backend=interp",
        "--dtype=f8",
        "-o",
        "y.npy",
      ],
      dir,
    );
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "y.npy: [2, 5, 4] f8 (interp, float64 interpreter)");
    const want = await compileSync(Deno.readTextFileSync(exact)).run({ q, k, v }, {
      backend: "interp",
    });
    assert.deepEqual((await readNpy(`${dir}/y.npy`)).data, want.data);
    // --out=FILE; the default backend is auto: the GPU when there is an adapter.
    const auto = await cli(
      ["run", exact, "--in", "q=q.npy", "--in", "k=k.npy", "--in", "v=v.npy", "--out=z.npy"],
      dir,
    );
    assert.equal(auto.code, 0, auto.err);
    const backend = await whichBackend("auto");
    assert.match(
      auto.out,
      backend === "gpu"
        ? /^z\.npy: \[2, 5, 4\] f4 \(gpu, .+\)$/
        : /^z\.npy: \[2, 5, 4\] f4 \(interp,/,
    );
    const z = await readNpy(`${dir}/z.npy`);
    z.data.forEach((x, i) => assert.ok(Math.abs(x - want.data[i]) < 1e-5, `element ${i}`));
    // run without an output is a usage error that names -o.
    const noOut = await cli(["run", exact, "--in", "q=q.npy"], dir);
    assert.equal(noOut.code, 2);
    assert.match(noOut.err, /^attune: run needs -o PATH\.npy/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: explain prints a summary first, the IR only with --ir", async () => {
  const r = await cli(["explain", "nystrom.attn", "--param=landmarks=32"], EXAMPLES);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.split("\n");
  assert.match(lines[0], /^nystrom\(q: \[n, d\], .*\) -> \[n, e\]$/);
  assert.match(lines[1], /^params: landmarks = 32, /);
  assert.match(lines[2], /^size symbols: n, d, e$/);
  assert.match(lines[3], /^dispatches: \d+ \(kernels below\)$/);
  assert.match(
    lines[4],
    /^buffers: \d+, [\d.]+ (KiB|MiB) per \(batch, head\) slice at n = 1024, d = 64, e = 64/,
  );
  assert.match(lines[5], /^optimizer: .*attention fusion.* changed the IR \(--ir shows it\)$/);
  assert.match(r.out, /^GPU plan \(kernel, threads per \(batch, head\) slice\):$/m);
  assert.doesNotMatch(r.out, /^%\d+/m, "no IR without --ir");
  const ir = await cli(["explain", "nystrom.attn", "--ir", "--size", "n=4096"], EXAMPLES);
  assert.equal(ir.code, 0, ir.err);
  assert.match(ir.out, /slice at n = 4096, d = 64, e = 64/);
  assert.match(ir.out, /^%\d+: \[n, d\] = input\{name="q"\}\(\)/m);
  assert.match(ir.out, /^after attention fusion:$/m);
  assert.ok(ir.out.indexOf("dispatches:") < ir.out.indexOf("%0"), "summary before the IR");
  // --wgsl and --json still work; the JSON carries the estimate.
  const wgsl = await cli(["explain", "exact.attn", "--wgsl"], EXAMPLES);
  assert.match(wgsl.out, /@compute/);
  // `deno task attune -- explain ...` passes its "--" on: a leading one is dropped.
  const task = await cli(["--", "explain", "exact.attn"], EXAMPLES);
  assert.equal(task.code, 0, task.err);
  assert.match(task.out, /^dispatches: 1 /m);
  const json = JSON.parse((await cli(["explain", "exact.attn", "--json"], EXAMPLES)).out);
  assert.equal(json.dispatches, 1);
  assert.deepEqual(json.typicalSizes, { n: 1024, d: 64, m: 1024, e: 64 });
  assert.ok(json.bufferBytesPerSlice > 0);
  assert.ok(Array.isArray(json.ir) && Array.isArray(json.kernels));
});

Deno.test("cli: check --json gives editor diagnostics on stdout", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp" });
  try {
    await Deno.writeTextFile(`${dir}/bad.attn`, "def f(q: [n, d]) {\n  return qq + 1\n}\n");
    const bad = await cli(["check", "bad.attn", "--json"], dir);
    assert.equal(bad.code, 1);
    assert.equal(bad.err, "");
    assert.deepEqual(JSON.parse(bad.out), {
      ok: false,
      diagnostics: [{
        file: "bad.attn",
        line: 2,
        col: 10,
        endLine: 2,
        endCol: 12,
        message: "unknown name qq",
        hint: "did you mean q?",
      }],
    });
    const good = await cli(["check", "--json", "exact.attn"], EXAMPLES);
    assert.equal(good.code, 0);
    assert.deepEqual(JSON.parse(good.out), { ok: true, diagnostics: [] });
    const missing = await cli(["check", "none.attn", "--json"], dir);
    assert.equal(missing.code, 1);
    const d = JSON.parse(missing.out);
    assert.equal(d.ok, false);
    assert.equal(d.diagnostics[0].file, "none.attn");
    assert.equal(d.diagnostics[0].line, 1);
    assert.match(d.diagnostics[0].message, /No such file|not found/i);
    // A bad parameter is located too (at the parameter's declaration or use).
    const param = await cli(
      ["check", "nystrom.attn", "--json", "--param", "landmarks=0"],
      EXAMPLES,
    );
    assert.equal(param.code, 1);
    const p = JSON.parse(param.out).diagnostics[0];
    assert.equal(p.file, "nystrom.attn");
    assert.ok(p.line >= 1 && p.endLine >= p.line && typeof p.message === "string");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("API: plain arrays are accepted where a Tensor is expected", async () => {
  const p = compileSync(
    "def f(q: [n, d], k: [n, d]) -> [n, n] { return softmax(q @ k^T, axis=1) }",
  );
  const qd = [1, 2, 3, 4, 5, 6], kd = [0.5, -1, 2, 0, 1, 1];
  const want = await p.run({ q: tensor([3, 2], qd), k: tensor([3, 2], kd) }, { backend: "interp" });
  const plain = await p.run({ q: { shape: [3, 2], data: qd }, k: { shape: [3, 2], data: kd } }, {
    backend: "interp",
  });
  assert.deepEqual(plain, want);
  const nested = await p.run({ q: [[1, 2], [3, 4], [5, 6]], k: [[0.5, -1], [2, 0], [1, 1]] }, {
    backend: "interp",
  });
  assert.deepEqual(nested, want);
  const f32 = await p.run({
    q: { shape: [3, 2], data: Float32Array.from(qd) },
    k: { shape: [3, 2], data: [[0.5, -1], [2, 0], [1, 1]] },
  }, { backend: "interp" });
  assert.deepEqual(f32, want);
  // Anything else is a CompileError that names the input.
  const rejects = async (inputs: Record<string, unknown>, message: RegExp) => {
    const e = await p.run(inputs as never, { backend: "interp" }).then(() => undefined, (e) => e);
    assert.ok(e instanceof CompileError, `expected a CompileError, got ${e}`);
    assert.match(e.message, message);
    return e;
  };
  await rejects(
    { q: [[1, 2], [3]], k: [[1, 2]] },
    /input q is a ragged nested array: element \[1\] has 1 entries but the first one at that depth has 2/,
  );
  const e = await rejects({ q: "abc", k: [[1, 2]] }, /input q is not a tensor: .*the string "abc"/);
  assert.match(e.hint!, /shape: \[\.\.\.\], data:/);
  await rejects({ q: { shape: [3, 2], data: "xyz" }, k: [[1, 2]] }, /input q has data that is/);
  await rejects({ q: [[1, "a"]], k: [[1, 2]] }, /input q has the string "a" at \[0, 1\]/);
  await rejects({ q: { shape: [2, -1], data: [] }, k: [[1, 2]] }, /input q has shape/);
  await rejects(
    { q: { shape: [3, 2], data: [1, 2] }, k: [[1, 2], [3, 4], [5, 6]] },
    /input q has 2 values for shape \[3, 2\]/,
  );
});

Deno.test("API: NpyError and whichBackend are exported; unknown backends are refused", async () => {
  assert.throws(() => decodeNpy(new Uint8Array([1, 2, 3])), NpyError);
  const auto = await whichBackend("auto");
  assert.ok(["gpu", "interp"].includes(auto));
  assert.equal(await whichBackend(), auto);
  assert.equal(await whichBackend("interp"), "interp");
  const p = compileSync("def f(x: [n]) -> [n] { return x * 2 }");
  const ran: [string, string | undefined][] = [];
  const onBackend = (b: "interp" | "gpu", adapter?: string) => ran.push([b, adapter]);
  await assert.rejects(
    () => p.run({ x: [1, 2] }, { backend: "cpu" as never, onBackend }),
    (e) =>
      e instanceof AttuneError && /unknown backend "cpu": use interp, gpu or auto/.test(e.message),
  );
  assert.deepEqual(ran, []);
  assert.deepEqual([...(await p.run({ x: [1, 2] }, { backend: "interp", onBackend })).data], [
    2,
    4,
  ]);
  assert.deepEqual(ran, [["interp", undefined]]);
});

Deno.test("API: run's default backend is auto, like attune run's; onBackend says which ran", async () => {
  const auto = await whichBackend("auto");
  const adapter = auto === "gpu" ? (await getDevice()).facts.description : undefined;
  const p = compileSync("def f(x: [n]) -> [n] { return x * 2 }");
  const ran: [string, string | undefined][] = [];
  const y = await p.run({ x: [1, 2] }, { onBackend: (b, a) => ran.push([b, a]) });
  assert.deepEqual([...y.data], [2, 4]);
  assert.deepEqual(ran, [[auto, adapter]]);
  // A run told "auto" goes the same way as one told nothing.
  await p.run({ x: [1, 2] }, { backend: "auto", onBackend: (b, a) => ran.push([b, a]) });
  assert.deepEqual(ran, [[auto, adapter], [auto, adapter]]);
});

Deno.test("explain: each fused pass with its form, score and tile classes; each unfused softmax with why", async () => {
  const window = await cli(["explain", "examples/sliding_window.attn", "--size", "n=256"]);
  assert.equal(window.code, 0, window.err);
  const lines = window.out.split("\n");
  const at = lines.indexOf("attention:");
  assert.ok(at > 0 && at < lines.findIndex((l) => l.startsWith("GPU plan")), window.out);
  assert.equal(
    lines[at + 1],
    "  %24 attention: softmax(score) @ v, one streaming pass (online softmax)",
  );
  // n = 256: 32 query tiles of 8 rows × 4 key blocks of 64, the window ±32 touches 1 or 2 blocks.
  assert.match(lines[at + 3], /^ {4}tiles: \d+ empty \(skipped\), \d+ partial, 0 full/);
  const [, empty, partial] = lines[at + 3].match(/(\d+) empty.*?(\d+) partial/)!.map(Number);
  assert.equal(empty + partial, 32 * 4);
  assert.ok(empty > 0 && partial > 0, lines[at + 3]);
  const nystrom = await cli(["explain", "examples/nystrom.attn"]);
  assert.match(
    nystrom.out,
    /%\d+ softmax \(a\) did not fuse: a small matrix \(rows and keys typically < \d+\): it stays in its region/,
  );
  const dir = await Deno.makeTempDir({ prefix: "attune_explain_" });
  try {
    await Deno.writeTextFile(
      `${dir}/two.attn`,
      `def two(q: [n, d], k: [n, d], v: [n, e], q2: [n, d], k2: [n, d]) -> [n, e] {
  return softmax(q @ k^T + q2 @ k2^T, axis=1) @ v
}`,
    );
    const two = await cli(["explain", `${dir}/two.attn`]);
    assert.match(
      two.out,
      /softmax did not fuse: it holds two dot products \(%\d+·%\d+ and %\d+·%\d+\); one pass streams one q·k/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
