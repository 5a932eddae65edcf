/**
 * Several results at a call: `y, lse = flash(q, k, v)` binds each result of a user function to a
 * name (`_` drops one), and a call that returns several values anywhere else is an error that
 * shows the destructuring to write.
 */
import { type ExprOf, exprText, type FunctionDef, type StmtOf } from "./ast.ts";
import type { Span } from "../errors.ts";
import type { Checker } from "./check.ts";
import type { Scope, Val } from "./scope.ts";

/** The name that binds nothing. */
export const DROP = "_";

/** The names a destructuring binds, each with its result of the call (`_` left out). */
export function destructure(
  c: Checker,
  s: StmtOf<"destructure">,
  scope: Scope,
): [string, Val][] {
  const names = s.targets.map((t) => t.name);
  const at: Span = { start: s.targets[0].span.start, end: s.targets.at(-1)!.span.end };
  const twice = s.targets.find((t, i) => t.name !== DROP && names.indexOf(t.name) < i);
  if (twice) {
    c.fail(`${twice.name} is bound twice here`, twice.span, `write ${DROP} to drop a result`);
  }
  if (s.value.kind !== "call") {
    c.fail(
      `${names.join(", ")} = … takes the results of a function call, not ${exprText(s.value)}`,
      s.value.span,
      "only a call of a function that returns several values can be destructured",
    );
  }
  const values = c.results(s.value, scope);
  const [n, m] = [values.length, names.length];
  if (n === 1) {
    c.fail(
      `${s.value.fn} returns one value; it cannot be destructured into ${m} names`,
      s.value.span,
      `write ${names[0]} = ${exprText(s.value)}`,
    );
  }
  if (n !== m) {
    c.fail(
      `${s.value.fn} returns ${n} values but ${m} names are given`,
      at,
      `write ${resultNames(c.defs.get(s.value.fn), n).join(", ")} = ${exprText(s.value)}`,
    );
  }
  return values.map((v, k): [string, Val] => [names[k], v]).filter(([name]) => name !== DROP);
}

/** The one value of a call inside an expression; a call returning several is an error. */
export function oneValue(c: Checker, e: ExprOf<"call">, values: Val[]): Val {
  if (values.length === 1) return values[0];
  const n = values.length;
  return c.fail(
    `${e.fn} returns ${n} values; a call inside an expression takes one`,
    e.span,
    `bind each to a name: ${resultNames(c.defs.get(e.fn), n).join(", ")} = ${exprText(e)}`,
  );
}

/**
 * Names for a hint: the local names `def` returns (`return y, lse`), r1, r2, … for the others
 * (a parameter's name would read as the caller's argument).
 */
function resultNames(def: FunctionDef | undefined, n: number): string[] {
  const ret = def?.body.at(-1);
  const values = ret?.kind === "return" && ret.values.length === n ? ret.values : [];
  const local = (name: string) => !def!.params.some((p) => p.name === name);
  const named = values.map((v) => v.kind === "name" && local(v.name) ? v.name : "");
  return Array.from({ length: n }, (_, k) => {
    const name = named[k];
    return name && named.indexOf(name) === k ? name : `r${k + 1}`;
  });
}
