/**
 * Slices with static bounds: `x[a:b]`, `x[:, a:b]`, `x[a:]`, `x[:b]`, mixed with static integer
 * subscripts (which drop their axis). Lowered to one gather whose index on each sliced axis is
 * `iota + a`, so readers see an ordinary gather (inlined where read). Bounds are integers known
 * at compile time (literals or parameters); negative ones count from the end of a static axis.
 * On an axis whose size is a symbol, `a:b` and `:b` are allowed (positions past the run's size
 * read 0, as affine subscripts do), and `a:` only with a = 0, since the shape system has no
 * `n - a`.
 */
import type { Expr, ExprOf } from "./ast.ts";
import type { Dim } from "../ir/types.ts";
import type { Checker } from "./check.ts";
import type { Scope, TensorVal, Val } from "./scope.ts";
import { describeDim, kindType, lift } from "./shapes.ts";
import { MAX_DIM } from "../tensor.ts";

/** Whether a subscript list holds a slice (and so is lowered here). */
export const hasSlice = (indices: Expr[]) => indices.some((e) => e.kind === "slice");

/** `target[subscripts]` where some subscripts are slices. */
export function sliceExpr(
  c: Checker,
  e: ExprOf<"index">,
  target: TensorVal,
  scope: Scope,
): Val {
  const shape = target.type.shape;
  const int = (s: Dim[]) => ({ dtype: "int" as const, shape: s });
  const count = e.indices.filter((ie) => ie.kind === "slice").length;
  const kept: Dim[] = [];
  const idx = e.indices.map((ie, k) => {
    if (ie.kind !== "slice") {
      const at = staticBound(c, ie, scope, "a subscript next to a slice");
      const d = shape[k];
      const i = at < 0 && typeof d === "number" ? d + at : at;
      if (i < 0 || (typeof d === "number" && i >= d)) {
        c.fail(
          `subscript ${at} is out of range for axis ${k} of size ${describeDim(c, d)}`,
          ie.span,
        );
      }
      return c.emit({ op: "const", value: i }, [], int([]), ie.span).id;
    }
    const [lo, len] = bounds(c, ie, shape[k], k, scope);
    const pos = kept.push(len) - 1;
    const ishape = Array.from({ length: count }, (_, j) => (j === pos ? len : 1));
    const iota = c.emit({ op: "iota", axis: pos }, [], int(ishape), ie.span);
    if (lo === 0) return iota.id;
    const off = c.emit({ op: "const", value: lo }, [], int([]), ie.span);
    return c.emit({ op: "binary", fn: "add" }, [iota.id, off.id], int(ishape), ie.span).id;
  });
  const out = c.emit({ op: "gather" }, [target.id, ...idx], {
    dtype: target.type.dtype,
    shape: [...kept, ...shape.slice(e.indices.length)],
  }, e.span);
  return scope.grid && out.type.shape.length > 0 ? lift(c, out, scope, e.span) : out;
}

/** The start and length of slice `s` on axis `k` of size `d`. */
function bounds(c: Checker, s: ExprOf<"slice">, d: Dim, k: number, scope: Scope): [number, Dim] {
  const lo0 = s.lo ? staticBound(c, s.lo, scope, "a slice bound") : 0;
  const hi0 = s.hi ? staticBound(c, s.hi, scope, "a slice bound") : undefined;
  const axis = `axis ${k} of size ${describeDim(c, d)}`;
  if (typeof d === "string") {
    if ((hi0 === undefined && lo0 !== 0) || lo0 < 0 || (hi0 !== undefined && hi0 < 0)) {
      const lo = Math.max(lo0, 0);
      c.fail(
        `slice ${sliceText(s, lo0, hi0)} of ${axis} needs that size, known only at run time ` +
          `(a shape cannot say ${d} - ${Math.abs(lo0)})`,
        s.span,
        `give both bounds as integers ≥ 0, like [${lo}:${lo + 1}] (positions past ${d} read 0)`,
      );
    }
    if (hi0 === undefined) return [0, d];
    if (hi0 <= lo0) c.fail(`slice ${lo0}:${hi0} of ${axis} is empty`, s.span);
    return [lo0, hi0 - lo0];
  }
  const lo = lo0 < 0 ? d + lo0 : lo0;
  const hi = hi0 === undefined ? d : hi0 < 0 ? d + hi0 : hi0;
  if (lo < 0 || lo > d || hi > d || hi < 0) {
    c.fail(
      `slice ${sliceText(s, lo0, hi0)} is out of range for ${axis}`,
      s.span,
      `bounds go from ${-d} to ${d}`,
    );
  }
  if (hi <= lo) c.fail(`slice ${sliceText(s, lo0, hi0)} of ${axis} is empty`, s.span);
  return [lo, hi - lo];
}

const sliceText = (s: ExprOf<"slice">, lo: number, hi?: number) => `${s.lo ? lo : ""}:${hi ?? ""}`;

/** A slice bound or a subscript beside a slice: an integer known at compile time. */
function staticBound(c: Checker, e: Expr, scope: Scope, what: string): number {
  const v = c.expr(e, { ...scope, grid: undefined });
  if (v.kind !== "static" || !Number.isInteger(v.value)) {
    const got = v.kind === "static"
      ? String(v.value)
      : v.kind === "tensor"
      ? `a value computed at run time (${kindType(v.type)})`
      : "a shape";
    const sizes = v.kind === "tensor" ? sizesUnder(c, v.id) : [];
    c.fail(
      `${what} must be an integer known at compile time, got ${got}`,
      e.span,
      sizes.length
        ? `it is computed from the size${sizes.length > 1 ? "s" : ""} ${sizes.join(", ")}, ` +
          "known only when inputs arrive; use a parameter instead (half = 4, or --param half=4)"
        : undefined,
    );
  }
  // A slice's length becomes a size (fuzz: `q[:, :1e11]` broke planning with a RangeError).
  if (Math.abs(v.value) > MAX_DIM) {
    c.fail(
      `${what} of ${v.value} is past ${MAX_DIM}, the largest a GPU index (u32) can address`,
      e.span,
    );
  }
  return v.value;
}

/** The size symbols a value computed in the program reads (`d // 2` reads d). */
function sizesUnder(c: Checker, id: number): string[] {
  const found = new Set<string>(), seen = new Set<number>();
  const visit = (x: number) => {
    if (seen.has(x)) return;
    seen.add(x);
    const n = c.local(x);
    if (!n) return;
    if (n.op.op === "dim") found.add(n.op.name);
    n.args.forEach(visit);
  };
  visit(id);
  return [...found];
}
