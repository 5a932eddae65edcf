/**
 * Tile skipping (kernels/tiles.ts). Soundness on its own: on random scores and data, a block the
 * analysis calls empty holds only -inf scores and a block it calls full only true masks, checked
 * pair by pair with the interpreter's scalar semantics (tile sizes 1, 3, 8, 17). Then on the GPU:
 * or / not / % / document masks skip blocks (counted by the numeric analysis on the same data) and
 * agree with the interpreter on the plain, blocked, split and probabilities kernels.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { compileSync, relativeError, type Tensor } from "../mod.ts";
import type { Node, Score } from "../compiler/ir/types.ts";
import { BINARY, castTo, INT_BINARY, INT_UNARY, UNARY } from "../compiler/ir/scalar.ts";
import {
  blockBounds,
  classifyBlock,
  indexInRange,
  NUMBERS,
  numericBlock,
  tileCounts,
} from "../kernels/tiles.ts";
import { fullTiles, keyTile, LOOPS } from "../compiler/limits.ts";
import { getDevice } from "../runtime/device.ts";
import { compileSpec, gpuDifferential, report, type Spec, specArb } from "./programs.ts";

const adapter = await getDevice().then((d) => d.facts.description, () => undefined);

/** The interpreter's meaning of a score at one pair (compiler/interp.ts `attention`). */
function scoreAt(
  x: Score,
  p: { i: number; j: number; qk: number; n: number; leaves: number[][] },
): number {
  const at = (y: Score) => scoreAt(y, p);
  switch (x.kind) {
    case "qk":
      return p.qk;
    case "i":
      return p.i;
    case "j":
      return p.j;
    case "const":
      return x.value;
    case "size":
      return p.n;
    case "leaf":
      return p.leaves[x.arg][x.at === "scalar" ? 0 : x.at === "i" ? p.i : p.j];
    case "lead":
    case "table":
    case "draw":
      throw new Error(`${x.kind} scores are not generated here`);
    case "unary":
      return (x.int ? INT_UNARY[x.fn]! : UNARY[x.fn])(at(x.x));
    case "binary":
      return (x.int ? INT_BINARY[x.fn]! : BINARY[x.fn])(at(x.a), at(x.b));
    case "where":
      return at(x.c) ? at(x.a) : at(x.b);
    case "cast":
      return castTo(x.to, at(x.x));
  }
}

const I: Score = { kind: "i" }, J: Score = { kind: "j" };
const c = (value: number): Score => ({ kind: "const", value });
const bin = (fn: string, a: Score, b: Score) => ({ kind: "binary", fn, a, b }) as Score;
const un = (fn: string, x: Score) => ({ kind: "unary", fn, x }) as Score;
const ibin = (fn: string, a: Score, b: Score) => ({ ...bin(fn, a, b), int: true }) as Score;

// Leaves 0..2 are data vectors over positions: sorted document ids, 0/1 flags, floats with NaN
// and infinities; the scalar leaf 3 is one number.
const numLeaf: fc.Arbitrary<Score> = fc.oneof(
  { arbitrary: fc.constantFrom(I, J), weight: 6 },
  { arbitrary: fc.integer({ min: -3, max: 40 }).map(c), weight: 3 },
  { arbitrary: fc.constantFrom(c(0.5), c(Infinity), c(-Infinity), c(NaN), c(-0)), weight: 1 },
  { arbitrary: fc.constant<Score>({ kind: "size", name: "n" }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant("leaf" as const),
      arg: fc.constantFrom(0, 1, 2),
      at: fc.constantFrom("i" as const, "j" as const),
    }),
    weight: 4,
  },
  { arbitrary: fc.constant<Score>({ kind: "leaf", arg: 3, at: "scalar" }), weight: 1 },
  { arbitrary: fc.constant<Score>({ kind: "qk" }), weight: 2 },
);
const UN = ["neg", "not", "abs", "floor", "ceil", "relu", "exp", "sign", "sqrt"];
const INT_BIN = Object.keys(INT_BINARY), INT_UN = Object.keys(INT_UNARY);
// Int operands: positions, whole constants past 2^31 (they wrap), and casts of anything.
const intConst = fc.constantFrom(
  2654435761,
  1000003,
  -999999937,
  2 ** 31 - 1,
  -(2 ** 31),
  65536,
  0,
);
const BIN = Object.keys(BINARY);
const CMP = ["lt", "le", "gt", "ge", "eq", "ne"];

const { expr, mask } = fc.letrec<{ expr: Score; mask: Score; int: Score }>((tie) => ({
  expr: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    { arbitrary: numLeaf, weight: 5 },
    {
      arbitrary: fc.tuple(fc.constantFrom(...UN), tie("expr")).map(([f, x]) => un(f, x)),
      weight: 2,
    },
    {
      arbitrary: fc.tuple(fc.constantFrom(...BIN), tie("expr"), tie("expr")).map(([f, a, b]) =>
        bin(f, a, b)
      ),
      weight: 3,
    },
    {
      arbitrary: fc.tuple(tie("mask"), tie("expr"), tie("expr")).map(([m, a, b]) =>
        ({ kind: "where", c: m, a, b }) as Score
      ),
      weight: 1,
    },
    {
      arbitrary: fc.tuple(fc.constantFrom("float", "int", "bool" as const), tie("expr")).map((
        [to, x],
      ) => ({ kind: "cast", to, x }) as Score),
      weight: 1,
    },
    { arbitrary: tie("int"), weight: 2 },
  ),
  // 32-bit int arithmetic (wrapping), over int operands only, as the checker types it.
  int: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    { arbitrary: fc.constantFrom(I, J), weight: 3 },
    { arbitrary: intConst.map(c), weight: 2 },
    { arbitrary: tie("expr").map((x) => ({ kind: "cast", to: "int", x }) as Score), weight: 1 },
    {
      arbitrary: fc.tuple(fc.constantFrom(...INT_BIN), tie("int"), tie("int")).map(([f, a, b]) =>
        ibin(f, a, b)
      ),
      weight: 3,
    },
    {
      arbitrary: fc.tuple(fc.constantFrom(...INT_UN), tie("int")).map(([f, x]) =>
        ({ ...un(f, x), int: true }) as Score
      ),
      weight: 1,
    },
  ),
  mask: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    {
      arbitrary: fc.tuple(fc.constantFrom(...CMP), tie("expr"), tie("expr")).map(([f, a, b]) =>
        bin(f, a, b)
      ),
      weight: 4,
    },
    {
      arbitrary: fc.tuple(fc.constantFrom("and", "or"), tie("mask"), tie("mask")).map((
        [f, a, b],
      ) => bin(f, a, b)),
      weight: 2,
    },
    { arbitrary: tie("mask").map((x) => un("not", x)), weight: 1 },
    {
      // Typical masks: windows, global tokens, documents, strides.
      arbitrary: fc.constantFrom(
        bin("le", un("abs", bin("sub", I, J)), c(4)),
        bin("lt", J, c(3)),
        bin("le", J, I),
        bin("eq", { kind: "leaf", arg: 0, at: "i" }, { kind: "leaf", arg: 0, at: "j" }),
        bin("ne", bin("mod", bin("add", I, J), c(3)), c(0)),
        bin("eq", bin("idiv", I, c(4)), bin("idiv", J, c(4))),
        bin(
          "ne",
          ibin("mod", ibin("add", ibin("mul", I, c(2654435761)), J), c(3)),
          c(0),
        ),
        bin("gt", { kind: "leaf", arg: 1, at: "j" }, c(0)),
      ),
      weight: 4,
    },
  ),
}));

const minusInf = (m: Score, x: Score): Score => ({ kind: "where", c: m, a: x, b: c(-Infinity) });
const scoreArb: fc.Arbitrary<Score> = fc.oneof(
  { arbitrary: expr, weight: 1 },
  { arbitrary: fc.tuple(mask, expr).map(([m, x]) => minusInf(m, x)), weight: 4 },
  {
    arbitrary: fc.tuple(mask, mask, expr).map(([m, m2, x]) => minusInf(m, minusInf(m2, x))),
    weight: 1,
  },
);

/** Random data for the leaves at n positions, and a qk per pair. */
function data(n: number, seed: number): { leaves: number[][]; qk: number[] } {
  let s = seed >>> 0;
  const r = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const doc: number[] = [];
  for (let x = 0, d = 0; x < n; x++) doc.push(r() < 0.15 ? ++d : d);
  const flag = Array.from({ length: n }, () => (r() < 0.5 ? 0 : 1));
  const odd = [NaN, Infinity, -Infinity, 0, -0];
  const real = () => (r() < 0.1 ? odd[Math.floor(r() * odd.length)] : (r() - 0.5) * 20);
  return {
    leaves: [doc, flag, Array.from({ length: n }, real), [real()]],
    qk: Array.from({ length: n * n }, real),
  };
}

Deno.test("tiles: a block called empty holds only -inf scores, one called full (none) only true (false) masks", () => {
  let empty = 0, full = 0, none = 0, blocks = 0;
  fc.assert(
    fc.property(
      scoreArb,
      fc.integer({ min: 1, max: 40 }),
      fc.constantFrom(1, 3, 8, 17),
      fc.constantFrom(1, 3, 8, 17),
      fc.integer({ min: 0, max: 2 ** 30 }),
      (score, n, R, T, seed) => {
        const { leaves, qk } = data(n, seed);
        for (let ib = 0; ib < n; ib += R) {
          for (let jb = 0; jb < n; jb += T) {
            const ie = Math.min(ib + R, n) - 1, je = Math.min(jb + T, n) - 1;
            const cls = classifyBlock(score, [ib, ie, jb, je], { n }, leaves);
            blocks++;
            if (blockBounds(NUMBERS, score, numericBlock([ib, ie, jb, je], { n }, leaves)).none) {
              none++;
              for (let i = ib; i <= ie; i++) {
                for (let j = jb; j <= je; j++) {
                  const m = scoreAt((score as { c: Score }).c, {
                    i,
                    j,
                    qk: qk[i * n + j],
                    n,
                    leaves,
                  });
                  assert.ok(m === 0, `pair (${i}, ${j}) of a none block has mask ${m}`);
                }
              }
            }
            if (cls === "partial") continue;
            cls === "empty" ? empty++ : full++;
            for (let i = ib; i <= ie; i++) {
              for (let j = jb; j <= je; j++) {
                const p = { i, j, qk: qk[i * n + j], n, leaves };
                if (cls === "empty") {
                  const v = scoreAt(score, p);
                  assert.ok(v === -Infinity, `pair (${i}, ${j}) of an empty block scores ${v}`);
                } else {
                  const m = scoreAt((score as { c: Score }).c, p);
                  assert.ok(m, `pair (${i}, ${j}) of a full block has mask ${m}`);
                }
              }
            }
          }
        }
      },
    ),
    { numRuns: 1500 },
  );
  // The analysis proves something: not every block is partial.
  assert.ok(
    empty > blocks / 50 && full > blocks / 50 && none > blocks / 50,
    `${empty} empty, ${full} full, ${none} none of ${blocks}`,
  );
});

Deno.test("tiles: the typical masks' empty blocks are found (window or global, prefix-LM, documents)", () => {
  const n = 64;
  const doc = Array.from({ length: n }, (_, x) => Math.floor(x / 20));
  const where = (m: Score): Score => ({ kind: "where", c: m, a: { kind: "qk" }, b: c(-Infinity) });
  const cases: [string, Score, number][] = [
    [
      "window or global",
      where(bin("or", bin("le", un("abs", bin("sub", I, J)), c(2)), bin("lt", J, c(2)))),
      0,
    ],
    ["prefix-LM", where(bin("or", bin("lt", J, c(8)), bin("le", J, I))), 0],
    [
      "documents",
      where(bin("eq", { kind: "leaf", arg: 0, at: "i" }, { kind: "leaf", arg: 0, at: "j" })),
      0,
    ],
  ];
  for (const [name, score] of cases) {
    let empty = 0;
    for (let ib = 0; ib < n; ib += 8) {
      for (let jb = 0; jb < n; jb += 8) {
        if (classifyBlock(score, [ib, ib + 7, jb, jb + 7], { n }, [doc]) === "empty") empty++;
      }
    }
    assert.ok(empty >= 20, `${name}: ${empty} empty blocks of 64`);
  }
});

// ---------------------------------------------------------------------------------------------
// On the GPU

const PROGRAMS: Record<string, string> = {
  longformer: `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = where(abs(i - j) <= 3 or j < 2 or i < 2, q[i] . k[j] / sqrt(d), -inf)
  return softmax(s, axis=1) @ v
}`,
  prefix: `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = where(j < 9 or j <= i, q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  documents: `def f(q: [n, d], k: [n, d], v: [n, e], doc: int[n]) -> [n, e] {
  s[i, j] = where(doc[i] == doc[j] and not (j > i + 20), q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  strided: `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = where(j // 8 == i // 8 or (j % 16 == 0 and j <= i), q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  probs: `def f(q: [n, d], k: [n, d], doc: int[n]) -> [n, n] {
  s[i, j] = where(doc[i] == doc[j] or j < 2, q[i] . k[j], -inf)
  return softmax(s, axis=1)
}`,
};

function gauss(shape: number[], seed: number): Tensor {
  let s = seed;
  const r = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const data = new Float64Array(shape.reduce((a, b) => a * b, 1));
  for (let x = 0; x < data.length; x++) {
    data[x] = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  }
  return { shape, data, dtype: "float" };
}

Deno.test({
  name:
    "tiles: or / not / % / document masks skip blocks and agree with the interpreter on the GPU",
  ignore: adapter === undefined,
  fn: async () => {
    const before = { keys: keyTile.keys, loops: { ...LOOPS } };
    try {
      for (
        const [keys, n, e, split] of [[4, 65, 4, false], [8, 100, 3, false], [
          8,
          97,
          4,
          true,
        ]] as const
      ) {
        keyTile.keys = keys;
        // Split: the key range runs in blocks of 8 keys over several invocations.
        if (split) Object.assign(LOOPS, { budget: 60, chunk: 8, parts: 16 });
        for (const [name, src] of Object.entries(PROGRAMS)) {
          // The probabilities kernel has no split form.
          if (split && name === "probs") continue;
          const p = compileSync(src);
          const doc = Array.from(
            { length: n },
            (_, x) => Math.floor(x / 17) + (x % 40 === 39 ? 1 : 0),
          );
          const x: Record<string, Tensor> = {
            q: gauss([2, n, 8], n + keys),
            k: gauss([2, n, 8], n + keys + 1),
            v: gauss([2, n, e], n + keys + 2),
            doc: { shape: [n], data: Float64Array.from(doc), dtype: "int" },
          };
          if (!src.includes("v: [")) delete x.v;
          if (!src.includes("doc")) delete x.doc;
          const node = p.optimized.nodes.find((m) =>
            m.op.op === "attention" || m.op.op === "probs"
          );
          assert.ok(node, `${name}: not fused`);
          const byId = new Map(p.optimized.nodes.map((m) => [m.id, m] as [number, Node]));
          const args = node.args.map((a) => byId.get(a)!);
          const leafData = args.map((a) =>
            a.op.op === "input" && a.op.name === "doc" ? doc : undefined
          );
          const counts = tileCounts(node, args, { n }, leafData);
          assert.ok(counts.empty > 0, `${name}: no empty tiles ${JSON.stringify(counts)}`);
          const plan = p.plan();
          assert.ok(
            plan.kernels.some((k) => k.wgsl.includes("var jt = jlo")),
            `${name}: no tile loop`,
          );
          const want = await p.run(x, { backend: "interp" });
          const got = await p.run(x, { backend: "gpu", poison: true });
          const err = relativeError(got, want);
          assert.ok(
            err < 1e-5,
            `${name}, ${keys} keys, n = ${n}, e = ${e}, split ${split}: ${err}`,
          );
        }
      }
    } finally {
      keyTile.keys = before.keys;
      Object.assign(LOOPS, before.loops);
    }
  },
});

Deno.test({
  name: "tiles: generated masked programs with 3-key blocks agree with the interpreter on the GPU",
  ignore: adapter === undefined,
  fn: async () => {
    // Blocks of 3 keys at n ≤ 31 skip often; the suite's GPU sample runs the default (64). Only
    // specs whose plan tests blocks are drawn (a plan with a key window alone tests none).
    const before = keyTile.keys;
    keyTile.keys = 3;
    const wgslOf = (spec: Spec) =>
      compileSpec(spec).program.plan().kernels.map((k) => k.wgsl).join("\n");
    const testsBlocks = specArb({ sizes: [5, 13, 31], depth: 2, maxExtras: 1 }).filter((s) =>
      s.mask !== undefined && s.fill === "-inf" && s.form === "index" &&
      wgslOf(s).includes("var jt = jlo")
    );
    // Blocks trimmed to the keys the mask counts (kernels/flash.ts).
    const trims = (spec: Spec) => wgslOf(spec).includes("var jk0 = jt");
    const agree = (specs: fc.Arbitrary<Spec>) =>
      fc.asyncProperty(specs, async (spec) => {
        const c = compileSpec(spec);
        const why = await gpuDifferential(c);
        if (why) throw new Error(report(c, why));
      });
    try {
      // One of the 10 is drawn among plans that trim: about half of those that test blocks trim
      // (3000 draws), so requiring one among 10 unfiltered draws failed 1 run in 1000 (0.5^10).
      await fc.assert(agree(testsBlocks), { numRuns: 9 });
      await fc.assert(agree(testsBlocks.filter(trims)), { numRuns: 1 });
      // Full blocks run the unmasked score in the blocked key loop (vec4 head sizes, blocks of
      // 4 or more keys): generated masks with fullTiles on.
      fullTiles.scores = true;
      keyTile.keys = 4;
      const fullPath = specArb({ sizes: [8, 13, 36], depth: 2, maxExtras: 1 }).filter((s) =>
        s.mask !== undefined && s.form === "index" && wgslOf(s).includes("if (tfull)")
      );
      await fc.assert(agree(fullPath), { numRuns: 4 });
    } finally {
      keyTile.keys = before;
      fullTiles.scores = false;
    }
  },
});

// Blocks with mixed rows (8 rows per invocation: a block of 1 or 3 keys on the diagonal is full
// for some rows of the group and not for others), NaN in a where's branch or condition, finite
// fills, packed and unpacked documents: the analysis's classes, and the kernel's block loop
// (each invocation moves on to its next block that is not empty) against the interpreter.
const MIXED: Record<string, string> = {
  causal: `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = where(j <= i, q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  // NaN in the kept branch (u < 0 at two keys): rows that see it are NaN.
  notNanBranch: `def f(q: [n, d], k: [n, d], v: [n, e], u: [n]) -> [n, e] {
  s[i, j] = where(not (j > i + 2) or j < 3, q[i] . k[j] + sqrt(u[j]), -inf)
  return softmax(s, axis=1) @ v
}`,
  // NaN in the condition (it compares false: masked): never full (sqrt is not modelled), and
  // full where `or j <= i` makes the condition true regardless.
  nanMask: `def f(q: [n, d], k: [n, d], v: [n, e], u: [n]) -> [n, e] {
  s[i, j] = where(sqrt(u[j]) < 1.2 and j <= i, q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  nanMaskOr: `def f(q: [n, d], k: [n, d], v: [n, e], u: [n]) -> [n, e] {
  s[i, j] = where(sqrt(u[j]) < 1.2 or j <= i, q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  // A finite other branch.
  twoBranches: `def f(q: [n, d], k: [n, d], v: [n, e]) -> [n, e] {
  s[i, j] = where(j <= i, q[i] . k[j], q[i] . k[j] * 0.5 - 2.0)
  return softmax(s, axis=1) @ v
}`,
  packedDocs: `def f(q: [n, d], k: [n, d], v: [n, e], doc: int[n]) -> [n, e] {
  s[i, j] = where(doc[i] == doc[j], q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  unpackedDocs: `def f(q: [n, d], k: [n, d], v: [n, e], dot: int[n]) -> [n, e] {
  s[i, j] = where(dot[i] == dot[j] or j <= i, q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  probs: `def f(q: [n, d], k: [n, d], doc: int[n]) -> [n, n] {
  s[i, j] = where(doc[i] == doc[j] or j < 2, q[i] . k[j], -1e9)
  return softmax(s, axis=1)
}`,
};

/** NaN where one is, and the relative error of the rest. */
function nanAndError(got: Tensor, want: Tensor): string | undefined {
  for (let x = 0; x < want.data.length; x++) {
    if (Number.isNaN(got.data[x]) !== Number.isNaN(want.data[x])) {
      return `flat index ${x}: got ${got.data[x]}, expected ${want.data[x]}`;
    }
  }
  const finite = (t: Tensor) => ({ ...t, data: t.data.map((v) => (Number.isNaN(v) ? 0 : v)) });
  const err = relativeError(finite(got), finite(want));
  return err < 1e-5 ? undefined : `relative error ${err}`;
}

Deno.test({
  name: "tiles: masks with mixed blocks, NaN, finite fills and documents agree on the GPU",
  ignore: adapter === undefined,
  fn: async () => {
    const before = keyTile.keys;
    const partial: Record<string, number> = {};
    try {
      for (const [keys, n] of [[1, 13], [3, 31], [8, 65]]) {
        keyTile.keys = keys;
        for (const [name, src] of Object.entries(MIXED)) {
          const p = compileSync(src);
          const packed = Array.from({ length: n }, (_, x) => Math.floor(x / 17));
          const unpacked = Array.from({ length: n }, (_, x) => (x * 7) % 3);
          const u = Array.from(
            { length: n },
            (_, x) => (x === 7 || x === n - 4 ? -1 : Math.abs(Math.sin(x)) * 2),
          );
          const x: Record<string, Tensor> = {
            q: gauss([2, n, 8], n + keys),
            k: gauss([2, n, 8], n + keys + 1),
            v: gauss([2, n, 4], n + keys + 2),
            doc: { shape: [n], data: Float64Array.from(packed), dtype: "int" },
            dot: { shape: [n], data: Float64Array.from(unpacked), dtype: "int" },
            u: { shape: [n], data: Float64Array.from(u), dtype: "float" },
          };
          for (const name of ["v", "doc", "dot", "u"]) {
            if (!src.includes(`${name}: `)) delete x[name];
          }
          const node = p.optimized.nodes.find((m) =>
            m.op.op === "attention" || m.op.op === "probs"
          );
          assert.ok(node, `${name}: not fused`);
          const byId = new Map(p.optimized.nodes.map((m) => [m.id, m] as [number, Node]));
          const args = node.args.map((a) => byId.get(a)!);
          const data: Record<string, number[]> = { doc: packed, dot: unpacked, u };
          const leafData = args.map((a) => a.op.op === "input" ? data[a.op.name] : undefined);
          const counts = tileCounts(node, args, { n }, leafData);
          const where = `${name}, ${keys} keys, n = ${n}: ${JSON.stringify(counts)}`;
          assert.ok(name === "nanMask" ? counts.full === 0 : counts.full > 0, where);
          partial[name] = (partial[name] ?? 0) + counts.partial;
          const want = await p.run(x, { backend: "interp" });
          const got = await p.run(x, { backend: "gpu", poison: true });
          const why = nanAndError(got, want);
          assert.ok(why === undefined, `${where}: ${why}`);
        }
      }
    } finally {
      keyTile.keys = before;
    }
    for (const name in MIXED) assert.ok(partial[name] > 0, `${name}: no partial blocks`);
  },
});

// Masks on data whose counted keys sit anywhere in a block: single keys at a block's first or
// last place, none at all for some rows of a tile, NaN in the condition. Each block that is not skipped is
// trimmed to the keys from the first to the last some row counts (kernels/flash.ts); a trim
// that dropped one counted key changes that row's output.
const TRIMMED: string[] = [
  `def f(q: [n, d], k: [n, d], v: [n, e], doc: [n]) -> [n, e] {
  s[i, j] = where(doc[i] == doc[j], q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  `def f(q: [n, d], k: [n, d], v: [n, e], doc: [n]) -> [n, e] {
  s[i, j] = where(doc[j] == doc[i] + 1.0 or j == i, q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
  `def f(q: [n, d], k: [n, d], v: [n, e], doc: [n]) -> [n, e] {
  s[i, j] = where(doc[i] == doc[j] and j <= i or j == 0, q[i] . k[j] - 0.1 * float(i - j), -inf)
  return softmax(s, axis=1) @ v
}`,
  // NaN inside the condition (sqrt of a negative compares false): those keys are masked.
  `def f(q: [n, d], k: [n, d], v: [n, e], doc: [n]) -> [n, e] {
  s[i, j] = where(sqrt(doc[j] - doc[i]) < 1.5 and j != i + 1 or j == i, q[i] . k[j], -inf)
  return softmax(s, axis=1) @ v
}`,
];

Deno.test({
  name:
    "tiles: blocks trimmed to the keys a data mask counts agree with the interpreter on the GPU",
  ignore: adapter === undefined,
  fn: async () => {
    const { attentionTile } = await import("../compiler/limits.ts");
    const before = { keys: keyTile.keys, rows: attentionTile.rows };
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            program: fc.nat(TRIMMED.length - 1),
            keys: fc.constantFrom(1, 3, 8, 64),
            rows: fc.constantFrom(1, 3, 8),
            n: fc.constantFrom(5, 13, 31, 70),
            // Few distinct ids: each id's keys are scattered, so blocks hold one or two of them.
            ids: fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 70, maxLength: 70 }),
            seed: fc.nat(1000),
          }),
          async ({ program, keys, rows, n, ids, seed }) => {
            keyTile.keys = keys;
            attentionTile.rows = rows;
            const p = compileSync(TRIMMED[program]);
            const wgsl = p.plan().kernels.map((k) => k.wgsl).join("\n");
            assert.ok(wgsl.includes("var jk0 = jt"), "the plan does not trim blocks");
            const doc = Float64Array.from(ids.slice(0, n));
            const x: Record<string, Tensor> = {
              q: gauss([2, n, 8], seed + 1),
              k: gauss([2, n, 8], seed + 2),
              v: gauss([2, n, 4], seed + 3),
              doc: { shape: [n], data: doc, dtype: "float" },
            };
            const want = await p.run(x, { backend: "interp" });
            const got = await p.run(x, { backend: "gpu", poison: true });
            const why = nanAndError(got, want);
            assert.ok(why === undefined, `program ${program}, ${keys} keys, ${rows} rows: ${why}`);
          },
        ),
        { numRuns: 12 },
      );
    } finally {
      keyTile.keys = before.keys;
      attentionTile.rows = before.rows;
    }
  },
});

Deno.test("tiles: a table index proven inside its axis is (T5's clamp), near misses are not", () => {
  const clampJI = (lo: number, hi: number, K: number) =>
    bin("add", bin("min", bin("max", bin("sub", J, I), c(lo)), c(hi)), c(K));
  assert.ok(indexInRange(clampJI(-16, 16, 16), 33));
  assert.ok(!indexInRange(clampJI(-16, 16, 16), 32), "one past the end");
  assert.ok(!indexInRange(clampJI(-17, 16, 16), 33), "one before the start");
  assert.ok(!indexInRange(bin("add", bin("sub", J, I), c(16)), 33), "unclamped");
  assert.ok(indexInRange(bin("min", un("abs", bin("sub", I, J)), c(7)), 8));
  // `%` and `//` use the GPU's division (within 2.5 ulp): never proven.
  assert.ok(!indexInRange(bin("mod", I, c(7)), 7));
  assert.ok(!indexInRange(bin("min", { kind: "size", name: "n" }, c(3)), 8), "a size");
  assert.ok(!indexInRange(bin("min", { kind: "leaf", arg: 3, at: "j" }, c(3)), 8), "data");
  assert.ok(!indexInRange(bin("min", I, c(2.5)), 8), "a fraction");
});

// Index expressions of i and j built from the operations indexInRange accepts, with constants.
const indexArb: fc.Arbitrary<Score> = fc.letrec<{ x: Score }>((tie) => ({
  x: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(I),
    fc.constant(J),
    fc.integer({ min: -40, max: 40 }).map(c),
    fc.record({
      fn: fc.constantFrom("add", "sub", "mul", "min", "max"),
      a: tie("x"),
      b: tie("x"),
    }).map(({ fn, a, b }) => bin(fn, a, b)),
    fc.record({ fn: fc.constantFrom("abs", "neg"), x: tie("x") }).map(({ fn, x }) => un(fn, x)),
  ),
})).x;

Deno.test("tiles: an index called inside its axis is inside it at every (i, j) tried", () => {
  let proven = 0;
  fc.assert(
    fc.property(
      indexArb,
      fc.integer({ min: 1, max: 80 }),
      fc.array(fc.tuple(fc.nat(2 ** 24), fc.nat(2 ** 24)), { minLength: 20, maxLength: 20 }),
      (x, dim, pairs) => {
        if (!indexInRange(x, dim)) return;
        if (JSON.stringify(x).match(/"kind":"[ij]"/)) proven++;
        // Ends of the range and near the diagonal, besides the drawn pairs.
        const edges = [0, 1, 2, 40, 2 ** 24 - 1, 2 ** 24, 2 ** 32 - 1];
        const all = [
          ...pairs,
          ...edges.flatMap((i) => edges.map((j) => [i, j] as [number, number])),
        ];
        for (const [i, j] of all) {
          const v = scoreAt(x, { i, j, qk: 0, n: 0, leaves: [] });
          assert.ok(v >= 0 && Math.floor(v) < dim, `${JSON.stringify(x)} at (${i}, ${j}): ${v}`);
        }
      },
    ),
    { numRuns: 3000 },
  );
  // 13-25 of 3,000 draws were proven and read i or j: none at all has probability about 1e-8.
  assert.ok(proven > 0, "no index of i or j proven in range");
});

Deno.test({
  name:
    "tiles: full blocks run the unmasked score (fullTiles on) and agree with the interpreter on the GPU",
  ignore: adapter === undefined,
  fn: async () => {
    // Off by default (no faster on lavapipe, compiler/limits.ts), so the suite turns it on here:
    // the mixed and trimmed masks at blocks of 4 keys and more (where the blocked loop runs
    // inside a block), rows 1 / 3 / 8, sizes on both sides of a block.
    const { attentionTile } = await import("../compiler/limits.ts");
    const before = { keys: keyTile.keys, rows: attentionTile.rows, full: fullTiles.scores };
    // Not nanMask: its condition is never provable (sqrt is not modelled), so it has no full path.
    const programs = [
      ...Object.entries(MIXED).filter(([name]) => name !== "probs" && name !== "nanMask")
        .map(([, s]) => s),
      ...TRIMMED,
    ];
    try {
      fullTiles.scores = true;
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            program: fc.nat(programs.length - 1),
            keys: fc.constantFrom(4, 8, 64),
            rows: fc.constantFrom(1, 3, 8),
            n: fc.constantFrom(5, 13, 31, 70),
            ids: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 70, maxLength: 70 }),
            sorted: fc.boolean(),
            seed: fc.nat(1000),
          }),
          async ({ program, keys, rows, n, ids, sorted, seed }) => {
            keyTile.keys = keys;
            attentionTile.rows = rows;
            const src = programs[program];
            const p = compileSync(src);
            const wgsl = p.plan().kernels.map((k) => k.wgsl).join("\n");
            const where = `program ${program}, ${keys} keys, ${rows} rows, n = ${n}`;
            // Every one of these masks can be proven true over some block.
            assert.ok(wgsl.includes("if (tfull)"), `${where}: no full-block loop`);
            // Packed (sorted) ids give long full runs; scattered ones give mixed blocks.
            const id = ids.slice(0, n);
            if (sorted) id.sort((a, b) => a - b);
            const u = Array.from({ length: n }, (_, x) => (x % 11 === 7 ? -1 : (x % 5) * 0.4));
            const x: Record<string, Tensor> = {
              q: gauss([2, n, 8], seed + 1),
              k: gauss([2, n, 8], seed + 2),
              v: gauss([2, n, 4], seed + 3),
              doc: {
                shape: [n],
                data: Float64Array.from(id),
                dtype: src.includes("doc: int") ? "int" : "float",
              },
              dot: { shape: [n], data: Float64Array.from(id.map((v) => v % 2)), dtype: "int" },
              u: { shape: [n], data: Float64Array.from(u), dtype: "float" },
            };
            for (const name of ["doc", "dot", "u"]) {
              if (!src.includes(`${name}: `)) delete x[name];
            }
            const want = await p.run(x, { backend: "interp" });
            const got = await p.run(x, { backend: "gpu", poison: true });
            const why = nanAndError(got, want);
            assert.ok(why === undefined, `${where}, ids ${id.join(",")}: ${why}`);
          },
        ),
        { numRuns: 12 },
      );
    } finally {
      keyTile.keys = before.keys;
      attentionTile.rows = before.rows;
      fullTiles.scores = before.full;
    }
  },
});
