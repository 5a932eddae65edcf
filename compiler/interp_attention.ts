/**
 * The interpreter's rules for fused attention (part of the float64 oracle; like interp.ts it
 * imports nothing from code generation): a fused score evaluated at each (i, j) as the unfused
 * graph would, then softmax and v row by row (`attention`, `probs`), weights summed (`weighted`),
 * or several streams combined (`mix`).
 */
import { leadValue } from "./bind.ts";
import type { AttentionStream, Dim, Node, Score } from "./ir/types.ts";
import { binaryOf, castTo, logSumExp, unaryOf } from "./ir/scalar.ts";
import type { Tensor } from "./tensor.ts";
import { gumbelAt, randnAt, uniformAt } from "./rng.ts";

/** A fused score's draw of each kind: the `random` op's element at a row-major index. */
const DRAW_AT = { uniform: uniformAt, randn: randnAt, gumbel: gumbelAt };

/** What a score reads of the slice being evaluated (interp.ts's evaluator). */
export interface ScoreContext {
  readonly sizes: Map<string, number>;
  readonly slice: number;
  /** The run's seed for every random draw, when it overrides the program's. */
  readonly seedOverride?: number;
  dim(d: Dim, node: Node): number;
}

/**
 * softmax_j(score(i, j)) · v, row by row (for `probs`, the probabilities themselves); a row with
 * no finite score gives zeros. An attention with `lse` also keeps each row's logsumexp.
 */
export function attention(
  ev: ScoreContext,
  n: Node,
  score: Score,
  probs: boolean,
  args: Tensor[],
): Tensor {
  const [qa, kb, v] = args;
  const rows = qa.shape[0], cols = kb.shape[0], e = probs ? cols : v.shape[1];
  const out: Tensor = { shape: [rows, e], data: new Float64Array(rows * e), dtype: "float" };
  const s = new Float64Array(cols);
  const at = scoreAt(ev, n, args);
  const lse = n.op.op === "attention" && n.op.lse ? new Float64Array(rows) : undefined;
  if (lse) Object.assign(out, { lse });
  for (let i = 0; i < rows; i++) {
    let m = -Infinity;
    for (let j = 0; j < cols; j++) {
      s[j] = at(score, i, j);
      if (s[j] > m) m = s[j];
    }
    if (lse) lse[i] = logSumExp(s);
    if (s.some(Number.isNaN)) {
      out.data.fill(NaN, i * e, i * e + e);
      continue;
    }
    if (m === -Infinity) {
      if (n.op.op === "attention" && n.op.emptyNaN) out.data.fill(NaN, i * e, i * e + e);
      continue;
    }
    let z = 0;
    for (let j = 0; j < cols; j++) z += s[j] = Math.exp(s[j] - m);
    for (let j = 0; j < cols; j++) {
      const w = s[j] / z;
      if (probs) out.data[i * cols + j] = w;
      // A key of weight 0 contributes nothing, whatever its value (as `matmul` here, and as
      // the flash kernel, which never visits masked keys): NaN at a masked key stays out.
      else if (w !== 0) {
        for (let c = 0; c < e; c++) out.data[i * e + c] += w * v.data[j * e + c];
      }
    }
  }
  return out;
}

/**
 * Σ_t coef_t(i) · (softmax_j(score_t(i, j)) · v): each stream as `attention` with its own dot
 * product (its operands moved to args 0 and 1), then combined row by row.
 */
export function mix(
  ev: ScoreContext,
  n: Node,
  op: { streams: AttentionStream[] },
  args: Tensor[],
): Tensor {
  const [qa, , v] = args;
  const rows = qa.shape[0], e = v.shape[1];
  const out: Tensor = { shape: [rows, e], data: new Float64Array(rows * e), dtype: "float" };
  for (const st of op.streams) {
    const at = [...args];
    [at[0], at[1]] = [args[st.q], args[st.k]];
    const y = attention(ev, n, st.score, false, at);
    const coef = scoreAt(ev, n, at);
    for (let i = 0; i < rows; i++) {
      const c = coef(st.coef, i, 0);
      for (let x = i * e; x < i * e + e; x++) out.data[x] += c * y.data[x];
    }
  }
  return out;
}

/**
 * Σ_j score(i, j) · v_j: `matmul` of the score matrix and v, row by row (weight 0 skipped). With
 * `rowSum` it also keeps each row's Σ_j score(i, j), summed in j order as `reduce` sums.
 */
export function weighted(ev: ScoreContext, n: Node, score: Score, args: Tensor[]): Tensor {
  const [qa, kb, v] = args;
  const rows = qa.shape[0], cols = kb.shape[0], e = v.shape[1];
  const out: Tensor = { shape: [rows, e], data: new Float64Array(rows * e), dtype: "float" };
  const at = scoreAt(ev, n, args);
  const rowSum = n.op.op === "attention" && n.op.rowSum ? new Float64Array(rows) : undefined;
  if (rowSum) Object.assign(out, { rowSum });
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const w = at(score, i, j);
      if (rowSum) rowSum[i] += w;
      if (w === 0) continue; // as matmul: a zero weight contributes nothing, even against NaN
      for (let c = 0; c < e; c++) out.data[i * e + c] += w * v.data[j * e + c];
    }
  }
  return out;
}

/** The value of a fused score at (i, j), its leaves and tables in `args` (a, b, v, leaves). */
function scoreAt(
  ev: ScoreContext,
  n: Node,
  args: Tensor[],
): (x: Score, i: number, j: number) => number {
  const [qa, kb] = args;
  const d = qa.shape[1];
  let i = 0, j = 0, qk = 0;
  const at = (x: Score): number => {
    switch (x.kind) {
      case "qk":
        return qk;
      case "i":
        return i;
      case "j":
        return j;
      case "const":
        return x.value;
      case "size":
        return ev.dim(x.name, n);
      case "lead":
        return leadValue(x.of, ev.slice, ev.sizes);
      case "leaf": {
        const t = args[x.arg];
        return x.at === "scalar" ? t.data[0] : t.data[x.at === "i" ? i : j];
      }
      case "table": {
        // As `gather`: any index outside its axis reads 0; a NaN (or fractional) one reads NaN.
        const t = args[x.arg];
        let off = 0;
        for (let k = 0, st = t.data.length; k < x.at.length; k++) {
          const v = at(x.at[k]);
          if (v < 0 || v >= t.shape[k]) return 0;
          st /= t.shape[k];
          off += v * st;
        }
        return t.data[off] ?? NaN;
      }
      case "draw": {
        // As `random` then `gather`: an index outside its axis reads 0, a NaN one NaN.
        let off = 0;
        for (let k = 0; k < x.at.length; k++) {
          const v = at(x.at[k]), len = at(x.shape[k]);
          if (Number.isNaN(v)) return NaN;
          if (v < 0 || v >= len) return 0;
          off = off * len + Math.floor(v);
        }
        const stream = { seed: ev.seedOverride ?? at(x.seed), stream: x.stream, slice: ev.slice };
        return DRAW_AT[x.rand](stream, off);
      }
      case "unary":
        return unaryOf(x.fn, x.int ? "int" : "float")(at(x.x));
      case "binary":
        return binaryOf(x.fn, x.int ? "int" : "float")(at(x.a), at(x.b));
      case "where":
        return at(x.c) ? at(x.a) : at(x.b);
      case "cast":
        return castTo(x.to, at(x.x));
    }
  };
  return (x, i0, j0) => {
    i = i0;
    j = j0;
    qk = 0;
    for (let c = 0; c < d; c++) qk += qa.data[i * d + c] * kb.data[j * d + c];
    return at(x);
  };
}
