/**
 * Kinds and shapes: sizes (numbers or symbols), numpy broadcasting, casts and reshapes, the
 * float-promotion rule, and how values sit under an index-notation grid.
 */
import type { Span } from "../errors.ts";
import type { Dim, TensorType } from "../ir/types.ts";
import { showType } from "../ir/print.ts";
import { type DType, F32_MIN_NORMAL, F32_OVERFLOW, MAX_DIM } from "../tensor.ts";
import type { Checker } from "./check.ts";
import type { Scope, TensorVal, Val } from "./scope.ts";

/** A size not learned yet (an index range while it is discovered); it matches any size. */
export const WILD = "?";

/** The float-promotion rule: with a float operand the result is float (an int widens). */
export function promote(dtypes: DType[], otherwise: DType): DType {
  return dtypes.includes("float") ? "float" : otherwise;
}

export function sameDim(a: Dim, b: Dim): boolean {
  return a === b || a === WILD || b === WILD;
}

/** A size for messages, with where a symbol came from. */
export function describeDim(c: Checker, d: Dim): string {
  if (typeof d === "number") return String(d);
  const s = c.symbols[d];
  return s ? `${d} (from ${s.origin})` : d;
}

/** A type with its element kind always spelled out, for messages about kinds. */
export function kindType(t: TensorType): string {
  return `${t.dtype}[${t.shape.join(", ")}]`;
}

/** A value used as a size: a non-negative static integer or a size symbol. */
export function dimOf(c: Checker, v: Val, span: Span): Dim {
  if (v.kind === "static" && Number.isInteger(v.value) && v.value >= 0) {
    if (v.value > MAX_DIM) {
      c.fail(
        `a size of ${v.value} is past ${MAX_DIM}, the largest a GPU index (u32) can address`,
        span,
      );
    }
    return v.value;
  }
  const node = v.kind === "tensor" ? c.local(v.id) : undefined;
  if (node?.op.op === "dim") {
    return node.op.name;
  }
  const what = v.kind === "static"
    ? String(v.value)
    : v.kind === "shape"
    ? "a shape list"
    : `a ${showType(v.type)} tensor`;
  return c.fail(
    `a size must be a non-negative integer known at compile time, got ${what}`,
    span,
  );
}

/**
 * A finite constant past float32's range would silently become ±inf on the GPU, and a nonzero one
 * below its smallest normal number 0: both refused.
 */
export function checkF32(c: Checker, value: number, span: Span): void {
  if (value !== 0 && Math.abs(value) < F32_MIN_NORMAL) {
    c.fail(
      `${value} is below float32's smallest normal number (1.1754944e-38): the GPU would compute ` +
        "with 0",
      span,
      "write 0 if zero is meant, or scale the constant into range",
    );
  }
  if (Number.isFinite(value) && Math.abs(value) >= F32_OVERFLOW) {
    c.fail(
      `${value} is outside float32's range (±3.4028235e38): the GPU would compute with ${
        value > 0 ? "" : "-"
      }inf`,
      span,
      "scale the constant into range, or write inf if infinity is meant",
    );
  }
}

export function toTensor(c: Checker, v: Val, span: Span): TensorVal {
  if (v.kind === "tensor") return v;
  if (v.kind === "shape") {
    return c.fail("a shape list like [n, d] is only allowed as a shape argument", span);
  }
  checkF32(c, v.value, span);
  return c.emit({ op: "const", value: v.value }, [], { dtype: v.dtype, shape: [] }, span);
}

export function cast(c: Checker, v: TensorVal, dtype: DType, scope: Scope, span: Span): TensorVal {
  if (v.type.dtype === dtype) return v;
  return c.op(scope, { op: "cast" }, [v], { dtype, shape: v.type.shape }, span);
}

export function reshape(
  c: Checker,
  v: TensorVal,
  shape: Dim[],
  scope: Scope,
  span: Span,
): TensorVal {
  const r = c.op(scope, { op: "reshape" }, [v], { dtype: v.type.dtype, shape }, span);
  r.grid = v.grid;
  return r;
}

export function broadcastTo(
  c: Checker,
  v: TensorVal,
  shape: Dim[],
  scope: Scope,
  span: Span,
): TensorVal {
  const same = v.type.shape.length === shape.length &&
    v.type.shape.every((d, i) => d === shape[i]);
  if (same) return v;
  const r = c.op(scope, { op: "broadcast" }, [v], { dtype: v.type.dtype, shape }, span);
  r.grid = v.grid;
  return r;
}

/** Numpy broadcasting of two shapes; a mismatch names both sizes and their origins. */
export function broadcastShapes(
  c: Checker,
  a: Dim[],
  b: Dim[],
  span: Span,
  left = "left",
  right = "right",
  what = "",
): Dim[] {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x === y || y === 1 || y === WILD) out.push(x);
    else if (x === 1 || x === WILD) out.push(y);
    else {
      c.fail(
        `shape mismatch${what}: ${left} is [${a.join(", ")}] and ${right} is [${b.join(", ")}]; ` +
          `size ${describeDim(c, x)} does not match ${describeDim(c, y)}`,
        span,
        "sizes must be equal, or one of them 1 (broadcasting aligns the last axes)",
      );
    }
  }
  return out;
}

/** Make two operands broadcast-compatible; under a grid, align their trailing parts. */
export function align(
  c: Checker,
  a: TensorVal,
  b: TensorVal,
  scope: Scope,
  span: Span,
): [TensorVal, TensorVal] {
  const g = scope.grid?.vars.length ?? 0;
  if (g === 0 || a.type.shape.length === 0 || b.type.shape.length === 0) return [a, b];
  const ta = a.type.shape.length - g, tb = b.type.shape.length - g;
  const pad = (v: TensorVal, k: number) =>
    reshape(
      c,
      v,
      [...v.type.shape.slice(0, g), ...Array(k).fill(1), ...v.type.shape.slice(g)],
      scope,
      span,
    );
  if (ta < tb) a = pad(a, tb - ta);
  if (tb < ta) b = pad(b, ta - tb);
  return [a, b];
}

/** Reshape a grid-free tensor to sit under the current grid: [1, ..., 1, ...shape]. */
export function lift(c: Checker, v: TensorVal, scope: Scope, span: Span): TensorVal {
  const g = scope.grid?.vars.length ?? 0;
  if (g === 0 || v.grid > 0 || v.type.shape.length === 0) return v;
  const r = reshape(c, v, [...Array(g).fill(1), ...v.type.shape], scope, span);
  r.grid = g;
  return r;
}

/**
 * A mean, max or min over an axis of size 0 has no value (sum and prod give 0 and 1). Refused
 * when the size is known here, so neither backend returns NaN or -inf silently.
 */
export function nonEmpty(c: Checker, fn: string, x: TensorVal, axis: number, span: Span): void {
  if ((fn === "mean" || fn === "max" || fn === "min") && x.type.shape[axis] === 0) {
    c.fail(
      `${fn} over an axis of size 0 (axis ${axis} of ${showType(x.type)}) has no value`,
      span,
      "a parameter or shape that sets this size is 0; use at least 1",
    );
  }
}
