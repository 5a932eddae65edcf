/** Source text → AST, through the Ohm grammar in grammar.ts. */
import * as ohm from "npm:ohm-js@17.5.0";
import type {
  Arg,
  BinaryOp,
  Expr,
  FunctionDef,
  Ident,
  Literal,
  Param,
  Program,
  Stmt,
  TypeExpr,
} from "./ast.ts";
import { CompileError, type Span } from "../errors.ts";
import { GRAMMAR_SOURCE } from "./grammar.ts";
import { FRONTEND_LIMITS } from "../limits.ts";

/** The Attune grammar (ohm-js). */
const grammar: ohm.Grammar = ohm.grammar(GRAMMAR_SOURCE);

function span(node: ohm.Node): Span {
  return { start: node.source.startIdx, end: node.source.endIdx };
}

const semantics = grammar.createSemantics();

function binary(op: BinaryOp, l: ohm.Node, r: ohm.Node, whole: ohm.Node): Expr {
  return { kind: "binary", op, left: l.ast(), right: r.ast(), span: span(whole) };
}

function ident(node: ohm.Node): Ident {
  return { name: node.sourceString, span: span(node) };
}

semantics.addOperation<unknown>("ast", {
  Program(defs, _end): Program {
    return { defs: defs.children.map((d) => d.ast()), source: "", file: "" };
  },
  Def(_def, name, _lp, params, _rp, ret, body): FunctionDef {
    return {
      name: name.sourceString,
      span: span(this),
      nameSpan: span(name),
      params: params.asIteration().children.map((p) => p.ast()),
      ret: ret.children.length ? ret.children[0].ast() : undefined,
      body: body.ast(),
    };
  },
  Param_typedDefault(name, _c, type, _eq, lit): Param {
    return { name: name.sourceString, span: span(this), type: type.ast(), default: lit.ast() };
  },
  Param_typed(name, _c, type): Param {
    return { name: name.sourceString, span: span(this), type: type.ast() };
  },
  Param_default(name, _eq, lit): Param {
    return { name: name.sourceString, span: span(this), default: lit.ast() };
  },
  Param_bare(name): Param {
    return { name: name.sourceString, span: span(this) };
  },
  Type_tensor(kind, _lb, dims, _rb): TypeExpr {
    const elem = kind.children.length ? kind.children[0].sourceString : undefined;
    return {
      kind: "tensor",
      elem: elem as "float" | "int" | "bool" | undefined,
      dims: dims.asIteration().children.map((d) => d.ast()),
      span: span(this),
    };
  },
  Type_scalar(kind): TypeExpr {
    return { kind: "scalar", elem: kind.sourceString as "float", span: span(this) };
  },
  RetType_many(_arrow, _lp, types, _rp): FunctionDef["ret"] {
    const list = types.asIteration().children.map((t) => t.ast());
    return { types: list, many: true, span: span(this) };
  },
  RetType_one(_arrow, type): FunctionDef["ret"] {
    return { types: [type.ast()], many: false, span: span(type) };
  },
  Block(_lb, stmts, _rb): Stmt[] {
    return stmts.children.map((s) => s.ast());
  },
  Stmt_return(_kw, values, _semi): Stmt {
    const list = values.asIteration().children.map((v) => v.ast());
    return { kind: "return", values: list, span: span(this) };
  },
  Stmt_repeat(_kw, count, body, _semi): Stmt {
    return { kind: "repeat", count: count.ast(), body: body.ast(), span: span(this) };
  },
  Stmt_indexed(name, _lb, indices, _rb, _eq, value, _semi): Stmt {
    return {
      kind: "indexed",
      target: ident(name),
      indices: indices.asIteration().children.map((i) => i.ast()),
      value: value.ast(),
      span: span(this),
    };
  },
  Stmt_destructure(first, _comma, rest, _eq, value, _semi): Stmt {
    const targets = [ident(first), ...rest.asIteration().children.map(ident)];
    return { kind: "destructure", targets, value: value.ast(), span: span(this) };
  },
  Stmt_assign(name, _eq, value, _semi): Stmt {
    return { kind: "assign", target: ident(name), value: value.ast(), span: span(this) };
  },
  Exp_or(l, _op, r) {
    return binary("or", l, r, this);
  },
  AndExp_and(l, _op, r) {
    return binary("and", l, r, this);
  },
  NotExp_not(_op, arg): Expr {
    return { kind: "unary", op: "not", arg: arg.ast(), span: span(this) };
  },
  CmpExp_cmp(l, op, r) {
    return binary(op.sourceString as BinaryOp, l, r, this);
  },
  AddExp_add(l, _op, r) {
    return binary("+", l, r, this);
  },
  AddExp_sub(l, _op, r) {
    return binary("-", l, r, this);
  },
  MulExp_mul(l, op, r) {
    return binary(op.sourceString.trim() as BinaryOp, l, r, this);
  },
  UnaryExp_neg(_op, arg): Expr {
    const inner = arg.ast() as Expr;
    // Fold "-3" into a literal so that "-1e9" and "-inf"-style constants stay constants.
    if (inner.kind === "num") return { ...inner, value: -inner.value, span: span(this) };
    return { kind: "unary", op: "-", arg: inner, span: span(this) };
  },
  PowExp_pow(l, _op, r) {
    return binary("^", l, r, this);
  },
  PostfixExp_index(target, _lb, indices, _rb): Expr {
    return {
      kind: "index",
      target: target.ast(),
      indices: indices.asIteration().children.map((i) => i.ast()),
      span: span(this),
    };
  },
  Subscript_slice(lo, _colon, hi): Expr {
    const bound = (b: typeof lo) => b.children[0]?.ast() as Expr | undefined;
    return { kind: "slice", lo: bound(lo), hi: bound(hi), span: span(this) };
  },
  PostfixExp_transpose(arg, _op): Expr {
    return { kind: "transpose", arg: arg.ast(), span: span(this) };
  },
  Primary_paren(_lp, e, _rp): Expr {
    const inner = e.ast() as Expr;
    return { ...inner, span: span(this) };
  },
  Primary_list(_lb, items, _rb): Expr {
    return {
      kind: "list",
      items: items.asIteration().children.map((i) => i.ast()),
      span: span(this),
    };
  },
  Primary_reduce(fn, _lb, vars, _rb, _lp, body, _rp): Expr {
    return {
      kind: "reduce",
      fn: fn.sourceString,
      vars: vars.asIteration().children.map(ident),
      body: body.ast(),
      span: span(this),
    };
  },
  Primary_call(fn, _lp, args, _rp): Expr {
    return {
      kind: "call",
      fn: fn.sourceString,
      args: args.asIteration().children.map((a) => a.ast()),
      span: span(this),
      fnSpan: span(fn),
    };
  },
  Arg_keyword(name, _eq, value): Arg {
    return { name: name.sourceString, value: value.ast(), span: span(this) };
  },
  Arg_positional(value): Arg {
    return { value: value.ast(), span: span(this) };
  },
  Literal_number(minus, num): Literal {
    const v = Number(num.sourceString);
    return {
      kind: "number",
      value: minus.children.length ? -v : v,
      isInt: /^\d+$/.test(num.sourceString),
      span: span(this),
    };
  },
  Literal_name(name): Literal {
    return { kind: "name", name: name.sourceString, span: span(this) };
  },
  number(_int, _dot, _frac, _e, _sign, _exp): Expr {
    return {
      kind: "num",
      value: Number(this.sourceString),
      isInt: /^\d+$/.test(this.sourceString),
      span: span(this),
    };
  },
  ident(_first, _rest): Expr {
    return { kind: "name", name: this.sourceString, span: span(this) };
  },
});

/** Parse `source` into an AST. Syntax errors become a `CompileError` at the failure point. */
export function parse(source: string, file = "<program>"): Program {
  if (source.length > FRONTEND_LIMITS.sourceChars) {
    const at = FRONTEND_LIMITS.sourceChars;
    throw new CompileError(
      `the program is ${source.length.toLocaleString("en")} characters long, over the ` +
        `${at.toLocaleString("en")} Attune reads`,
      { start: at, end: at + 1 },
      source,
      file,
      "programs are tens of lines: write repeated structure as functions and repeat",
    );
  }
  try {
    return parseUnguarded(source, file);
  } catch (e) {
    // Ohm's matcher and the AST builder recurse; absurd nesting must still be a diagnostic.
    if (e instanceof RangeError && /call stack/i.test(e.message)) {
      throw new CompileError(
        "the program nests too deeply to parse",
        { start: 0, end: Math.min(1, source.length) },
        source,
        file,
        "split deeply nested expressions into named steps",
      );
    }
    throw e;
  }
}

function parseUnguarded(source: string, file: string): Program {
  const match = grammar.match(source);
  if (match.failed()) {
    const pos = match.getRightmostFailurePosition();
    const found = pos < source.length
      ? JSON.stringify(source.slice(pos).match(/^(\w+|\S)/)?.[0] ?? source[pos])
      : "end of input";
    const expected = describeExpected(match.getExpectedText());
    const what = pos >= source.length && expected.includes('"}"')
      ? 'syntax error: unexpected end of input; a "}" is missing'
      : `syntax error: expected ${expected}, found ${found}`;
    const start = Math.min(pos, source.length);
    throw new CompileError(what, { start, end: Math.min(start + 1, source.length) }, source, file);
  }
  const program = semantics(match).ast() as Program;
  program.source = source;
  program.file = file;
  return program;
}

const OPERATORS = new Set(
  [".", "@", "%", "/", "*", "//", "(", "[", "^", "^T", ">", "<", "!=", "==", ">=", "<=", "-", "+"]
    .concat(["or", "and", ";", "="]),
);

/** Ohm lists every token that could continue; fold the many operator tokens into one phrase. */
function describeExpected(text: string): string {
  const items = text.replace(/,? or /, ", ").split(", ").filter((x) => x.length > 0);
  const startsExpr = ["a name", "a number", '"("', '"["', '"-"', '"not"'];
  const isExpr = items.includes("a name") && items.includes("a number");
  const ops = items.filter((x) =>
    OPERATORS.has(x.replace(/^"|"$/g, "")) && !(isExpr && startsExpr.includes(x))
  );
  const rest = items.filter((x) => !ops.includes(x) && !(isExpr && startsExpr.includes(x)));
  if (isExpr) rest.unshift("an expression");
  if (ops.length >= 3) rest.push("an operator");
  else rest.push(...ops);
  return rest.length <= 1 ? rest.join("") : `${rest.slice(0, -1).join(", ")} or ${rest.at(-1)}`;
}
