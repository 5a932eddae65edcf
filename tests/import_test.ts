/**
 * The library is importable from anywhere: a user script in a temporary folder outside the repo,
 * run with `--no-config` (so none of the repo's deno.json applies) and no permission but reading
 * its one program file, imports mod.ts (a) by absolute file URL and (b) by http URL from a local
 * file server, compiles examples/nystrom.attn and runs it on the interpreter. Its results must
 * equal, bit for bit, those of the same cases run in this process, on a few drawn cases.
 *
 * Needs `--allow-run` for the `deno` subprocess (Deno.execPath(), or `deno` on PATH when only
 * `--allow-run=deno` is granted), `--allow-net=127.0.0.1` for the file server, `--allow-write`
 * to the temporary folder and `--allow-read` of the repo (the `test` task grants these).
 */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { compile, randomTensor, type Tensor } from "../mod.ts";
import { denoCommand } from "./cli_helpers.ts";

const ROOT = new URL("../", import.meta.url);
const PROGRAM = new URL("examples/nystrom.attn", ROOT);

/** One run: compile-time parameters and each input's shape and seed. */
interface Case {
  params: Record<string, number>;
  inputs: [name: string, shape: number[], seed: number][];
}

/** The same code runs in the subprocess (as text) and here. */
async function runCases(
  lib: { compile: typeof compile; randomTensor: typeof randomTensor },
  source: string,
  cases: Case[],
): Promise<string[]> {
  const out: string[] = [];
  for (const c of cases) {
    const program = await lib.compile(source, { params: c.params });
    const inputs: Record<string, Tensor> = {};
    for (const [name, shape, seed] of c.inputs) inputs[name] = lib.randomTensor(shape, { seed });
    const y = await program.run(inputs, { backend: "interp" });
    out.push(JSON.stringify({ shape: y.shape, data: Array.from(y.data, String) }));
  }
  return out;
}

function userScript(modUrl: string): string {
  return `import { compile, randomTensor } from ${JSON.stringify(modUrl)};
const [file, cases] = Deno.args;
const source = await Deno.readTextFile(file);
const runCases = ${runCases.toString()};
const results = await runCases({ compile, randomTensor }, source, JSON.parse(cases));
console.log(JSON.stringify({ deno: Deno.version.deno, results }));
`;
}

const CASE: fc.Arbitrary<Case> = fc.record({
  batch: fc.constantFrom<number[]>([], [2], [2, 1]),
  landmarks: fc.integer({ min: 1, max: 6 }),
  extra: fc.integer({ min: 0, max: 20 }),
  d: fc.integer({ min: 1, max: 6 }),
  e: fc.integer({ min: 1, max: 5 }),
  conv: fc.constantFrom(0, 1, 3),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
}).map(({ batch, landmarks, extra, d, e, conv, seed }): Case => {
  const n = landmarks + extra;
  const inputs: Case["inputs"] = [
    ["q", [...batch, n, d], seed],
    ["k", [...batch, n, d], seed + 1],
    ["v", [...batch, n, e], seed + 2],
  ];
  const params: Record<string, number> = { landmarks };
  if (conv > 0) {
    params.conv = conv;
    inputs.push(["convw", [...batch, conv], seed + 3]);
  }
  return { params, inputs };
});

async function runUserScript(
  dir: string,
  modUrl: string,
  cases: Case[],
  allowImport?: string,
): Promise<string[]> {
  const script = `${dir}/script.ts`;
  await Deno.writeTextFile(script, userScript(modUrl));
  const program = PROGRAM.pathname;
  const args = ["run", "--no-config", "--no-prompt", `--allow-read=${program}`];
  // --reload for the served prefix: a port used by an earlier run would otherwise be answered
  // from Deno's module cache, and the server would see no request.
  if (allowImport) args.push(`--allow-import=${allowImport}`, `--reload=http://${allowImport}/`);
  const out = await new Deno.Command(denoCommand(), {
    args: [...args, script, program, JSON.stringify(cases)],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const err = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `user script importing ${modUrl} failed:\n${err}`);
  const { deno, results } = JSON.parse(text.trim().split("\n").at(-1)!);
  assert.equal(deno, Deno.version.deno, "the subprocess runs the same Deno");
  return results;
}

Deno.test("importable from anywhere: by file URL and over http, no config, no permissions", async () => {
  const source = await Deno.readTextFile(PROGRAM);
  const cases = fc.sample(CASE, { numRuns: 4, seed: 0x1a9075 });
  const want = await runCases({ compile, randomTensor }, source, cases);
  const dir = await Deno.makeTempDir({ prefix: "attune_import_" });
  const served: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    served.push(path);
    if (path.split("/").includes("..")) return new Response("forbidden", { status: 403 });
    try {
      const body = await Deno.readFile(new URL(`.${path}`, ROOT));
      const type = path.endsWith(".ts") ? "application/typescript" : "text/plain";
      return new Response(body, { headers: { "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  try {
    const byFile = await runUserScript(dir, new URL("mod.ts", ROOT).href, cases);
    assert.deepEqual(byFile, want, "file URL import: results differ from in-process");
    const host = `127.0.0.1:${server.addr.port}`;
    const byHttp = await runUserScript(dir, `http://${host}/mod.ts`, cases, host);
    assert.deepEqual(byHttp, want, "http import: results differ from in-process");
    assert.ok(
      served.includes("/mod.ts") && served.includes("/compiler/frontend/grammar.ts"),
      `${served}`,
    );
    assert.ok(!served.some((p) => p.endsWith(".json")), `no config fetched: ${served}`);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Run `deno run --no-config --no-prompt ARGS` in `dir`; the exit code and output. */
async function denoRun(dir: string, args: string[]) {
  const out = await new Deno.Command(denoCommand(), {
    args: ["run", "--no-config", "--no-prompt", ...args],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  return { code: out.code, text };
}

Deno.test("a user's script outside the repo property-tests nystrom.attn with testing.ts, reading only the program", async () => {
  const dir = await Deno.makeTempDir({ prefix: "attune_user_" });
  try {
    // Nyström with all keys valid is exactly invariant to translating every key (a per-row
    // shift of its three softmaxes' scores), so the toolkit's shift property must hold.
    await Deno.writeTextFile(
      `${dir}/check_nystrom.ts`,
      `import { compile } from ${JSON.stringify(new URL("mod.ts", ROOT).href)};
import { assertProperty, attentionInputs, shiftInvarianceProperty } from ${
        JSON.stringify(new URL("testing.ts", ROOT).href)
      };
const nystrom = await compile(await Deno.readTextFile(Deno.args[0]), { params: { landmarks: 3 } });
const inputs = attentionInputs({ maxN: 40, masks: ["none"] }).filter((x) => x.q.shape.at(-2)! >= 3);
await assertProperty(shiftInvarianceProperty(nystrom, { inputs }), { numRuns: 20, seed: 7 });
console.log("property ok");
`,
    );
    const program = PROGRAM.pathname;
    const r = await denoRun(dir, [`--allow-read=${program}`, "check_nystrom.ts", program]);
    assert.equal(r.code, 0, r.text);
    assert.match(r.text, /property ok/);
    // The example a user copies: no permissions at all, run from their own folder.
    const example = await denoRun(dir, [new URL("examples/my_variant.ts", ROOT).pathname]);
    assert.equal(example.code, 0, example.text);
    assert.match(example.text, /relative error/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
