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
  | { kind: "call"; fn: string; args: Arg[]; span: Span; fnSpan: Span }
  | { kind: "reduce"; fn: string; vars: Ident[]; body: Expr; span: Span };

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
  | { kind: "return"; value: Expr; span: Span }
  | { kind: "repeat"; count: Expr; body: Stmt[]; span: Span }
  | { kind: "indexed"; target: Ident; indices: Expr[]; value: Expr; span: Span }
  | { kind: "assign"; target: Ident; value: Expr; span: Span };

export interface FunctionDef {
  name: string;
  span: Span;
  nameSpan: Span;
  params: Param[];
  ret?: TypeExpr;
  body: Stmt[];
}

export interface Program {
  defs: FunctionDef[];
  source: string;
  file: string;
}
