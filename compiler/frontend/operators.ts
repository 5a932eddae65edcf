/**
 * The operators: unary `-` and `not`, `^T`, the elementwise binary operators (folded when both
 * sides are known at compile time), `@` and `.`.
 */
import type { ExprOf } from "./ast.ts";
import type { Span } from "../errors.ts";
import { BINARY as SCALAR_BINARY } from "../ir/scalar.ts";
import type { BinaryFn } from "../ir/types.ts";
import { showType } from "../ir/print.ts";
import type { DType } from "../tensor.ts";
import type { Checker } from "./check.ts";
import type { Scope, StaticVal, TensorVal, Val } from "./scope.ts";
import {
  align,
  broadcastShapes,
  cast,
  describeDim,
  promote,
  reshape,
  sameDim,
  toTensor,
} from "./shapes.ts";

const BINARY: Record<string, BinaryFn> = {
  "+": "add",
  "-": "sub",
  "*": "mul",
  "/": "div",
  "//": "idiv",
  "%": "mod",
  "^": "pow",
  "<": "lt",
  "<=": "le",
  ">": "gt",
  ">=": "ge",
  "==": "eq",
  "!=": "ne",
  and: "and",
  or: "or",
};

export function unaryExpr(c: Checker, e: ExprOf<"unary">, scope: Scope): Val {
  const a = c.expr(e.arg, scope);
  if (a.kind === "static") {
    return e.op === "-"
      ? { kind: "static", value: -a.value, dtype: a.dtype === "bool" ? "int" : a.dtype }
      : { kind: "static", value: a.value ? 0 : 1, dtype: "bool" };
  }
  const t = toTensor(c, a, e.span);
  return e.op === "-"
    ? c.op(scope, { op: "unary", fn: "neg" }, [t], {
      dtype: t.type.dtype === "bool" ? "int" : t.type.dtype,
      shape: t.type.shape,
    }, e.span)
    : c.op(scope, { op: "unary", fn: "not" }, [cast(c, t, "bool", scope, e.span)], {
      dtype: "bool",
      shape: t.type.shape,
    }, e.span);
}

export function transposeExpr(c: Checker, e: ExprOf<"transpose">, scope: Scope): Val {
  const a = toTensor(c, c.expr(e.arg, scope), e.span);
  const trailing = a.type.shape.length - a.grid;
  if (trailing < 2) {
    c.fail(
      `^T needs a matrix, got ${showType(a.type)}`,
      e.span,
      "a vector has no transpose; use x[i] indexing or keepdims=true to make a column",
    );
  }
  const s = [...a.type.shape];
  [s[s.length - 2], s[s.length - 1]] = [s[s.length - 1], s[s.length - 2]];
  return c.op(scope, { op: "transpose" }, [a], { dtype: a.type.dtype, shape: s }, e.span);
}

export function binaryExpr(c: Checker, e: ExprOf<"binary">, scope: Scope): Val {
  const l = c.expr(e.left, scope);
  const r = c.expr(e.right, scope);
  if (e.op === "@") return matmul(c, l, r, e, scope);
  if (e.op === ".") return dot(c, l, r, e, scope);
  const fn = BINARY[e.op];
  if ((fn === "mod" || fn === "idiv") && r.kind === "static" && r.value === 0) {
    // x % 0 is NaN on the interpreter, and nothing WGSL promises on the GPU (a fuzz find: the
    // two disagreed on a hash table's bucket): a constant zero divisor is refused here.
    c.fail(
      `${e.op} by zero: ${e.op === "%" ? "the remainder" : "the quotient"} has no value`,
      e.right.span,
      "divide by a nonzero count (a table size, a number of segments)",
    );
  }
  if (l.kind === "static" && r.kind === "static") return foldStatic(fn, l, r);
  return elementwise(c, fn, l, r, e.span, scope, ` in ${e.op}`);
}

export function elementwise(
  c: Checker,
  fn: BinaryFn,
  l: Val,
  r: Val,
  span: Span,
  scope: Scope,
  what = "",
): TensorVal {
  let a = toTensor(c, l, span), b = toTensor(c, r, span);
  [a, b] = align(c, a, b, scope, span);
  const shape = broadcastShapes(c, a.type.shape, b.type.shape, span, "left", "right", what);
  let dtype: DType;
  if (["lt", "le", "gt", "ge", "eq", "ne"].includes(fn)) dtype = "bool";
  else if (fn === "and" || fn === "or") {
    a = cast(c, a, "bool", scope, span);
    b = cast(c, b, "bool", scope, span);
    dtype = "bool";
  } else if (fn === "div" || fn === "pow") dtype = "float";
  else dtype = promote([a.type.dtype, b.type.dtype], "int");
  return c.op(scope, { op: "binary", fn }, [a, b], { dtype, shape }, span);
}

function matmul(c: Checker, l: Val, r: Val, e: ExprOf<"binary">, scope: Scope): TensorVal {
  if (scope.grid) {
    c.fail(
      "@ is not available inside index notation",
      e.span,
      "use . for the dot product of two rows",
    );
  }
  let a = toTensor(c, l, e.left.span), b = toTensor(c, r, e.right.span);
  if (a.type.shape.length === 0 || b.type.shape.length === 0) {
    c.fail("@ needs tensors of rank ≥ 1; use * to multiply by a scalar", e.span);
  }
  const aVec = a.type.shape.length === 1, bVec = b.type.shape.length === 1;
  if (aVec) a = reshape(c, a, [1, a.type.shape[0]], scope, e.span);
  if (bVec) b = reshape(c, b, [b.type.shape[0], 1], scope, e.span);
  const as = a.type.shape, bs = b.type.shape;
  const k1 = as[as.length - 1], k2 = bs[bs.length - 2];
  if (!sameDim(k1, k2)) {
    c.fail(
      `matmul inner sizes differ: left is [${as.join(", ")}] and right is [${bs.join(", ")}]; ` +
        `${describeDim(c, k1)} ≠ ${describeDim(c, k2)}`,
      e.span,
      "the last size of the left operand must equal the second-to-last of the right; maybe a ^T is missing",
    );
  }
  const batch = broadcastShapes(
    c,
    as.slice(0, -2),
    bs.slice(0, -2),
    e.span,
    "left batch",
    "right batch",
    " in @",
  );
  const dtype = promote([a.type.dtype, b.type.dtype], "int");
  let out = c.op(scope, { op: "matmul" }, [a, b], {
    dtype,
    shape: [...batch, as[as.length - 2], bs[bs.length - 1]],
  }, e.span);
  if (aVec || bVec) {
    const s = out.type.shape.filter((_, i, arr) =>
      !((aVec && i === arr.length - 2) || (bVec && i === arr.length - 1))
    );
    out = reshape(c, out, s, scope, e.span);
  }
  return out;
}

function dot(c: Checker, l: Val, r: Val, e: ExprOf<"binary">, scope: Scope): TensorVal {
  let a = toTensor(c, l, e.left.span), b = toTensor(c, r, e.right.span);
  [a, b] = align(c, a, b, scope, e.span);
  const g = scope.grid?.vars.length ?? 0;
  const ta = a.type.shape.length - (a.grid ? g : 0), tb = b.type.shape.length - (b.grid ? g : 0);
  if (ta < 1 || tb < 1) {
    c.fail(
      `. needs two vectors (it sums a[..., k] * b[..., k] over k), got ${showType(a.type)} and ${
        showType(b.type)
      }`,
      e.span,
      "for a product of scalars use *",
    );
  }
  const ka = a.type.shape[a.type.shape.length - 1], kb = b.type.shape[b.type.shape.length - 1];
  if (!sameDim(ka, kb)) {
    c.fail(
      `dot product of vectors of different sizes: ${describeDim(c, ka)} and ${describeDim(c, kb)}`,
      e.span,
    );
  }
  const lead = broadcastShapes(
    c,
    a.type.shape.slice(0, -1),
    b.type.shape.slice(0, -1),
    e.span,
    "left",
    "right",
    " in .",
  );
  const dtype = promote([a.type.dtype, b.type.dtype], "int");
  return c.op(scope, { op: "dot" }, [a, b], { dtype, shape: lead }, e.span);
}

/** A binary operator on two compile-time values. */
export function foldStatic(fn: BinaryFn, a: StaticVal, b: StaticVal): Val {
  const x = a.value, y = b.value;
  const ints = a.dtype !== "float" && b.dtype !== "float";
  const value = SCALAR_BINARY[fn](x, y); // the interpreter's own semantics: folding cannot differ
  let dtype = promote([a.dtype, b.dtype], "int");
  if (["lt", "le", "gt", "ge", "eq", "ne", "and", "or"].includes(fn)) dtype = "bool";
  if (fn === "div" || (fn === "pow" && !(ints && y >= 0))) dtype = "float";
  return { kind: "static", value, dtype };
}
