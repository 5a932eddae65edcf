/** The syntax tree the parser builds. Every node carries its source span. */
import type { Span } from "../errors.ts";

export type Expr =
  | { kind: "num"; value: number; isInt: boolean; span: Span }
  | { kind: "name"; name: string; span: Span }
  | { kind: "list"; items: Expr[]; span: Span }
  | { kind: "unary"; op: "-" | "not"; arg: Expr; span: Span }
  | { kind: "binary"; op: BinaryOp; left: Expr; right: Expr; span: Span }
  | { kind: "transpose"; arg: Expr; span: Span }
  | { kind: "index"; target: Expr; indices: Expr[]; span: Span }
  // lo:hi, only as a subscript; either bound may be left out.
  | { kind: "slice"; lo?: Expr; hi?: Expr; span: Span }
  | { kind: "call"; fn: string; args: Arg[]; span: Span; fnSpan: Span }
  | { kind: "reduce"; fn: string; vars: Ident[]; body: Expr; span: Span };

/** The expression node of one kind. */
export type ExprOf<K extends Expr["kind"]> = Extract<Expr, { kind: K }>;

export type BinaryOp =
  | "+"
  | "-"
  | "*"
  | "/"
  | "//"
  | "%"
  | "@"
  | "."
  | "^"
  | "<"
  | "<="
  | ">"
  | ">="
  | "=="
  | "!="
  | "and"
  | "or";

export interface Ident {
  name: string;
  span: Span;
}

export interface Arg {
  name?: string;
  value: Expr;
  span: Span;
}

export type TypeExpr =
  | { kind: "tensor"; elem?: "float" | "int" | "bool"; dims: Expr[]; span: Span }
  | { kind: "scalar"; elem: "float" | "int" | "bool"; span: Span };

export type Literal =
  | { kind: "number"; value: number; isInt: boolean; span: Span }
  | { kind: "name"; name: string; span: Span };

export interface Param {
  name: string;
  span: Span;
  type?: TypeExpr;
  default?: Literal;
}

export type Stmt =
  | { kind: "return"; values: Expr[]; span: Span }
  | { kind: "repeat"; count: Expr; body: Stmt[]; span: Span }
  | { kind: "indexed"; target: Ident; indices: Expr[]; value: Expr; span: Span }
  | { kind: "assign"; target: Ident; value: Expr; span: Span }
  // `y, lse = flash(q, k, v)`: each result of a call to its name (`_` drops one).
  | { kind: "destructure"; targets: Ident[]; value: Expr; span: Span };

/** The statement node of one kind. */
export type StmtOf<K extends Stmt["kind"]> = Extract<Stmt, { kind: K }>;

export interface FunctionDef {
  name: string;
  span: Span;
  nameSpan: Span;
  params: Param[];
  /** Declared result types: `-> [n, e]` one, `-> ([n, e], [n])` several (`many`). */
  ret?: { types: TypeExpr[]; many: boolean; span: Span };
  body: Stmt[];
}

export interface Program {
  defs: FunctionDef[];
  source: string;
  file: string;
}

/** Whether `e` mentions any of `names`. */
export function mentions(e: Expr, names: string[]): boolean {
  switch (e.kind) {
    case "name":
      return names.includes(e.name);
    case "num":
      return false;
    case "list":
      return e.items.some((x) => mentions(x, names));
    case "unary":
    case "transpose":
      return mentions(e.arg, names);
    case "binary":
      return mentions(e.left, names) || mentions(e.right, names);
    case "index":
      return mentions(e.target, names) || e.indices.some((x) => mentions(x, names));
    case "slice":
      return [e.lo, e.hi].some((x) => x !== undefined && mentions(x, names));
    case "call":
      return e.args.some((a) => mentions(a.value, names));
    case "reduce":
      return mentions(e.body, names);
  }
}

/** Short source-like text of an expression, for messages. */
export function exprText(e: Expr): string {
  switch (e.kind) {
    case "num":
      return String(e.value);
    case "name":
      return e.name;
    case "list":
      return `[${e.items.map(exprText).join(", ")}]`;
    case "unary":
      return `${e.op === "-" ? "-" : "not "}${exprText(e.arg)}`;
    case "binary":
      return `${exprText(e.left)} ${e.op} ${exprText(e.right)}`;
    case "transpose":
      return `${exprText(e.arg)}^T`;
    case "index":
      return `${exprText(e.target)}[${e.indices.map(exprText).join(", ")}]`;
    case "slice":
      return `${e.lo ? exprText(e.lo) : ""}:${e.hi ? exprText(e.hi) : ""}`;
    case "call":
      return `${e.fn}(...)`;
    case "reduce":
      return `${e.fn}[${e.vars.map((v) => v.name).join(", ")}](...)`;
  }
}
