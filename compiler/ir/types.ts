/**
 * The one tensor IR. A program is a flat list of nodes in topological order; every node has an
 * operation, operand node ids, a static type (element kind + symbolic shape) and its source span.
 * The interpreter evaluates it; later passes rewrite it; the GPU lowering reads it.
 */
import type { Span } from "../errors.ts";
import type { DType } from "../tensor.ts";

/** A size: a known integer, or a symbol (like "n") bound from input shapes at run time. */
export type Dim = number | string;

/** Static type of a node's value. Rank 0 is a scalar. */
export interface TensorType {
  /** Element kind. */
  dtype: DType;
  /** Sizes: numbers or size symbols. */
  shape: Dim[];
}

/** Elementwise functions of one operand. */
export type UnaryFn =
  | "neg"
  | "not"
  | "exp"
  | "log"
  | "sqrt"
  | "abs"
  | "tanh"
  | "acos"
  | "cos"
  | "sin"
  | "sigmoid"
  | "relu"
  | "elu"
  | "floor"
  | "ceil"
  | "sign"
  | "erf";

/** Elementwise functions of two operands (comparisons and logic give 0/1). */
export type BinaryFn =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "idiv"
  | "mod"
  | "pow"
  | "max"
  | "min"
  | "lt"
  | "le"
  | "gt"
  | "ge"
  | "eq"
  | "ne"
  | "and"
  | "or";

/** Reductions along one axis. */
export type ReduceFn = "sum" | "max" | "min" | "mean" | "prod";
/** Distributions of the seeded draws (docs/rng.md). */
export type RandomKind = "uniform" | "randn" | "gumbel" | "randint";
/** The random kinds a fused score draws itself (randint's bound is checked by its own op). */
export type FusedDraw = Exclude<RandomKind, "randint">;

/**
 * Where the current slice sits among the run's leading dims: `head` is its coordinate along the
 * last leading dim and `heads` that dim's size; `batch` is its flat coordinate over the leading
 * dims before it and `batches` their product (so slice = batch · heads + head; 0 and 1 without
 * leading dims).
 */
export type LeadFn = "head" | "heads" | "batch" | "batches";
/** The keys of the run's leading-dim counts among the bound sizes (no size symbol has "()"). */
export type LeadCount = "heads()" | "batches()";

/** The per-element score of an attention node, as a small expression tree. */
export type Score =
  | { kind: "qk" } // a_i · b_j: the dot product of row i of args[0] and row j of args[1]
  | { kind: "i" }
  | { kind: "j" }
  | { kind: "const"; value: number }
  | { kind: "size"; name: string }
  | { kind: "lead"; of: LeadFn }
  | { kind: "leaf"; arg: number; at: "i" | "j" | "scalar" } // args[arg] read at i, j, or [0]
  // args[arg] read at one index per axis, as `gather`: an index outside its axis reads 0.
  | { kind: "table"; arg: number; at: Score[] }
  // Element `at` (one index per axis, as `gather`: outside its axis reads 0) of a random tensor
  // of `shape` (consts and sizes) drawn as the `random` op draws it (compiler/rng.ts: counter
  // (row-major index, slice), key (seed, stream)), computed where it is read: DropKey's
  // `uniform([n, m], seed)[i, j] >= rate` never stores n × m draws.
  | { kind: "draw"; rand: FusedDraw; stream: number; seed: Score; shape: Score[]; at: Score[] }
  // `int`: the value is an int (32-bit, wrapping arithmetic: compiler/ir/scalar.ts INT_BINARY).
  | { kind: "unary"; fn: UnaryFn; x: Score; int?: true }
  | { kind: "binary"; fn: BinaryFn; a: Score; b: Score; int?: true }
  | { kind: "where"; c: Score; a: Score; b: Score; int?: true }
  | { kind: "cast"; to: "float" | "int" | "bool"; x: Score };

/** Operations, with their attributes. Operands are in `Node.args`. */
export type Op =
  | { op: "input"; name: string }
  | { op: "const"; value: number }
  | { op: "dim"; name: string } // runtime value of a size symbol
  | { op: "lead"; of: LeadFn } // the slice's place among the leading dims (an int scalar)
  | { op: "iota"; axis: number } // 0, 1, 2, ... along `axis`, size 1 elsewhere
  | { op: "fill"; value: number } // a constant tensor of the node's shape
  | { op: "eye" }
  | { op: "unary"; fn: UnaryFn }
  | { op: "binary"; fn: BinaryFn }
  | { op: "where" } // args: cond, a, b
  | { op: "cast" } // to the node's dtype (float → int floors)
  | { op: "reduce"; fn: ReduceFn; axis: number; keepdims: boolean }
  | { op: "softmax"; axis: number }
  // log Σ exp along axis, as max + log Σ exp(x - max) (a max of ±inf shifts by 0: a row of -inf
  // gives -inf, one holding +inf gives +inf; NaN propagates).
  | { op: "logsumexp"; axis: number; keepdims: boolean }
  | { op: "normalize"; axis: number } // x / max(‖x‖₂, 1e-12) along axis
  | { op: "cumsum"; axis: number } // inclusive prefix sum along axis
  // args x [n, d], u [n, d], w [n, e]: out[i, c] = Σ_a x[i, a] Σ_{j ≤ i} u[j, a] w[j, c], [n, e]
  // (passes/causal.ts); without w, out[i] = Σ_a x[i, a] Σ_{j ≤ i} u[j, a], [n].
  | { op: "causal_contract" }
  | { op: "matmul" } // batched, broadcasting leading dims; both operands rank ≥ 2
  | { op: "dot" } // contract the last axis, broadcasting the others
  | { op: "transpose" } // swap the last two axes
  | { op: "reshape" } // same elements, the node's shape
  | { op: "broadcast" } // to the node's shape
  | { op: "gather" } // args: x, idx0..idxk-1: advanced indexing of x's leading k axes; out of range reads 0
  | { op: "set_rows" } // args: x, idx [r], rows [r, ...]: copy of x with rows idx replaced
  // args: idx [..., n] int, vals [n, ...]: [..., size, ...].
  | { op: "scatter_add"; size: number }
  | { op: "segment_mean"; segments: number } // mean of near-equal contiguous row segments
  | { op: "bits" } // [..., b] bool → [...] int: Σ_k 2^k x[..., k]
  | { op: "topk"; k: number } // indices of the k largest along the last axis, largest first
  | { op: "random"; kind: RandomKind; stream: number } // args: seed, hi (randint only)
  | { op: "loop"; count: number; body: Node[]; results: number[] } // args: initial carried values
  | { op: "carry"; loop: number; index: number } // placeholder of carried value `index` in a body
  | { op: "loop_result"; index: number } // args: [loop]
  // softmax over j of score(i, j) times v: args a [n, d], b [m, d], v [m, e], then score leaves.
  // With weights "score", Σ_j score(i, j) v_j: the score is the weight, no normalization
  // (sigmoid attention sigmoid(s - log m) @ v, relu(s)^2 @ v).
  // With lse (softmax only), the kernel also keeps each row's log-sum-exp of the score, read by
  // `attention_lse` nodes (passes/lse.ts).
  // With emptyNaN (a softmax written out, passes/written.ts), a row whose scores are all -inf is
  // NaN, as exp(s - max(s)) makes it, not zeros.
  | {
    op: "attention";
    score: Score;
    weights?: "score";
    lse?: true;
    rowSum?: true;
    emptyNaN?: true;
  }
  // The row log-sum-exp of args[0], an attention node with lse: [rows] (or [rows, 1]).
  | { op: "attention_lse" }
  // The row sums of the weights of args[0], a summed-weights attention with rowSum: [rows] (or
  // [rows, 1]); passes/rowsum.ts.
  | { op: "attention_rowsum" }
  // softmax over j of score(i, j) itself, as an [n, m] matrix: args a [n, d], b [m, d], leaves.
  | { op: "probs"; score: Score }
  // Σ_t coef_t(i) · softmax_j(score_t(i, j)) · v (differential attention): args a0, b0, v, then
  // each further stream's a and b, then leaves. Stream t's score reads its own dot product
  // args[q] · args[k]; its coefficient is a score of i, scalars and leaves only.
  | { op: "attention_mix"; streams: AttentionStream[] };

/** One score stream of an `attention_mix`: its dot-product operands, score, and coefficient. */
export interface AttentionStream {
  q: number;
  k: number;
  score: Score;
  coef: Score;
}

/** One IR node. */
export interface Node {
  /** Unique in the whole program, loop bodies included. */
  id: number;
  /** The operation and its attributes. */
  op: Op;
  /** Operand node ids. */
  args: number[];
  /** The value's static type. */
  type: TensorType;
  /** Where in the source this value comes from. */
  span?: Span;
  /** The source name this value was bound to, if any (for explain output). */
  name?: string;
}

/** A declared input of the entry function. */
export interface InputDecl {
  /** The parameter name. */
  name: string;
  /** Id of its `input` node. */
  node: number;
  /** Declared per-slice type (leading batch/head dims come on top). */
  type: TensorType;
  /** Fill used when the caller does not pass this input (`= ones` / `= zeros`). */
  default?: number;
  /** The declaration in the source. */
  span: Span;
}

/** A checked, elaborated program: the entry function with user functions inlined. */
export interface Graph {
  /** Name of the compiled function. */
  entry: string;
  /** Nodes in topological order; loops hold their bodies. */
  nodes: Node[];
  /** The entry function's tensor inputs. */
  inputs: InputDecl[];
  /** Ids of the result nodes, in the order the entry function returns them (at least one). */
  outputs: number[];
  /** Compile-time parameters with the values this graph was built for. */
  params: Record<string, number | boolean>;
  /** Each parameter's declared (or literal) type, for showing `16.0` as a float. */
  paramTypes?: Record<string, DType>;
  /** Size symbols, each with where it was declared (for error messages). */
  symbols: Record<string, { origin: string; span: Span }>;
  /** The program text, for diagnostics. */
  source: string;
  /** The file name used in diagnostics. */
  file: string;
}
