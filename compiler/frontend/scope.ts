/**
 * Names: what a name can stand for (a compile-time value, a tensor node, a shape list), the
 * scopes that hold them, lookup with "did you mean", and declared types (whose size names become
 * symbols in the entry function).
 */
import type { Expr, Literal, TypeExpr } from "./ast.ts";
import { exprText } from "./ast.ts";
import { closest, type Span } from "../errors.ts";
import type { Dim, TensorType } from "../ir/types.ts";
import type { DType } from "../tensor.ts";
import { BUILTINS } from "./builtins.ts";
import type { Checker } from "./check.ts";
import { dimOf, lift, WILD } from "./shapes.ts";

/** A compile-time value (literal, parameter, known size) or a tensor node. */
export type Val =
  | { kind: "static"; value: number; dtype: DType }
  | { kind: "tensor"; id: number; type: TensorType; grid: number }
  | { kind: "shape"; dims: Dim[] };
export type TensorVal = Extract<Val, { kind: "tensor" }>;
export type StaticVal = Extract<Val, { kind: "static" }>;

/** An index-notation context: the grid variables and the sizes they range over. */
export interface Grid {
  vars: string[];
  ranges: (Dim | undefined)[];
  /** True in the first pass, which only discovers ranges; unknown ranges match anything. */
  discover: boolean;
}

export interface Scope {
  env: Map<string, Val>;
  dims: Map<string, Dim>;
  grid?: Grid;
}

export const CONSTANTS: Record<string, Val> = {
  pi: { kind: "static", value: Math.PI, dtype: "float" },
  inf: { kind: "static", value: Infinity, dtype: "float" },
  true: { kind: "static", value: 1, dtype: "bool" },
  false: { kind: "static", value: 0, dtype: "bool" },
};

/** The value of a name: an index variable (an `iota`), a binding, a size or a constant. */
export function lookup(c: Checker, name: string, span: Span, scope: Scope): Val {
  const g = scope.grid;
  const gi = g?.vars.indexOf(name) ?? -1;
  if (g && gi >= 0) {
    const shape: Dim[] = g.vars.map((_, i) => (i === gi ? g.ranges[gi] ?? WILD : 1));
    const v = c.emit({ op: "iota", axis: gi }, [], { dtype: "int", shape }, span);
    v.grid = g.vars.length;
    return v;
  }
  const v = scope.env.get(name);
  if (v) return v.kind === "tensor" ? lift(c, v, scope, span) : v;
  const d = scope.dims.get(name);
  if (d !== undefined) {
    if (typeof d === "number") return { kind: "static", value: d, dtype: "int" };
    return c.emit({ op: "dim", name: d }, [], { dtype: "int", shape: [] }, span);
  }
  if (name in CONSTANTS) return CONSTANTS[name];
  if (c.defs.has(name) || name in BUILTINS) {
    c.fail(`${name} is a function; call it with arguments`, span, BUILTINS[name]?.sig);
  }
  const known = [
    ...scope.env.keys(),
    ...scope.dims.keys(),
    ...(g?.vars ?? []),
    ...Object.keys(CONSTANTS),
  ];
  const guess = closest(name, known);
  return c.fail(
    `unknown name ${name}`,
    span,
    guess ? `did you mean ${guess}?` : `names in scope: ${known.join(", ")}`,
  );
}

/** Whether `name` means something here (so it cannot be a new index name). */
export function lookupable(name: string, scope: Scope): boolean {
  return scope.env.has(name) || scope.dims.has(name) || name in CONSTANTS ||
    (scope.grid?.vars.includes(name) ?? false);
}

/** A parameter default: a number, true or false. */
export function literal(c: Checker, lit: Literal): { value: number; dtype: DType } {
  if (lit.kind === "number") return { value: lit.value, dtype: lit.isInt ? "int" : "float" };
  const k = CONSTANTS[lit.name];
  if (k?.kind === "static") return { value: k.value, dtype: k.dtype };
  return c.fail(
    `a parameter default must be a number, true or false, not ${lit.name}`,
    lit.span,
  );
}

/** The type a declaration names; in the entry function, new size names become symbols. */
export function declaredType(
  c: Checker,
  t: TypeExpr,
  scope: Scope,
  declare: boolean,
  what: string,
): TensorType {
  if (t.kind === "scalar") return { dtype: t.elem, shape: [] };
  const shape = t.dims.map((d: Expr) => {
    if (d.kind === "name" && !scope.env.has(d.name) && !scope.dims.has(d.name)) {
      if (!declare) return d.name; // unified by the caller
      scope.dims.set(d.name, d.name);
      c.symbols[d.name] ??= {
        origin: `${what}[${t.dims.map(exprText).join(", ")}]`,
        span: d.span,
      };
      return d.name;
    }
    return dimOf(c, c.expr(d, scope), d.span);
  });
  return { dtype: t.elem ?? "float", shape };
}
