/**
 * The float64 reference interpreter: the oracle every compiled kernel is tested against.
 * It evaluates the IR directly, one (batch, head) slice at a time, and imports nothing from
 * code generation so that it stays independent of what it checks.
 */
import { bindInputs, leadValue } from "./bind.ts";
import { CompileError } from "./errors.ts";
import type { Dim, Graph, Node, Op } from "./ir/types.ts";
import { binaryOf, castTo, logSumExp, unaryOf } from "./ir/scalar.ts";
import { fillRandom } from "./rng.ts";
import { causalContract } from "./interp_causal.ts";
import { attention, mix, weighted } from "./interp_attention.ts";
import { sizeOf, type Tensor } from "./tensor.ts";

/** Options of `interpret`. */
export interface InterpretOptions {
  /** Overrides the `seed` argument of every random draw, when given. */
  seed?: number;
  /**
   * Round every float intermediate to float32 as it is produced. Against a plain run this
   * estimates how far float32 arithmetic alone can move the result (a program adding 1024 to
   * every score loses about 1e-4 of each score): the noise floor a GPU result can't beat.
   * `"jitter"` also moves each rounded value one float32 ulp up or down (seeded): a kernel that
   * sums in another order differs by such ulps, which rounding alone leaves out where a program
   * then cancels them (`y - mean(y)` of a y that is constant along the axis).
   */
  roundF32?: boolean | "jitter";
}

/**
 * Run a checked program on host tensors; returns its result (the first, for a program that
 * returns several: `interpretAll` gives them all). Inputs may carry leading batch/head dims
 * beyond the declared rank; the program is mapped over them (an input with fewer leading dims is
 * reused across the missing trailing ones, e.g. a [batch, n] mask for [batch, heads, n, d]
 * queries).
 */
export function interpret(
  graph: Graph,
  inputs: Record<string, Tensor>,
  options: InterpretOptions = {},
): Tensor {
  return interpretAll(graph, inputs, options)[0];
}

/** Run a checked program on host tensors; returns every result, in order (see `interpret`). */
export function interpretAll(
  graph: Graph,
  inputs: Record<string, Tensor>,
  options: InterpretOptions = {},
): Tensor[] {
  const { bound, batch, perInput } = bindInputs(graph, inputs);
  const slices = sizeOf(batch);
  const byId = new Map(graph.nodes.map((n) => [n.id, n]));
  // Each result with the leading dims on top (a batch dim of 0: empty, of the declared shape).
  const outs = graph.outputs.map((id): Tensor => {
    const node = byId.get(id)!;
    const shape = node.type.shape.map((d) => (typeof d === "number" ? d : bound.get(d) ?? 0));
    return { shape: [...batch, ...shape], data: new Float64Array(0), dtype: node.type.dtype };
  });
  for (let s = 0; s < slices; s++) {
    const env = new Map<number, Tensor>();
    for (const decl of graph.inputs) env.set(decl.node, perInput.get(decl.name)!(s));
    const ev = new Evaluator(graph, bound, env, s, options.seed, options.roundF32);
    ev.run(graph.nodes);
    graph.outputs.forEach((id, k) => {
      const y = env.get(id)!;
      if (s === 0) {
        const data = new Float64Array(y.data.length * slices);
        outs[k] = { shape: [...batch, ...y.shape], data, dtype: y.dtype };
      }
      outs[k].data.set(y.data, s * y.data.length);
    });
  }
  return outs;
}

function stridesOf(shape: number[]): number[] {
  const st = new Array(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[i] = s;
    s *= shape[i];
  }
  return st;
}

/** Strides of `shape` viewed as broadcast to `out` (right-aligned), 0 where broadcast. */
function broadcastStrides(shape: number[], out: number[]): number[] {
  const st = stridesOf(shape);
  const off = out.length - shape.length;
  return out.map((_, i) => (i < off || shape[i - off] === 1 ? 0 : st[i - off]));
}

function broadcastShape(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`internal: broadcast [${a}] with [${b}]`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Visit every multi-index of `shape`, giving the flat offsets into each operand. */
function forEachOffset(
  shape: number[],
  strides: number[][],
  f: (i: number, offs: number[]) => void,
) {
  const total = sizeOf(shape);
  const rank = shape.length;
  const idx = new Array(rank).fill(0);
  const offs = strides.map(() => 0);
  for (let i = 0; i < total; i++) {
    f(i, offs);
    for (let a = rank - 1; a >= 0; a--) {
      idx[a]++;
      for (let k = 0; k < offs.length; k++) offs[k] += strides[k][a];
      if (idx[a] < shape[a]) break;
      for (let k = 0; k < offs.length; k++) offs[k] -= strides[k][a] * shape[a];
      idx[a] = 0;
    }
  }
}

type OpOf<K extends Op["op"]> = Extract<Op, { op: K }>;

/** How one op evaluates: from its node, its attributes and its evaluated arguments. */
type Rule<K extends Op["op"]> = (ev: Evaluator, n: Node, op: OpOf<K>, a: Tensor[]) => Tensor;

/** A zero tensor of the node's dtype. */
function blank(n: Node, shape: number[]): Tensor {
  return { shape, data: new Float64Array(sizeOf(shape)), dtype: n.type.dtype };
}

/** One rule per op: a missing op is a type error. */
const RULES: { [K in Op["op"]]: Rule<K> } = {
  input: (ev, n) => ev.get(n.id),
  carry: (ev, n) => ev.get(n.id),
  const: (_, n, op) => ({ shape: [], data: Float64Array.of(op.value), dtype: n.type.dtype }),
  dim: (ev, n, op) => ({ shape: [], data: Float64Array.of(ev.dim(op.name, n)), dtype: "int" }),
  lead: (ev, _, op) => ({
    shape: [],
    data: Float64Array.of(leadValue(op.of, ev.slice, ev.sizes)),
    dtype: "int",
  }),
  iota: (ev, n, op) => {
    const t = blank(n, ev.shape(n));
    const st = stridesOf(t.shape);
    for (let i = 0; i < t.data.length; i++) {
      t.data[i] = Math.floor(i / st[op.axis]) % t.shape[op.axis];
    }
    return t;
  },
  fill: (ev, n, op) => {
    const t = blank(n, ev.shape(n));
    t.data.fill(op.value);
    return t;
  },
  eye: (ev, n) => {
    const t = blank(n, ev.shape(n));
    const m = t.shape[0];
    for (let i = 0; i < m; i++) t.data[i * m + i] = 1;
    return t;
  },
  unary: (_, n, op, [x]) => {
    const f = unaryOf(op.fn, n.type.dtype);
    const t = blank(n, x.shape);
    for (let i = 0; i < t.data.length; i++) t.data[i] = f(x.data[i]);
    return t;
  },
  binary: (_, n, op, a) => {
    const f = binaryOf(op.fn, n.type.dtype);
    return zip(n, [a[0], a[1]], (x) => f(x[0], x[1]));
  },
  where: (_, n, __, a) => zip(n, a, (x) => (x[0] ? x[1] : x[2])),
  cast: (_, n, __, [x]) => {
    const t = blank(n, x.shape);
    const to = n.type.dtype;
    for (let i = 0; i < t.data.length; i++) t.data[i] = castTo(to, x.data[i]);
    return t;
  },
  reduce: (_, n, op, [x]) => reduce(x, op.axis, op.fn, op.keepdims, n),
  cumsum: (_, __, op, [x]) =>
    rows(x, op.axis, (v) => {
      for (let i = 1; i < v.length; i++) v[i] += v[i - 1];
      return v;
    }),
  causal_contract: (_, n, __, a) => causalContract(n, a),
  logsumexp: (_, n, op, [x]) => reduceFibers(x, op.axis, op.keepdims, n, logSumExp),
  softmax: (_, __, op, [x]) =>
    rows(x, op.axis, (v) => {
      let m = -Infinity;
      for (const x of v) m = x > m ? x : m;
      // A NaN score makes its row NaN; a row with no finite score (all masked with -inf)
      // gives zeros, not NaN.
      if (v.some(Number.isNaN)) return v.fill(NaN);
      if (m === -Infinity) return v.fill(0);
      let s = 0;
      for (let i = 0; i < v.length; i++) s += v[i] = Math.exp(v[i] - m);
      for (let i = 0; i < v.length; i++) v[i] /= s;
      return v;
    }),
  normalize: (_, __, op, [x]) =>
    rows(x, op.axis, (v) => {
      let s = 0;
      for (const x of v) s += x * x;
      const d = Math.max(Math.sqrt(s), 1e-12);
      for (let i = 0; i < v.length; i++) v[i] /= d;
      return v;
    }),
  matmul: (_, n, __, a) => matmul(a[0], a[1], n),
  dot: (_, n, __, a) => dot(a[0], a[1], n),
  transpose: (_, n, __, [x]) => {
    const r = x.shape.length;
    const s = [...x.shape];
    [s[r - 2], s[r - 1]] = [s[r - 1], s[r - 2]];
    const t = blank(n, s);
    const rows = x.shape[r - 2], cols = x.shape[r - 1], mat = rows * cols;
    for (let b = 0; b < x.data.length / Math.max(mat, 1); b++) {
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < cols; j++) {
          t.data[b * mat + j * rows + i] = x.data[b * mat + i * cols + j];
        }
      }
    }
    return t;
  },
  reshape: (ev, n, __, [x]) => ({ shape: ev.shape(n), data: x.data, dtype: n.type.dtype }),
  broadcast: (ev, n, __, [x]) => {
    const s = ev.shape(n);
    const t = blank(n, s);
    const st = broadcastStrides(x.shape, s);
    const src = x.data;
    forEachOffset(s, [st], (i, o) => (t.data[i] = src[o[0]]));
    return t;
  },
  gather: (_, n, __, a) => gather(a[0], a.slice(1), n),
  set_rows: (_, __, ___, [x, idx, rows]) => {
    const t = { ...x, data: Float64Array.from(x.data) };
    const w = sizeOf(x.shape.slice(1));
    for (let r = 0; r < idx.data.length; r++) {
      const j = idx.data[r];
      if (j >= 0 && j < x.shape[0]) t.data.set(rows.data.subarray(r * w, r * w + w), j * w);
    }
    return t;
  },
  scatter_add: (_, n, op, [idx, vals]) => {
    const len = vals.shape[0];
    const w = sizeOf(vals.shape.slice(1));
    const groups = idx.data.length / Math.max(len, 1);
    const t = blank(n, [...idx.shape.slice(0, -1), op.size, ...vals.shape.slice(1)]);
    for (let g = 0; g < groups; g++) {
      for (let j = 0; j < len; j++) {
        const c = idx.data[g * len + j];
        if (c < 0 || c >= op.size) continue;
        const base = (g * op.size + c) * w;
        for (let k = 0; k < w; k++) t.data[base + k] += vals.data[j * w + k];
      }
    }
    return t;
  },
  segment_mean: (ev, n, op, [x]) => {
    const rows = x.shape[0], m = op.segments, w = sizeOf(x.shape.slice(1));
    if (rows < m) {
      ev.fail(
        `segment_mean: ${m} segments but only ${rows} rows`,
        n,
        `use at most ${rows} segments (landmarks ≤ n)`,
      );
    }
    // n = s·m + r: the first m - r segments hold s rows, the last r hold s + 1 (seeds-spec 1.1).
    const s = Math.floor(rows / m), k1 = (s + 1) * m - rows;
    const t = blank(n, [m, ...x.shape.slice(1)]);
    let start = 0;
    for (let g = 0; g < m; g++) {
      const len = g < k1 ? s : s + 1;
      for (let r = start; r < start + len; r++) {
        for (let k = 0; k < w; k++) t.data[g * w + k] += x.data[r * w + k];
      }
      for (let k = 0; k < w; k++) t.data[g * w + k] /= len;
      start += len;
    }
    return t;
  },
  bits: (_, n, __, [x]) => {
    const b = x.shape[x.shape.length - 1];
    const t = blank(n, x.shape.slice(0, -1));
    for (let i = 0; i < t.data.length; i++) {
      let c = 0;
      for (let k = 0; k < b; k++) if (x.data[i * b + k]) c += 2 ** k;
      t.data[i] = c;
    }
    return t;
  },
  topk: (_, n, op, [x]) => {
    const len = x.shape[x.shape.length - 1];
    const t = blank(n, [...x.shape.slice(0, -1), op.k]);
    const order = Array.from({ length: len }, (_, i) => i);
    for (let r = 0; r < x.data.length / Math.max(len, 1); r++) {
      const v = x.data.subarray(r * len, r * len + len);
      const key = (i: number) => (Number.isNaN(v[i]) ? -Infinity : v[i]);
      order.sort((i, j) => key(j) - key(i) || i - j);
      // Asking for more than there are: the extra indices point past the end (reads give 0).
      for (let k = 0; k < op.k; k++) t.data[r * op.k + k] = k < len ? order[k] : len;
      order.sort((i, j) => i - j);
    }
    return t;
  },
  random: (ev, n, op, a) => {
    const t = blank(n, ev.shape(n));
    const seed = ev.seedOverride ?? a[0].data[0];
    let hi: number | undefined;
    if (op.kind === "randint") {
      hi = Math.floor(a[1].data[0]);
      if (!(hi >= 1)) ev.fail(`randint: hi must be at least 1, got ${a[1].data[0]}`, n);
    }
    fillRandom(t.data, op.kind, { seed, stream: op.stream, slice: ev.slice }, hi);
    return t;
  },
  loop: (ev, _, op, a) => {
    let carried = a;
    for (let it = 0; it < op.count; it++) {
      for (const bn of op.body) {
        if (bn.op.op === "carry") ev.env.set(bn.id, carried[bn.op.index]);
        else ev.env.set(bn.id, ev.eval(bn));
      }
      carried = op.results.map((r) => ev.get(r));
    }
    return { shape: [], data: new Float64Array(0), dtype: "float", loopValues: carried } as Tensor;
  },
  loop_result: (_, __, op, [loop]) =>
    (loop as Tensor & { loopValues: Tensor[] }).loopValues[op.index],
  attention: (ev, n, op, a) =>
    op.weights === "score" ? weighted(ev, n, op.score, a) : attention(ev, n, op.score, false, a),
  attention_lse: (ev, n, _, [a]) => ({
    shape: ev.shape(n),
    data: (a as Tensor & { lse: Float64Array }).lse,
    dtype: "float",
  }),
  attention_rowsum: (ev, n, _, [a]) => ({
    shape: ev.shape(n),
    data: (a as Tensor & { rowSum: Float64Array }).rowSum,
    dtype: "float",
  }),
  probs: (ev, n, op, a) => attention(ev, n, op.score, true, a),
  attention_mix: mix,
};

class Evaluator {
  constructor(
    readonly graph: Graph,
    readonly sizes: Map<string, number>,
    readonly env: Map<number, Tensor>,
    readonly slice: number,
    readonly seedOverride?: number,
    readonly roundF32: boolean | "jitter" = false,
  ) {}

  fail(what: string, node: Node, hint?: string): never {
    throw new CompileError(
      what,
      node.span ?? { start: 0, end: 0 },
      this.graph.source,
      this.graph.file,
      hint,
    );
  }

  dim(d: Dim, node: Node): number {
    if (typeof d === "number") return d;
    const v = this.sizes.get(d);
    if (v === undefined) this.fail(`size ${d} is not set by any input`, node);
    return v!;
  }

  get(id: number): Tensor {
    return this.env.get(id)!;
  }

  /** The node's shape at this slice's sizes. */
  shape(n: Node): number[] {
    return n.type.shape.map((d) => this.dim(d, n));
  }

  run(nodes: Node[]): void {
    for (const n of nodes) {
      try {
        const t = this.eval(n);
        if (this.roundF32 && t.dtype !== "int") {
          // A copy: a rule may return one of its arguments (or an input) unchanged.
          const round = this.roundF32 === "jitter" ? jitterF32(n.id) : Math.fround;
          this.env.set(n.id, { ...t, data: t.data.map(round) });
        } else this.env.set(n.id, t);
      } catch (e) {
        if (!(e instanceof RangeError)) throw e;
        this.fail(
          `a value of shape [${
            this.shape(n).join(", ")
          }] is too large to compute here (${e.message})`,
          n,
          "use smaller sizes",
        );
      }
    }
  }

  eval(n: Node): Tensor {
    const rule = RULES[n.op.op] as Rule<Op["op"]>;
    return rule(this, n, n.op, n.args.map((i) => this.get(i)));
  }
}

function zip(n: Node, xs: Tensor[], f: (v: number[]) => number): Tensor {
  let s: number[] = [];
  for (const x of xs) s = broadcastShape(s, x.shape);
  const t: Tensor = { shape: s, data: new Float64Array(sizeOf(s)), dtype: n.type.dtype };
  const cast = n.type.dtype === "bool" ? (v: number) => +(v !== 0) : (v: number) => v;
  const vals = new Array(xs.length);
  if (xs.every((x) => x.data.length === t.data.length)) {
    for (let i = 0; i < t.data.length; i++) {
      for (let k = 0; k < xs.length; k++) vals[k] = xs[k].data[i];
      t.data[i] = cast(f(vals));
    }
    return t;
  }
  const st = xs.map((x) => broadcastStrides(x.shape, s));
  forEachOffset(s, st, (i, o) => {
    for (let k = 0; k < xs.length; k++) vals[k] = xs[k].data[o[k]];
    t.data[i] = cast(f(vals));
  });
  return t;
}

function reduce(x: Tensor, axis: number, fn: string, keepdims: boolean, n: Node): Tensor {
  const init = fn === "max" ? -Infinity : fn === "min" ? Infinity : fn === "prod" ? 1 : 0;
  return reduceFibers(x, axis, keepdims, n, (v) => {
    let acc = init;
    for (const y of v) {
      if (fn === "max") acc = Math.max(acc, y);
      else if (fn === "min") acc = Math.min(acc, y);
      else if (fn === "prod") acc *= y;
      else acc += y;
    }
    return fn === "mean" ? acc / v.length : acc;
  });
}

/** `f` of every 1-D fiber along `axis`: the axis removed (kept as size 1 with `keepdims`). */
function reduceFibers(
  x: Tensor,
  axis: number,
  keepdims: boolean,
  n: Node,
  f: (v: Float64Array) => number,
): Tensor {
  const outer = sizeOf(x.shape.slice(0, axis)), len = x.shape[axis];
  const inner = sizeOf(x.shape.slice(axis + 1));
  const s = keepdims
    ? x.shape.map((d, i) => (i === axis ? 1 : d))
    : x.shape.filter((_, i) => i !== axis);
  const t: Tensor = { shape: s, data: new Float64Array(outer * inner), dtype: n.type.dtype };
  const v = new Float64Array(len);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      for (let k = 0; k < len; k++) v[k] = x.data[(o * len + k) * inner + i];
      t.data[o * inner + i] = f(v);
    }
  }
  return t;
}

/** Apply `f` to every 1-D fiber along `axis` (on a copy). */
function rows(x: Tensor, axis: number, f: (v: Float64Array) => Float64Array): Tensor {
  const outer = sizeOf(x.shape.slice(0, axis)), len = x.shape[axis];
  const inner = sizeOf(x.shape.slice(axis + 1));
  const t: Tensor = { shape: x.shape, data: new Float64Array(x.data.length), dtype: "float" };
  const v = new Float64Array(len);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      for (let k = 0; k < len; k++) v[k] = x.data[(o * len + k) * inner + i];
      const r = f(v);
      for (let k = 0; k < len; k++) t.data[(o * len + k) * inner + i] = r[k];
    }
  }
  return t;
}

function matmul(a: Tensor, b: Tensor, n: Node): Tensor {
  const ra = a.shape.length, rb = b.shape.length;
  const rows = a.shape[ra - 2], inner = a.shape[ra - 1], cols = b.shape[rb - 1];
  const batch = broadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const sa = broadcastStrides(a.shape.slice(0, -2), batch).map((s) => s * rows * inner);
  const sb = broadcastStrides(b.shape.slice(0, -2), batch).map((s) => s * inner * cols);
  const t: Tensor = {
    shape: [...batch, rows, cols],
    data: new Float64Array(sizeOf(batch) * rows * cols),
    dtype: n.type.dtype,
  };
  const tmp = new Float64Array(cols);
  forEachOffset(batch, [sa, sb], (bi, o) => {
    const oa = o[0], ob = o[1], ot = bi * rows * cols;
    for (let i = 0; i < rows; i++) {
      tmp.fill(0);
      for (let k = 0; k < inner; k++) {
        const x = a.data[oa + i * inner + k];
        if (x === 0) continue; // a zero weight contributes nothing, even against NaN (docs)
        const bo = ob + k * cols;
        for (let j = 0; j < cols; j++) tmp[j] += x * b.data[bo + j];
      }
      t.data.set(tmp, ot + i * cols);
    }
  });
  return t;
}

function dot(a: Tensor, b: Tensor, n: Node): Tensor {
  const k = a.shape[a.shape.length - 1];
  const lead = broadcastShape(a.shape.slice(0, -1), b.shape.slice(0, -1));
  const sa = broadcastStrides(a.shape.slice(0, -1), lead).map((s) => s * k);
  const sb = broadcastStrides(b.shape.slice(0, -1), lead).map((s) => s * k);
  const t: Tensor = { shape: lead, data: new Float64Array(sizeOf(lead)), dtype: n.type.dtype };
  const ad = a.data, bd = b.data;
  forEachOffset(lead, [sa, sb], (i, o) => {
    let s = 0;
    for (let c = 0; c < k; c++) s += ad[o[0] + c] * bd[o[1] + c];
    t.data[i] = s;
  });
  return t;
}

function gather(x: Tensor, idx: Tensor[], n: Node): Tensor {
  let s: number[] = [];
  for (const i of idx) s = broadcastShape(s, i.shape);
  const rest = x.shape.slice(idx.length);
  const w = sizeOf(rest);
  const xs = stridesOf(x.shape);
  const t: Tensor = {
    shape: [...s, ...rest],
    data: new Float64Array(sizeOf(s) * w),
    dtype: n.type.dtype,
  };
  const st = idx.map((i) => broadcastStrides(i.shape, s));
  forEachOffset(s, st, (p, o) => {
    let off = 0;
    for (let k = 0; k < idx.length; k++) {
      const j = idx[k].data[o[k]];
      if (j < 0 || j >= x.shape[k]) return; // reads outside the tensor give 0
      off += j * xs[k];
    }
    if (w === 1) t.data[p] = x.data[off];
    else t.data.set(x.data.subarray(off, off + w), p * w);
  });
  return t;
}

/** Rounding to float32 that then steps one ulp up or down, by a bit of a hash of (node, index). */
function jitterF32(node: number): (x: number, i: number) => number {
  return (x, i) => {
    const r = Math.fround(x);
    if (r === 0 || !Number.isFinite(r)) return r;
    const ulp = 2 ** (Math.floor(Math.log2(Math.abs(r))) - 23);
    const h = Math.imul(node * 0x9e3779b1 + i, 0x85ebca6b) >>> 15;
    return Math.fround(r + (h & 1 ? ulp : -ulp));
  };
}
