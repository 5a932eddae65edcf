/**
 * The one tensor IR. A program is a flat list of nodes in topological order; every node has an
 * operation, operand node ids, a static type (element kind + symbolic shape) and its source span.
 * The interpreter evaluates it; later passes rewrite it; the GPU lowering reads it.
 */
import type { Span } from "./errors.ts";
import type { DType } from "./tensor.ts";

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

/** The per-element score of an attention node, as a small expression tree. */
export type Score =
  | { kind: "qk" } // a_i · b_j: the dot product of row i of args[0] and row j of args[1]
  | { kind: "i" }
  | { kind: "j" }
  | { kind: "const"; value: number }
  | { kind: "size"; name: string }
  | { kind: "leaf"; arg: number; at: "i" | "j" | "scalar" } // args[arg] read at i, j, or [0]
  | { kind: "unary"; fn: UnaryFn; x: Score }
  | { kind: "binary"; fn: BinaryFn; a: Score; b: Score }
  | { kind: "where"; c: Score; a: Score; b: Score }
  | { kind: "cast"; to: "float" | "int" | "bool"; x: Score };

/** Operations, with their attributes. Operands are in `Node.args`. */
export type Op =
  | { op: "input"; name: string }
  | { op: "const"; value: number }
  | { op: "dim"; name: string } // runtime value of a size symbol
  | { op: "iota"; axis: number } // 0, 1, 2, ... along `axis`, size 1 elsewhere
  | { op: "fill"; value: number } // a constant tensor of the node's shape
  | { op: "eye" }
  | { op: "unary"; fn: UnaryFn }
  | { op: "binary"; fn: BinaryFn }
  | { op: "where" } // args: cond, a, b
  | { op: "cast" } // to the node's dtype (float → int floors)
  | { op: "reduce"; fn: ReduceFn; axis: number; keepdims: boolean }
  | { op: "softmax"; axis: number }
  | { op: "normalize"; axis: number } // x / max(‖x‖₂, 1e-12) along axis
  | { op: "matmul" } // batched, broadcasting leading dims; both operands rank ≥ 2
  | { op: "dot" } // contract the last axis, broadcasting the others
  | { op: "transpose" } // swap the last two axes
  | { op: "reshape" } // same elements, the node's shape
  | { op: "broadcast" } // to the node's shape
  | { op: "gather" } // args: x, idx0..idxk-1: advanced indexing of x's leading k axes; out of range reads 0
  | { op: "set_rows" } // args: x, idx [r], rows [r, ...]: copy of x with rows idx replaced
  // args: idx [..., n] int, vals [n, ...]: [..., size, ...]. `chunks` (set by lowering): the
  // GPU stores that many partial tables, one per block of keys, summed where they are read.
  | { op: "scatter_add"; size: number; chunks?: number }
  | { op: "segment_mean"; segments: number } // mean of near-equal contiguous row segments
  | { op: "bits" } // [..., b] bool → [...] int: Σ_k 2^k x[..., k]
  | { op: "topk"; k: number } // indices of the k largest along the last axis, largest first
  | { op: "random"; kind: RandomKind; stream: number } // args: seed, hi (randint only)
  | { op: "loop"; count: number; body: Node[]; results: number[] } // args: initial carried values
  | { op: "carry"; loop: number; index: number } // placeholder of carried value `index` in a body
  | { op: "loop_result"; index: number } // args: [loop]
  // softmax over j of score(i, j) times v: args a [n, d], b [m, d], v [m, e], then score leaves.
  | { op: "attention"; score: Score }
  // softmax over j of score(i, j) itself, as an [n, m] matrix: args a [n, d], b [m, d], leaves.
  | { op: "probs"; score: Score };

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
  /** Id of the result node. */
  output: number;
  /** Compile-time parameters with the values this graph was built for. */
  params: Record<string, number | boolean>;
  /** Size symbols, each with where it was declared (for error messages). */
  symbols: Record<string, { origin: string; span: Span }>;
  /** The program text, for diagnostics. */
  source: string;
  /** The file name used in diagnostics. */
  file: string;
}

/** Render a type as `float[n, 64]`. */
export function showType(t: TensorType): string {
  const dims = `[${t.shape.join(", ")}]`;
  return t.dtype === "float" ? dims : `${t.dtype}${dims}`;
}

/** Render one node as a line of IR text. */
export function showNode(n: Node): string {
  const { op, ...attrs } = n.op;
  const parts = Object.entries(attrs)
    .filter(([k]) => k !== "body" && k !== "results")
    .map(([k, v]) =>
      `${k}=${
        typeof v === "string" ? JSON.stringify(v) : k === "score" ? showScore(v as Score) : v
      }`
    );
  const args = n.args.map((a) => `%${a}`).join(", ");
  const name = n.name ? `  # ${n.name}` : "";
  return `%${n.id}: ${showType(n.type)} = ${op}${
    parts.length ? `{${parts.join(", ")}}` : ""
  }(${args})${name}`;
}

/** Render a graph as IR text, loops indented. */
export function showGraph(g: Graph): string {
  const lines: string[] = [];
  const walk = (nodes: Node[], indent: string) => {
    for (const n of nodes) {
      lines.push(indent + showNode(n));
      if (n.op.op === "loop") {
        walk(n.op.body, indent + "  ");
        lines.push(`${indent}  yield ${n.op.results.map((r) => `%${r}`).join(", ")}`);
      }
    }
  };
  for (const i of g.inputs) lines.push(`input ${i.name}: ${showType(i.type)}`);
  walk(g.nodes, "");
  lines.push(`return %${g.output}`);
  return lines.join("\n");
}

/** Render a fused attention score as an expression over q·k, i, j and its leaves. */
export function showScore(s: Score): string {
  switch (s.kind) {
    case "qk":
      return "a_i·b_j";
    case "i":
    case "j":
      return s.kind;
    case "const":
      return String(s.value);
    case "size":
      return s.name;
    case "leaf":
      return s.at === "scalar" ? `%arg${s.arg}` : `%arg${s.arg}[${s.at}]`;
    case "unary":
      return `${s.fn}(${showScore(s.x)})`;
    case "binary":
      return `${s.fn}(${showScore(s.a)}, ${showScore(s.b)})`;
    case "where":
      return `where(${showScore(s.c)}, ${showScore(s.a)}, ${showScore(s.b)})`;
    case "cast":
      return `${s.to}(${showScore(s.x)})`;
  }
}

/** Every node of a graph by id, loop bodies included. */
export function nodesById(graph: Graph): Map<number, Node> {
  const byId = new Map<number, Node>();
  const visit = (nodes: Node[]) => {
    for (const n of nodes) {
      byId.set(n.id, n);
      if (n.op.op === "loop") visit(n.op.body);
    }
  };
  visit(graph.nodes);
  return byId;
}

/** A copy of `graph` in which every use of a key of `map` reads its value instead. */
export function substitute(graph: Graph, map: Map<number, number>): Graph {
  if (map.size === 0) return graph;
  const to = (id: number): number => (map.has(id) ? to(map.get(id)!) : id);
  const visit = (nodes: Node[]): Node[] =>
    nodes.map((n) => {
      const args = n.args.map(to);
      if (n.op.op === "loop") {
        const op = { ...n.op, body: visit(n.op.body), results: n.op.results.map(to) };
        return { ...n, args, op };
      }
      return { ...n, args };
    });
  return { ...graph, nodes: visit(graph.nodes), output: to(graph.output) };
}

/**
 * A typical value of each size symbol, for cost decisions made before sizes are known: a symbol
 * that is the leading (row) axis of a matrix input is a sequence length (4096); any other, a
 * head or feature size (64).
 */
export function typicalSizes(graph: Graph): (d: Dim) => number {
  const rows = new Set(
    graph.inputs.filter((i) => i.type.shape.length >= 2).map((i) => i.type.shape[0]),
  );
  return (d) => (typeof d === "number" ? d : rows.has(d) ? 4096 : 64);
}
