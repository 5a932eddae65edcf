/**
 * Program generators and mutators for robustness fuzzing, shared by the in-suite fuzz tests
 * (tests/fuzz_test.ts) and the volume tool (bench/fuzz_input.ts, bench/fuzz_child.ts).
 *
 * - `soup`: random token soup; `randomProgram`: programs shaped by the grammar; `mutant`:
 *   token- and character-level mutations of the example programs; `specProgram`: the
 *   valid-by-construction attention programs of tests/programs.ts.
 * - Hostile programs that real users hit (`hostile`): number literals replaced by huge, zero or
 *   negative values, `--param`-like parameters out of range, deep nesting, very long
 *   straight-line programs, chains of `def`s (each calling the previous once, or twice), `repeat`
 *   with a huge count, duplicate names, literals out of float32 range, dims of 0 and of 1e11.
 * - `jobAt(seed, index)`: program `index` of a run, a pure function of (seed, index, families)
 *   so the parent of the volume tool and its child agree on it and a finding reproduces from its
 *   seed and index alone.
 *
 * Reads the examples (examples/*.attn) when loaded: needs `--allow-read` of examples/.
 */
import fc from "fast-check";
import { randomTensor } from "../mod.ts";
import type { Node, Program, Tensor } from "../mod.ts";
import { makeInputs, printProgram, SMALL_SIZES, type Spec, specArb } from "./programs.ts";

// ---------------------------------------------------------------------------------------------
// Running generated programs on small inputs

/** Sizes used to run compiled programs: n = 5, d = 4, other symbols small. */
export const SIZES: Record<string, number> = { n: 5, d: 4, m: 5, e: 4 };

/** Inputs for every input without a default: symbols bound by `sizes` (others 3), seeded data. */
export function inputsFor(
  program: Program,
  sizes: Record<string, number> = SIZES,
): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  program.graph.inputs.forEach((decl, i) => {
    if (decl.default !== undefined) return;
    const shape = decl.type.shape.map((d) => (typeof d === "number" ? d : sizes[d] ?? 3));
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
export function cost(nodes: Node[], sizes: Record<string, number> = SIZES): number {
  let c = 0;
  for (const n of nodes) {
    let size = 1;
    for (const d of n.type.shape) size *= typeof d === "number" ? d : sizes[d] ?? 3;
    c += size;
    if (n.op.op === "matmul" || n.op.op === "dot") c += size * 64;
    if (n.op.op === "loop") c += n.op.count * cost(n.op.body, sizes);
  }
  return c;
}

/** Programs costing more than this are compiled and planned but not run. */
export const MAX_COST = 2e6;

// ---------------------------------------------------------------------------------------------
// (a) Random token soup.

export const TOKENS = [
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

/** Random token soup, sometimes after the start of a def. */
export const soup: fc.Arbitrary<string> = fc.tuple(
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

// ---------------------------------------------------------------------------------------------
// (a') Random programs shaped by the grammar.

/**
 * Random programs built from the grammar (names, builtins with random arguments, index notation,
 * reductions over index variables, repeat): most parse, so the checker and the interpreter get
 * exercised too.
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

/** A random grammar-shaped program: entry `f` beside a helper `g`. */
export const randomProgram: fc.Arbitrary<string> = fc.tuple(
  fc.array(statement, { maxLength: 4 }),
  expr,
).map(([ss, ret]) =>
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

// ---------------------------------------------------------------------------------------------
// (b) Mutations of the example programs.

/** The example programs (examples/*.attn), sorted by file name. */
export const EXAMPLES: string[] = [...Deno.readDirSync(new URL("../examples/", import.meta.url))]
  .filter((e) => e.name.endsWith(".attn"))
  .map((e) => e.name)
  .sort()
  .map((name) => Deno.readTextFileSync(new URL(`../examples/${name}`, import.meta.url)));

/** Tokens of a source: words, numbers, operators, single characters; whitespace kept. */
export function tokenize(s: string): string[] {
  return s.match(/\s+|[A-Za-z_]\w*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\^T|->|\/\/|[<>=!]=|\S/g) ?? [];
}

/** One edit of a source text. */
export type Mutation =
  | { kind: "deleteToken" | "duplicateToken"; at: number }
  | { kind: "swapTokens"; at: number; other: number }
  | { kind: "insertToken"; at: number; token: string }
  | { kind: "deleteChars" | "duplicateChars"; at: number; len: number };

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
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

/** Apply one mutation. */
export function mutate(source: string, m: Mutation): string {
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

/** An example with one to three mutations. */
export const mutant: fc.Arbitrary<string> = fc.tuple(
  fc.integer({ min: 0, max: EXAMPLES.length - 1 }),
  fc.array(mutation, { minLength: 1, maxLength: 3 }),
).map(([which, ms]) => ms.reduce(mutate, EXAMPLES[which]));

// ---------------------------------------------------------------------------------------------
// (c) Hostile programs: what real users hit.

/** A program to fuzz, with what compiling and running it needs. */
export interface Job {
  /** The generator that made it, e.g. "mutant" or "hostile/defDouble". */
  family: string;
  source: string;
  /** Compile-time parameters (`--param NAME=VALUE`), when the job sets some. */
  params?: Record<string, number | boolean>;
  /** The generated spec, for spec programs (their inputs come from `makeInputs`). */
  spec?: Spec;
  /** A scale the generator drew (statements, depth, chain length, repeat count), if any. */
  scale?: number;
}

/**
 * Scales of the hostile generators. `volume` reaches the sizes users hit (thousands of
 * statements, chains of 5,000 defs, `repeat 4294967296`); `suite` leaves out the programs that
 * take seconds to compile (thousands of statements or defs), so that a few hundred compile and
 * plan in seconds. Neither leaves out a value because it fails: a program that breaks the
 * compiler is what both are for.
 */
export type Reach = "volume" | "suite";

/** Values that replace a number literal or set a parameter (`--param landmarks=1e308`). */
export const HOSTILE_NUMBERS = [1e308, 1e11, 0, -1, 4294967296, 1e39, -1e39, 1e-46, 2.5] as const;

/** Number literals (as tokens) of a source, by index into `tokenize(source)`. */
function numberTokens(toks: string[]): number[] {
  const at: number[] = [];
  toks.forEach((t, i) => {
    if (/^\d/.test(t)) at.push(i);
  });
  return at;
}

/** Print a number as source text (no `Infinity`: the grammar has no such literal). */
function literal(v: number): string {
  return Number.isInteger(v) && Math.abs(v) < 1e21 ? String(v) : v.toExponential();
}

/**
 * One number literal of an example or a generated program replaced by a hostile value (a
 * negative one keeps its minus sign outside, e.g. `landmarks = -1`).
 */
function hugeLiteral(reach: Reach): fc.Arbitrary<Job> {
  const base = fc.oneof(
    fc.constantFrom(...EXAMPLES),
    specArb({ sizes: SMALL_SIZES }).map(printProgram),
  );
  // 1e11 and 2^32 as a `repeat` count over a small-matrix region found a plan-check failure
  // (a loop too long for a region left its results in one; fixed in compiler/lower/regions.ts).
  const values = HOSTILE_NUMBERS;
  void reach;
  return fc.tuple(base, fc.nat(), fc.constantFrom(...values)).map(([src, k, v]) => {
    const toks = tokenize(src);
    const nums = numberTokens(toks);
    if (nums.length) toks[nums[k % nums.length]] = literal(v);
    return { family: "hostile/literal", source: toks.join(""), scale: v };
  });
}

/** The scalar parameters with a default of the last def of a source (what `--param` sets). */
export function entryParams(source: string): string[] {
  const defs = [...source.matchAll(/def\s+\w+\s*\(([^)]*)\)/g)];
  if (!defs.length) return [];
  return [...defs[defs.length - 1][1].matchAll(/(\w+)\s*=\s*-?\d/g)].map((m) => m[1]);
}

/** An example compiled with one parameter set through `params` to a hostile value. */
function hugeParam(): fc.Arbitrary<Job> {
  const withParams = EXAMPLES.filter((s) => entryParams(s).length > 0);
  // Findings this found: `--param landmarks=1e308` threw `RangeError: Invalid array length` and
  // `--param iters=1e39` hung in plan() (fixed by b7f9789 and a036b48); `--param window=1e11`
  // (sliding_window) reaches the GPU as a WGSL i32 constant that does not compile.
  const values = [...HOSTILE_NUMBERS, NaN, Infinity, -0, 0.5, true];
  return fc.tuple(fc.constantFrom(...withParams), fc.nat(), fc.constantFrom(...values), fc.nat())
    .map(([source, k, v, u]) => {
      const names = entryParams(source);
      // Now and then a name the entry does not have, or two parameters at once.
      const name = u % 11 === 0 ? "no_such_param" : names[k % names.length];
      const params: Record<string, number | boolean> = { [name]: v };
      if (u % 7 === 0) params[names[(k + 1) % names.length]] = 1e11;
      return {
        family: "hostile/param",
        source,
        params,
        scale: typeof v === "number" ? v : undefined,
      };
    });
}

/** Expressions nested `depth` deep, several ways. */
function deepNesting(reach: Reach): fc.Arbitrary<Job> {
  const depths = reach === "volume" ? [50, 200, 1000, 3000, 10000] : [20, 100, 200, 1000, 3000];
  const kinds = [
    "parens",
    "calls",
    "unary",
    "additions",
    "index",
    "where",
    "repeats",
    "lists",
  ] as const;
  return fc.tuple(fc.constantFrom(...kinds), fc.constantFrom(...depths)).map(([kind, depth]) => {
    const wrap = (body: string) => `def f(q: [n, d]) {\n  return ${body}\n}\n`;
    let source: string;
    switch (kind) {
      case "parens":
        source = wrap("(".repeat(depth) + "q" + ")".repeat(depth));
        break;
      case "calls":
        source = wrap("exp(".repeat(depth) + "q" + ")".repeat(depth));
        break;
      case "unary":
        source = wrap("-".repeat(depth) + "q");
        break;
      case "additions":
        source = wrap("q" + " + q".repeat(depth));
        break;
      case "index":
        source = wrap("q[".repeat(depth) + "0" + ", 0]".repeat(depth));
        break;
      case "where":
        source = wrap("where(q > 0, ".repeat(depth) + "q" + ", q)".repeat(depth));
        break;
      case "repeats":
        source = `def f(q: [n, d]) {\n  x = q\n${"repeat 1 {\n".repeat(depth)}x = x + q\n${
          "}\n".repeat(depth)
        }  return x\n}\n`;
        break;
      case "lists":
        source = wrap("full(" + "[".repeat(depth) + "2" + "]".repeat(depth) + ", 1)");
        break;
    }
    return { family: `hostile/nest-${kind}`, source, scale: depth };
  });
}

/** A straight-line program of `count` statements, each using the one or two before. */
function straightLine(reach: Reach): fc.Arbitrary<Job> {
  // 1,000 and 2,300 statements overflowed the stack in planning (`RangeError: Maximum call stack
  // size exceeded`, compiler/region.ts `stored`; fixed by a036b48). 5,000 take about 10 s to
  // compile and 1,000 about 2 s; the suite stops at 300.
  const counts = reach === "volume" ? [300, 1000, 2300, 5000] : [50, 300];
  return fc.tuple(fc.constantFrom(...counts), fc.boolean()).map(([count, two]) => {
    const body = ["  x0 = q", "  x1 = q * 0.5"];
    for (let i = 2; i <= count; i++) {
      body.push(two ? `  x${i} = tanh(x${i - 1} + x${i - 2})` : `  x${i} = x${i - 1} * 0.5 + q`);
    }
    return {
      family: two ? "hostile/lines-dag" : "hostile/lines",
      source: `def f(q: [n, d]) {\n${body.join("\n")}\n  return x${count}\n}\n`,
      scale: count,
    };
  });
}

/**
 * A chain of `count` defs, each calling the previous one once (deep inlining) or twice (the
 * inlined program doubles per level: 2^count operations unless the checker refuses it).
 */
function defChain(reach: Reach, twice: boolean): fc.Arbitrary<Job> {
  // A chain of 2,000 defs overflowed the stack in check and twice-calling chains grew
  // exponentially (depth 16: 168 s) until b7f9789 made both CompileErrors (compiler/limits.ts);
  // the suite goes past both limits (256 calls deep, 50,000 operations) but not to the
  // thousands of defs that take seconds to refuse (5,000: 8 s).
  const counts = twice
    ? (reach === "volume" ? [6, 12, 16, 24, 40] : [3, 6, 12, 16, 24])
    : (reach === "volume" ? [100, 500, 2000, 5000] : [10, 100, 300]);
  return fc.constantFrom(...counts).map((count) => {
    const defs = ["def f0(a: [n, d]) -> [n, d] {\n  return a * 0.5\n}"];
    for (let i = 1; i <= count; i++) {
      const call = twice ? `f${i - 1}(a) + f${i - 1}(a)` : `f${i - 1}(a) + a`;
      defs.push(`def f${i}(a: [n, d]) -> [n, d] {\n  return ${call}\n}`);
    }
    defs.push(`def main(q: [n, d]) {\n  return f${count}(q)\n}`);
    return {
      family: twice ? "hostile/defs-twice" : "hostile/defs",
      source: defs.join("\n") + "\n",
      scale: count,
    };
  });
}

/** `repeat N` with a huge N: as a literal, a parameter default, a `--param`, or nested. */
function hugeRepeat(): fc.Arbitrary<Job> {
  // The lowering unrolled `repeat`, so plan() of `repeat 100000` hung and ran out of memory
  // (fixed by a036b48: loops past 8 iterations are host loops).
  const counts = [0, 8, 9, 1e4, 1e5, 1e6, 1e9, 4294967296, 1e308];
  const forms = ["literal", "default", "param", "nested", "matrix"] as const;
  return fc.tuple(fc.constantFrom(...forms), fc.constantFrom(...counts)).map(([form, count]) => {
    const c = literal(count);
    const loop = (n: string, body: string) => `  repeat ${n} {\n    ${body}\n  }`;
    let source: string;
    let params: Record<string, number> | undefined;
    switch (form) {
      case "literal":
        source = `def f(q: [n, d]) {\n  x = q\n${loop(c, "x = x * 0.5 + q")}\n  return x\n}\n`;
        break;
      case "default":
        source = `def f(q: [n, d], r = ${c}) {\n  x = q\n${
          loop("r", "x = tanh(x) + q")
        }\n  return x\n}\n`;
        break;
      case "param":
        params = { r: count };
        source = `def f(q: [n, d], r = 2) {\n  x = q\n${
          loop("r", "x = tanh(x) + q")
        }\n  return x\n}\n`;
        break;
      case "nested":
        source = `def f(q: [n, d]) {\n  x = q\n  repeat ${c} {\n${
          loop(c, "x = x * 0.5 + q")
        }\n  }\n  return x\n}\n`;
        break;
      case "matrix":
        source = `def f(q: [n, d]) {\n  a = softmax(q @ q^T, axis=1)\n  z = a\n${
          loop(c, "z = 0.5 * z @ (2 * eye(n) - a @ z)")
        }\n  return z @ q\n}\n`;
        break;
    }
    return { family: `hostile/repeat-${form}`, source, params, scale: count };
  });
}

/** Duplicate names: parameters, defs, a parameter shadowing a def or a builtin, index vars. */
const duplicateNames: fc.Arbitrary<Job> = fc.constantFrom(
  "def f(q: [n, d], q: [n, d]) {\n  return q\n}\n",
  "def f(q: [n, d], p = 1, p = 2) {\n  return q * p\n}\n",
  "def f(q: [n, d], n = 3) {\n  return q\n}\n",
  "def f(q: [n, d], d: [n]) {\n  return q\n}\n",
  "def g(a: [n, d]) -> [n, d] {\n  return a\n}\ndef g(a: [n, d]) -> [n, d] {\n  return -a\n}\n" +
    "def f(q: [n, d]) {\n  return g(q)\n}\n",
  "def f(q: [n, d]) {\n  return q\n}\ndef f(q: [n, d]) {\n  return -q\n}\n",
  "def g(a: [n, d]) -> [n, d] {\n  return a\n}\ndef f(q: [n, d], g = 2) {\n  return g(q)\n}\n",
  "def f(q: [n, d], exp = 2) {\n  return exp(q) * exp\n}\n",
  "def f(q: [n, d]) {\n  y[i, i] = q[i, 0]\n  return y\n}\n",
  "def f(q: [n, d], i = 1) {\n  y[i, c] = q[i, c] * i\n  return y\n}\n",
  "def f(q: [n, d]) {\n  s = sum[t, t](q[t, 0])\n  return q * s\n}\n",
  "def f(q: [n, n]) {\n  return q\n}\n",
  "def f(q: [n, d], k: [n, n, n]) {\n  return q @ k\n}\n",
).map((source) => ({ family: "hostile/duplicate", source }));

/** Literals outside float32's range (±1e39 overflows, 1e-46 underflows) where the GPU runs f32. */
const f32Literal: fc.Arbitrary<Job> = fc.tuple(
  fc.constantFrom("1e39", "3.5e38", "1e-46", "1e300", "1e400"),
  fc.constantFrom(
    (c: string) => `q * ${c}`,
    (c: string) => `q + ${c}`,
    (c: string) => `q / ${c}`,
    (c: string) => `full([n, d], ${c}) - q`,
    (c: string) => `where(q > 0, q, -${c})`,
    (c: string) => `clamp(q, -${c}, ${c})`,
    (c: string) => `softmax(where(q @ q^T > 0, q @ q^T, -${c}), axis=1) @ q`,
    (c: string) => `exp(q * ${c})`,
    (c: string) => `q ^ ${c}`,
    (c: string) => `sum(q, axis=1, keepdims=true) * ${c} + q`,
  ),
).map(([c, body]) => ({
  family: "hostile/f32",
  source: `def f(q: [n, d]) {\n  return ${body(c)}\n}\n`,
}));

/** Zero-sized dims and sizes of 1e11 / 2^32 in shapes and size arguments. */
const oddDims: fc.Arbitrary<Job> = fc.tuple(
  fc.constantFrom("0", "1e11", "4294967296", "100000000000", "65536"),
  fc.constantFrom(
    (z: string) => `def f(q: [${z}, d]) {\n  return q\n}\n`,
    (z: string) => `def f(q: [n, d]) {\n  return sum(zeros([${z}]))\n}\n`,
    (z: string) => `def f(q: [n, d]) {\n  return full([${z}, 3], 1)\n}\n`,
    (z: string) => `def f(q: [n, d]) {\n  return segment_mean(q, ${z})\n}\n`,
    (z: string) => `def f(q: [n, d]) {\n  return topk(sum(q, axis=1), ${z})\n}\n`,
    (z: string) => `def f(q: [n, d]) {\n  return eye(${z})\n}\n`,
    (z: string) => `def f(q: [n, d]) {\n  return randn([${z}, n])\n}\n`,
    (z: string) => `def f(q: [n, d]) {\n  return softmax(zeros([n, ${z}]), axis=1)\n}\n`,
    (z: string) => `def f(q: [n, d]) {\n  return mean(full([${z}], 2))\n}\n`,
    (z: string) => `def f(q: [n, d], k: [m, d]) {\n  return q @ zeros([d, ${z}])\n}\n`,
    (z: string) => `def f(q: [n, d]) {\n  x = zeros([${z}])\n  return scatter_add(x, q)\n}\n`,
  ),
).map(([z, make]) => ({ family: "hostile/dims", source: make(z), scale: Number(z) }));

/** Every hostile generator at `reach`, weighted so that the slow ones stay rare. */
export function hostile(reach: Reach = "volume"): fc.Arbitrary<Job> {
  return fc.oneof(
    { weight: 20, arbitrary: hugeLiteral(reach) },
    { weight: 15, arbitrary: hugeParam() },
    { weight: 6, arbitrary: deepNesting(reach) },
    { weight: 1, arbitrary: straightLine(reach) },
    { weight: 1, arbitrary: defChain(reach, false) },
    { weight: 1, arbitrary: defChain(reach, true) },
    { weight: 2, arbitrary: hugeRepeat() },
    { weight: 8, arbitrary: duplicateNames },
    { weight: 10, arbitrary: f32Literal },
    { weight: 10, arbitrary: oddDims },
  );
}

/** The generated attention programs of tests/programs.ts, valid by construction. */
export const specProgram: fc.Arbitrary<Job> = specArb({ sizes: SMALL_SIZES }).map((spec) => ({
  family: "spec",
  source: printProgram(spec),
  spec,
}));

/** Job families and their weights in a volume run. */
export const FAMILIES = {
  soup: 15,
  grammar: 20,
  mutant: 20,
  spec: 15,
  hostile: 30,
} as const;

/** A family name of `FAMILIES`. */
export type Family = keyof typeof FAMILIES;

/** Jobs from the given families (default all), hostile ones at `reach`. */
export function jobArb(families: Family[] = [], reach: Reach = "volume"): fc.Arbitrary<Job> {
  const all: Record<Family, fc.Arbitrary<Job>> = {
    soup: soup.map((source) => ({ family: "soup", source })),
    grammar: randomProgram.map((source) => ({ family: "grammar", source })),
    mutant: mutant.map((source) => ({ family: "mutant", source })),
    spec: specProgram,
    hostile: hostile(reach),
  };
  const chosen = families.length ? families : Object.keys(FAMILIES) as Family[];
  return fc.oneof(...chosen.map((f) => ({ weight: FAMILIES[f], arbitrary: all[f] })));
}

/** The seed of job `index` of a run with `seed`. */
export function jobSeed(seed: number, index: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  return (h ^ (h >>> 15)) | 0;
}

const arbCache = new Map<string, fc.Arbitrary<Job>>();

/** Job `index` of a run with `seed` (a pure function of its arguments). */
export function jobAt(
  seed: number,
  index: number,
  families: Family[] = [],
  reach: Reach = "volume",
): Job {
  const key = `${families.join(",")}/${reach}`;
  let arb = arbCache.get(key);
  if (!arb) arbCache.set(key, arb = jobArb(families, reach));
  return fc.sample(arb, { seed: jobSeed(seed, index), numRuns: 1 })[0];
}

/** Inputs for a job's compiled program: the spec's own for spec programs, else `inputsFor`. */
export function jobInputs(job: Job, program: Program): Record<string, Tensor> {
  return job.spec ? makeInputs(job.spec, program.graph) : inputsFor(program);
}

/** Size symbols of a job when run (for `cost`). */
export function jobSizes(job: Job): Record<string, number> {
  return job.spec ? { ...SIZES, ...job.spec.sizes } : SIZES;
}
