/**
 * Statements: a function body in order, assignments, the return (checked against a declared
 * result type), and `repeat` loops, whose reassigned names are carried around the loop.
 */
import type { FunctionDef, Ident, Stmt, StmtOf } from "./ast.ts";
import type { Span } from "../errors.ts";
import type { Node } from "../ir/types.ts";
import { showType } from "../ir/print.ts";
import type { Checker } from "./check.ts";
import { destructure, DROP } from "./destructure.ts";
import { indexed } from "./indexing.ts";
import { declaredType, type Scope, type TensorVal, type Val } from "./scope.ts";
import { cast, describeDim, sameDim, toTensor } from "./shapes.ts";

/** What a function body returns: its values, and the return statement's span. */
export interface Returned {
  values: Val[];
  span: Span;
}

export function body(c: Checker, def: FunctionDef, scope: Scope): Returned {
  const ret = stmts(c, def.body, scope);
  if (!ret) {
    c.fail(
      `function ${def.name} does not return a value`,
      def.nameSpan,
      "end it with `return expr`",
    );
  }
  return ret;
}

function stmts(c: Checker, list: Stmt[], scope: Scope, inLoop = false): Returned | undefined {
  for (let i = 0; i < list.length; i++) {
    const s = list[i];
    if (s.kind === "return") {
      if (inLoop) c.fail("return is not allowed inside repeat", s.span);
      if (i !== list.length - 1) c.fail("code after return is never run", list[i + 1].span);
      // `return f(x)` passes on every result of f.
      const [only] = s.values;
      const values = s.values.length === 1 && only.kind === "call"
        ? c.results(only, scope)
        : s.values.map((v) => c.expr(v, scope));
      return { values, span: s.span };
    }
    for (const t of s.kind === "destructure" ? s.targets : s.kind === "repeat" ? [] : [s.target]) {
      notASize(c, scope, t);
    }
    if (s.kind === "assign") bind(c, scope, s.target.name, c.expr(s.value, scope));
    else if (s.kind === "destructure") {
      for (const [name, v] of destructure(c, s, scope)) bind(c, scope, name, v);
    } else if (s.kind === "indexed") indexed(c, s, scope);
    else repeat(c, s, scope);
  }
  return undefined;
}

/**
 * A local may not take a size's name: `e = exp(s)` beside `v: [n, e]` would make every later `e`
 * (the result type's too) mean the tensor.
 */
function notASize(c: Checker, scope: Scope, t: Ident): void {
  if (!scope.dims.has(t.name)) return;
  c.fail(
    `${describeDim(c, scope.dims.get(t.name)!).replace(/^(\S+) \(/, "$1 is a size (")}` +
      "; a local cannot take its name",
    t.span,
    `rename the local, e.g. ${t.name}_ or ${t.name}2`,
  );
}

function bind(c: Checker, scope: Scope, name: string, v: Val): void {
  if (v.kind === "tensor") c.nameNode(v.id, name);
  scope.env.set(name, v);
}

/**
 * The returned values against the declared result types: as many values as types, each of its
 * declared shape.
 */
export function checkReturn(
  c: Checker,
  def: FunctionDef,
  outs: Val[],
  scope: Scope,
  at: Span,
): void {
  const ret = def.ret!;
  if (outs.length !== ret.types.length) {
    const [n, m] = [outs.length, ret.types.length];
    c.fail(
      `${def.name} returns ${n} value${n === 1 ? "" : "s"} but declares ${m} result${
        m === 1 ? "" : "s"
      }`,
      at,
      `return ${m} value${m === 1 ? "" : "s"}, or declare -> (${
        outs.map((o) => o.kind === "tensor" ? showType(o.type) : "[]").join(", ")
      })`,
    );
  }
  ret.types.forEach((t, k) => {
    const out = outs[k];
    if (out.kind !== "tensor") return; // a compile-time number or shape list: nothing to check
    const expected = declaredType(c, t, scope, false, "");
    const actual = out.type.shape;
    const bad = expected.shape.length !== actual.length ||
      expected.shape.some((d, i) => !sameDim(scope.dims.get(String(d)) ?? d, actual[i]));
    if (!bad) return;
    if (!ret.many) {
      c.fail(
        `${def.name} returns ${showType(out.type)} but its declared result is ${
          showType(expected)
        }`,
        t.span,
      );
    }
    // Several results: which one, and the first size that differs (both named).
    const axis = expected.shape.findIndex((d, i) =>
      !sameDim(scope.dims.get(String(d)) ?? d, actual[i])
    );
    const sizes = expected.shape.length !== actual.length
      ? `rank ${actual.length} ≠ ${expected.shape.length}`
      : `axis ${axis}: ${describeDim(c, actual[axis])} ≠ ${describeDim(c, expected.shape[axis])}`;
    c.fail(
      `${def.name} returns ${showType(out.type)} as result ${k + 1} but its declared ` +
        `result ${k + 1} is ${showType(expected)} (${sizes})`,
      t.span,
    );
  });
}

function repeat(c: Checker, s: StmtOf<"repeat">, scope: Scope): void {
  const countVal = c.expr(s.count, scope);
  if (countVal.kind !== "static" || !Number.isInteger(countVal.value) || countVal.value < 0) {
    c.fail("repeat needs a non-negative integer known at compile time", s.count.span);
  }
  const assigned = new Set<string>();
  const collect = (ss: Stmt[]) => {
    for (const x of ss) {
      if (x.kind === "assign" || x.kind === "indexed") assigned.add(x.target.name);
      if (x.kind === "destructure") {
        x.targets.forEach((t) => t.name !== DROP && assigned.add(t.name));
      }
      if (x.kind === "repeat") collect(x.body);
    }
  };
  collect(s.body);
  for (const name of assigned) {
    if (scope.env.get(name)?.kind === "shape") {
      c.fail(
        `${name} is a shape list; it cannot be reassigned inside repeat`,
        s.span,
        "give the new shape another name",
      );
    }
  }
  // Compile-time numbers reassigned in the body are carried like tensors (as scalars), so
  // `x = 1; repeat 3 { x = x * 2 }` gives 8. An int that the body turns into a float is
  // carried as a float (checked once to learn that, then again).
  const carried = [...assigned].filter((n) => {
    const kind = scope.env.get(n)?.kind;
    return kind === "tensor" || kind === "static";
  });
  const promote = new Set<string>();
  for (;;) {
    const widen = repeatOnce(c, s, scope, countVal.value, carried, promote);
    if (!widen.size) return;
    widen.forEach((n) => promote.add(n)); // grows every time, so this ends
  }
}

/**
 * Emit one loop; returns the static-initialized names whose carried type must be widened to
 * float (nothing is emitted into the enclosing scope then).
 */
function repeatOnce(
  c: Checker,
  s: StmtOf<"repeat">,
  scope: Scope,
  count: number,
  carried: string[],
  promote: Set<string>,
): Set<string> {
  const mark = c.nodes.length;
  const inits = carried.map((n) => {
    const v = scope.env.get(n)!;
    if (v.kind !== "static") return v as TensorVal;
    const t = toTensor(c, v, s.span);
    return promote.has(n) ? cast(c, t, "float", scope, s.span) : t;
  });
  const loopId = c.nextId++;
  const outer = c.nodes;
  c.nodes = [];
  const inner: Scope = { ...scope, env: new Map(scope.env) };
  carried.forEach((name, index) => {
    const v = c.emit(
      { op: "carry", loop: loopId, index },
      [],
      inits[index].type,
      s.span,
      name,
    );
    inner.env.set(name, v);
  });
  stmts(c, s.body, inner, true);
  const widen = new Set(carried.filter((name, i) => {
    const v = inner.env.get(name)!, init = scope.env.get(name)!;
    const dtype = v.kind === "shape" ? undefined : v.kind === "static" ? v.dtype : v.type.dtype;
    return init.kind === "static" && inits[i].type.dtype !== "float" && dtype === "float";
  }));
  if (widen.size) {
    c.nodes = outer;
    c.nodes.length = mark; // drop the initial values emitted for this attempt
    return widen;
  }
  const results = carried.map((name, i) => {
    const v = toTensor(c, inner.env.get(name)!, s.span);
    const want = inits[i].type;
    if (
      v.type.shape.length !== want.shape.length ||
      v.type.shape.some((d, k) => !sameDim(d, want.shape[k]))
    ) {
      c.fail(
        `repeat changes the shape of ${name} from ${showType(want)} to ${showType(v.type)}`,
        s.span,
        "a value carried around a loop must keep its shape",
      );
    }
    return v.type.dtype === want.dtype ? v : cast(c, v, want.dtype, inner, s.span);
  });
  const body = c.nodes;
  c.nodes = outer;
  const loop: Node = {
    id: loopId,
    op: { op: "loop", count, body, results: results.map((r) => r.id) },
    args: inits.map((v) => v.id),
    type: { dtype: "float", shape: [] },
    span: s.span,
  };
  c.nodes.push(loop);
  carried.forEach((name, index) => {
    const r = c.emit({ op: "loop_result", index }, [loopId], inits[index].type, s.span, name);
    scope.env.set(name, r);
  });
  return new Set();
}
