/**
 * Rows computed once, not per pair. A dot operand that varies along one grid axis but is not a
 * plain row read (`q[i] . (k[j] * w)`, `q[i] . (k[j] + b)`, the token shift `0.5 * k[j] + 0.5 *
 * k[j - 1]`, `(q[i] * t[i]) . k[j]`) is, element for element, the gather at that axis of itself
 * laid out as a matrix (a reshape: the other leading axes are 1). Written so, the attention pass
 * reads that matrix as its q or k (one flash pass after the rows' own kernel), and a dot left
 * unfused is a matmul (passes/contract.ts) rather than a gather-and-dot kernel storing every
 * score. The arithmetic is unchanged, so no IEEE case (a factor of inf, a 0) can differ. It runs
 * on the dots attention fusion left: a factor that pass takes out of the dot (`(c * q[i]) .
 * k[j]`) costs no kernel.
 *
 * A contraction left unfused, `sum[c](q[i, c] * k[j, c] * w[c])` or `sum[c](q[i, c] * (k[j, c] +
 * k[j - 1, c]))`, is first written as the dot it is (`dotsOfContractions`): its factors grouped
 * into those varying along i and the rest, so that the same score fuses in either spelling.
 */
import type { Dim, Graph, Node } from "../ir/types.ts";
import { mapNodes, nodesById } from "../ir/walks.ts";
import { readOf } from "./views.ts";

/** `graph` with each dot operand that varies along one grid axis read as rows of a matrix. */
export function hoistRows(graph: Graph): Graph {
  const dots = dotsOfContractions(graph);
  const byId = nodesById(dots);
  let next = Math.max(...byId.keys()) + 1;
  let changed = false;
  const out = mapNodes(dots, (n) => {
    if (n.op.op !== "dot") return n;
    const added: Node[] = [];
    const args = n.args.map((a) => {
      const x = byId.get(a)!;
      const along = varyingAxis(x, byId);
      if (along === undefined) return a;
      const lead = x.type.shape.slice(0, -1), span = x.span;
      const rows: Node = {
        id: next++,
        op: { op: "reshape" },
        args: [x.id],
        type: { dtype: x.type.dtype, shape: [lead[along], x.type.shape.at(-1)!] },
        span,
      };
      const at: Node = {
        id: next++,
        op: { op: "iota", axis: along },
        args: [],
        type: { dtype: "int", shape: lead },
        span,
      };
      const read: Node = {
        id: next++,
        op: { op: "gather" },
        args: [rows.id, at.id],
        type: x.type,
        span,
      };
      added.push(rows, at, read);
      return read.id;
    });
    if (added.length === 0) return n;
    changed = true;
    return [...added, { ...n, args }];
  });
  return changed ? out : dots;
}

/**
 * Each `sum` over the last axis of a float product (over a grid [..., i, j, c]) whose factors
 * part into those varying along i and those that do not vary along both i and j, as the `dot` of
 * the two products. Factors keep their written order within each side (float factors before int
 * ones, which convert as they did), so where the product was written so (`q[i, c] * (k[j, c] *
 * w[c])`) the arithmetic is unchanged. Otherwise the product is
 * reassociated: equal in the reals and in every inf, NaN and signed-zero case (a product holding
 * a 0 and an inf is NaN in any order), it differs only by rounding and where a partial product
 * over- or underflows. Two factors that are plain matrix reads are left as written (the attention
 * pass and contract.ts read that form themselves); a shifted read (`k[j, c + 1]`) becomes rows
 * computed first.
 */
export function dotsOfContractions(graph: Graph): Graph {
  const byId = nodesById(graph);
  let next = Math.max(...byId.keys()) + 1;
  let changed = false;
  const out = mapNodes(graph, (n) => {
    const op = n.op;
    const mul = op.op === "reduce" ? byId.get(n.args[0])! : undefined;
    if (
      !mul || op.op !== "reduce" || op.fn !== "sum" || op.keepdims || n.type.dtype !== "float" ||
      mul.type.dtype !== "float" || op.axis !== mul.type.shape.length - 1 ||
      mul.type.shape.length < 3
    ) return n;
    const grid = mul.type.shape, rank = grid.length;
    const factors = productFactors(mul, byId);
    // Which of the grid's last two leading axes (i, j) each factor varies along.
    const varies = (f: Node, axis: number) => {
      const k = f.type.shape.length - rank + axis;
      return k >= 0 && f.type.shape[k] !== 1;
    };
    const [ai, aj] = [rank - 3, rank - 2];
    if (factors.some((f) => varies(f, ai) && varies(f, aj))) return n;
    // Float factors first, so that every product is float times something: an int factor is
    // converted as the written product converts it, never multiplied by another int first.
    const sided = (f: (x: Node) => boolean) =>
      [true, false].flatMap((fl) =>
        factors.filter((x) => f(x) && (x.type.dtype === "float") === fl)
      );
    const left = sided((f) => varies(f, ai)), right = sided((f) => !varies(f, ai));
    if (!left.some((f) => varies(f, ai)) || !right.some((f) => varies(f, aj))) return n;
    if (left[0].type.dtype !== "float" || right[0].type.dtype !== "float") return n;
    // Two plain matrix reads are the form attention fusion and contract.ts read as written.
    const plain = (f: Node) => {
      const r = readOf(f.id, grid, byId);
      return r !== undefined && r.base.type.shape.length === 2 &&
        r.axes.every((a) => a !== undefined);
    };
    if (factors.length === 2 && factors.every(plain)) return n;
    const added: Node[] = [];
    const product = (fs: Node[]): Node =>
      fs.reduce((a, b) => {
        const m: Node = {
          id: next++,
          op: { op: "binary", fn: "mul" },
          args: [a.id, b.id],
          type: { dtype: "float", shape: broadcast(a.type.shape, b.type.shape) },
          span: mul.span,
        };
        added.push(m);
        return m;
      });
    // A side that is one plain read of a matrix's rows (`q[i, c]`) is read as `q[i]`, which the
    // attention pass takes as q itself.
    const side = (fs: Node[], axis: number): Node => {
      const r = fs.length === 1 ? readOf(fs[0].id, grid, byId) : undefined;
      if (
        !r || r.base.type.dtype !== "float" || r.base.type.shape.length !== 2 ||
        r.axes[0] !== axis || r.axes[1] !== rank - 1 || r.base.type.shape[0] !== grid[axis] ||
        r.base.type.shape[1] !== grid[rank - 1]
      ) return product(fs);
      const lead = grid.slice(0, -1).map((d, k) => (k === axis ? d : 1));
      const at: Node = {
        id: next++,
        op: { op: "iota", axis },
        args: [],
        type: { dtype: "int", shape: lead },
        span: mul.span,
      };
      const read: Node = {
        id: next++,
        op: { op: "gather" },
        args: [r.base.id, at.id],
        type: { dtype: "float", shape: [...lead, grid[rank - 1]] },
        span: mul.span,
      };
      added.push(at, read);
      return read;
    };
    const a = side(left, ai), b = side(right, aj);
    // Both sides must hold the contracted axis: a dot contracts its operands' last axes.
    if (a.type.shape.at(-1) !== grid.at(-1) || b.type.shape.at(-1) !== grid.at(-1)) return n;
    changed = true;
    return [...added, { ...n, op: { op: "dot" }, args: [a.id, b.id] }];
  });
  return changed ? out : graph;
}

/** The factors of a float product tree (muls of floats), left to right. */
function productFactors(n: Node, byId: Map<number, Node>): Node[] {
  if (n.op.op !== "binary" || n.op.fn !== "mul" || n.type.dtype !== "float") return [n];
  return n.args.flatMap((a) => productFactors(byId.get(a)!, byId));
}

/** Two shapes broadcast right-aligned (they broadcast: they are operands of one product). */
function broadcast(a: Dim[], b: Dim[]): Dim[] {
  const r = Math.max(a.length, b.length);
  return Array.from({ length: r }, (_, k) => {
    const x = a[k - r + a.length] ?? 1, y = b[k - r + b.length] ?? 1;
    return x === 1 ? y : x;
  });
}

/**
 * The one leading axis (of two or more) along which operand `x` varies, unless `x` already reads
 * whole rows of a matrix at that axis (`k[j]`: gather(k, iota)).
 */
function varyingAxis(x: Node, byId: Map<number, Node>): number | undefined {
  const lead = x.type.shape.slice(0, -1);
  const varying = lead.flatMap((d: Dim, a) => (d === 1 ? [] : [a]));
  if (lead.length < 2 || varying.length !== 1 || x.type.dtype !== "float") return undefined;
  const along = varying[0];
  if (x.op.op === "gather" && x.args.length === 2) {
    const src = byId.get(x.args[0])!, idx = byId.get(x.args[1])!;
    if (src.type.shape.length === 2 && idx.op.op === "iota" && idx.op.axis === along) {
      return undefined;
    }
  }
  return along;
}
