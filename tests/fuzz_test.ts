/**
 * Robustness fuzzing of the front end and the interpreter. Whatever the source text, `compileSync`
 * must either return a program or throw a `CompileError` with a valid span and a
 * `file:line:col: what` message; a compiled program run on small inputs must either give a tensor
 * or throw a `CompileError`. Any other exception (TypeError, RangeError, internal Error) is a bug.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  AttuneError,
  CompileError,
  compileSync,
  DeviceError,
  LimitError,
  type Program,
  type Tensor,
} from "../mod.ts";
import { getDevice } from "../runtime/device.ts";
import { lineCol } from "../compiler/errors.ts";
import {
  cost,
  EXAMPLES,
  inputsFor,
  jobAt,
  MAX_COST,
  mutant,
  randomProgram,
  soup,
} from "./mutate.ts";

const FILE = "fuzz.attn";
/** A fixed seed keeps CI reproducible; change it locally to explore other inputs. */
const SEED = 0x5eed;

/** Check one thrown value: a CompileError with a span inside `source` and a located message. */
function assertGoodCompileError(e: unknown, source: string, phase: string): void {
  if (!(e instanceof CompileError)) {
    const what = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e);
    assert.fail(`${phase} threw something other than a CompileError: ${what}`);
  }
  const { start, end } = e.span;
  assert.ok(
    Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end &&
      end <= e.source.length,
    `${phase}: bad span ${JSON.stringify(e.span)} for a source of length ${e.source.length}`,
  );
  assert.equal(e.source, source, `${phase}: the error carries a different source text`);
  const m = /^(.+):(\d+):(\d+): \S/.exec(e.message);
  assert.ok(m, `${phase}: message does not start with file:line:col: — ${e.message}`);
  assert.equal(m[1], FILE);
  const at = lineCol(source, start);
  assert.equal(`${m[2]}:${m[3]}`, `${at.line}:${at.col}`, `${phase}: line:col ≠ span start`);
  assert.ok(!e.message.includes("\n"), `${phase}: message is not one line: ${e.message}`);
  // format() must not throw either, and must show a caret.
  assert.match(e.format(), /\^/);
}

/** Compile, returning the program or undefined (after checking the error). */
function tryCompile(source: string): Program | undefined {
  try {
    return compileSync(source, { file: FILE });
  } catch (e) {
    assertGoodCompileError(e, source, "compileSync");
    return undefined;
  }
}

/** Run on small random inputs: a tensor of a consistent shape, or a clean CompileError. */
async function runOrFailCleanly(program: Program, source: string): Promise<boolean> {
  let ys: Tensor[];
  try {
    ys = await program.runAll(inputsFor(program), { seed: 3, backend: "interp" });
  } catch (e) {
    assertGoodCompileError(e, source, "run");
    return false;
  }
  for (const y of ys) {
    assert.ok(Array.isArray(y.shape) && y.data instanceof Float64Array, "run gave no tensor");
    assert.equal(y.data.length, y.shape.reduce((a, b) => a * b, 1), "data length ≠ shape size");
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// (a) Random token soup.

Deno.test("fuzz: token soup gives a program or a well-formed CompileError", () => {
  fc.assert(
    fc.property(soup, (source) => {
      tryCompile(source);
    }),
    { numRuns: 300, seed: SEED },
  );
});

// ---------------------------------------------------------------------------------------------
// (a') Random programs shaped by the grammar.

Deno.test("fuzz: random grammar-shaped programs compile or fail cleanly, and run or fail cleanly", async () => {
  await fc.assert(
    fc.asyncProperty(randomProgram, async (source) => {
      const program = tryCompile(source);
      if (!program || cost(program.graph.nodes) > MAX_COST) return;
      await runOrFailCleanly(program, source);
    }),
    { numRuns: 300, seed: SEED + 2 },
  );
});

// ---------------------------------------------------------------------------------------------
// (b) Mutations of the example programs.

Deno.test("fuzz: mutated examples compile or fail cleanly, and run or fail cleanly", async () => {
  let compiled = 0, ran = 0;
  await fc.assert(
    fc.asyncProperty(mutant, async (source) => {
      const program = tryCompile(source);
      if (!program) return;
      compiled++;
      if (cost(program.graph.nodes) > MAX_COST) return;
      if (await runOrFailCleanly(program, source)) ran++;
    }),
    { numRuns: 200, seed: SEED + 1 },
  );
  // The mutations should leave a fair share of programs valid, or (b) tests little.
  assert.ok(compiled >= 20, `only ${compiled} of 200 mutants compiled`);
  assert.ok(ran >= 10, `only ${ran} mutants ran`);
});

Deno.test("fuzz: every example compiles unmutated and runs on n = 5, d = 4", async () => {
  for (const source of EXAMPLES) {
    const program = tryCompile(source);
    assert.ok(program, source.split("\n")[0]);
    try {
      await program.runAll(inputsFor(program), { seed: 1, backend: "interp" });
    } catch (e) {
      assertGoodCompileError(e, source, "run");
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Deep nesting: the parser and checker recurse; a deep but finite expression must not overflow
// the stack into a RangeError.

Deno.test("fuzz: deeply nested expressions compile or give a CompileError, never a RangeError", () => {
  const wrap = (body: string) => `def f(q: [n, d]) {\n  return ${body}\n}\n`;
  const cases = {
    "200 nested parentheses": wrap("(".repeat(200) + "q" + ")".repeat(200)),
    "100 nested calls": wrap("exp(".repeat(100) + "q" + ")".repeat(100)),
    "1000 unary minuses": wrap("-".repeat(1000) + "q"),
    "2000 chained additions": wrap("q" + " + q".repeat(2000)),
  };
  const failures: string[] = [];
  for (const [name, source] of Object.entries(cases)) {
    try {
      tryCompile(source);
    } catch (e) {
      failures.push(`${name}: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
    }
  }
  assert.deepEqual(failures, []);
});

// ---------------------------------------------------------------------------------------------
// (b') A share of the volume tool's programs (bench/fuzz_input.ts runs 10⁵ in a child process):
// the generators above, the generated attention programs of tests/programs.ts and the hostile
// programs of tests/mutate.ts (huge and zero parameters, deep nesting, long straight-line
// programs, chains of defs, big repeats, duplicate names, literals past float32, odd dims),
// through compile and plan only, in process. The hostile generators run at "suite" reach, which
// leaves out what today's known findings would hang or crash on (tests/mutate.ts names each);
// programs longer than MAX_SUITE_CHARS are skipped so the suite stays quick.

const MAX_SUITE_CHARS = 40_000;

Deno.test("fuzz: the volume tool's programs, hostile ones included, compile and plan or fail cleanly", () => {
  const families = new Set<string>();
  let planned = 0;
  // 200 of the tool's mix, then 200 hostile ones.
  for (let i = 0; i < 400; i++) {
    const job = jobAt(SEED, i, i < 200 ? [] : ["hostile"], "suite");
    if (job.source.length > MAX_SUITE_CHARS) continue;
    families.add(job.family);
    const what = `program ${i} of seed ${SEED} (${job.family}${
      job.params ? `, params ${JSON.stringify(job.params)}` : ""
    })`;
    let program: Program;
    try {
      program = compileSync(job.source, { file: FILE, params: job.params });
    } catch (e) {
      assertGoodCompileError(e, job.source, `compileSync of ${what}`);
      continue;
    }
    try {
      program.plan();
      planned++;
    } catch (e) {
      if (e instanceof CompileError) assertGoodCompileError(e, job.source, `plan of ${what}`);
      else assert.ok(e instanceof LimitError, `plan of ${what} threw ${e}\n${job.source}`);
    }
  }
  assert.ok(planned >= 100, `only ${planned} of 400 programs planned`);
  const hostile = [...families].filter((f) => f.startsWith("hostile/"));
  assert.ok(hostile.length >= 15, `only ${hostile.length} hostile generators drawn: ${hostile}`);
});

// ---------------------------------------------------------------------------------------------
// (c) The same random programs on the GPU: compiled kernels must run or fail with an Attune
// error (never an internal one, never a WGSL the device rejects), and agree with the
// interpreter where the interpreter's result is finite.

const gpu = await getDevice().then(() => true, () => false);

Deno.test({
  name: "fuzz: random programs run on the GPU or fail cleanly, and agree with the interpreter",
  ignore: !gpu,
  fn: async () => {
    let compared = 0;
    await fc.assert(
      fc.asyncProperty(randomProgram, async (source) => {
        const program = tryCompile(source);
        if (!program || cost(program.graph.nodes) > MAX_COST) return;
        const x = inputsFor(program);
        let want: Tensor;
        try {
          want = await program.run(x, { seed: 3, backend: "interp" });
        } catch {
          return; // already covered by the interpreter property
        }
        let got: Tensor;
        try {
          got = await program.run(x, { seed: 3, backend: "gpu", poison: true });
        } catch (e) {
          assert.ok(
            e instanceof AttuneError && !(e instanceof DeviceError),
            `gpu failed on a program the interpreter runs: ${e}\n${source}`,
          );
          return;
        }
        assert.deepEqual(got.shape, want.shape, source);
        if (!want.data.every(Number.isFinite) || want.data.some((v) => Math.abs(v) > 1e6)) return;
        compared++;
        for (let i = 0; i < want.data.length; i++) {
          const tol = 1e-3 * (1 + Math.abs(want.data[i]));
          assert.ok(
            Math.abs(got.data[i] - want.data[i]) <= tol,
            `element ${i}: gpu ${got.data[i]} vs interp ${want.data[i]}\n${source}`,
          );
        }
      }),
      { numRuns: 150, seed: SEED + 5 },
    );
    assert.ok(compared > 10, `only ${compared} programs were compared`);
  },
});
