/**
 * Diagnostics: deliberately wrong programs and inputs, each pinned to the exact first line of its
 * error (`err.message`, `file:line:col: what`) and, where the hint carries the fix, its hint.
 * Every message here was read and judged: it names the cause, gives both sides of a mismatch and
 * where each came from, suggests the closest name for a typo, and names the parameter or input
 * at fault.
 */
import assert from "node:assert/strict";
import {
  AttuneError,
  CompileError,
  compileSync,
  type Program,
  randomTensor,
  type Tensor,
} from "../mod.ts";

const FILE = "bad.attn";

interface Case {
  name: string;
  /** Source lines, joined with "\n" (a trailing newline is added). */
  src: string[];
  params?: Record<string, number | boolean>;
  entry?: string;
  /** The exact `err.message`. */
  message: string;
  /** The exact hint, when it matters (suggestions, valid ranges, the fix). */
  hint?: string;
}

const CASES: Case[] = [
  // ------------------------------------------------------------------- syntax
  {
    name: "syntax: missing closing brace",
    src: ["def f(q: [n, d]) {", "  return q"],
    message: `${FILE}:3:1: syntax error: unexpected end of input; a "}" is missing`,
  },
  {
    name: "syntax: bad operator $",
    src: ["def f(q: [n, d]) {", "  return q $ q", "}"],
    message:
      `${FILE}:2:12: syntax error: expected "}", a name, "repeat", "return", "," or an operator, found "$"`,
  },
  {
    name: "syntax: ** is not an operator",
    src: ["def f(q: [n, d]) {", "  return q ** q", "}"],
    message: `${FILE}:2:13: syntax error: expected an expression, found "*"`,
  },
  {
    name: "syntax: unterminated call",
    src: ["def f(q: [n, d]) {", "  y = exp(q", "  return y", "}"],
    message: `${FILE}:3:3: syntax error: expected ")", "," or an operator, found "return"`,
  },
  {
    name: "syntax: missing comma between parameters",
    src: ["def f(q: [n, d] k: [n, d]) {", "  return q", "}"],
    message: `${FILE}:1:17: syntax error: expected ")", "," or "=", found "k"`,
  },
  {
    name: "syntax: missing opening brace",
    src: ["def f(q: [n, d])", "  return q", "}"],
    message: `${FILE}:2:3: syntax error: expected "{" or "->", found "return"`,
  },
  {
    name: "syntax: empty file",
    src: [],
    message: `${FILE}:1:1: syntax error: expected "def", found end of input`,
  },
  // ------------------------------------------------------------------- names
  {
    name: "unknown name suggests the closest",
    src: ["def f(q: [n, d], k: [n, d]) {", "  s = q @ kk^T", "  return s", "}"],
    message: `${FILE}:2:11: unknown name kk`,
    hint: "did you mean k?",
  },
  {
    name: "unknown name suggests a parameter",
    src: ["def f(q: [n, d], slope = 1) {", "  y[i, c] = q[i, c] * slop", "  return y", "}"],
    message: `${FILE}:2:23: unknown name slop`,
    hint: "did you mean slope?",
  },
  {
    name: "unknown builtin suggests the closest",
    src: ["def f(q: [n, d]) {", "  return sofmax(q, axis=1)", "}"],
    message: `${FILE}:2:10: unknown function sofmax`,
    hint: "did you mean softmax?",
  },
  {
    name: "unknown function suggests a user def",
    src: ["def helper(x) {", "  return x", "}", "def f(q: [n, d]) {", "  return helpr(q)", "}"],
    message: `${FILE}:5:10: unknown function helpr`,
    hint: "did you mean helper?",
  },
  {
    name: "a function used as a value",
    src: ["def f(q: [n, d]) {", "  return exp", "}"],
    message: `${FILE}:2:10: exp is a function; call it with arguments`,
  },
  {
    name: "function defined twice",
    src: ["def f(q: [n, d]) {", "  return q", "}", "def f(q: [n, d]) {", "  return q", "}"],
    message: `${FILE}:4:5: function f is defined twice`,
  },
  {
    name: "function named like a builtin",
    src: ["def exp(q: [n, d]) {", "  return q", "}"],
    message: `${FILE}:1:5: function exp has the name of a builtin`,
  },
  {
    // Found writing a hand softmax: `e` was then the [n, n] tensor in the result type [n, e].
    name: "names: a local named like a size is refused where it is assigned",
    src: [
      "def f(q: [n, d], v: [n, e]) -> [n, e] {",
      "  e = exp(q @ q^T)",
      "  return e @ v",
      "}",
    ],
    message: `${FILE}:2:3: e is a size (from v: [n, e]); a local cannot take its name`,
    hint: "rename the local, e.g. e_ or e2",
  },
  {
    name: "names: an index-notation target named like a size is refused",
    src: [
      "def f(q: [n, d]) -> [n, n] {",
      "  d[i, j] = q[i] . q[j]",
      "  return d",
      "}",
    ],
    message: `${FILE}:2:3: d is a size (from q: [n, d]); a local cannot take its name`,
  },
  // ------------------------------------------------------------------- shapes
  {
    name: "shape mismatch in + names both sizes and their origins",
    src: ["def f(q: [n, d], v: [n, e]) {", "  return q + v", "}"],
    message: `${FILE}:2:10: shape mismatch in +: left is [n, d] and right is [n, e]; ` +
      "size d (from q: [n, d]) does not match e (from v: [n, e])",
  },
  {
    name: "matmul inner mismatch names both sizes and suggests ^T",
    src: ["def f(q: [n, d], k: [m, d]) {", "  return q @ k", "}"],
    message: `${FILE}:2:10: matmul inner sizes differ: left is [n, d] and right is [m, d]; ` +
      "d (from q: [n, d]) ≠ m (from k: [m, d])",
    hint:
      "the last size of the left operand must equal the second-to-last of the right; maybe a ^T is missing",
  },
  {
    name: "shape mismatch in where",
    src: ["def f(q: [n, d], v: [n, e]) {", "  return where(q > 0, q, v)", "}"],
    message: `${FILE}:2:10: shape mismatch in where: a is [n, d] and b is [n, e]; ` +
      "size d (from q: [n, d]) does not match e (from v: [n, e])",
  },
  {
    name: "dot product of rows of different sizes",
    src: ["def f(q: [n, d], v: [n, e]) {", "  s[i, j] = q[i] . v[j]", "  return s", "}"],
    message: `${FILE}:2:13: dot product of vectors of different sizes: ` +
      "d (from q: [n, d]) and e (from v: [n, e])",
  },
  {
    name: "declared result shape differs",
    src: ["def f(q: [n, d], v: [n, e]) -> [n, d] {", "  return v", "}"],
    message: `${FILE}:1:32: f returns [n, e] but its declared result is [n, d]`,
  },
  // ------------------------------------------------------------------- user functions
  {
    name: "too many arguments to a user def",
    src: [
      "def g(a: [n, d], b: [n, d]) {",
      "  return a + b",
      "}",
      "def f(q: [n, d]) {",
      "  return g(q, q, q)",
      "}",
    ],
    message: `${FILE}:5:10: g takes 2 arguments, got 3`,
  },
  {
    name: "too few arguments to a user def",
    src: [
      "def g(a: [n, d], b: [n, d]) {",
      "  return a + b",
      "}",
      "def f(q: [n, d]) {",
      "  return g(q)",
      "}",
    ],
    message: `${FILE}:5:10: g needs an argument for b`,
  },
  {
    name: "argument of the wrong rank to a user def",
    src: ["def g(a: [m, m]) {", "  return a", "}", "def f(q: [n, d]) {", "  return g(q[0])", "}"],
    message: `${FILE}:5:12: g: argument a should have rank 2 ([m, m]) but has shape [d]`,
  },
  {
    name: "size names of a user def do not unify",
    src: ["def g(a: [m, m]) {", "  return a", "}", "def f(q: [n, d]) {", "  return g(q)", "}"],
    message:
      `${FILE}:5:12: g: size m of a is d (from q: [n, d]) but was n (from q: [n, d]) earlier`,
  },
  {
    name: "recursion",
    src: ["def g(a: [n, d]) {", "  return g(a)", "}", "def f(q: [n, d]) {", "  return g(q)", "}"],
    message: `${FILE}:2:10: g calls itself; recursion is not supported`,
    hint: "use repeat for iteration",
  },
  // ------------------------------------------------------------------- parameters and entry
  {
    name: "a non-integer for an int parameter",
    src: ["def f(q: [n, d], landmarks = 64) {", "  return segment_mean(q, landmarks)", "}"],
    params: { landmarks: 1.5 },
    message: `${FILE}:1:18: parameter landmarks expects an integer, got 1.5`,
  },
  {
    name: "an unknown parameter name suggests the closest",
    src: ["def f(q: [n, d], landmarks = 64) {", "  return segment_mean(q, landmarks)", "}"],
    params: { landmark: 3 },
    message: `${FILE}:1:5: f has no parameter landmark`,
    hint: "did you mean landmarks?",
  },
  {
    name: "a size symbol is not a parameter",
    src: ["def f(q: [n, d]) {", "  return q + 1", "}"],
    params: { n: 3 },
    message: `${FILE}:1:5: f has no parameter n`,
  },
  {
    name: "an unknown entry function suggests the closest",
    src: ["def exact(q: [n, d]) {", "  return q", "}"],
    entry: "exac",
    message: `${FILE}:1:1: no function named exac`,
    hint: "did you mean exact?",
  },
  {
    name: "an entry input without a type",
    src: ["def f(q) {", "  return q", "}"],
    message: `${FILE}:1:7: input q of the entry function needs a type or a default`,
  },
  // ------------------------------------------------------------------- index notation
  {
    name: "an index whose range cannot be inferred",
    src: ["def f(q: [n, d]) {", "  s[i, j] = q[i, 0] * j", "  return s", "}"],
    message: `${FILE}:2:13: cannot tell the range of index j: no tensor is read at j itself ` +
      "(an index ranges over the axis of x[j]; x[j - 1] or arithmetic of j does not say)",
    hint: "use j directly as a subscript of a tensor, like x[j], so its size is known; a mask " +
      "of the indices alone belongs in the score that uses it, as in " +
      "s[i, j] = where(j <= i, q[i] . k[j], -inf)",
  },
  {
    // Found by the second generality probe (xPos): the hint said to use c as a subscript, which
    // it already was, on the left.
    name: "a vector of positions alone points to arange",
    src: ["def f(q: [n, d]) {", "  z[c] = float(c) / float(d)", "  return q * z", "}"],
    message: `${FILE}:2:10: cannot tell the range of index c: no tensor is read at c itself ` +
      "(an index ranges over the axis of x[c]; x[c - 1] or arithmetic of c does not say)",
    hint: "use c directly as a subscript of a tensor, like x[c], so its size is known; a vector " +
      "computed from positions alone is f(arange(N)), as in cs = float(arange(d)) / float(d)",
  },
  {
    name: "a slice bound computed from a size names the size and suggests a parameter",
    src: ["def f(q: [n, d]) {", "  half = d // 2", "  return q[:, :half]", "}"],
    message: `${FILE}:3:16: a slice bound must be an integer known at compile time, got a value ` +
      "computed at run time (int[])",
    hint: "it is computed from the size d, known only when inputs arrive; use a parameter " +
      "instead (half = 4, or --param half=4)",
  },
  {
    name: "an index used on axes of different sizes",
    src: ["def f(q: [n, d], k: [m, d]) {", "  s[i] = q[i, 0] + k[i, 0]", "  return s", "}"],
    message: `${FILE}:2:22: index i ranges over n (from q: [n, d]) ` +
      "but is used on an axis of size m (from k: [m, d])",
  },
  {
    name: "@ inside index notation",
    src: ["def f(q: [n, d]) {", "  s[i] = q[i] @ q^T", "  return s", "}"],
    message: `${FILE}:2:10: @ is not available inside index notation`,
    hint: "use . for the dot product of two rows",
  },
  {
    name: "a subscript that is not a new index in x[i, 0] = ...",
    src: ["def f(q: [n, d]) {", "  x = q", "  x[i, 0] = 1", "  return x", "}"],
    message: `${FILE}:3:5: index i is not defined`,
  },
  {
    name: "unknown function inside index notation is reported as such",
    src: ["def f(q: [n, d]) {", "  y[i] = sofmax(q[i])", "  return y", "}"],
    message: `${FILE}:2:10: unknown function sofmax`,
    hint: "did you mean softmax?",
  },
  {
    name: "a non-reduction over an index variable is reported as such",
    src: ["def f(q: [n, d]) {", "  y[i] = exp[t](q[i, t])", "  return y", "}"],
    message: `${FILE}:2:10: exp[...](...) is not a reduction; use sum, max, min, mean or prod`,
  },
  // ------------------------------------------------------------------- axes, transpose
  {
    name: "axis out of range",
    src: ["def f(q: [n, d]) {", "  return softmax(q, axis=2)", "}"],
    message: `${FILE}:2:21: softmax: axis 2 is out of range for [n, d]`,
    hint: "valid axes are -2 to 1",
  },
  {
    name: "negative axis out of range in a reduction",
    src: ["def f(q: [n, d]) {", "  return sum(q, axis=-3)", "}"],
    message: `${FILE}:2:17: sum: axis -3 is out of range for [n, d]`,
    hint: "valid axes are -2 to 1",
  },
  {
    name: "^T on a vector",
    src: ["def f(q: [n, d]) {", "  x = sum(q, axis=1)", "  return x^T", "}"],
    message: `${FILE}:3:10: ^T needs a matrix, got [n]`,
  },
  // ------------------------------------------------------------------- return
  {
    name: "a function without return",
    src: ["def f(q: [n, d]) {", "  x = q + 1", "}"],
    message: `${FILE}:1:5: function f does not return a value`,
    hint: "end it with `return expr`",
  },
  {
    name: "code after return",
    src: ["def f(q: [n, d]) {", "  return q", "  x = q + 1", "}"],
    message: `${FILE}:3:3: code after return is never run`,
  },
  {
    name: "return inside repeat",
    src: ["def f(q: [n, d]) {", "  repeat 2 {", "    return q", "  }", "  return q", "}"],
    message: `${FILE}:3:5: return is not allowed inside repeat`,
  },
  // ------------------------------------------------------------------- repeat
  {
    name: "repeat count that is only known at run time",
    src: [
      "def f(q: [n, d]) {",
      "  x = q",
      "  repeat n {",
      "    x = x * 2",
      "  }",
      "  return x",
      "}",
    ],
    message: `${FILE}:3:10: repeat needs a non-negative integer known at compile time`,
  },
  {
    name: "repeat count that is a float parameter",
    src: [
      "def f(q: [n, d], t = 2.5) {",
      "  x = q",
      "  repeat t {",
      "    x = x * 2",
      "  }",
      "  return x",
      "}",
    ],
    message: `${FILE}:3:10: repeat needs a non-negative integer known at compile time`,
  },
  {
    name: "repeat that changes a carried shape",
    src: [
      "def f(q: [n, d]) {",
      "  x = q",
      "  repeat 3 {",
      "    x = x @ x^T",
      "  }",
      "  return x",
      "}",
    ],
    message: `${FILE}:3:3: repeat changes the shape of x from [n, d] to [n, n]`,
    hint: "a value carried around a loop must keep its shape",
  },
  // ------------------------------------------------------------------- subscripts
  {
    name: "a float subscript names its kind",
    src: ["def f(q: [n, d]) {", "  J = sum(q, axis=1)", "  return q[J]", "}"],
    message: `${FILE}:3:12: a subscript must be an int, got float[n]`,
    hint: "use int(...) to convert",
  },
  {
    name: "too many subscripts",
    src: ["def f(q: [n, d]) {", "  return q[0, 1, 2]", "}"],
    message: `${FILE}:2:10: q has rank 2 but 3 subscripts were given`,
  },
  {
    name: "row assignment with float indices names their kind",
    src: ["def f(q: [n, d]) {", "  x = q", "  J = q[0]", "  x[J] = q", "  return x", "}"],
    message: `${FILE}:4:5: row indices must be int, got float[d]`,
  },
  // ------------------------------------------------------------------- builtin arguments
  {
    name: "misspelled keyword argument to a builtin",
    src: ["def f(q: [n, d]) {", "  return softmax(q, axes=1)", "}"],
    message: `${FILE}:2:21: softmax has no argument axes`,
    hint: "softmax(x, axis=-1)",
  },
  {
    name: "keepdim for keepdims",
    src: ["def f(q: [n, d]) {", "  return sum(q, axis=1, keepdim=true)", "}"],
    message: `${FILE}:2:25: sum has no argument keepdim`,
  },
  {
    name: "too many positional arguments to a builtin",
    src: ["def f(q: [n, d]) {", "  return exp(q, q)", "}"],
    message: `${FILE}:2:17: exp got too many arguments`,
    hint: "exp(x)",
  },
  {
    name: "a missing builtin argument",
    src: ["def f(q: [n, d]) {", "  return softmax()", "}"],
    message: `${FILE}:2:10: softmax is missing its argument x`,
  },
  {
    name: "unknown keyword to a user def",
    src: [
      "def g(a, scale = 1) {",
      "  return a * scale",
      "}",
      "def f(q: [n, d]) {",
      "  return g(q, scal=2)",
      "}",
    ],
    message: `${FILE}:5:15: g has no parameter scal`,
    hint: "did you mean scale?",
  },
  {
    name: "topk with k = 0",
    src: ["def f(q: [n, d]) {", "  return topk(q, 0)", "}"],
    message: `${FILE}:2:18: topk: k must be an integer ≥ 1, got 0`,
  },
  {
    name: "bits of too wide an axis",
    src: ["def f(q: [n, d]) {", "  return bits(q > 0)", "}"],
    message: `${FILE}:2:10: bits packs at most 24 bits, got a last axis of d`,
  },
  {
    name: "a tensor used as a size",
    src: ["def f(q: [n, d]) {", "  return zeros(q)", "}"],
    message:
      `${FILE}:2:16: a size must be a non-negative integer known at compile time, got a [n, d] tensor`,
  },
];

function source(c: { src: string[] }): string {
  return c.src.length ? c.src.join("\n") + "\n" : "";
}

/** The CompileError `f` throws (fails the test on anything else). */
function compileError(f: () => unknown): CompileError {
  try {
    f();
  } catch (e) {
    if (e instanceof CompileError) return e;
    throw new assert.AssertionError({ message: `expected a CompileError, got ${e}` });
  }
  assert.fail("expected a CompileError, but it compiled");
}

async function runError(p: Promise<unknown>): Promise<CompileError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof CompileError) return e;
    throw new assert.AssertionError({ message: `expected a CompileError, got ${e}` });
  }
  assert.fail("expected a CompileError, but it ran");
}

/** Span, line/col and one-line message are consistent with the source. */
function assertWellFormed(e: CompileError, src: string): void {
  assert.ok(0 <= e.span.start && e.span.start <= e.span.end, JSON.stringify(e.span));
  assert.ok(
    e.span.end <= src.length,
    `span ${JSON.stringify(e.span)} past the end (${src.length})`,
  );
  assert.ok(!e.message.includes("\n"));
  assert.ok(e.message.startsWith(`${e.file}:${e.line}:${e.col}: `));
}

for (const c of CASES) {
  Deno.test(`error: ${c.name}`, () => {
    const src = source(c);
    const e = compileError(() =>
      compileSync(src, { file: FILE, params: c.params, entry: c.entry })
    );
    assert.equal(e.message, c.message);
    if (c.hint !== undefined) assert.equal(e.hint, c.hint);
    assertWellFormed(e, src);
  });
}

Deno.test("error table has at least 20 cases, all distinct", () => {
  assert.ok(CASES.length >= 20);
  assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length);
});

// ---------------------------------------------------------------------------------------------
// Errors at run time: inputs that do not fit the declared shapes.

const EXACT = [
  "def exact(q: [n, d], k: [m, d], v: [m, e], mask: [m] = ones) -> [n, e] {",
  "  s = q @ k^T / sqrt(d)",
  "  return softmax(where(mask > 0, s, -1e9), axis=1) @ v",
  "}",
].join("\n") + "\n";

const exact = compileSync(EXACT, { file: "exact.attn" });
const r = (shape: number[], seed = 1): Tensor => randomTensor(shape, { seed });

interface RunCase {
  name: string;
  program?: Program;
  inputs: Record<string, Tensor>;
  message: string;
  hint?: string;
}

const SEGMENTS = compileSync(
  "def f(q: [n, d], landmarks = 8) {\n  return segment_mean(q, landmarks)\n}\n",
  { file: "seg.attn" },
);
const CONV = compileSync(
  "def f(v: [n, e], w: [conv] = zeros, conv = 3) {\n" +
    "  y[i, c] = v[i, c] + sum[t](w[t] * v[i + t - 1, c])\n  return y\n}\n",
  { file: "conv.attn" },
);

const RUN_CASES: RunCase[] = [
  {
    name: "k with a different d than q names both",
    inputs: { q: r([5, 4]), k: r([6, 3]), v: r([6, 2]) },
    message: "exact.attn:1:22: input k: size d is 3 here but 4 from input q",
    hint: "inputs sharing a size name must agree on it",
  },
  {
    name: "v with a different m than k names both",
    inputs: { q: r([5, 4]), k: r([6, 4]), v: r([7, 2]) },
    message: "exact.attn:1:33: input v: size m is 7 here but 6 from input k",
  },
  {
    name: "a mask of the wrong length",
    inputs: { q: r([5, 4]), k: r([6, 4]), v: r([6, 2]), mask: r([5]) },
    message: "exact.attn:1:44: input mask: size m is 5 here but 6 from input k",
  },
  {
    name: "a missing input gives the shape to pass",
    inputs: { q: r([5, 4]), k: r([6, 4]) },
    message: "exact.attn:1:33: missing input v",
    hint: "pass a tensor of shape [m, e]",
  },
  {
    name: "an input the program does not have",
    inputs: { q: r([5, 4]), k: r([6, 4]), v: r([6, 2]), vv: r([6, 2]) },
    message: "exact.attn:1:1: exact has no input vv",
    hint: "its inputs are: q, k, v, mask",
  },
  {
    name: "an input of too low a rank",
    inputs: { q: r([5]), k: r([6, 4]), v: r([6, 2]) },
    message: "exact.attn:1:11: input q should have rank 2 ([n, d]) but has shape [5]",
  },
  {
    name: "batch dims that do not match",
    inputs: { q: r([2, 5, 4]), k: r([3, 6, 4]), v: r([6, 2]) },
    message:
      "exact.attn:1:22: input k has batch dims [3] that do not match [2] of the other inputs",
  },
  {
    name: "data that does not fill the shape",
    inputs: {
      q: { shape: [5, 4], data: new Float64Array(3), dtype: "float" },
      k: r([6, 4]),
      v: r([6, 2]),
    },
    message: "exact.attn:1:11: input q has 3 values for shape [5, 4]",
  },
  {
    name: "more segments than rows",
    program: SEGMENTS,
    inputs: { q: r([5, 4]) },
    message: "seg.attn:2:10: segment_mean: 8 segments but only 5 rows",
    hint: "use at most 5 segments (landmarks ≤ n)",
  },
  {
    name: "an optional input whose fixed size is wrong",
    program: CONV,
    inputs: { v: r([5, 4]), w: r([5]) },
    message: "conv.attn:1:18: input w: axis 0 should be 3 but is 5",
  },
];

for (const c of RUN_CASES) {
  Deno.test(`run error: ${c.name}`, async () => {
    const program = c.program ?? exact;
    const e = await runError(program.run(c.inputs, { backend: "interp" }));
    assert.equal(e.message, c.message);
    if (c.hint !== undefined) assert.equal(e.hint, c.hint);
    assertWellFormed(e, program.graph.source);
  });
}

Deno.test("run error: a size too large to allocate is an AttuneError, not a RangeError", async () => {
  const program = compileSync("def f(q: [n, d]) {\n  return zeros([100000, 100000])\n}\n", {
    file: "big.attn",
  });
  let error: unknown;
  try {
    await program.run({ q: r([5, 4]) }, { backend: "interp" });
  } catch (e) {
    error = e;
  }
  assert.ok(
    error instanceof AttuneError,
    `expected an AttuneError naming the size, got ${error}`,
  );
  assert.match(error.message, /10000000000|100000, 100000/);
});

// ---------------------------------------------------------------------------------------------
// format(): the source line and a caret under the span.

/** The caret line of a diagnostic: its first caret column (0-based, in the printed line). */
function caret(formatted: string): { line: string; caretAt: number; width: number } {
  const lines = formatted.split("\n");
  const i = lines.findIndex((l) => /^\s*\^+\s*$/.test(l));
  assert.ok(i > 0, `no caret line in:\n${formatted}`);
  const m = /\^+/.exec(lines[i])!;
  return { line: lines[i - 1], caretAt: m.index, width: m[0].length };
}

Deno.test("format: caret under an unknown name", () => {
  const src = "def f(q: [n, d], k: [n, d]) {\n  s = q @ kk^T\n  return s\n}\n";
  const e = compileError(() => compileSync(src, { file: FILE }));
  const f = e.format();
  assert.equal(f.split("\n")[0], `error: ${FILE}:2:11: unknown name kk`);
  const { line, caretAt, width } = caret(f);
  assert.equal(line, "   2 |   s = q @ kk^T");
  assert.equal(line.slice(caretAt, caretAt + width), "kk");
  assert.ok(f.endsWith("hint: did you mean k?"));
});

Deno.test("format: carets span the whole mismatched expression", () => {
  const src = "def f(q: [n, d], v: [n, e]) {\n  return q + v\n}\n";
  const e = compileError(() => compileSync(src, { file: FILE }));
  const { line, caretAt, width } = caret(e.format());
  assert.equal(line.slice(caretAt, caretAt + width), "q + v");
});

Deno.test("format: a syntax error points at the offending token", () => {
  const src = "def f(q: [n, d]) {\n  return q $ q\n}\n";
  const e = compileError(() => compileSync(src, { file: FILE }));
  const { line, caretAt, width } = caret(e.format());
  assert.equal(line.slice(caretAt, caretAt + width), "$");
});

Deno.test("format: a run-time input error points at the input's declaration", async () => {
  const e = await runError(
    exact.run({ q: r([5, 4]), k: r([6, 3]), v: r([6, 2]) }, { backend: "interp" }),
  );
  const { line, caretAt, width } = caret(e.format());
  assert.equal(line.slice(caretAt, caretAt + width), "k: [m, d]");
  assert.ok(e.format().endsWith("hint: inputs sharing a size name must agree on it"));
});
