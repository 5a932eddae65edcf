/**
 * A generator of random, valid-by-construction Attune attention programs, for the differential
 * oracle (tests/differential_test.ts) and volume fuzzing (bench/fuzz.ts).
 *
 * fast-check draws a small spec (plain data, so it shrinks), `printProgram` turns it into source
 * text, and `makeInputs` builds matching inputs (awkward sizes, optional batch/head dims, seeded
 * data that is never all zeros). The spec is context free where it can be: the printer
 * normalizes what depends on the sizes (a per-query vector read at `j` only when the key axis is
 * the query axis `n`, `s + s^T` only for square scores) so every spec prints a valid program.
 *
 * What it covers: scores from `q[i] . k[j]` and `q @ k^T`, cosine similarity, per-query and
 * per-key vectors (inputs and computed norms/sums), scalars, parameters and static values carried
 * by `repeat`, tables read at functions of i and j (1-D with clamp, 2-D inputs), iota masks
 * (causal, band, parity, leading tokens) and data masks (documents, padding) joined by and/or/not,
 * hard-max thresholds from another kernel's q·k, keepdims reductions, transposes, shared (self-attention, n = m) and distinct (cross-attention)
 * size symbols, softmax into V or not, weights without normalization (sigmoid(s - log m) @ v,
 * relu(s)^2 @ v), differential attention (two or three softmaxes combined, before or after @ v, the
 * later streams masked like the first or by its complement), sums and means, elementwise chains, normalize, matmul chains (reassociation),
 * attention inside `repeat`, head()/heads()/batch()/batches() in scores (ALiBi slopes), q with 2
 * or 3 heads per k/v head (grouped-query attention), and extras that cross the lowering's
 * thresholds: scatter_add tables of ≤ and
 * > PARTIAL_TABLE_BUCKETS buckets, host- and device-drawn random tensors, small-matrix regions with short and long
 * loops, index-notation contractions (matmul-shaped and near-misses), and prefix sums (cumsum of
 * slices with static bounds and arange, along rows of one, two
 * and several SCAN_BLOCKs or along columns; causal linear attention), and contractions over
 * prefix sums that fuse into `causal_contract` and their near misses (tests/causal_programs.ts). Some programs return a
 * second value: the row log-sum-exp of the score (fused into the flash pass when the head is
 * softmax attention) or the score itself.
 */
import fc from "fast-check";
import { compileSync, type Program, relativeError } from "../mod.ts";
import type { Graph, Node, Score } from "../compiler/ir/types.ts";
import type { Tensor } from "../compiler/tensor.ts";
import { type Divergence, firstDivergence, mulberry32 } from "../compiler/verify.ts";
import { lowerGraph } from "../compiler/lower/lower.ts";
import type { LowerOptions } from "../compiler/lower/plan.ts";
import {
  LOOP_UNROLL,
  PARTIAL_TABLE_BUCKETS,
  PRIVATE_TABLE_BUCKETS,
  SCAN_BLOCK,
  VECTOR_SCAN,
} from "../compiler/limits.ts";
import { execute } from "../runtime/executor.ts";
import { contractArb, type ContractExtra, contractLines } from "./causal_programs.ts";
import { interpretAll } from "../compiler/interp.ts";

// ---------------------------------------------------------------------------------------------
// Specs

/** A per-row vector: inputs `t` (per query), `u` (per key), or computed ones. */
export type VecName = "t" | "u" | "qn" | "kn" | "qmx" | "ks";

/** A float score element of index notation, over (i, j). */
export type SExpr =
  | { k: "qk" } // q[i] . k[j]
  | { k: "qksum" } // sum[c](q[i, c] * k[j, c]): the same dot product in index notation
  | { k: "cos" } // q[i] . k[j] / (qn[i] * kn[j])
  | { k: "vec"; name: VecName; at: "i" | "j" }
  | { k: "lit"; v: number }
  | { k: "param" } // slope
  | { k: "static" } // x, carried by a repeat
  | { k: "dist"; f: "i - j" | "j - i" | "i + j" } // iota arithmetic, an int
  | { k: "hashf"; f: HashTerm } // float((hash) % 7) / 4 and friends: int arithmetic that wraps
  // q[i] . k[j] with a factor on a row: -q[i] . k[j], (c * q[i]) . k[j] (`.` binds like `*`);
  // "data" (a factor read from data, maybe inf: not taken out), and rows computed in the dot,
  // "gate" k[j] * sigmoid(k[j]) and "shift" k[j] * 0.75 + k[j - 1] * 0.25, are rows of a matrix
  // computed first (passes/rows.ts); "pick" a row chosen by a where (k[j] read twice); the same
  // written as contractions (passes/rows.ts dotsOfContractions): "csum" a product of three
  // factors, reassociated, and "cshift" the shifted rows
  | {
    k: "scaled";
    f: "neg" | "lit" | "log" | "right" | "data" | "gate" | "shift" | "pick" | "csum" | "cshift";
  }
  // bias[clamp(j - i, -K, K) + K]: every index inside bias [2K + 1], so the kernel reads it
  // unchecked; edge -1 / 1 lets the clamp reach one past the table's start / end (reads 0 there).
  | { k: "table"; K: number; edge: -1 | 0 | 1 }
  // head()/heads()/batch()/batches() terms; headvec: hv[head()], hv: [3]; hashhead: the int hash
  // vector hh read at head() (computed there in i32; past its end, when keys < heads, 0)
  | { k: "lead"; f: "slope" | "alibi" | "batch" | "headvec" | "hashhead" }
  | { k: "grid"; at: GridAt } // a 2-D input table read at (i, j): g[i, j], g[i, j - 1], gt[j, i]
  | { k: "un"; fn: UnFn; x: SExpr }
  | { k: "bin"; op: BinOp; a: SExpr; b: SExpr }
  | { k: "where"; c: MExpr; a: SExpr; b: SExpr };

/**
 * Int arithmetic past 2^31 (32-bit, wrapping on both backends) and floor division of negatives:
 * a score term and a mask term.
 */
export type HashTerm = "knuth" | "mixed" | "negdiv";
const HASH_TERMS: Record<HashTerm, string> = {
  knuth: "float((i * 2654435761 + j * 40503) % 7) * 0.25",
  mixed: "float((i * 1000003 - j * 999999937) // 65536) * 0.0001",
  negdiv: "float((j - i) // 3 + (i - j) % 5)",
};

/** Where a 2-D table is read (`i, j - 1` reads 0 at j = 0: outside the table). */
export type GridAt = "i, j" | "i, j - 1" | "j, i";

/** Elementwise functions the generator uses, all finite on finite inputs. */
export type UnFn =
  | "tanh"
  | "sigmoid"
  | "relu"
  | "abs"
  | "expneg"
  | "sin"
  | "sqrtabs"
  | "log1p"
  | "elu";
/** Binary operators (`/` is printed as a / (1 + abs(b))). */
export type BinOp = "+" | "-" | "*" | "/" | "max" | "min";

/** A boolean mask element over (i, j). */
export type MExpr =
  | { k: "causal"; op: "<=" | "<" | ">=" } // j op i
  | { k: "band"; w: number } // abs(i - j) < w
  | { k: "parity"; p: number } // (i + j) % p != 0
  | { k: "hash"; m: number } // (i * 2654435761 + j * 97) % m != 0: wrapping int arithmetic
  | { k: "doc" } // doc[i] == doc[j]
  | { k: "lead"; at: "i" | "j"; c: number } // j < c (global tokens, a prefix)
  | { k: "qm" } // qm[i] > 0
  | { k: "km" } // km[j] > 0
  | { k: "data" } // q[i] . k[j] > 0
  // hh[j] % 3 != 0 with hh = arange(m) * 1103515245 + 12345: an int vector past 2^24 that the
  // score computes where it reads it (stored as float32 it would lose its low bits)
  | { k: "hashvec" }
  // DropKey: uniform([n, m], 5)[i, j] >= p, drawn inside the fused score; read transposed, or
  // shifted (j + 1 reads 0 past the last key: masked there)
  | { k: "drop"; p: number; at: "i, j" | "j, i" | "i, j + 1"; seed: "5" | "123456789 + n" }
  | { k: "and" | "or"; a: MExpr; b: MExpr }
  | { k: "not"; x: MExpr };

/** One step applied to a matrix-form score `s` [n, m]. */
export type MStep =
  | { k: "scale"; c: number } // s * c
  | { k: "sqrtd" } // s / sqrt(d)
  | { k: "colvec" } // s + u           (u [m] broadcast along rows: a key vector)
  | { k: "rowvec" } // s + tc          (tc [n, 1]: a query vector)
  | { k: "rowsum" } // s + sum(q, axis=1, keepdims=true)
  | { k: "rowmax" } // s - max(s, axis=1, keepdims=true)
  | { k: "static" } // s * x
  | { k: "transpose" } // s + s^T (square only)
  | { k: "tanh" } // tanh(s)
  | { k: "grid" } // s + g       (g [n, m]: a 2-D input table)
  | { k: "maskkm"; fill: Fill } // where(km > 0, s, fill)
  | { k: "maskqm"; fill: Fill } // where(qc > 0, s, fill)  (qc [n, 1])
  | { k: "maskdata"; fill: Fill }; // where(s > 0.5, s, fill)

/** What masked scores become. */
export type Fill = "-inf" | "-1e9";

/** What is done with the scores. */
export type Head =
  | "attn" // softmax(s, axis=1) @ v
  | "probs" // softmax(s, axis=1)
  | "colsum" // sum(softmax(s, axis=1), axis=0)
  | "rowmean" // mean(s, axis=1, keepdims=true) * ones row: [n, 1]
  | "loop" // y = v; repeat R { y = softmax(s, axis=1) @ y } (square only)
  | "chain" // (softmax(s, axis=1) @ v) @ w
  | "linear" // (relu(q) @ relu(k)^T) @ v + softmax(s, axis=1) @ v
  | "sigmoid" // sigmoid(s - log(m)) @ v: weights without normalization
  | "relu2" // relu(s)^2 @ v
  | "rownorm" // (relu(s) @ v) / (sum(relu(s), axis=1) + 1): weights and their row sums in one pass
  | "rownormsum" // the same with the row sum written first
  | "written" // w = exp(s - max(s)); (w / sum(w)) @ v: a softmax written out (NaN for empty rows)
  | "writtenv" // the same as (w @ v) / sum(w)
  | "sink" // (w @ v) / (exp(c - m) + sum(w)), m = max(s) or max(max(s), c): sink logits
  // The differences weigh their second stream by 0.5 * slope (at most 0.5): at slope 1 two
  // near-equal streams cancelled, and a normalize after that amplified rounding past the
  // differential's tolerance (fuzz seed 29000087), with no rewrite at fault.
  | "diff" // (softmax(s) - 0.5 slope softmax(tanh(q) @ k^T)) @ v: differential attention
  | "diffv" // softmax(s) @ v - c * (softmax(causal q · relu(k)) @ v): the same, distributed
  | "diffm" // (softmax(s) - slope * softmax(s2)) @ v, s2 under the spec's mask (or causal): blocks
  //           every stream masks are skipped when s masks too
  | "diff3"; // diffm plus a third stream under the complement of that mask: no block empty in all

/** Elementwise and row-wise steps after the head (on the head's value). */
export type Post =
  | "sigmoid"
  | "relu"
  | "tanhexp" // exp(tanh(y))
  | "leaky" // where(y > 0, y, 0.1 * y)
  | "normalize" // normalize(y, axis=-1)
  | "center"; // y - mean(y, axis=-1, keepdims=true)

/** Values computed beside the attention and added to it as a scalar (`y + mean(extra)`). */
export type Extra =
  | { k: "scatter"; buckets: number; direct: boolean } // scatter_add hash tables
  | { k: "random"; rows: number | "n"; kind: "randn" | "uniform"; seed: number }
  | { k: "region"; landmarks: number; iters: number } // segment means + a pinv-like loop
  // Prefix sums: of a static-bound slice of k's rows (`len` rows from `lo`, reading 0 past the
  // end) along `axis`, plus arange; or causal linear attention over k and v.
  // "vector": of one column, a single fiber (kernels/scan.ts's one-workgroup scan).
  | { k: "scan"; form: "rows" | "vector" | "causal"; axis: 0 | 1; lo: number; len: number }
  // Contractions over a prefix sum, fused or near misses (tests/causal_programs.ts).
  | ContractExtra
  // Index-notation contractions outside attention (compiler/passes/contract.ts makes the plain
  // ones matmuls); the near-misses must stay as written.
  | { k: "matmul"; form: ContractForm };

/** Contractions an extra writes: matmul-shaped ones, then near-misses that are not. */
export const CONTRACT_LINES = {
  // q kᵀ, kᵀ v and (kᵀ v)ᵀ in index notation, and an unfused dot of rows.
  abt: "ct[ii, jj] = sum[aa](q[ii, aa] * k[jj, aa])",
  atb: "ct[aa, cc] = sum[jj](k[jj, aa] * v[jj, cc])",
  swapped: "ct[cc, aa] = sum[jj](v[jj, cc] * k[jj, aa])",
  dot: "ct[ii, jj] = q[ii] . k[jj]",
  // jj indexes both operands (a batch axis); a shifted index reads 0 past the end and a third
  // factor (the rows of k shifted, of q * tanh(q), computed first, then the matmul).
  batched: "ct[jj, aa] = sum[cc](k[jj, aa] * k[jj, cc])",
  shifted: "ct[ii, jj] = sum[aa](q[ii, aa] * k[jj, aa + 1])",
  scaled: "ct[ii, jj] = sum[aa](q[ii, aa] * k[jj, aa] * tanh(q[ii, aa]))",
  // A row of q read whole at ii (an identity gather simplify drops), dotted with one key.
  rowdot: "ct[ii] = q[ii] . k[0] + q[ii, 0]",
} as const;
export type ContractForm = keyof typeof CONTRACT_LINES;

/** A second result: `logsumexp(s, axis=1)` (with keepdims: "lsekeep"), or the score `s`. */
export type Second = "lse" | "lsekeep" | "score";

/** A whole program and its inputs. */
export interface Spec {
  /** Returned beside y (derived from dataSeed, so other fields draw as before). */
  second?: Second;
  /** Keys and values share the query size symbol `n` (self-attention). */
  shared: boolean;
  form: "index" | "matrix";
  score: SExpr;
  mask?: MExpr;
  fill: Fill;
  steps: MStep[];
  head: Head;
  loopCount: number;
  post: Post[];
  /** `x = init; repeat count { x = x * factor }`, used by "static" leaves/steps. */
  staticLoop: { init: number; factor: number; count: number };
  /** Replace q first: a tensor loop `repeat R { qq = normalize(qq + 0.5 * tanh(qq)) }`. */
  qLoop: number;
  extras: Extra[];
  slope: number;
  sizes: { n: number; m: number; d: number; e: number; f: number };
  /** Leading batch/head dims of q, k, v. */
  batch: number[];
  /** How many of the batch dims the vectors and masks carry (0 = shared across slices). */
  vecLead: number;
  /** q (and vectors) have this many heads per k/v head (grouped-query attention; 1 = none). */
  qGroup: number;
  dataSeed: number;
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Second results, by dataSeed: three programs in eight return one. */
const SECONDS: (Second | undefined)[] = ["lse", "lsekeep", "score", ...Array(5).fill(undefined)];

/**
 * Row thresholds from a q·k computed apart from the score (index forms, by dataSeed): the stored
 * matmul, its transpose, a max in index notation, the diagonal (square only).
 */
const HARD_MAX: (string | undefined)[] = [
  "top = max(QV @ k^T, axis=1)",
  "top = max((k @ QV^T)^T, axis=1)",
  "top[i] = max[j](QV[i] . k[j])",
  "top = sum(QV * k, axis=1)",
  ...Array(4).fill(undefined),
];

/** Awkward sizes for the interpreter and small GPU runs. */
export const SMALL_SIZES = [1, 2, 3, 5, 7, 8, 13] as const;
/** Awkward sizes including ones around powers of two. */
export const AWKWARD_SIZES = [1, 2, 3, 5, 7, 8, 13, 31, 64, 65, 100] as const;

const UNFNS: UnFn[] = [
  "tanh",
  "sigmoid",
  "relu",
  "abs",
  "expneg",
  "sin",
  "sqrtabs",
  "log1p",
  "elu",
];
const BINOPS: BinOp[] = ["+", "-", "*", "/", "max", "min"];
const VECS: VecName[] = ["t", "u", "qn", "kn", "qmx", "ks"];

const sLeaf: fc.Arbitrary<SExpr> = fc.oneof(
  { arbitrary: fc.constant<SExpr>({ k: "qk" }), weight: 4 },
  { arbitrary: fc.constant<SExpr>({ k: "qksum" }), weight: 1 },
  { arbitrary: fc.constant<SExpr>({ k: "cos" }), weight: 1 },
  {
    arbitrary: fc.record({
      k: fc.constant("vec" as const),
      name: fc.constantFrom(...VECS),
      at: fc.constantFrom("i" as const, "j" as const),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      k: fc.constant("lit" as const),
      v: fc.constantFrom(0.5, 2, -1.5, 0.125),
    }),
    weight: 1,
  },
  { arbitrary: fc.constant<SExpr>({ k: "param" }), weight: 1 },
  { arbitrary: fc.constant<SExpr>({ k: "static" }), weight: 1 },
  {
    arbitrary: fc.record({
      k: fc.constant("dist" as const),
      f: fc.constantFrom("i - j" as const, "j - i" as const, "i + j" as const),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      k: fc.constant("scaled" as const),
      f: fc.constantFrom(
        "neg" as const,
        "lit" as const,
        "log" as const,
        "right" as const,
        "data" as const,
        "gate" as const,
        "shift" as const,
        "pick" as const,
        "csum" as const,
        "cshift" as const,
      ),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      k: fc.constant("hashf" as const),
      f: fc.constantFrom<HashTerm>("knuth", "mixed", "negdiv"),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      k: fc.constant("table" as const),
      K: fc.constantFrom(1, 2, 4, 7),
      edge: fc.constantFrom(0, 0, -1, 1) as fc.Arbitrary<-1 | 0 | 1>,
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      k: fc.constant("lead" as const),
      f: fc.constantFrom<"slope" | "alibi" | "batch" | "headvec" | "hashhead">(
        "slope",
        "alibi",
        "batch",
        "headvec",
        "hashhead",
      ),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      k: fc.constant("grid" as const),
      at: fc.constantFrom<GridAt>("i, j", "i, j - 1", "j, i"),
    }),
    weight: 1,
  },
);

const mLeaf: fc.Arbitrary<MExpr> = fc.oneof(
  fc.record({
    k: fc.constant("causal" as const),
    op: fc.constantFrom("<=" as const, "<" as const, ">=" as const),
  }),
  fc.record({ k: fc.constant("band" as const), w: fc.constantFrom(1, 2, 3, 8) }),
  fc.record({ k: fc.constant("parity" as const), p: fc.constantFrom(2, 3) }),
  fc.record({ k: fc.constant("hash" as const), m: fc.constantFrom(2, 3, 5) }),
  fc.constant<MExpr>({ k: "hashvec" }),
  fc.record({
    k: fc.constant("drop" as const),
    p: fc.constantFrom(0.25, 0.5),
    at: fc.constantFrom("i, j" as const, "j, i" as const, "i, j + 1" as const),
    // A seed computed from ints past 2^24 (read as its i32 bits, not through f32).
    seed: fc.constantFrom("5" as const, "123456789 + n" as const),
  }),
  fc.constant<MExpr>({ k: "doc" }),
  fc.record({
    k: fc.constant("lead" as const),
    at: fc.constantFrom("i" as const, "j" as const),
    c: fc.constantFrom(1, 4, 9),
  }),
  fc.constant<MExpr>({ k: "qm" }),
  fc.constant<MExpr>({ k: "km" }),
  fc.constant<MExpr>({ k: "data" }),
);

function mExpr(depth: number): fc.Arbitrary<MExpr> {
  if (depth <= 0) return mLeaf;
  const sub = mExpr(depth - 1);
  return fc.oneof(
    { arbitrary: mLeaf, weight: 3 },
    {
      arbitrary: fc.record({ k: fc.constantFrom("and" as const, "or" as const), a: sub, b: sub }),
      weight: 2,
    },
    { arbitrary: fc.record({ k: fc.constant("not" as const), x: sub }), weight: 1 },
  );
}

function sExpr(depth: number): fc.Arbitrary<SExpr> {
  if (depth <= 0) return sLeaf;
  const sub = sExpr(depth - 1);
  return fc.oneof(
    { arbitrary: sLeaf, weight: 2 },
    {
      arbitrary: fc.record({
        k: fc.constant("un" as const),
        fn: fc.constantFrom(...UNFNS),
        x: sub,
      }),
      weight: 1,
    },
    {
      arbitrary: fc.record({
        k: fc.constant("bin" as const),
        op: fc.constantFrom(...BINOPS),
        a: sub,
        b: sub,
      }),
      weight: 3,
    },
    {
      arbitrary: fc.record({ k: fc.constant("where" as const), c: mExpr(1), a: sub, b: sub }),
      weight: 1,
    },
  );
}

const fill = fc.constantFrom<Fill>("-inf", "-1e9");
const mStep: fc.Arbitrary<MStep> = fc.oneof(
  fc.record({ k: fc.constant("scale" as const), c: fc.constantFrom(0.5, 0.125, 2) }),
  fc.constant<MStep>({ k: "sqrtd" }),
  fc.constant<MStep>({ k: "colvec" }),
  fc.constant<MStep>({ k: "rowvec" }),
  fc.constant<MStep>({ k: "rowsum" }),
  fc.constant<MStep>({ k: "rowmax" }),
  fc.constant<MStep>({ k: "static" }),
  fc.constant<MStep>({ k: "transpose" }),
  fc.constant<MStep>({ k: "tanh" }),
  fc.constant<MStep>({ k: "grid" }),
  fc.record({ k: fc.constant("maskkm" as const), fill }),
  fc.record({ k: fc.constant("maskqm" as const), fill }),
  fc.record({ k: fc.constant("maskdata" as const), fill }),
);

/**
 * scatter_add bucket counts: both sides of the private-table limit (PRIVATE_TABLE_BUCKETS) and of
 * the partial-table limit (PARTIAL_TABLE_BUCKETS).
 */
export const BUCKETS = [
  1,
  5,
  PRIVATE_TABLE_BUCKETS,
  PRIVATE_TABLE_BUCKETS + 1,
  PARTIAL_TABLE_BUCKETS,
  PARTIAL_TABLE_BUCKETS + 1,
  3000,
] as const;

/** Bucket counts of the GPU sample: the same sides of both limits. */
export const GPU_BUCKETS = BUCKETS;

const extraArb = (buckets: readonly number[]): fc.Arbitrary<Extra> =>
  fc.oneof(
    fc.record({
      k: fc.constant("scatter" as const),
      buckets: fc.constantFrom(...buckets),
      direct: fc.boolean(),
    }),
    fc.record({
      k: fc.constant("random" as const),
      rows: fc.constantFrom<number | "n">(1, 3, "n"),
      kind: fc.constantFrom("randn" as const, "uniform" as const),
      // Small seeds, and seeds past float32's exact integers up to 2^32 − 1.
      seed: fc.oneof(
        fc.integer({ min: 0, max: 99 }),
        fc.integer({ min: 2 ** 24, max: 2 ** 32 - 1 }),
      ),
    }),
    fc.record({
      k: fc.constant("scan" as const),
      form: fc.constantFrom("rows" as const, "vector" as const, "causal" as const),
      axis: fc.constantFrom(0 as const, 1 as const),
      lo: fc.constantFrom(0, 2),
      // Both sides of SCAN_BLOCK (one block, a block and one, several blocks) and of
      // VECTOR_SCAN.workgroup (invocations with no element, with several).
      len: fc.constantFrom(
        ...new Set([1, 3, SCAN_BLOCK, SCAN_BLOCK + 1, 2 * SCAN_BLOCK + 2].concat(
          [VECTOR_SCAN.workgroup, VECTOR_SCAN.workgroup + 1, 2 * VECTOR_SCAN.workgroup + 2],
        )),
      ),
    }),
    contractArb,
    fc.record({
      k: fc.constant("matmul" as const),
      form: fc.constantFrom(...Object.keys(CONTRACT_LINES) as ContractForm[]),
    }),
    fc.record({
      k: fc.constant("region" as const),
      landmarks: fc.constantFrom(1, 2, 3, 5),
      // Both sides of LOOP_UNROLL (a loop outside a region: unrolled, or a host loop).
      iters: fc.constantFrom(0, 1, 3, 6, LOOP_UNROLL, LOOP_UNROLL + 1, 40),
    }),
  );

/** Options of `specArb`. */
export interface SpecOptions {
  /** Sizes to draw n, m, d, e, f from (default SMALL_SIZES). */
  sizes?: readonly number[];
  /** Allow leading batch/head dims (default true). */
  batch?: boolean;
  /** Most extras per program (default 2). */
  maxExtras?: number;
  /** Score expression depth (default 3). */
  depth?: number;
  /** scatter_add bucket counts (default BUCKETS). */
  buckets?: readonly number[];
}

/** Random program specs. */
export function specArb(options: SpecOptions = {}): fc.Arbitrary<Spec> {
  const sizes = options.sizes ?? SMALL_SIZES;
  const size = fc.constantFrom(...sizes);
  const sizeRec = fc.record({
    n: size,
    m: size,
    d: size,
    e: size,
    f: size,
    sameDE: fc.boolean(),
    sameNM: fc.boolean(),
  })
    .map(({ sameDE, sameNM, ...s }) => ({ ...s, e: sameDE ? s.d : s.e, m: sameNM ? s.n : s.m }));
  return fc.record({
    shared: fc.boolean(),
    form: fc.constantFrom("index" as const, "matrix" as const),
    score: sExpr(options.depth ?? 3),
    mask: fc.option(mExpr(2), { nil: undefined }),
    fill,
    steps: fc.array(mStep, { maxLength: 4 }),
    head: fc.constantFrom<Head>(
      "attn",
      "attn",
      "attn",
      "probs",
      "colsum",
      "rowmean",
      "loop",
      "chain",
      "linear",
      "sigmoid",
      "relu2",
      "rownorm",
      "rownormsum",
      "written",
      "writtenv",
      "sink",
      "diff",
      "diffv",
      "diffm",
      "diff3",
    ),
    loopCount: fc.constantFrom(1, 2, 3, LOOP_UNROLL + 1),
    post: fc.array(
      fc.constantFrom<Post>("sigmoid", "relu", "tanhexp", "leaky", "normalize", "center"),
      {
        maxLength: 2,
      },
    ),
    staticLoop: fc.record({
      init: fc.constantFrom(1, 0.25),
      factor: fc.constantFrom(0.5, 1.5, 2),
      count: fc.constantFrom(0, 1, 3, LOOP_UNROLL + 2),
    }),
    // A tensor loop over q: unrolled up to LOOP_UNROLL iterations, a host loop past it.
    qLoop: fc.constantFrom(0, 0, 0, 1, 2, LOOP_UNROLL, LOOP_UNROLL + 1),
    extras: fc.array(extraArb(options.buckets ?? BUCKETS), { maxLength: options.maxExtras ?? 2 }),
    slope: fc.constantFrom(0.5, 0.25, 1),
    sizes: sizeRec,
    batch: options.batch === false
      ? fc.constant<number[]>([])
      : fc.constantFrom<number[]>([], [], [], [2], [2, 3]),
    vecLead: fc.constantFrom(0, 1, 2),
    qGroup: fc.constantFrom(1, 1, 2, 3),
    dataSeed: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  }).map((s) => normalizeSpec({ ...s, second: SECONDS[s.dataSeed % SECONDS.length] }));
}

/** Make a spec consistent with its sizes (shared axes equal, landmarks within the rows). */
export function normalizeSpec(s: Spec): Spec {
  const sizes = { ...s.sizes };
  if (s.shared) sizes.m = sizes.n;
  const rows = Math.min(sizes.n, sizes.m);
  const extras = s.extras.map((x) =>
    x.k === "region" ? { ...x, landmarks: Math.min(x.landmarks, rows) } : x
  );
  const qGroup = s.batch.length ? s.qGroup ?? 1 : 1;
  return { ...s, sizes, extras, vecLead: Math.min(s.vecLead, s.batch.length), qGroup };
}

// ---------------------------------------------------------------------------------------------
// Printing

/** The statement each post-processing step prints. */
const POST_LINES: Record<Post, string> = {
  sigmoid: "y = sigmoid(y)",
  relu: "y = relu(y)",
  tanhexp: "y = exp(tanh(y))",
  leaky: "y = where(y > 0, y, 0.1 * y)",
  normalize: "y = normalize(y, axis=-1)",
  center: "y = y - mean(y, axis=-1, keepdims=true)",
};

/** Source text of a spec (the entry is `prog`). */
export function printProgram(s: Spec): string {
  const used = new Set<string>();
  const M = s.shared ? "n" : "m";
  const need = (name: string) => used.add(name);
  const qv = s.qLoop > 0 ? "qq" : "q";
  // Per-query vectors may be read at j only when the key axis is n.
  const vecAt = (name: VecName, at: "i" | "j"): "i" | "j" => {
    if (s.shared) return at;
    return name === "t" || name === "qn" || name === "qmx" ? "i" : "j";
  };
  const vecSrc = (name: VecName): string => {
    if (name === "t" || name === "u") need(name);
    else need(name); // computed: declared in the body
    return name;
  };
  const mask = (e: MExpr): string => {
    switch (e.k) {
      case "causal":
        return `j ${e.op} i`;
      case "band":
        return `abs(i - j) < ${e.w}`;
      case "parity":
        return `(i + j) % ${e.p} != 0`;
      case "hash":
        return `(i * 2654435761 + j * 97) % ${e.m} != 0`;
      case "hashvec":
        need("hh");
        return "hh[j] % 3 != 0";
      case "drop":
        return `uniform([${
          e.at === "j, i" ? `${M}, n` : `n, ${M}`
        }], ${e.seed})[${e.at}] >= ${e.p}`;
      case "doc":
        if (s.shared) {
          need("doc");
          return "doc[i] == doc[j]";
        }
        need("dq");
        need("dk");
        return "dq[i] == dk[j]";
      case "lead":
        return `${e.at} < ${e.c}`;
      case "qm":
        need("qm");
        return "qm[i] > 0";
      case "km":
        need("km");
        return "km[j] > 0";
      case "data":
        return `${qv}[i] . k[j] > 0`;
      case "and":
      case "or":
        return `(${mask(e.a)} ${e.k} ${mask(e.b)})`;
      case "not":
        return `not (${mask(e.x)})`;
    }
  };
  const score = (e: SExpr): string => {
    switch (e.k) {
      case "qk":
        return `${qv}[i] . k[j]`;
      case "qksum":
        return `sum[c](${qv}[i, c] * k[j, c])`;
      case "cos":
        need("qn");
        need("kn");
        return `${qv}[i] . k[j] / (qn[i] * kn[j])`;
      case "vec":
        return `${vecSrc(e.name)}[${vecAt(e.name, e.at)}]`;
      case "lit":
        return e.v < 0 ? `(${e.v})` : String(e.v);
      case "param":
        return "slope";
      case "static":
        need("x");
        return "x";
      case "dist":
        return `(${e.f})`;
      case "hashf":
        return `(${HASH_TERMS[e.f]})`;
      case "scaled":
        return {
          neg: `(-${qv}[i] . k[j])`,
          lit: `(0.5 * ${qv}[i] . k[j])`,
          log: `(log(float(i + 1)) * ${qv}[i] . k[j])`,
          right: `(${qv}[i] . (k[j] * slope))`,
          data: `((${qv}[i] * ${vecSrc("t")}[i]) . k[j])`,
          gate: `(${qv}[i] . (k[j] * sigmoid(k[j])))`,
          shift: `(${qv}[i] . (k[j] * 0.75 + k[j - 1] * 0.25))`,
          pick: `(${qv}[i] . where(${vecSrc("u")}[j] > 0.0, k[j], -k[j]))`,
          csum: `sum[c](${qv}[i, c] * k[j, c] * sigmoid(k[j, c]))`,
          cshift: `sum[c](${qv}[i, c] * (0.75 * k[j, c] + 0.25 * k[j - 1, c]))`,
        }[e.f];
      case "table":
        need(`bias${e.K}`);
        return `bias${e.K}[clamp(j - i, ${-e.K + Math.min(e.edge, 0)}, ${
          e.K + Math.max(e.edge, 0)
        }) + ${e.K}]`;
      case "lead":
        if (e.f === "headvec") need("hv");
        if (e.f === "hashhead") need("hh");
        return {
          headvec: "hv[head()]",
          hashhead: "float(hh[head()] % 5)",
          slope: "(2.0 ^ (-8.0 * float(head() + 1) / float(heads())))",
          alibi: "(-(2.0 ^ (-float(head() + 1) / float(heads()))) * float(abs(i - j)))",
          batch: "float(batch() - 2 * batches() + head())",
        }[e.f];
      case "grid":
        need(e.at === "j, i" ? "gt" : "g");
        return `${e.at === "j, i" ? "gt" : "g"}[${e.at}]`;
      case "un": {
        const x = score(e.x);
        switch (e.fn) {
          case "expneg":
            return `exp(-abs(${x}))`;
          case "sqrtabs":
            return `sqrt(abs(${x}))`;
          case "log1p":
            return `log(1 + abs(${x}))`;
          default:
            return `${e.fn}(${x})`;
        }
      }
      case "bin": {
        const a = score(e.a), b = score(e.b);
        if (e.op === "max" || e.op === "min") return `${e.op}(${a}, ${b})`;
        if (e.op === "/") return `(${a} / (1 + abs(${b})))`;
        return `(${a} ${e.op} ${b})`;
      }
      case "where":
        return `where(${mask(e.c)}, ${score(e.a)}, ${score(e.b)})`;
    }
  };

  const body: string[] = [];
  const scoreLines: string[] = [];
  const square = s.shared;
  if (s.form === "index") {
    let e = score(s.score);
    // The score must depend on the dot product so that it is an attention score at all.
    if (!/\]\s\.\s\(?k\[j\]|\* k\[j, c\]\)/.test(e)) e = `${qv}[i] . k[j] + ${e}`;
    if (s.mask) e = `where(${mask(s.mask)}, ${e}, ${s.fill})`;
    // Hard max against another kernel's q·k (bits 4-6 of dataSeed, so other fields draw as
    // before): the fused pass would recompute q·k and could drop the row's best key by an ulp.
    const hard = HARD_MAX[(s.dataSeed >>> 4) & 7];
    if (hard && (square || !hard.includes("sum("))) {
      scoreLines.push(hard.replaceAll("QV", qv));
      e = `where(${qv}[i] . k[j] >= top[i], ${e}, -inf)`;
    }
    scoreLines.push(`s[i, j] = ${e}`);
  } else {
    scoreLines.push(`s = ${qv} @ k^T`);
    // A finite fill goes last: in float32, -1e9 + u is -1e9 (ulp 64), so a bias added to a
    // fully masked row would vanish on the GPU while float64 keeps it, a difference of precision
    // and not of compilation. -inf fills are exact anywhere.
    const finiteFill = (st: MStep) => "fill" in st && st.fill === "-1e9";
    const steps = [...s.steps.filter((st) => !finiteFill(st)), ...s.steps.filter(finiteFill)];
    for (const st of steps) {
      switch (st.k) {
        case "scale":
          scoreLines.push(`s = s * ${st.c}`);
          break;
        case "sqrtd":
          scoreLines.push("s = s / sqrt(d)");
          break;
        case "colvec":
          need("u");
          scoreLines.push("s = s + u");
          break;
        case "rowvec":
          need("tc");
          scoreLines.push("s = s + tc");
          break;
        case "rowsum":
          scoreLines.push(`s = s + sum(${qv}, axis=1, keepdims=true)`);
          break;
        case "rowmax":
          scoreLines.push("s = s - max(s, axis=1, keepdims=true)");
          break;
        case "static":
          need("x");
          scoreLines.push("s = s * x");
          break;
        case "transpose":
          if (square) scoreLines.push("s = s + s^T");
          break;
        case "tanh":
          scoreLines.push("s = tanh(s)");
          break;
        case "grid":
          need("g");
          scoreLines.push("s = s + g");
          break;
        case "maskkm":
          need("km");
          scoreLines.push(`s = where(km > 0, s, ${st.fill})`);
          break;
        case "maskqm":
          need("qc");
          scoreLines.push(`s = where(qc > 0, s, ${st.fill})`);
          break;
        case "maskdata":
          scoreLines.push(`s = where(s > 0.5, s, ${st.fill})`);
          break;
      }
    }
  }

  // Head.
  const head = s.head === "loop" && !square ? "attn" : s.head;
  const headLines: string[] = [];
  let shape: string[];
  switch (head) {
    case "attn":
      need("v");
      headLines.push("y = softmax(s, axis=1) @ v");
      shape = ["n", "e"];
      break;
    case "probs":
      headLines.push("y = softmax(s, axis=1)");
      shape = ["n", M];
      break;
    case "colsum":
      headLines.push("y = sum(softmax(s, axis=1), axis=0)");
      shape = [M];
      break;
    case "rowmean":
      headLines.push("y = mean(s, axis=1, keepdims=true)");
      shape = ["n", "1"];
      break;
    case "loop":
      need("v");
      headLines.push("y = v", `repeat ${s.loopCount} { y = softmax(s, axis=1) @ y }`);
      shape = ["n", "e"];
      break;
    case "chain":
      need("v");
      need("w");
      headLines.push("y = (softmax(s, axis=1) @ v) @ w");
      shape = ["n", "f"];
      break;
    case "linear":
      need("v");
      headLines.push(`y = (relu(${qv}) @ relu(k)^T) @ v + softmax(s, axis=1) @ v`);
      shape = ["n", "e"];
      break;
    case "sigmoid":
      need("v");
      headLines.push(`y = sigmoid(s - log(${M})) @ v`);
      shape = ["n", "e"];
      break;
    case "relu2":
      need("v");
      headLines.push("y = relu(s)^2 @ v");
      shape = ["n", "e"];
      break;
    case "rownorm":
      need("v");
      headLines.push("rw = relu(s)", "y = (rw @ v) / (sum(rw, axis=1, keepdims=true) + 1.0)");
      shape = ["n", "e"];
      break;
    case "sink": {
      // The sink logit by dataSeed bits 7-8 (other fields draw as before): softmax-one's 0, the
      // parameter `slope`, the same inside the stable shift (gpt-oss), a per-row input tc.
      need("v");
      const form = (s.dataSeed >>> 7) & 3;
      if (form === 3) need("tc");
      const c = ["", "slope", "slope", "tc"][form];
      headLines.push(
        form === 2
          ? "sm = max(max(s, axis=1, keepdims=true), slope)"
          : "sm = max(s, axis=1, keepdims=true)",
        "sw = exp(s - sm)",
        `y = (sw @ v) / (exp(${c}-sm) + sum(sw, axis=1, keepdims=true))`,
      );
      shape = ["n", "e"];
      break;
    }
    case "written":
    case "writtenv":
      need("v");
      headLines.push(
        "sw = exp(s - max(s, axis=1, keepdims=true))",
        head === "written"
          ? "y = (sw / sum(sw, axis=1, keepdims=true)) @ v"
          : "y = (sw @ v) / sum(sw, axis=1, keepdims=true)",
      );
      shape = ["n", "e"];
      break;
    case "rownormsum":
      need("v");
      headLines.push(
        "rw = relu(s)",
        "rz = sum(rw, axis=1, keepdims=true) + 1.0",
        "y = (rw @ v) / rz",
      );
      shape = ["n", "e"];
      break;
    case "diff": {
      // The second stream's head width by dataSeed bit 9: d, or 1 (its first column: a mix of
      // streams of different widths stays unfused).
      need("v");
      const two = (s.dataSeed >>> 9) & 1 ? `tanh(${qv}[:, :1]) @ k[:, :1]^T` : `tanh(${qv}) @ k^T`;
      headLines.push(`y = (softmax(s, axis=1) - 0.5 * slope * softmax(${two}, axis=1)) @ v`);
      shape = ["n", "e"];
      break;
    }
    case "diffv": {
      // dataSeed bit 10: the second term written `c * softmax(s2) @ v`, which parses as
      // `(c * softmax(s2)) @ v` (passes/scales.ts moves c out); bit 11: c per row, sigmoid(tc).
      need("v");
      const c = (s.dataSeed >>> 11) & 1 ? (need("tc"), "sigmoid(tc)") : "0.5 * slope";
      headLines.push(
        "rk = relu(k)",
        `s2[i, j] = where(j <= i, ${qv}[i] . rk[j], -inf)`,
        (s.dataSeed >>> 10) & 1
          ? `y = softmax(s, axis=1) @ v - ${c} * softmax(s2, axis=1) @ v`
          : `y = softmax(s, axis=1) @ v - ${c} * (softmax(s2, axis=1) @ v)`,
      );
      shape = ["n", "e"];
      break;
    }
    case "diffm":
    case "diff3": {
      need("v");
      const m2 = mask(s.mask ?? { k: "causal", op: "<=" });
      headLines.push("tq = tanh(" + qv + ")", `s2[i, j] = where(${m2}, tq[i] . k[j] * 0.5, -inf)`);
      if (head === "diffm") {
        headLines.push("y = (softmax(s, axis=1) - 0.5 * slope * softmax(s2, axis=1)) @ v");
      } else {
        headLines.push(
          "rk = relu(k)",
          `s3[i, j] = where(not (${m2}), ${qv}[i] . rk[j], -inf)`,
          "y = (softmax(s, axis=1) - 0.5 * slope * softmax(s2, axis=1) + 0.25 * softmax(s3, axis=1)) @ v",
        );
      }
      shape = ["n", "e"];
      break;
    }
  }
  for (const p of s.post) headLines.push(POST_LINES[p]);
  // Extras, added as scalars.
  s.extras.forEach((x, idx) => {
    const z = `z${idx}`;
    switch (x.k) {
      case "scatter": {
        need("v");
        const B = x.buckets;
        headLines.push(
          `hk${idx} = int(abs(sum(k, axis=1)) * 7) % ${B}`,
          `tab${idx} = scatter_add(hk${idx}, v, ${B})`,
        );
        if (x.direct) headLines.push(`${z} = tab${idx}`);
        else {
          headLines.push(
            `hq${idx} = int(abs(sum(${qv}, axis=1)) * 7) % ${B}`,
            `${z} = tab${idx}[hq${idx}]`,
          );
        }
        break;
      }
      case "random": {
        const rows = x.rows === "n" ? "n" : String(x.rows);
        headLines.push(`${z} = ${x.kind}([${rows}, d], ${x.seed}) * ${qv}[0]`);
        break;
      }
      case "scan":
        if (x.form === "rows") {
          const { lo, len } = x;
          headLines.push(
            `kk${idx}[jj, cc] = tanh(k[${lo}:${
              lo + len
            }][jj, cc]) + 0.01 * float(arange(${len})[jj])`,
            `ck${idx} = cumsum(kk${idx}, axis=${x.axis})`,
            `${z} = ck${idx}[${len - 1}:, :1] * 0.1`,
          );
        } else if (x.form === "vector") {
          const { lo, len } = x;
          headLines.push(
            `vk${idx}[jj] = tanh(k[${lo}:${lo + len}][jj, 0]) + 0.01 * float(arange(${len})[jj])`,
            `cv${idx} = cumsum(vk${idx}, axis=0)`,
            `${z} = cv${idx}[${len - 1}:] * 0.1`,
          );
        } else {
          need("v");
          headLines.push(
            `fk${idx} = elu(k) + 1`,
            `kv${idx}[jj, aa, cc] = fk${idx}[jj, aa] * v[jj, cc]`,
            `S${idx} = cumsum(kv${idx}, axis=0)`,
            `N${idx} = cumsum(fk${idx}, axis=0)`,
            `${z}[jj, cc] = sum[aa](fk${idx}[jj, aa] * S${idx}[jj, aa, cc]) / sum[aa](fk${idx}[jj, aa] * N${idx}[jj, aa])`,
          );
        }
        break;
      case "contract":
        need("v");
        headLines.push(...contractLines(x, idx));
        break;
      case "matmul": {
        if (CONTRACT_LINES[x.form].includes("v[")) need("v");
        headLines.push(`${CONTRACT_LINES[x.form].replace("ct[", `${z}[`)}`);
        break;
      }
      case "region": {
        need("v");
        const L = x.landmarks;
        headLines.push(
          `lk${idx} = segment_mean(k, ${L})`,
          `a${idx} = softmax(lk${idx} @ lk${idx}^T / sqrt(d), axis=1)`,
          `r${idx} = a${idx}`,
        );
        if (x.iters > 0) {
          headLines.push(
            `repeat ${x.iters} { r${idx} = 0.5 * (r${idx} @ a${idx}) + 0.25 * a${idx} }`,
          );
        }
        headLines.push(
          `${z} = softmax(${qv} @ lk${idx}^T, axis=1) @ (r${idx} @ segment_mean(v, ${L}))`,
        );
        break;
      }
    }
    headLines.push(`y = y + mean(${z})`);
  });

  // Prelude (what the score and head use).
  if (s.qLoop > 0) {
    body.push("qq = q", `repeat ${s.qLoop} { qq = normalize(qq + 0.5 * tanh(qq), axis=1) }`);
  }
  if (used.has("x")) {
    const { init, factor, count } = s.staticLoop;
    body.push(`x = ${fmt(init)}`, `repeat ${count} { x = x * ${fmt(factor)} }`);
  }
  if (used.has("qn")) body.push(`qn = norm(${qv}, axis=1)`);
  if (used.has("kn")) body.push("kn = norm(k, axis=1)");
  if (used.has("qmx")) body.push(`qmx = max(${qv}, axis=1)`);
  if (used.has("ks")) body.push("ks = sum(k, axis=1)");
  if (used.has("hh")) body.push(`hh = arange(${M}) * 1103515245 + 12345`);
  const decls = [`q: [n, d]`, `k: [${M}, d]`];
  if (used.has("v")) decls.push(`v: [${M}, e]`);
  if (used.has("w")) decls.push("w: [e, f]");
  if (used.has("t")) decls.push("t: [n]");
  if (used.has("u")) decls.push(`u: [${M}]`);
  if (used.has("tc")) decls.push("tc: [n, 1]");
  if (used.has("qc")) decls.push("qc: [n, 1]");
  if (used.has("g")) decls.push(`g: [n, ${M}]`);
  if (used.has("gt")) decls.push(`gt: [${M}, n]`);
  if (used.has("doc")) decls.push("doc: int[n]");
  if (used.has("dq")) decls.push("dq: int[n]");
  if (used.has("dk")) decls.push(`dk: int[${M}]`);
  if (used.has("qm")) decls.push("qm: [n]");
  if (used.has("km")) decls.push(`km: [${M}]`);
  for (const K of [1, 2, 4, 7]) if (used.has(`bias${K}`)) decls.push(`bias${K}: [${2 * K + 1}]`);
  if (used.has("hv")) decls.push("hv: [3]");
  decls.push(`slope = ${fmt(s.slope)}`);
  const second = {
    lse: { value: "logsumexp(s, axis=1)", shape: "[n]" },
    lsekeep: { value: "logsumexp(s, axis=1, keepdims=true)", shape: "[n, 1]" },
    score: { value: "s", shape: `[n, ${M}]` },
  }[s.second ?? "lse"];
  const ret = s.second
    ? { type: `([${shape.join(", ")}], ${second.shape})`, value: `y, ${second.value}` }
    : { type: `[${shape.join(", ")}]`, value: "y" };
  return [
    `def prog(${decls.join(", ")}) -> ${ret.type} {`,
    ...[...body, ...scoreLines, ...headLines].map((l) => `  ${l}`),
    `  return ${ret.value}`,
    "}",
    "",
  ].join("\n");
}

/** A float literal (always with a decimal point, so parameters are floats). */
function fmt(x: number): string {
  return Number.isInteger(x) ? `${x}.0` : String(x);
}

// ---------------------------------------------------------------------------------------------
// Inputs

/**
 * Inputs for a compiled spec: every declared input of the graph, with the spec's sizes, q/k/v/w
 * carrying the batch dims and vectors/masks `vecLead` of them. Float data is Gaussian; masks are
 * 0/1 and doc ids 0..2 (half the time ascending); nothing is all zeros.
 */
export function makeInputs(spec: Spec, graph: Graph): Record<string, Tensor> {
  const r = mulberry32(spec.dataSeed);
  const gauss = () => {
    const u = 1 - r(), v = r();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const sym: Record<string, number> = { ...spec.sizes };
  const out: Record<string, Tensor> = {};
  for (const decl of graph.inputs) {
    const name = decl.name;
    const body = decl.type.shape.map((d) => (typeof d === "number" ? d : sym[d]));
    const matrix = ["q", "k", "v"].includes(decl.name);
    // k and v keep the batch's heads; q and per-query or per-key vectors that carry the heads
    // dim have qGroup times as many (the k/v heads are grouped).
    const heads = spec.batch.map((h, i) => (i === spec.batch.length - 1 ? h * spec.qGroup : h));
    const lead = name === "k" || name === "v"
      ? spec.batch
      : matrix
      ? heads
      : heads.slice(0, spec.vecLead);
    const shape = [...lead, ...body];
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float64Array(size);
    if (name === "qm" || name === "km" || name === "qc") {
      for (let x = 0; x < size; x++) data[x] = r() < 0.3 ? 0 : 1;
      if (size > 0 && data.every((x) => x === 0)) data[0] = 1;
    } else if (decl.type.dtype === "int") {
      for (let x = 0; x < size; x++) data[x] = Math.floor(r() * 3);
      if (size > 0 && data.every((x) => x === 0)) data[0] = 1;
      // Half the time packed documents (ids ascending), whose key blocks tile skipping skips.
      if (r() < 0.5) data.sort();
    } else {
      // Some signed zeros among the Gaussians (max/min and division meet ±0).
      for (let x = 0; x < size; x++) data[x] = r() < 0.04 ? (r() < 0.5 ? 0 : -0) : gauss();
    }
    out[name] = { shape, data, dtype: decl.type.dtype };
  }
  return out;
}

/** A one-line description of input shapes, for failure messages. */
export function describeInputs(inputs: Record<string, Tensor>): string {
  return Object.entries(inputs).map(([k, t]) => `${k}: ${t.dtype}[${t.shape.join(", ")}]`).join(
    ", ",
  );
}

// ---------------------------------------------------------------------------------------------
// Running specs

/** What the optimized graph of a program contains (for coverage counts). */
export interface Features {
  attention: number;
  probs: number;
  /** Fused nodes reading a leaf at i while the key axis is the query axis n. */
  iLeafShared: number;
  /** Fused nodes reading any leaf at j. */
  jLeaf: number;
  /** Passes that changed the graph. */
  changed: string[];
  /** Fused nodes inside loop bodies. */
  inLoop: number;
  /** Fused nodes reading a table at index expressions of (i, j). */
  table: number;
  /** Fused nodes whose weights are the score itself (no softmax). */
  summed: number;
  /** Fused attention nodes that also give their rows' log-sum-exp. */
  rowLse: number;
  /** Summed-weights attentions that also give their row sums (passes/rowsum.ts). */
  rowSum: number;
  /** Fused nodes of a softmax written out (`emptyNaN`, passes/written.ts). */
  written: number;
}

/** A compiled spec with its source and inputs. */
export interface Compiled {
  spec: Spec;
  source: string;
  program: Program;
  inputs: Record<string, Tensor>;
}

/** Compile a spec (a CompileError here is a generator bug) and build its inputs. */
export function compileSpec(spec: Spec): Compiled {
  const source = printProgram(spec);
  const program = compileSync(source, { file: "generated.attn" });
  return { spec, source, program, inputs: makeInputs(spec, program.graph) };
}

/** The interpreter differential: the first pass that changed the result, if any. */
export function interpDifferential(c: Compiled, seed = 7): Divergence | undefined {
  return firstDivergence(c.program.graph, c.program.passes, c.inputs, { seed });
}

type LeafAt = "i" | "j" | "scalar" | "table";
function scoreLeaves(s: Score, out: LeafAt[] = []): LeafAt[] {
  switch (s.kind) {
    case "leaf":
      out.push(s.at);
      break;
    case "table":
      out.push("table");
      for (const x of s.at) scoreLeaves(x, out);
      break;
    case "unary":
    case "cast":
      scoreLeaves(s.x, out);
      break;
    case "binary":
      scoreLeaves(s.a, out);
      scoreLeaves(s.b, out);
      break;
    case "where":
      scoreLeaves(s.c, out);
      scoreLeaves(s.a, out);
      scoreLeaves(s.b, out);
      break;
  }
  return out;
}

/** Coverage features of a compiled spec. */
export function features(c: Compiled): Features {
  const f: Features = {
    attention: 0,
    probs: 0,
    iLeafShared: 0,
    jLeaf: 0,
    changed: [],
    inLoop: 0,
    table: 0,
    summed: 0,
    rowLse: 0,
    rowSum: 0,
    written: 0,
  };
  const visit = (nodes: Node[], inLoop: boolean) => {
    for (const n of nodes) {
      if (n.op.op === "loop") visit(n.op.body, true);
      if (n.op.op !== "attention" && n.op.op !== "probs") continue;
      f[n.op.op]++;
      if (inLoop) f.inLoop++;
      const leaves = scoreLeaves(n.op.score);
      const [rows, cols] = [n.args[0], n.args[1]].map((a) =>
        findNode(c.program.optimized, a)?.type.shape[0]
      );
      if (leaves.includes("i") && rows === cols) f.iLeafShared++;
      if (leaves.includes("j")) f.jLeaf++;
      if (leaves.includes("table")) f.table++;
      if (n.op.op === "attention" && n.op.weights === "score") f.summed++;
      if (n.op.op === "attention" && n.op.lse) f.rowLse++;
      if (n.op.op === "attention" && n.op.rowSum) f.rowSum++;
      if (n.op.op === "attention" && n.op.emptyNaN) f.written++;
    }
  };
  visit(c.program.optimized.nodes, false);
  let last = JSON.stringify(c.program.graph.nodes);
  for (const st of c.program.passes) {
    const now = JSON.stringify(st.graph.nodes);
    if (now !== last) f.changed.push(st.pass);
    last = now;
  }
  return f;
}

function findNode(g: Graph, id: number): Node | undefined {
  let found: Node | undefined;
  const visit = (nodes: Node[]) => {
    for (const n of nodes) {
      if (n.id === id) found = n;
      if (n.op.op === "loop") visit(n.op.body);
    }
  };
  visit(g.nodes);
  return found;
}

/**
 * A deliberately broken copy of a graph, for checking that the oracle is sensitive: every
 * fused score leaf read at `from` is read at the other grid index instead (the axis-tracking
 * bug class of the attention fusion). Only meaningful where the two axes have the same size.
 */
export function swapLeafAxes(graph: Graph, from: "i" | "j" = "i"): Graph {
  const to = from === "i" ? "j" : "i";
  const sw = (s: Score): Score => {
    switch (s.kind) {
      case "leaf":
        return s.at === from ? { ...s, at: to } : s;
      case "table":
        return { ...s, at: s.at.map(sw) };
      case "unary":
      case "cast":
        return { ...s, x: sw(s.x) };
      case "binary":
        return { ...s, a: sw(s.a), b: sw(s.b) };
      case "where":
        return { ...s, c: sw(s.c), a: sw(s.a), b: sw(s.b) };
      default:
        return s;
    }
  };
  const visit = (nodes: Node[]): Node[] =>
    nodes.map((n) => {
      if (n.op.op === "loop") return { ...n, op: { ...n.op, body: visit(n.op.body) } };
      if (n.op.op === "attention" || n.op.op === "probs") {
        return { ...n, op: { ...n.op, score: sw(n.op.score) } };
      }
      return n;
    });
  return { ...graph, nodes: visit(graph.nodes) };
}

/** Tolerance of GPU results against the interpreter (relative error ‖a − b‖ / ‖b‖). */
export const GPU_RTOL = 1e-5;

/**
 * How many times its float32 noise floor a GPU result may add to GPU_RTOL. The floor is the
 * error of the interpreter with every intermediate rounded to float32: a program adding 1024
 * to every score (then softmax) loses ~6e-5 per score in float32 whoever computes it, and the
 * GPU's error tracks that floor within a few percent (tiles_test's 3-key blocks, 12 seeds:
 * floor 1.6e-6…1.4e-5, GPU 1.6e-6…1.4e-5). The factor covers roundings inside fused kernels
 * that the node-by-node floor doesn't see.
 */
export const GPU_FLOOR_FACTOR = 4;

/**
 * Run the optimized program on the GPU (intermediates poisoned with NaN) and compare with the
 * interpreter: a description of the difference, or undefined. `lower` passes lowering options
 * (e.g. a small `maxStorageBuffers` to force binding splits).
 */
export async function gpuDifferential(
  c: Compiled,
  options: { seed?: number; lower?: LowerOptions } = {},
): Promise<string | undefined> {
  // The run's seed overrides every draw: any u32 (the spec's data seed) must agree. Half the data
  // seeds (bit 3: the low bits pick the second result) run without it, so that seeds the program
  // computes (`123456789 + n`) are checked too.
  const seed = options.seed ?? ((c.spec.dataSeed >>> 3) & 1 ? undefined : c.spec.dataSeed);
  const expected = c.program.runAll(c.inputs, { seed, backend: "interp" });
  let got: Tensor[];
  try {
    got = options.lower
      ? (await execute(
        c.program.optimized,
        lowerGraph(c.program.optimized, options.lower),
        c.inputs,
        {
          seed,
          poison: true,
        },
      )).outputs
      : await c.program.runAll(c.inputs, { seed, backend: "gpu", poison: true });
  } catch (e) {
    return `GPU run threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
  }
  const exps = await expected;
  // The float32 floor of each result, measured only when one is past the plain tolerance: the
  // program as written with each value rounded, and rounded then moved an ulp (another summation
  // order's difference, which a later cancellation magnifies: tiles_test, seed -939112766).
  let rounded: Tensor[][] | undefined;
  const floorOf = (k: number) =>
    (rounded ??= [true, "jitter" as const].map((roundF32) =>
      interpretAll(c.program.graph, c.inputs, { seed, roundF32 })
    )).map((r) => r[k]);
  for (const [k, exp] of exps.entries()) {
    const why = compareGpu(exp, got[k], () => floorOf(k));
    if (why) return exps.length > 1 ? `result ${k + 1}: ${why}` : why;
  }
  return undefined;
}

/** One GPU result against the interpreter's, within GPU_RTOL plus its float32 floor. */
function compareGpu(exp: Tensor, got: Tensor, roundedRuns: () => Tensor[]): string | undefined {
  if (exp.shape.join() !== got.shape.join()) {
    return `shape [${got.shape}], expected [${exp.shape}]`;
  }
  for (let i = 0; i < exp.data.length; i++) {
    if (Number.isNaN(exp.data[i]) !== Number.isNaN(got.data[i])) {
      return `flat index ${i}: got ${got.data[i]}, expected ${exp.data[i]} (NaN in one only)`;
    }
    if (
      !Number.isFinite(exp.data[i]) && !Number.isNaN(exp.data[i]) && exp.data[i] !== got.data[i]
    ) {
      return `flat index ${i}: got ${got.data[i]}, expected ${exp.data[i]}`;
    }
  }
  const finite = (t: Tensor) => ({ ...t, data: t.data.map((x) => (Number.isFinite(x) ? x : 0)) });
  const err = relativeError(finite(got), finite(exp));
  if (err <= GPU_RTOL) return undefined;
  // Past the plain tolerance: is it float32 itself? The floor is measured on the program as
  // written (each node rounded once), so the optimized graph can't hide behind it.
  const floor = Math.max(...roundedRuns().map((r) => relativeError(finite(r), finite(exp))));
  const tol = GPU_RTOL + GPU_FLOOR_FACTOR * floor;
  if (!(err <= tol)) {
    let worst = 0;
    for (let i = 0; i < exp.data.length; i++) {
      const d = Math.abs(got.data[i] - exp.data[i]);
      if (!(d <= Math.abs(got.data[worst] - exp.data[worst]))) worst = i;
    }
    return `relative error ${err.toExponential(2)} > ${tol.toExponential(2)} (${GPU_RTOL} + ` +
      `${GPU_FLOOR_FACTOR} × float32 floor ${
        floor.toExponential(2)
      }); worst at flat index ${worst}: ` +
      `got ${got.data[worst]}, expected ${exp.data[worst]}`;
  }
  return undefined;
}

/** A failure report: the program, its inputs' shapes and what differed. */
export function report(c: Compiled, what: string): string {
  return [what, "program:", c.source, `inputs: ${describeInputs(c.inputs)}`].join("\n");
}
