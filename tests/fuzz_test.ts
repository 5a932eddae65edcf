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
  type Program,
  randomTensor,
  type Tensor,
} from "../mod.ts";
import { getDevice } from "../runtime/device.ts";
import { lineCol } from "../compiler/errors.ts";
import type { Node } from "../compiler/ir/types.ts";

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

/** Sizes used to run compiled programs: n = 5, d = 4, other symbols small. */
const SIZES: Record<string, number> = { n: 5, d: 4, m: 5, e: 4 };

function inputsFor(program: Program): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  program.graph.inputs.forEach((decl, i) => {
    if (decl.default !== undefined) return;
    const shape = decl.type.shape.map((d) => (typeof d === "number" ? d : SIZES[d] ?? 3));
    const t = randomTensor(shape, { seed: 100 + i });
    if (decl.type.dtype !== "float") {
      for (let j = 0; j < t.data.length; j++) {
        t.data[j] = decl.type.dtype === "bool" ? +(t.data[j] > 0) : Math.floor(2 * t.data[j]);
      }
    }
    out[decl.name] = { ...t, dtype: decl.type.dtype };
  });
  return out;
}

/**
 * A rough cost of interpreting the graph on the small inputs (elements produced, loops
 * multiplied out); mutants like `repeat 6666` or `full([35353535], 1)` are not run, only
 * compiled — they are legitimate programs, just slow.
 */
function cost(nodes: Node[]): number {
  let c = 0;
  for (const n of nodes) {
    let size = 1;
    for (const d of n.type.shape) size *= typeof d === "number" ? d : SIZES[d] ?? 3;
    c += size;
    if (n.op.op === "matmul" || n.op.op === "dot") c += size * 64;
    if (n.op.op === "loop") c += n.op.count * cost(n.op.body);
  }
  return c;
}

const MAX_COST = 2e6;

/** Run on small random inputs: a tensor of a consistent shape, or a clean CompileError. */
async function runOrFailCleanly(program: Program, source: string): Promise<boolean> {
  let y: Tensor;
  try {
    y = await program.run(inputsFor(program), { seed: 3 });
  } catch (e) {
    assertGoodCompileError(e, source, "run");
    return false;
  }
  assert.ok(Array.isArray(y.shape) && y.data instanceof Float64Array, "run gave no tensor");
  assert.equal(y.data.length, y.shape.reduce((a, b) => a * b, 1), "data length ≠ shape size");
  return true;
}

// ---------------------------------------------------------------------------------------------
// (a) Random token soup.

const TOKENS = [
  "def",
  "(",
  ")",
  "[",
  "]",
  "{",
  "}",
  ":",
  "=",
  ",",
  "@",
  "^T",
  "^",
  "+",
  "-",
  "*",
  "/",
  "//",
  "%",
  ".",
  "<=",
  "==",
  "and",
  "not",
  "#",
  "return",
  "repeat",
  "q",
  "k",
  "v",
  "n",
  "d",
  "i",
  "j",
  "x",
  "f",
  "1",
  "2.5",
  "0",
  "-1e9",
  "inf",
  "sum",
  "softmax",
  "exp",
  "where",
  "axis",
  "ones",
  "int",
  "->",
  ";",
  "\n",
  " ",
  " ",
];

/** Skeletons that get the soup past the first few tokens more often. */
const PREFIXES = ["", "def f(", "def f(q: [n, d]) {\n  ", "def f(q: [n, d], k: [n, d], m = 2) {\n"];

const soup = fc.tuple(
  fc.constantFrom(...PREFIXES),
  fc.array(
    fc.oneof(
      { weight: 12, arbitrary: fc.constantFrom(...TOKENS) },
      { weight: 1, arbitrary: fc.string({ maxLength: 3 }) },
    ),
    { maxLength: 40 },
  ),
  fc.boolean(),
).map(([pre, toks, close]) => pre + toks.join(" ") + (close ? "\n}\n" : ""));

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

/**
 * Random programs built from the grammar (names, builtins with random arguments, index notation,
 * reductions over index variables, repeat): most parse, so the checker and the interpreter get
 * exercised too. Those that compile are run on small inputs.
 */
const ATOMS = [
  "q",
  "k",
  "v",
  "n",
  "d",
  "i",
  "j",
  "t",
  "x",
  "J",
  "1",
  "2",
  "0",
  "2.5",
  "-1e9",
  "inf",
];
const FUNCS = [
  "exp",
  "sqrt",
  "abs",
  "int",
  "float",
  "where",
  "clamp",
  "sum",
  "max",
  "mean",
  "norm",
  "softmax",
  "normalize",
  "segment_mean",
  "scatter_add",
  "bits",
  "topk",
  "eye",
  "zeros",
  "full",
  "randn",
  "randint",
  "gumbel",
  "g",
];
const BINOPS = ["+", "-", "*", "/", "//", "%", "^", "@", ".", "<", "==", "and"];

const { expr } = fc.letrec<{ expr: string }>((tie) => ({
  expr: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    { weight: 6, arbitrary: fc.constantFrom(...ATOMS) },
    {
      weight: 4,
      arbitrary: fc.tuple(tie("expr"), fc.constantFrom(...BINOPS), tie("expr")).map((
        [a, o, b],
      ) => `(${a} ${o} ${b})`),
    },
    {
      weight: 4,
      arbitrary: fc.tuple(
        fc.constantFrom(...FUNCS),
        fc.array(tie("expr"), { minLength: 1, maxLength: 3 }),
        fc.option(fc.constantFrom("axis=0", "axis=1", "axis=-1", "keepdims=true", "stream=1")),
      ).map(([f, args, kw]) => `${f}(${[...args, ...(kw ? [kw] : [])].join(", ")})`),
    },
    {
      weight: 2,
      arbitrary: fc.tuple(
        fc.constantFrom("q", "k", "v", "x", "J", "mask"),
        fc.array(tie("expr"), { minLength: 1, maxLength: 2 }),
      ).map(([a, ix]) => `${a}[${ix.join(", ")}]`),
    },
    { weight: 1, arbitrary: tie("expr").map((a) => `${a}^T`) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom("sum", "max", "mean"), tie("expr"))
        .map(([f, b]) => `${f}[t](q[t, 0] * ${b})`),
    },
    {
      weight: 1,
      arbitrary: fc.array(fc.constantFrom("n", "d", "2", "3"), { minLength: 1, maxLength: 3 })
        .map((xs) => `[${xs.join(", ")}]`),
    },
  ),
}));

const statement = fc.oneof(
  fc.tuple(fc.constantFrom("x", "y", "J"), expr).map(([name, e]) => `  ${name} = ${e}`),
  fc.tuple(
    fc.constantFrom("s[i, j] = q[i, 0] * k[j, 1] + ", "y[i, c] = q[i, c] * ", "x[J] = "),
    expr,
  ).map(([l, e]) => `  ${l}${e}`),
  fc.tuple(fc.constantFrom("2", "3", "p", "0"), expr).map(([c, e]) =>
    `  repeat ${c} {\n    x = ${e}\n  }`
  ),
);

const randomProgram = fc.tuple(fc.array(statement, { maxLength: 4 }), expr).map(([ss, ret]) =>
  [
    "def g(a: [m, c], b = 2) -> [m, c] {",
    "  return a * b",
    "}",
    "def f(q: [n, d], k: [n, d], v: [n, d], mask: [n] = ones, p = 3) {",
    "  x = q",
    "  J = topk(sum(q, axis=1), 2)",
    ...ss,
    `  return ${ret}`,
    "}",
  ].join("\n")
);

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

const EXAMPLES = [...Deno.readDirSync(new URL("../examples/", import.meta.url))]
  .filter((e) => e.name.endsWith(".attn"))
  .map((e) => e.name)
  .sort()
  .map((name) => Deno.readTextFileSync(new URL(`../examples/${name}`, import.meta.url)));

/** Tokens of a source: words, numbers, operators, single characters; whitespace kept. */
function tokenize(s: string): string[] {
  return s.match(/\s+|[A-Za-z_]\w*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\^T|->|\/\/|[<>=!]=|\S/g) ?? [];
}

type Mutation =
  | { kind: "deleteToken" | "duplicateToken"; at: number }
  | { kind: "swapTokens"; at: number; other: number }
  | { kind: "insertToken"; at: number; token: string }
  | { kind: "deleteChars" | "duplicateChars"; at: number; len: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("deleteToken" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("duplicateToken" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("swapTokens" as const), at: fc.nat(), other: fc.nat() }),
  fc.record({
    kind: fc.constant("insertToken" as const),
    at: fc.nat(),
    token: fc.constantFrom(...TOKENS),
  }),
  fc.record({
    kind: fc.constantFrom("deleteChars" as const, "duplicateChars" as const),
    at: fc.nat(),
    len: fc.integer({ min: 1, max: 12 }),
  }),
);

function mutate(source: string, m: Mutation): string {
  if (m.kind === "deleteChars" || m.kind === "duplicateChars") {
    const at = m.at % (source.length + 1);
    const piece = source.slice(at, at + m.len);
    return source.slice(0, at) + (m.kind === "duplicateChars" ? piece + piece : "") +
      source.slice(at + m.len);
  }
  const toks = tokenize(source);
  const at = m.at % toks.length;
  switch (m.kind) {
    case "deleteToken":
      toks.splice(at, 1);
      break;
    case "duplicateToken":
      toks.splice(at, 0, toks[at]);
      break;
    case "swapTokens": {
      const o = m.other % toks.length;
      [toks[at], toks[o]] = [toks[o], toks[at]];
      break;
    }
    case "insertToken":
      toks.splice(at, 0, " ", m.token, " ");
      break;
  }
  return toks.join("");
}

const mutant = fc.tuple(
  fc.integer({ min: 0, max: EXAMPLES.length - 1 }),
  fc.array(mutation, { minLength: 1, maxLength: 3 }),
).map(([which, ms]) => ms.reduce(mutate, EXAMPLES[which]));

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
      await program.run(inputsFor(program), { seed: 1 });
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
          want = await program.run(x, { seed: 3 });
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
