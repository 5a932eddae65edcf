/**
 * Index notation: `x[i, j] = expr` defines x over a grid of index variables (each becomes an
 * `iota` tensor, and the body broadcasts over the grid), `sum[t](expr)` reduces over new ones,
 * `x[J] = rows` replaces rows, and subscripts `x[i, k]` become gathers. The range of each index
 * is learned in a first, discarded pass over the body.
 */
import type { Expr, ExprOf, StmtOf } from "./ast.ts";
import { exprText, mentions } from "./ast.ts";
import { CompileError } from "../errors.ts";
import type { Dim } from "../ir/types.ts";
import { showType } from "../ir/print.ts";
import { hasSlice, sliceExpr } from "./slicing.ts";
import type { Checker } from "./check.ts";
import { type Grid, lookupable, type Scope, type Val } from "./scope.ts";
import {
  broadcastShapes,
  broadcastTo,
  cast,
  describeDim,
  kindType,
  lift,
  nonEmpty,
  reshape,
  sameDim,
  toTensor,
  WILD,
} from "./shapes.ts";

/** `x[i, j] = expr` (define x over a grid) or `x[J] = rows` (replace rows of x). */
export function indexed(c: Checker, s: StmtOf<"indexed">, scope: Scope): void {
  const fresh = s.indices.map((e) =>
    e.kind === "name" && !lookupable(e.name, scope) ? e.name : undefined
  );
  if (fresh.every((f) => f !== undefined)) {
    return defineOverGrid(c, s, fresh as string[], scope);
  }
  if (fresh.some((f) => f !== undefined)) {
    const i = fresh.findIndex((f) => f !== undefined);
    c.fail(
      `index ${fresh[i]} is not defined`,
      s.indices[i].span,
      "in `x[i, j] = ...` every subscript must be a new index name; in `x[J] = rows`, J must be an index tensor",
    );
  }
  // Row assignment.
  const target = scope.env.get(s.target.name);
  if (!target || target.kind !== "tensor") {
    c.fail(
      `row assignment to ${s.target.name}, which is not a tensor defined earlier`,
      s.target.span,
    );
  }
  if (s.indices.length !== 1) {
    c.fail("row assignment takes one index tensor: x[J] = rows", s.span);
  }
  let idx = toTensor(c, c.expr(s.indices[0], scope), s.indices[0].span);
  if (idx.type.dtype !== "int") {
    c.fail(
      `row indices must be int, got ${kindType(idx.type)}`,
      s.indices[0].span,
      "use int(...)",
    );
  }
  if (idx.type.shape.length === 0) idx = reshape(c, idx, [1], scope, s.span);
  if (idx.type.shape.length !== 1) {
    c.fail(`row indices must be a vector, got ${showType(idx.type)}`, s.indices[0].span);
  }
  if (target.type.shape.length === 0) c.fail("cannot assign rows of a scalar", s.target.span);
  let rows = toTensor(c, c.expr(s.value, scope), s.value.span);
  const want = [idx.type.shape[0], ...target.type.shape.slice(1)];
  broadcastShapes(c, rows.type.shape, want, s.value.span, "rows", "target rows");
  rows = broadcastTo(c, rows, want, scope, s.value.span);
  if (rows.type.dtype !== target.type.dtype) {
    rows = cast(c, rows, target.type.dtype, scope, s.span);
  }
  const v = c.op(scope, { op: "set_rows" }, [target, idx, rows], target.type, s.span);
  c.nameNode(v.id, s.target.name);
  scope.env.set(s.target.name, v);
}

function defineOverGrid(c: Checker, s: StmtOf<"indexed">, vars: string[], scope: Scope): void {
  const dup = vars.find((v, i) => vars.indexOf(v) !== i);
  if (dup) c.fail(`index ${dup} appears twice on the left`, s.span);
  if (scope.grid) c.fail("index notation cannot be nested", s.span);
  const grid: Grid = { vars, ranges: vars.map(() => undefined), discover: true };
  discoverRanges(c, s.value, grid, scope);
  grid.discover = false;
  const inner: Scope = { ...scope, grid };
  let v = toTensor(c, c.expr(s.value, inner), s.value.span);
  const ranges = grid.ranges as Dim[];
  if (v.grid === 0) v = lift(c, v, inner, s.span);
  const trailing = v.type.shape.slice(vars.length);
  v = broadcastTo(c, v, [...ranges, ...trailing], inner, s.span);
  c.nameNode(v.id, s.target.name);
  v.grid = 0;
  scope.env.set(s.target.name, v);
}

/** First pass over an index-notation body: learn each index's range from its subscripts. */
function discoverRanges(c: Checker, e: Expr, grid: Grid, scope: Scope): void {
  const mark = c.nodes.length;
  const idBefore = c.nextId;
  const streamsBefore = c.streams;
  let firstError: CompileError | undefined;
  try {
    c.expr(e, { ...scope, grid });
  } catch (err) {
    if (!(err instanceof CompileError)) throw err;
    firstError = err;
  } finally {
    c.nodes.length = mark;
    c.nextId = idBefore;
    c.streams = streamsBefore;
  }
  const missing = grid.vars.findIndex((_, i) => grid.ranges[i] === undefined);
  // An error before a range was learned is the real problem (a typo, say), not the range.
  if (missing >= 0 && firstError) throw firstError;
  if (missing >= 0) {
    const v = grid.vars[missing];
    c.fail(
      `cannot tell the range of index ${v}: no tensor is read at ${v} itself (an index ranges ` +
        `over the axis of x[${v}]; x[${v} - 1] or arithmetic of ${v} does not say)`,
      e.span,
      `use ${v} directly as a subscript of a tensor, like x[${v}], so its size is known; ` +
        (grid.vars.length === 1
          // zeta[c] = f(c): a vector of positions is what arange gives.
          ? `a vector computed from positions alone is f(arange(N)), as in ` +
            `${v}s = float(arange(d)) / float(d)`
          : "a mask of the indices alone belongs in the score that uses it, as in " +
            "s[i, j] = where(j <= i, q[i] . k[j], -inf)"),
    );
  }
}

/** A reduction over index variables: `sum[t](expr)`. */
export function reduceOver(c: Checker, e: ExprOf<"reduce">, scope: Scope): Val {
  const fns: Record<string, "sum" | "max" | "min" | "mean" | "prod"> = {
    sum: "sum",
    max: "max",
    min: "min",
    mean: "mean",
    prod: "prod",
  };
  const fn = fns[e.fn];
  if (!fn) {
    c.fail(`${e.fn}[...](...) is not a reduction; use sum, max, min, mean or prod`, e.span);
  }
  const outer = scope.grid ?? { vars: [], ranges: [], discover: false };
  const names = e.vars.map((v) => v.name);
  for (const v of e.vars) {
    if (outer.vars.includes(v.name) || lookupable(v.name, scope)) {
      c.fail(`reduction index ${v.name} is already defined`, v.span, "pick a new name");
    }
  }
  const grid: Grid = {
    vars: [...outer.vars, ...names],
    ranges: [...outer.ranges, ...names.map(() => undefined)],
    discover: outer.discover,
  };
  if (!outer.discover) {
    const probe: Grid = { ...grid, ranges: [...grid.ranges], discover: true };
    discoverRanges(c, e.body, probe, scope);
    grid.ranges = probe.ranges;
  }
  const inner: Scope = { ...scope, grid };
  let v = toTensor(c, c.expr(e.body, inner), e.body.span);
  if (outer.discover) {
    // Keep what was learned about outer and inner ranges.
    outer.ranges.forEach((_, i) => (outer.ranges[i] ??= grid.ranges[i]));
  }
  const g = grid.vars.length;
  if (v.grid === 0) v = lift(c, v, inner, e.span);
  const full = v.type.shape.map((d, i) =>
    i >= outer.vars.length && i < g ? grid.ranges[i] ?? WILD : d
  );
  v = broadcastTo(c, v, full, inner, e.span);
  for (let k = names.length - 1; k >= 0; k--) {
    const axis = outer.vars.length + k;
    nonEmpty(c, fn, v, axis, e.span);
    const shape = v.type.shape.filter((_, i) => i !== axis);
    v = c.op(inner, { op: "reduce", fn, axis, keepdims: false }, [v], {
      dtype: fn === "mean" ? "float" : v.type.dtype,
      shape,
    }, e.span);
  }
  v.grid = outer.vars.length;
  return v;
}

export function indexExpr(c: Checker, e: ExprOf<"index">, scope: Scope): Val {
  const grid = scope.grid;
  if (grid && mentions(e.target, grid.vars)) {
    c.fail(
      "cannot index a value that depends on index variables",
      e.target.span,
      "compute it first as its own tensor, then index that",
    );
  }
  let target = toTensor(c, c.expr(e.target, { ...scope, grid: undefined }), e.target.span);
  if (e.indices.length > target.type.shape.length) {
    c.fail(
      `${
        exprText(e.target)
      } has rank ${target.type.shape.length} but ${e.indices.length} subscripts were given`,
      e.span,
    );
  }
  // A slice bound is known at compile time; one made of the statement's own index has no value.
  for (const ie of e.indices) {
    if (ie.kind !== "slice" || !grid) continue;
    const bound = [ie.lo, ie.hi].find((b) => b !== undefined && mentions(b, grid.vars));
    if (bound === undefined) continue;
    const name = grid.vars.find((v) => mentions(bound, [v]));
    const text = exprText(bound);
    c.fail(
      `a slice bound must be an integer known at compile time, but ${
        text === name ? `${name} is` : `${text} uses`
      } an index of this statement`,
      bound.span,
      `read single elements with ${name} as a subscript, or bound the slice by a parameter ` +
        "(half = 4, or --param half=4)",
    );
  }
  // x[i, a:b] in index notation: the slice over whole axes first (x[:, a:b]), then its rows at
  // the subscripts that name the grid's indices, which come before every slice.
  const gridded = (ie: Expr) =>
    grid !== undefined && ie.kind !== "slice" && mentions(ie, grid.vars);
  let indices = e.indices;
  if (hasSlice(e.indices) && e.indices.some(gridded)) {
    const first = e.indices.findIndex((ie) => ie.kind === "slice");
    const late = e.indices.findIndex((ie, k) => k > first && gridded(ie));
    if (late >= 0) {
      c.fail(
        `${exprText(e)}: the subscript ${exprText(e.indices[late])} follows a slice; in index ` +
          "notation, subscripts that use the indices come first and slices last",
        e.indices[late].span,
        "slice it first as its own tensor (y = x[a:b, :]), then index that (y[..., j])",
      );
    }
    const whole = e.indices.map((ie): Expr => gridded(ie) ? { kind: "slice", span: ie.span } : ie);
    target = toTensor(
      c,
      sliceExpr(c, { ...e, indices: whole }, target, { ...scope, grid: undefined }),
      e.span,
    );
    indices = e.indices.filter(gridded);
  } else if (hasSlice(e.indices)) return sliceExpr(c, e, target, scope);
  const idx = indices.map((ie, k) => {
    if (grid && ie.kind === "name" && grid.vars.includes(ie.name)) {
      const gi = grid.vars.indexOf(ie.name);
      const size = target.type.shape[k];
      if (grid.ranges[gi] === undefined) grid.ranges[gi] = size;
      else if (!sameDim(grid.ranges[gi]!, size) && !grid.discover) {
        c.fail(
          `index ${ie.name} ranges over ${
            describeDim(c, grid.ranges[gi]!)
          } but is used on an axis of size ${describeDim(c, size)}`,
          ie.span,
          "use a different index name for each size, or an affine index (reads outside the range give 0)",
        );
      }
    }
    const v = toTensor(c, c.expr(ie, scope), ie.span);
    if (v.type.dtype === "float") {
      c.fail(
        `a subscript must be an int, got ${kindType(v.type)}`,
        ie.span,
        "use int(...) to convert",
      );
    }
    return v.type.dtype === "bool" ? cast(c, v, "int", scope, ie.span) : v;
  });
  let ishape: Dim[] = [];
  for (let k = 0; k < idx.length; k++) {
    ishape = broadcastShapes(
      c,
      ishape,
      idx[k].type.shape,
      indices[k].span,
      "the other subscripts",
      `subscript ${k + 1}`,
    );
  }
  const shape = [...ishape, ...target.type.shape.slice(idx.length)];
  const out = c.emit({ op: "gather" }, [target.id, ...idx.map((v) => v.id)], {
    dtype: target.type.dtype,
    shape,
  }, e.span);
  out.grid = idx.some((v) => v.grid > 0) ? (grid?.vars.length ?? 0) : 0;
  if (grid && out.grid === 0 && shape.length > 0) return lift(c, out, scope, e.span);
  return out;
}
