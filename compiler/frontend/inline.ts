/**
 * User functions are inlined at each call: arguments bind to parameters in a fresh scope, and the
 * size names of tensor parameters unify with the arguments' sizes.
 */
import type { Arg, ExprOf, FunctionDef, Param, TypeExpr } from "./ast.ts";
import { exprText } from "./ast.ts";
import { closest, type Span } from "../errors.ts";
import { showType } from "../ir/print.ts";
import type { Checker } from "./check.ts";
import { FRONTEND_LIMITS } from "../limits.ts";
import { literal, type Scope, type TensorVal, type Val } from "./scope.ts";
import { describeDim, dimOf, sameDim, toTensor } from "./shapes.ts";
import { body, checkReturn } from "./statements.ts";

/** The values `def` returns at the call `e` (several for `-> (a, b)`), each of its declared type. */
export function inline(c: Checker, def: FunctionDef, e: ExprOf<"call">, scope: Scope): Val[] {
  if (c.inlining.includes(def.name)) {
    c.fail(
      `${def.name} calls itself; recursion is not supported`,
      e.span,
      "use repeat for iteration",
    );
  }
  if (scope.grid) c.fail(`${def.name} cannot be called inside index notation`, e.span);
  if (c.inlining.length >= FRONTEND_LIMITS.callDepth) {
    const chain = c.inlining.slice(-3).reverse().join(" ← ");
    c.fail(
      `calls nest more than ${FRONTEND_LIMITS.callDepth} deep here (${def.name} ← ${chain} ← …)`,
      e.span,
      "every call is inlined; flatten the chain of functions, or use repeat for iteration",
    );
  }
  const inner: Scope = { env: new Map(), dims: new Map() };
  const positional = e.args.filter((x) => !x.name);
  const keyword = new Map(e.args.filter((x) => x.name).map((x) => [x.name!, x]));
  if (positional.length > def.params.length) {
    c.fail(
      `${def.name} takes ${def.params.length} arguments, got ${positional.length}`,
      e.span,
    );
  }
  for (const k of keyword.keys()) {
    if (!def.params.some((p) => p.name === k)) {
      const guess = closest(k, def.params.map((p) => p.name));
      c.fail(
        `${def.name} has no parameter ${k}`,
        keyword.get(k)!.span,
        guess ? `did you mean ${guess}?` : undefined,
      );
    }
  }
  const filled: Param[] = [];
  def.params.forEach((p, i) => {
    const arg: Arg | undefined = positional[i] ?? keyword.get(p.name);
    let v: Val;
    if (arg) v = c.expr(arg.value, scope);
    else if (p.default && p.type?.kind === "tensor") {
      filled.push(p); // sized once every other parameter is bound
      return;
    } else if (p.default) v = { kind: "static", ...literal(c, p.default) };
    else return c.fail(`${def.name} needs an argument for ${p.name}`, e.span);
    if (p.type?.kind === "tensor") {
      const t = toTensor(c, v, arg?.span ?? e.span);
      unify(c, def, p.name, p.type, t, inner, arg?.span ?? e.span);
      v = t;
    }
    inner.env.set(p.name, v);
  });
  for (const p of filled) inner.env.set(p.name, tensorDefault(c, def, p, inner, e.span));
  c.inlining.push(def.name);
  const { values, span } = body(c, def, inner);
  c.inlining.pop();
  if (def.ret) checkReturn(c, def, values, inner, span);
  return values;
}

/**
 * A tensor parameter left out of a call, with a default (`mask: [n] = ones`): a tensor of its
 * declared shape filled with `ones` (1), `zeros` (0) or a number, sized by the other arguments and
 * parameters, as the entry function's inputs are.
 */
function tensorDefault(
  c: Checker,
  def: FunctionDef,
  p: Param,
  inner: Scope,
  span: Span,
): TensorVal {
  const type = p.type as Extract<TypeExpr, { kind: "tensor" }>;
  const lit = p.default!;
  const fills: Record<string, number> = { ones: 1, zeros: 0 };
  const value = lit.kind === "name" && lit.name in fills ? fills[lit.name] : literal(c, lit).value;
  const shape = type.dims.map((d) => {
    if (d.kind === "name" && !inner.env.has(d.name)) {
      const bound = inner.dims.get(d.name);
      if (bound === undefined) {
        c.fail(
          `${def.name}: cannot size the default of ${p.name}: no argument sets ${d.name}`,
          span,
          `pass ${p.name}, or an argument whose shape has ${d.name}`,
        );
      }
      return bound!;
    }
    return dimOf(c, c.expr(d, inner), d.span);
  });
  return c.emit({ op: "fill", value }, [], { dtype: type.elem ?? "float", shape }, span);
}

/** Bind a function's size names to the argument's sizes, checking repeated names agree. */
function unify(
  c: Checker,
  def: FunctionDef,
  pname: string,
  type: Extract<TypeExpr, { kind: "tensor" }>,
  t: TensorVal,
  inner: Scope,
  span: Span,
): void {
  const shape = t.type.shape;
  if (shape.length !== type.dims.length) {
    c.fail(
      `${def.name}: argument ${pname} should have rank ${type.dims.length} ([${
        type.dims.map(exprText).join(", ")
      }]) but has shape ${showType(t.type)}`,
      span,
    );
  }
  type.dims.forEach((d, i) => {
    if (d.kind === "name" && !inner.env.has(d.name)) {
      const bound = inner.dims.get(d.name);
      if (bound === undefined) inner.dims.set(d.name, shape[i]);
      else if (!sameDim(bound, shape[i])) {
        c.fail(
          `${def.name}: size ${d.name} of ${pname} is ${describeDim(c, shape[i])} but was ${
            describeDim(c, bound)
          } earlier`,
          span,
        );
      }
    } else {
      const want = dimOf(c, c.expr(d, inner), d.span);
      if (!sameDim(want, shape[i])) {
        c.fail(
          `${def.name}: axis ${i} of ${pname} should be ${want}, got ${describeDim(c, shape[i])}`,
          span,
        );
      }
    }
  });
}
