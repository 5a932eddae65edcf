/**
 * The checker: AST → IR. It resolves names, infers and checks element kinds and symbolic shapes,
 * folds compile-time parameters, inlines user functions, and desugars index notation into
 * broadcast operations (index variables become `iota` tensors). Every problem is a CompileError
 * with the span of the construct at fault. This file holds the walk's state, the entry function
 * (its parameters and inputs) and the expression dispatch; each job has its own module:
 * scope.ts (names), shapes.ts (kinds, shapes, broadcasting), operators.ts, builtins.ts (the
 * table of builtin calls), indexing.ts (index notation), inline.ts, statements.ts,
 * destructure.ts (several results at a call).
 */
import { type Expr, type ExprOf, exprText, type FunctionDef, type Program } from "./ast.ts";
import { closest, CompileError, type Span } from "../errors.ts";
import type { Graph, InputDecl, Node, Op, TensorType } from "../ir/types.ts";
import { BUILTINS, callBuiltin } from "./builtins.ts";
import { indexExpr, reduceOver } from "./indexing.ts";
import { oneValue } from "./destructure.ts";
import { inline } from "./inline.ts";
import { binaryExpr, transposeExpr, unaryExpr } from "./operators.ts";
import { declaredType, literal, lookup, type Scope, type TensorVal, type Val } from "./scope.ts";
import { checkF32, dimOf, toTensor } from "./shapes.ts";
import { body, checkReturn } from "./statements.ts";
import { FRONTEND_LIMITS } from "../limits.ts";
import type { DType } from "../tensor.ts";

/** Options of `check`. */
export interface CheckOptions {
  /** Values for the entry function's compile-time parameters (others keep their defaults). */
  params?: Record<string, number | boolean>;
  /** The function to compile; by default the last `def` in the file. */
  entry?: string;
}

/** Check a parsed program and elaborate its entry function into IR. */
export function check(program: Program, options: CheckOptions = {}): Graph {
  return new Checker(program).run(options);
}

/** The state of one check: the nodes emitted so far and what the walk has learned. */
export class Checker {
  nodes: Node[] = [];
  nextId = 0;
  /** Random streams handed out so far (each random call without `stream=` takes the next). */
  streams = 0;
  symbols: Graph["symbols"] = {};
  defs = new Map<string, FunctionDef>();
  /** The user functions being inlined, innermost last (recursion is refused). */
  inlining: string[] = [];
  /** Each emitted node with the list it went into (`nodes` is swapped inside `repeat`). */
  private emitted = new Map<number, { list: Node[]; index: number }>();

  constructor(readonly program: Program) {}

  fail(what: string, span: Span, hint?: string): never {
    throw new CompileError(what, span, this.program.source, this.program.file, hint);
  }

  emit(op: Op, args: number[], type: TensorType, span?: Span, name?: string): TensorVal {
    if (this.nextId >= FRONTEND_LIMITS.nodes) {
      this.fail(
        `the program expands to more than ${FRONTEND_LIMITS.nodes.toLocaleString("en")} ` +
          "operations once its functions are inlined",
        span ?? { start: 0, end: 0 },
        "every call is inlined: a function that calls another twice doubles it; use repeat " +
          "for iteration, or compute a shared value once and pass it in",
      );
    }
    const node: Node = { id: this.nextId++, op, args, type, span, name };
    this.emitted.set(node.id, { list: this.nodes, index: this.nodes.push(node) - 1 });
    return { kind: "tensor", id: node.id, type, grid: 0 };
  }

  /** Emit in the current scope: results inside index notation carry the grid's rank. */
  op(scope: Scope, op: Op, args: TensorVal[], type: TensorType, span: Span): TensorVal {
    const v = this.emit(op, args.map((a) => a.id), type, span);
    v.grid = args.some((a) => a.grid > 0) ? (scope.grid?.vars.length ?? 0) : 0;
    return v;
  }

  /**
   * The node `id` if the current list holds it (a map, not a search: a search per statement
   * made checking quadratic, 3 s for 12,000 statements).
   */
  local(id: number): Node | undefined {
    const e = this.emitted.get(id);
    // Not emitted (a loop node), or its list was cut back (a retried repeat): search.
    if (!e || e.list[e.index]?.id !== id) return this.nodes.find((x) => x.id === id);
    return e.list === this.nodes ? e.list[e.index] : undefined;
  }

  nameNode(id: number, name: string): void {
    const n = this.local(id);
    if (n && !n.name) n.name = name;
  }

  expr(e: Expr, scope: Scope): Val {
    switch (e.kind) {
      case "num":
        if (!Number.isFinite(e.value)) {
          // Digits past float64's range: the literal reads as inf, which the writer did not mean.
          this.fail(
            "this number is outside float32's range (±3.4028235e38): the GPU would compute with inf",
            e.span,
            "scale the constant into range, or write inf if infinity is meant",
          );
        }
        if (!e.isInt) checkF32(this, e.value, e.span);
        return { kind: "static", value: e.value, dtype: e.isInt ? "int" : "float" };
      case "name":
        return lookup(this, e.name, e.span, scope);
      case "list": {
        const dims = e.items.map((it) => dimOf(this, this.expr(it, scope), it.span));
        return { kind: "shape", dims };
      }
      case "unary":
        return unaryExpr(this, e, scope);
      case "binary":
        return binaryExpr(this, e, scope);
      case "transpose":
        return transposeExpr(this, e, scope);
      case "index":
        return indexExpr(this, e, scope);
      case "slice":
        return this.fail(
          `a slice ${exprText(e)} is only allowed as a subscript`,
          e.span,
          "write x[a:b] or x[:, a:b]",
        );
      case "call":
        return this.call(e, scope);
      case "reduce":
        return reduceOver(this, e, scope);
    }
  }

  /** A call inside an expression: its one value. */
  call(e: ExprOf<"call">, scope: Scope): Val {
    return oneValue(this, e, this.results(e, scope));
  }

  /** The values of a call: a user function's (inlined; several for `-> (a, b)`), a builtin's. */
  results(e: ExprOf<"call">, scope: Scope): Val[] {
    const def = this.defs.get(e.fn);
    if (def) return inline(this, def, e, scope);
    if (!(e.fn in BUILTINS)) {
      const guess = closest(e.fn, [...Object.keys(BUILTINS), ...this.defs.keys()]);
      this.fail(`unknown function ${e.fn}`, e.fnSpan, guess ? `did you mean ${guess}?` : undefined);
    }
    return [callBuiltin(this, e, scope)];
  }

  run(options: CheckOptions): Graph {
    for (const def of this.program.defs) {
      if (this.defs.has(def.name)) this.fail(`function ${def.name} is defined twice`, def.nameSpan);
      def.params.forEach((p, i) => {
        if (def.params.findIndex((q) => q.name === p.name) < i) {
          this.fail(`parameter ${p.name} of ${def.name} is declared twice`, p.span, "rename one");
        }
      });
      if (def.name in BUILTINS) {
        this.fail(`function ${def.name} has the name of a builtin`, def.nameSpan, "rename it");
      }
      this.defs.set(def.name, def);
    }
    const entry = options.entry
      ? this.defs.get(options.entry)
      : this.program.defs[this.program.defs.length - 1];
    if (!entry) {
      const guess = closest(options.entry ?? "", this.defs.keys());
      this.fail(
        `no function named ${options.entry}`,
        { start: 0, end: 0 },
        guess ? `did you mean ${guess}?` : `the file defines ${[...this.defs.keys()].join(", ")}`,
      );
    }
    const scope: Scope = { env: new Map(), dims: new Map() };
    // Compile-time parameters first: sizes in input types may name them.
    const params = this.staticParams(entry, scope, { ...(options.params ?? {}) });
    // Each parameter's declared type, read before the body may rebind its name.
    const paramTypes = Object.fromEntries(
      Object.keys(params).map((k) => [k, (scope.env.get(k) as { dtype: DType }).dtype]),
    );
    const inputs = this.inputs(entry, scope);
    const result = body(this, entry, scope);
    const outs = result.values.map((v) => toTensor(this, v, result.span));
    if (entry.ret) checkReturn(this, entry, outs, scope, result.span);
    return {
      entry: entry.name,
      nodes: this.nodes,
      inputs,
      outputs: outs.map((o) => o.id),
      params,
      paramTypes,
      symbols: this.symbols,
      source: this.program.source,
      file: this.program.file,
    };
  }

  /** The entry function's compile-time parameters, from their defaults and `given`. */
  staticParams(
    entry: FunctionDef,
    scope: Scope,
    given: Record<string, number | boolean>,
  ): Record<string, number | boolean> {
    const params: Record<string, number | boolean> = {};
    for (const p of entry.params) {
      if (p.default === undefined || (p.type && p.type.kind === "tensor")) continue;
      const lit = literal(this, p.default);
      const declared = p.type?.kind === "scalar" ? p.type.elem : lit.dtype;
      let value = lit.value;
      if (p.name in given) {
        const v = given[p.name];
        delete given[p.name];
        value = typeof v === "boolean" ? (v ? 1 : 0) : v;
        if (typeof v !== "number" && declared !== "bool" || !Number.isFinite(value)) {
          this.fail(`parameter ${p.name} expects ${article(declared)} value, got ${v}`, p.span);
        }
        if (declared === "int" && !Number.isInteger(value)) {
          this.fail(`parameter ${p.name} expects an integer, got ${v}`, p.span);
        }
        if (declared === "bool" && value !== 0 && value !== 1) {
          this.fail(`parameter ${p.name} expects true or false, got ${v}`, p.span);
        }
      }
      params[p.name] = declared === "bool" ? value !== 0 : value;
      scope.env.set(p.name, { kind: "static", value, dtype: declared });
    }
    const unknown = Object.keys(given);
    if (unknown.length) {
      const names = entry.params.filter((p) => p.default !== undefined && p.type?.kind !== "tensor")
        .map((p) => p.name);
      const guess = closest(unknown[0], names);
      this.fail(
        `${entry.name} has no parameter ${unknown[0]}`,
        entry.nameSpan,
        guess ? `did you mean ${guess}?` : `its parameters are: ${names.join(", ") || "(none)"}`,
      );
    }
    return params;
  }

  /** The entry function's tensor inputs, as `input` nodes. */
  inputs(entry: FunctionDef, scope: Scope): InputDecl[] {
    const inputs: InputDecl[] = [];
    for (const p of entry.params) {
      if (p.default !== undefined && !(p.type && p.type.kind === "tensor")) continue;
      if (!p.type) {
        this.fail(
          `input ${p.name} of the entry function needs a type or a default`,
          p.span,
          `write ${p.name}: [n, d] for a tensor input, or ${p.name} = 1 for a parameter`,
        );
      }
      const type = declaredType(this, p.type, scope, true, `${p.name}: `);
      const id = this.emit({ op: "input", name: p.name }, [], type, p.span, p.name).id;
      let fillValue: number | undefined;
      if (p.default) {
        if (p.default.kind === "name") {
          const fills: Record<string, number> = { ones: 1, zeros: 0 };
          if (!(p.default.name in fills)) {
            this.fail(
              `default of input ${p.name} must be ones, zeros or a number, not ${p.default.name}`,
              p.default.span,
            );
          }
          fillValue = fills[p.default.name];
        } else fillValue = p.default.value;
      }
      inputs.push({ name: p.name, node: id, type, default: fillValue, span: p.span });
      scope.env.set(p.name, { kind: "tensor", id, type, grid: 0 });
    }
    return inputs;
  }
}

function article(kind: string): string {
  return /^[aeiou]/.test(kind) ? `an ${kind}` : `a ${kind}`;
}
