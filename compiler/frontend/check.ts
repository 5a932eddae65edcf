/**
 * The checker: AST → IR. It resolves names, infers and checks element kinds and symbolic shapes,
 * folds compile-time parameters, inlines user functions, and desugars index notation into
 * broadcast operations (index variables become `iota` tensors). Every problem is a CompileError
 * with the span of the construct at fault.
 */
import type { Arg, Expr, FunctionDef, Literal, Program, Stmt, TypeExpr } from "./ast.ts";
import { closest, CompileError, type Span } from "../errors.ts";
import type {
  BinaryFn,
  Dim,
  Graph,
  InputDecl,
  Node,
  Op,
  TensorType,
  UnaryFn,
} from "../ir/types.ts";
import { showType } from "../ir/print.ts";
import type { DType } from "../tensor.ts";

/** A compile-time value (literal, parameter, known size) or a tensor node. */
type Val =
  | { kind: "static"; value: number; dtype: DType }
  | { kind: "tensor"; id: number; type: TensorType; grid: number }
  | { kind: "shape"; dims: Dim[] };
type TensorVal = Extract<Val, { kind: "tensor" }>;

/** An index-notation context: the grid variables and the sizes they range over. */
interface Grid {
  vars: string[];
  ranges: (Dim | undefined)[];
  /** True in the first pass, which only discovers ranges; unknown ranges match anything. */
  discover: boolean;
}

interface Scope {
  env: Map<string, Val>;
  dims: Map<string, Dim>;
  grid?: Grid;
}

/** Options of `check`. */
export interface CheckOptions {
  /** Values for the entry function's compile-time parameters (others keep their defaults). */
  params?: Record<string, number | boolean>;
  /** The function to compile; by default the last `def` in the file. */
  entry?: string;
}

const WILD = "?";
const UNARY: Record<string, UnaryFn> = {
  exp: "exp",
  log: "log",
  sqrt: "sqrt",
  abs: "abs",
  tanh: "tanh",
  acos: "acos",
  cos: "cos",
  sin: "sin",
  sigmoid: "sigmoid",
  relu: "relu",
  elu: "elu",
  floor: "floor",
  ceil: "ceil",
  sign: "sign",
  erf: "erf",
};
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
const RANDOM = ["uniform", "randn", "gumbel", "randint"];
const CONSTANTS: Record<string, Val> = {
  pi: { kind: "static", value: Math.PI, dtype: "float" },
  inf: { kind: "static", value: Infinity, dtype: "float" },
  true: { kind: "static", value: 1, dtype: "bool" },
  false: { kind: "static", value: 0, dtype: "bool" },
};
/** Every builtin, with its signature for error messages. */
export const BUILTINS: Record<string, string> = {
  ...Object.fromEntries(Object.keys(UNARY).map((f) => [f, `${f}(x)`])),
  int: "int(x)",
  float: "float(x)",
  where: "where(cond, a, b)",
  clamp: "clamp(x, lo, hi)",
  sum: "sum(x, axis=all, keepdims=false)  or  sum[i](expr)",
  max: "max(x, axis=all, keepdims=false)  or  max(a, b)  or  max[i](expr)",
  min: "min(x, axis=all, keepdims=false)  or  min(a, b)  or  min[i](expr)",
  mean: "mean(x, axis=all, keepdims=false)  or  mean[i](expr)",
  prod: "prod(x, axis=all, keepdims=false)",
  norm: "norm(x, axis=all, keepdims=false)",
  softmax: "softmax(x, axis=-1)",
  normalize: "normalize(x, axis=-1)",
  segment_mean: "segment_mean(x, segments)",
  scatter_add: "scatter_add(index, values, size)",
  bits: "bits(x)",
  topk: "topk(x, k)",
  concat: "concat(a, b)  (rows of a, then rows of b; b may be a single row)",
  eye: "eye(size)",
  zeros: "zeros(shape)",
  ones: "ones(shape)",
  full: "full(shape, value)",
  uniform: "uniform(shape, seed, stream=auto)",
  randn: "randn(shape, seed, stream=auto)",
  gumbel: "gumbel(shape, seed, stream=auto)",
  randint: "randint(shape, hi, seed, stream=auto)",
};

/** Check a parsed program and elaborate its entry function into IR. */
export function check(program: Program, options: CheckOptions = {}): Graph {
  return new Checker(program).run(options);
}

class Checker {
  nodes: Node[] = [];
  nextId = 0;
  streams = 0;
  symbols: Graph["symbols"] = {};
  defs = new Map<string, FunctionDef>();
  inlining: string[] = [];

  constructor(readonly program: Program) {}

  fail(what: string, span: Span, hint?: string): never {
    throw new CompileError(what, span, this.program.source, this.program.file, hint);
  }

  run(options: CheckOptions): Graph {
    for (const def of this.program.defs) {
      if (this.defs.has(def.name)) this.fail(`function ${def.name} is defined twice`, def.nameSpan);
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
    const params: Record<string, number | boolean> = {};
    const given = { ...(options.params ?? {}) };
    const inputs: InputDecl[] = [];
    // Compile-time parameters first: sizes in input types may name them.
    for (const p of entry.params) {
      if (p.default === undefined || (p.type && p.type.kind === "tensor")) continue;
      const lit = this.literal(p.default);
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
    for (const p of entry.params) {
      if (p.default !== undefined && !(p.type && p.type.kind === "tensor")) continue;
      if (!p.type) {
        this.fail(
          `input ${p.name} of the entry function needs a type or a default`,
          p.span,
          `write ${p.name}: [n, d] for a tensor input, or ${p.name} = 1 for a parameter`,
        );
      }
      const type = this.declaredType(p.type, scope, true, `${p.name}: `);
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
    const result = this.body(entry, scope);
    const out = this.toTensor(result, scope, entry.span);
    if (entry.ret) this.checkReturn(entry, out, scope);
    return {
      entry: entry.name,
      nodes: this.nodes,
      inputs,
      output: out.id,
      params,
      symbols: this.symbols,
      source: this.program.source,
      file: this.program.file,
    };
  }

  literal(lit: Literal): { value: number; dtype: DType } {
    if (lit.kind === "number") return { value: lit.value, dtype: lit.isInt ? "int" : "float" };
    const c = CONSTANTS[lit.name];
    if (c?.kind === "static") return { value: c.value, dtype: c.dtype };
    return this.fail(
      `a parameter default must be a number, true or false, not ${lit.name}`,
      lit.span,
    );
  }

  /** The type a declaration names; in the entry function, new size names become symbols. */
  declaredType(t: TypeExpr, scope: Scope, declare: boolean, what: string): TensorType {
    if (t.kind === "scalar") return { dtype: t.elem, shape: [] };
    const shape = t.dims.map((d) => {
      if (d.kind === "name" && !scope.env.has(d.name) && !scope.dims.has(d.name)) {
        if (!declare) return d.name; // unified by the caller
        scope.dims.set(d.name, d.name);
        this.symbols[d.name] ??= {
          origin: `${what}[${t.dims.map(exprText).join(", ")}]`,
          span: d.span,
        };
        return d.name;
      }
      return this.dimOf(this.expr(d, scope), d.span);
    });
    return { dtype: t.elem ?? "float", shape };
  }

  /** A value used as a size: a non-negative static integer or a size symbol. */
  dimOf(v: Val, span: Span): Dim {
    if (v.kind === "static" && Number.isInteger(v.value) && v.value >= 0) return v.value;
    if (v.kind === "tensor" && this.nodes.find((n) => n.id === v.id)?.op.op === "dim") {
      return (this.nodes.find((n) => n.id === v.id)!.op as { name: string }).name;
    }
    const what = v.kind === "static"
      ? String(v.value)
      : v.kind === "shape"
      ? "a shape list"
      : `a ${showType(v.type)} tensor`;
    return this.fail(
      `a size must be a non-negative integer known at compile time, got ${what}`,
      span,
    );
  }

  describeDim(d: Dim): string {
    if (typeof d === "number") return String(d);
    const s = this.symbols[d];
    return s ? `${d} (from ${s.origin})` : d;
  }

  emit(op: Op, args: number[], type: TensorType, span?: Span, name?: string): TensorVal {
    const node: Node = { id: this.nextId++, op, args, type, span, name };
    this.nodes.push(node);
    return { kind: "tensor", id: node.id, type, grid: 0 };
  }

  /** Emit in the current scope: results inside index notation carry the grid's rank. */
  op(scope: Scope, op: Op, args: TensorVal[], type: TensorType, span: Span): TensorVal {
    const v = this.emit(op, args.map((a) => a.id), type, span);
    v.grid = args.some((a) => a.grid > 0) ? (scope.grid?.vars.length ?? 0) : 0;
    return v;
  }

  // ---------------------------------------------------------------- functions and statements

  body(def: FunctionDef, scope: Scope): Val {
    const ret = this.stmts(def.body, scope);
    if (!ret) {
      this.fail(
        `function ${def.name} does not return a value`,
        def.nameSpan,
        "end it with `return expr`",
      );
    }
    return ret;
  }

  stmts(stmts: Stmt[], scope: Scope, inLoop = false): Val | undefined {
    for (let i = 0; i < stmts.length; i++) {
      const s = stmts[i];
      if (s.kind === "return") {
        if (inLoop) this.fail("return is not allowed inside repeat", s.span);
        if (i !== stmts.length - 1) this.fail("code after return is never run", stmts[i + 1].span);
        return this.expr(s.value, scope);
      }
      if (s.kind === "assign") {
        const v = this.expr(s.value, scope);
        if (v.kind === "tensor") this.nameNode(v.id, s.target.name);
        scope.env.set(s.target.name, v);
      } else if (s.kind === "indexed") this.indexed(s, scope);
      else this.repeat(s, scope);
    }
    return undefined;
  }

  nameNode(id: number, name: string): void {
    const n = this.nodes.find((x) => x.id === id);
    if (n && !n.name) n.name = name;
  }

  checkReturn(def: FunctionDef, out: TensorVal, scope: Scope): void {
    const ret = def.ret!;
    const expected = this.declaredType(ret, scope, false, "");
    const actual = out.type.shape;
    const bad = expected.shape.length !== actual.length ||
      expected.shape.some((d, i) => !this.sameDim(scope.dims.get(String(d)) ?? d, actual[i]));
    if (bad) {
      this.fail(
        `${def.name} returns ${showType(out.type)} but its declared result is ${
          showType(expected)
        }`,
        ret.span,
      );
    }
  }

  sameDim(a: Dim, b: Dim): boolean {
    return a === b || a === WILD || b === WILD;
  }

  repeat(s: Extract<Stmt, { kind: "repeat" }>, scope: Scope): void {
    const countVal = this.expr(s.count, scope);
    if (countVal.kind !== "static" || !Number.isInteger(countVal.value) || countVal.value < 0) {
      this.fail("repeat needs a non-negative integer known at compile time", s.count.span);
    }
    const assigned = new Set<string>();
    const collect = (ss: Stmt[]) => {
      for (const x of ss) {
        if (x.kind === "assign" || x.kind === "indexed") assigned.add(x.target.name);
        if (x.kind === "repeat") collect(x.body);
      }
    };
    collect(s.body);
    for (const name of assigned) {
      if (scope.env.get(name)?.kind === "shape") {
        this.fail(
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
      const widen = this.repeatOnce(s, scope, countVal.value, carried, promote);
      if (!widen.size) return;
      widen.forEach((n) => promote.add(n)); // grows every time, so this ends
    }
  }

  /**
   * Emit one loop; returns the static-initialized names whose carried type must be widened to
   * float (nothing is emitted into the enclosing scope then).
   */
  repeatOnce(
    s: Extract<Stmt, { kind: "repeat" }>,
    scope: Scope,
    count: number,
    carried: string[],
    promote: Set<string>,
  ): Set<string> {
    const outerNodes = this.nodes;
    const mark = outerNodes.length;
    const inits = carried.map((n) => {
      const v = scope.env.get(n)!;
      if (v.kind !== "static") return v as TensorVal;
      const t = this.toTensor(v, scope, s.span);
      return promote.has(n) ? this.cast(t, "float", scope, s.span) : t;
    });
    const loopId = this.nextId++;
    const outer = this.nodes;
    this.nodes = [];
    const inner: Scope = { ...scope, env: new Map(scope.env) };
    carried.forEach((name, index) => {
      const v = this.emit(
        { op: "carry", loop: loopId, index },
        [],
        inits[index].type,
        s.span,
        name,
      );
      inner.env.set(name, v);
    });
    this.stmts(s.body, inner, true);
    const widen = new Set(carried.filter((name, i) => {
      const v = inner.env.get(name)!, init = scope.env.get(name)!;
      const dtype = v.kind === "shape" ? undefined : v.kind === "static" ? v.dtype : v.type.dtype;
      return init.kind === "static" && inits[i].type.dtype !== "float" && dtype === "float";
    }));
    if (widen.size) {
      this.nodes = outer;
      this.nodes.length = mark; // drop the initial values emitted for this attempt
      return widen;
    }
    const results = carried.map((name, i) => {
      const v = this.toTensor(inner.env.get(name)!, inner, s.span);
      const want = inits[i].type;
      if (
        v.type.shape.length !== want.shape.length ||
        v.type.shape.some((d, k) => !this.sameDim(d, want.shape[k]))
      ) {
        this.fail(
          `repeat changes the shape of ${name} from ${showType(want)} to ${showType(v.type)}`,
          s.span,
          "a value carried around a loop must keep its shape",
        );
      }
      return v.type.dtype === want.dtype ? v : this.cast(v, want.dtype, inner, s.span);
    });
    const body = this.nodes;
    this.nodes = outer;
    const loop: Node = {
      id: loopId,
      op: { op: "loop", count, body, results: results.map((r) => r.id) },
      args: inits.map((v) => v.id),
      type: { dtype: "float", shape: [] },
      span: s.span,
    };
    this.nodes.push(loop);
    carried.forEach((name, index) => {
      const r = this.emit({ op: "loop_result", index }, [loopId], inits[index].type, s.span, name);
      scope.env.set(name, r);
    });
    return new Set();
  }

  // ---------------------------------------------------------------- index notation

  /** `x[i, j] = expr` (define x over a grid) or `x[J] = rows` (replace rows of x). */
  indexed(s: Extract<Stmt, { kind: "indexed" }>, scope: Scope): void {
    const fresh = s.indices.map((e) =>
      e.kind === "name" && !this.lookupable(e.name, scope) ? e.name : undefined
    );
    if (fresh.every((f) => f !== undefined)) {
      return this.defineOverGrid(s, fresh as string[], scope);
    }
    if (fresh.some((f) => f !== undefined)) {
      const i = fresh.findIndex((f) => f !== undefined);
      this.fail(
        `index ${fresh[i]} is not defined`,
        s.indices[i].span,
        "in `x[i, j] = ...` every subscript must be a new index name; in `x[J] = rows`, J must be an index tensor",
      );
    }
    // Row assignment.
    const target = scope.env.get(s.target.name);
    if (!target || target.kind !== "tensor") {
      this.fail(
        `row assignment to ${s.target.name}, which is not a tensor defined earlier`,
        s.target.span,
      );
    }
    if (s.indices.length !== 1) {
      this.fail("row assignment takes one index tensor: x[J] = rows", s.span);
    }
    let idx = this.toTensor(this.expr(s.indices[0], scope), scope, s.indices[0].span);
    if (idx.type.dtype !== "int") {
      this.fail(
        `row indices must be int, got ${kindType(idx.type)}`,
        s.indices[0].span,
        "use int(...)",
      );
    }
    if (idx.type.shape.length === 0) idx = this.reshape(idx, [1], scope, s.span);
    if (idx.type.shape.length !== 1) {
      this.fail(`row indices must be a vector, got ${showType(idx.type)}`, s.indices[0].span);
    }
    if (target.type.shape.length === 0) this.fail("cannot assign rows of a scalar", s.target.span);
    let rows = this.toTensor(this.expr(s.value, scope), scope, s.value.span);
    const want = [idx.type.shape[0], ...target.type.shape.slice(1)];
    this.broadcastShapes(rows.type.shape, want, s.value.span, "rows", "target rows");
    rows = this.broadcastTo(rows, want, scope, s.value.span);
    if (rows.type.dtype !== target.type.dtype) {
      rows = this.cast(rows, target.type.dtype, scope, s.span);
    }
    const v = this.op(scope, { op: "set_rows" }, [target, idx, rows], target.type, s.span);
    this.nameNode(v.id, s.target.name);
    scope.env.set(s.target.name, v);
  }

  lookupable(name: string, scope: Scope): boolean {
    return scope.env.has(name) || scope.dims.has(name) || name in CONSTANTS ||
      (scope.grid?.vars.includes(name) ?? false);
  }

  defineOverGrid(s: Extract<Stmt, { kind: "indexed" }>, vars: string[], scope: Scope): void {
    const dup = vars.find((v, i) => vars.indexOf(v) !== i);
    if (dup) this.fail(`index ${dup} appears twice on the left`, s.span);
    if (scope.grid) this.fail("index notation cannot be nested", s.span);
    const grid: Grid = { vars, ranges: vars.map(() => undefined), discover: true };
    this.discoverRanges(s.value, grid, scope);
    grid.discover = false;
    const inner: Scope = { ...scope, grid };
    let v = this.toTensor(this.expr(s.value, inner), inner, s.value.span);
    const ranges = grid.ranges as Dim[];
    if (v.grid === 0) v = this.lift(v, inner, s.span);
    const trailing = v.type.shape.slice(vars.length);
    v = this.broadcastTo(v, [...ranges, ...trailing], inner, s.span);
    this.nameNode(v.id, s.target.name);
    v.grid = 0;
    scope.env.set(s.target.name, v);
  }

  /** First pass over an index-notation body: learn each index's range from its subscripts. */
  discoverRanges(e: Expr, grid: Grid, scope: Scope): void {
    const mark = this.nodes.length;
    const idBefore = this.nextId;
    const streamsBefore = this.streams;
    let firstError: CompileError | undefined;
    try {
      this.expr(e, { ...scope, grid });
    } catch (err) {
      if (!(err instanceof CompileError)) throw err;
      firstError = err;
    } finally {
      this.nodes.length = mark;
      this.nextId = idBefore;
      this.streams = streamsBefore;
    }
    const missing = grid.vars.findIndex((_, i) => grid.ranges[i] === undefined);
    // An error before a range was learned is the real problem (a typo, say), not the range.
    if (missing >= 0 && firstError) throw firstError;
    if (missing >= 0) {
      this.fail(
        `cannot tell the range of index ${grid.vars[missing]}`,
        e.span,
        `use ${grid.vars[missing]} directly as a subscript of a tensor, like x[${
          grid.vars[missing]
        }], so its size is known`,
      );
    }
  }

  /** Reshape a grid-free tensor to sit under the current grid: [1, ..., 1, ...shape]. */
  lift(v: TensorVal, scope: Scope, span: Span): TensorVal {
    const g = scope.grid?.vars.length ?? 0;
    if (g === 0 || v.grid > 0 || v.type.shape.length === 0) return v;
    const r = this.reshape(v, [...Array(g).fill(1), ...v.type.shape], scope, span);
    r.grid = g;
    return r;
  }

  /** A reduction over index variables: `sum[t](expr)`. */
  reduceOver(e: Extract<Expr, { kind: "reduce" }>, scope: Scope): Val {
    const fns: Record<string, "sum" | "max" | "min" | "mean" | "prod"> = {
      sum: "sum",
      max: "max",
      min: "min",
      mean: "mean",
      prod: "prod",
    };
    const fn = fns[e.fn];
    if (!fn) {
      this.fail(`${e.fn}[...](...) is not a reduction; use sum, max, min, mean or prod`, e.span);
    }
    const outer = scope.grid ?? { vars: [], ranges: [], discover: false };
    const names = e.vars.map((v) => v.name);
    for (const v of e.vars) {
      if (outer.vars.includes(v.name) || this.lookupable(v.name, scope)) {
        this.fail(`reduction index ${v.name} is already defined`, v.span, "pick a new name");
      }
    }
    const grid: Grid = {
      vars: [...outer.vars, ...names],
      ranges: [...outer.ranges, ...names.map(() => undefined)],
      discover: outer.discover,
    };
    if (!outer.discover) {
      const probe: Grid = { ...grid, ranges: [...grid.ranges], discover: true };
      this.discoverRanges(e.body, probe, scope);
      grid.ranges = probe.ranges;
    }
    const inner: Scope = { ...scope, grid };
    let v = this.toTensor(this.expr(e.body, inner), inner, e.body.span);
    if (outer.discover) {
      // Keep what was learned about outer and inner ranges.
      outer.ranges.forEach((_, i) => (outer.ranges[i] ??= grid.ranges[i]));
    }
    const g = grid.vars.length;
    if (v.grid === 0) v = this.lift(v, inner, e.span);
    const full = v.type.shape.map((d, i) =>
      i >= outer.vars.length && i < g ? grid.ranges[i] ?? WILD : d
    );
    v = this.broadcastTo(v, full, inner, e.span);
    for (let k = names.length - 1; k >= 0; k--) {
      const axis = outer.vars.length + k;
      this.nonEmpty(fn, v, axis, e.span);
      const shape = v.type.shape.filter((_, i) => i !== axis);
      v = this.op(inner, { op: "reduce", fn, axis, keepdims: false }, [v], {
        dtype: fn === "mean" ? "float" : v.type.dtype,
        shape,
      }, e.span);
    }
    v.grid = outer.vars.length;
    return v;
  }

  // ---------------------------------------------------------------- expressions

  expr(e: Expr, scope: Scope): Val {
    switch (e.kind) {
      case "num":
        return { kind: "static", value: e.value, dtype: e.isInt ? "int" : "float" };
      case "name":
        return this.name(e.name, e.span, scope);
      case "list": {
        const dims = e.items.map((it) => this.dimOf(this.expr(it, scope), it.span));
        return { kind: "shape", dims };
      }
      case "unary": {
        const a = this.expr(e.arg, scope);
        if (a.kind === "static") {
          return e.op === "-"
            ? { kind: "static", value: -a.value, dtype: a.dtype === "bool" ? "int" : a.dtype }
            : { kind: "static", value: a.value ? 0 : 1, dtype: "bool" };
        }
        const t = this.toTensor(a, scope, e.span);
        return e.op === "-"
          ? this.op(scope, { op: "unary", fn: "neg" }, [t], {
            dtype: t.type.dtype === "bool" ? "int" : t.type.dtype,
            shape: t.type.shape,
          }, e.span)
          : this.op(scope, { op: "unary", fn: "not" }, [this.cast(t, "bool", scope, e.span)], {
            dtype: "bool",
            shape: t.type.shape,
          }, e.span);
      }
      case "binary":
        return this.binaryExpr(e, scope);
      case "transpose": {
        const a = this.toTensor(this.expr(e.arg, scope), scope, e.span);
        const trailing = a.type.shape.length - a.grid;
        if (trailing < 2) {
          this.fail(
            `^T needs a matrix, got ${showType(a.type)}`,
            e.span,
            "a vector has no transpose; use x[i] indexing or keepdims=true to make a column",
          );
        }
        const s = [...a.type.shape];
        [s[s.length - 2], s[s.length - 1]] = [s[s.length - 1], s[s.length - 2]];
        return this.op(scope, { op: "transpose" }, [a], { dtype: a.type.dtype, shape: s }, e.span);
      }
      case "index":
        return this.indexExpr(e, scope);
      case "call":
        return this.call(e, scope);
      case "reduce":
        return this.reduceOver(e, scope);
    }
  }

  name(name: string, span: Span, scope: Scope): Val {
    const g = scope.grid;
    const gi = g?.vars.indexOf(name) ?? -1;
    if (g && gi >= 0) {
      const shape: Dim[] = g.vars.map((_, i) => (i === gi ? g.ranges[gi] ?? WILD : 1));
      const v = this.emit({ op: "iota", axis: gi }, [], { dtype: "int", shape }, span);
      v.grid = g.vars.length;
      return v;
    }
    const v = scope.env.get(name);
    if (v) return v.kind === "tensor" ? this.lift(v, scope, span) : v;
    const d = scope.dims.get(name);
    if (d !== undefined) {
      if (typeof d === "number") return { kind: "static", value: d, dtype: "int" };
      return this.emit({ op: "dim", name: d }, [], { dtype: "int", shape: [] }, span);
    }
    if (name in CONSTANTS) return CONSTANTS[name];
    if (this.defs.has(name) || name in BUILTINS) {
      this.fail(`${name} is a function; call it with arguments`, span, BUILTINS[name]);
    }
    const known = [
      ...scope.env.keys(),
      ...scope.dims.keys(),
      ...(g?.vars ?? []),
      ...Object.keys(CONSTANTS),
    ];
    const guess = closest(name, known);
    return this.fail(
      `unknown name ${name}`,
      span,
      guess ? `did you mean ${guess}?` : `names in scope: ${known.join(", ")}`,
    );
  }

  toTensor(v: Val, scope: Scope, span: Span): TensorVal {
    if (v.kind === "tensor") return v;
    if (v.kind === "shape") {
      return this.fail("a shape list like [n, d] is only allowed as a shape argument", span);
    }
    void scope;
    return this.emit({ op: "const", value: v.value }, [], { dtype: v.dtype, shape: [] }, span);
  }

  cast(v: TensorVal, dtype: DType, scope: Scope, span: Span): TensorVal {
    if (v.type.dtype === dtype) return v;
    return this.op(scope, { op: "cast" }, [v], { dtype, shape: v.type.shape }, span);
  }

  reshape(v: TensorVal, shape: Dim[], scope: Scope, span: Span): TensorVal {
    const r = this.op(scope, { op: "reshape" }, [v], { dtype: v.type.dtype, shape }, span);
    r.grid = v.grid;
    return r;
  }

  broadcastTo(v: TensorVal, shape: Dim[], scope: Scope, span: Span): TensorVal {
    const same = v.type.shape.length === shape.length &&
      v.type.shape.every((d, i) => d === shape[i]);
    if (same) return v;
    const r = this.op(scope, { op: "broadcast" }, [v], { dtype: v.type.dtype, shape }, span);
    r.grid = v.grid;
    return r;
  }

  /** Numpy broadcasting of two shapes; a mismatch names both sizes and their origins. */
  broadcastShapes(
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
        this.fail(
          `shape mismatch${what}: ${left} is [${a.join(", ")}] and ${right} is [${
            b.join(", ")
          }]; ` +
            `size ${this.describeDim(x)} does not match ${this.describeDim(y)}`,
          span,
          "sizes must be equal, or one of them 1 (broadcasting aligns the last axes)",
        );
      }
    }
    return out;
  }

  /** Make two operands broadcast-compatible; under a grid, align their trailing parts. */
  align(a: TensorVal, b: TensorVal, scope: Scope, span: Span): [TensorVal, TensorVal] {
    const g = scope.grid?.vars.length ?? 0;
    if (g === 0 || a.type.shape.length === 0 || b.type.shape.length === 0) return [a, b];
    const ta = a.type.shape.length - g, tb = b.type.shape.length - g;
    const pad = (v: TensorVal, k: number) =>
      this.reshape(
        v,
        [...v.type.shape.slice(0, g), ...Array(k).fill(1), ...v.type.shape.slice(g)],
        scope,
        span,
      );
    if (ta < tb) a = pad(a, tb - ta);
    if (tb < ta) b = pad(b, ta - tb);
    return [a, b];
  }

  binaryExpr(e: Extract<Expr, { kind: "binary" }>, scope: Scope): Val {
    const l = this.expr(e.left, scope);
    const r = this.expr(e.right, scope);
    if (e.op === "@") return this.matmul(l, r, e, scope);
    if (e.op === ".") return this.dot(l, r, e, scope);
    const fn = BINARY[e.op];
    if (l.kind === "static" && r.kind === "static") return foldStatic(fn, l, r);
    return this.elementwise(fn, l, r, e.span, scope, ` in ${e.op}`);
  }

  elementwise(fn: BinaryFn, l: Val, r: Val, span: Span, scope: Scope, what = ""): TensorVal {
    let a = this.toTensor(l, scope, span), b = this.toTensor(r, scope, span);
    [a, b] = this.align(a, b, scope, span);
    const shape = this.broadcastShapes(a.type.shape, b.type.shape, span, "left", "right", what);
    let dtype: DType;
    if (["lt", "le", "gt", "ge", "eq", "ne"].includes(fn)) dtype = "bool";
    else if (fn === "and" || fn === "or") {
      a = this.cast(a, "bool", scope, span);
      b = this.cast(b, "bool", scope, span);
      dtype = "bool";
    } else if (fn === "div" || fn === "pow") dtype = "float";
    else dtype = a.type.dtype === "float" || b.type.dtype === "float" ? "float" : "int";
    return this.op(scope, { op: "binary", fn }, [a, b], { dtype, shape }, span);
  }

  matmul(l: Val, r: Val, e: Extract<Expr, { kind: "binary" }>, scope: Scope): TensorVal {
    if (scope.grid) {
      this.fail(
        "@ is not available inside index notation",
        e.span,
        "use . for the dot product of two rows",
      );
    }
    let a = this.toTensor(l, scope, e.left.span), b = this.toTensor(r, scope, e.right.span);
    if (a.type.shape.length === 0 || b.type.shape.length === 0) {
      this.fail("@ needs tensors of rank ≥ 1; use * to multiply by a scalar", e.span);
    }
    const aVec = a.type.shape.length === 1, bVec = b.type.shape.length === 1;
    if (aVec) a = this.reshape(a, [1, a.type.shape[0]], scope, e.span);
    if (bVec) b = this.reshape(b, [b.type.shape[0], 1], scope, e.span);
    const as = a.type.shape, bs = b.type.shape;
    const k1 = as[as.length - 1], k2 = bs[bs.length - 2];
    if (!this.sameDim(k1, k2)) {
      this.fail(
        `matmul inner sizes differ: left is [${as.join(", ")}] and right is [${bs.join(", ")}]; ` +
          `${this.describeDim(k1)} ≠ ${this.describeDim(k2)}`,
        e.span,
        "the last size of the left operand must equal the second-to-last of the right; maybe a ^T is missing",
      );
    }
    const batch = this.broadcastShapes(
      as.slice(0, -2),
      bs.slice(0, -2),
      e.span,
      "left batch",
      "right batch",
      " in @",
    );
    const dtype: DType = a.type.dtype === "float" || b.type.dtype === "float" ? "float" : "int";
    let out = this.op(scope, { op: "matmul" }, [a, b], {
      dtype,
      shape: [...batch, as[as.length - 2], bs[bs.length - 1]],
    }, e.span);
    if (aVec || bVec) {
      const s = out.type.shape.filter((_, i, arr) =>
        !((aVec && i === arr.length - 2) || (bVec && i === arr.length - 1))
      );
      out = this.reshape(out, s, scope, e.span);
    }
    return out;
  }

  dot(l: Val, r: Val, e: Extract<Expr, { kind: "binary" }>, scope: Scope): TensorVal {
    let a = this.toTensor(l, scope, e.left.span), b = this.toTensor(r, scope, e.right.span);
    [a, b] = this.align(a, b, scope, e.span);
    const g = scope.grid?.vars.length ?? 0;
    const ta = a.type.shape.length - (a.grid ? g : 0), tb = b.type.shape.length - (b.grid ? g : 0);
    if (ta < 1 || tb < 1) {
      this.fail(
        `. needs two vectors (it sums a[..., k] * b[..., k] over k), got ${showType(a.type)} and ${
          showType(b.type)
        }`,
        e.span,
        "for a product of scalars use *",
      );
    }
    const ka = a.type.shape[a.type.shape.length - 1], kb = b.type.shape[b.type.shape.length - 1];
    if (!this.sameDim(ka, kb)) {
      this.fail(
        `dot product of vectors of different sizes: ${this.describeDim(ka)} and ${
          this.describeDim(kb)
        }`,
        e.span,
      );
    }
    const lead = this.broadcastShapes(
      a.type.shape.slice(0, -1),
      b.type.shape.slice(0, -1),
      e.span,
      "left",
      "right",
      " in .",
    );
    const dtype: DType = a.type.dtype === "float" || b.type.dtype === "float" ? "float" : "int";
    return this.op(scope, { op: "dot" }, [a, b], { dtype, shape: lead }, e.span);
  }

  indexExpr(e: Extract<Expr, { kind: "index" }>, scope: Scope): Val {
    const grid = scope.grid;
    if (grid && mentions(e.target, grid.vars)) {
      this.fail(
        "cannot index a value that depends on index variables",
        e.target.span,
        "compute it first as its own tensor, then index that",
      );
    }
    const target = this.toTensor(
      this.expr(e.target, { ...scope, grid: undefined }),
      scope,
      e.target.span,
    );
    if (e.indices.length > target.type.shape.length) {
      this.fail(
        `${
          exprText(e.target)
        } has rank ${target.type.shape.length} but ${e.indices.length} subscripts were given`,
        e.span,
      );
    }
    const idx = e.indices.map((ie, k) => {
      if (grid && ie.kind === "name" && grid.vars.includes(ie.name)) {
        const gi = grid.vars.indexOf(ie.name);
        const size = target.type.shape[k];
        if (grid.ranges[gi] === undefined) grid.ranges[gi] = size;
        else if (!this.sameDim(grid.ranges[gi]!, size) && !grid.discover) {
          this.fail(
            `index ${ie.name} ranges over ${
              this.describeDim(grid.ranges[gi]!)
            } but is used on an axis of size ${this.describeDim(size)}`,
            ie.span,
            "use a different index name for each size, or an affine index (reads outside the range give 0)",
          );
        }
      }
      const v = this.toTensor(this.expr(ie, scope), scope, ie.span);
      if (v.type.dtype === "float") {
        this.fail(
          `a subscript must be an int, got ${kindType(v.type)}`,
          ie.span,
          "use int(...) to convert",
        );
      }
      return v.type.dtype === "bool" ? this.cast(v, "int", scope, ie.span) : v;
    });
    let ishape: Dim[] = [];
    for (let k = 0; k < idx.length; k++) {
      ishape = this.broadcastShapes(
        ishape,
        idx[k].type.shape,
        e.indices[k].span,
        "the other subscripts",
        `subscript ${k + 1}`,
      );
    }
    const shape = [...ishape, ...target.type.shape.slice(idx.length)];
    const out = this.emit({ op: "gather" }, [target.id, ...idx.map((v) => v.id)], {
      dtype: target.type.dtype,
      shape,
    }, e.span);
    out.grid = idx.some((v) => v.grid > 0) ? (grid?.vars.length ?? 0) : 0;
    if (grid && out.grid === 0 && shape.length > 0) return this.lift(out, scope, e.span);
    return out;
  }

  // ---------------------------------------------------------------- calls

  call(e: Extract<Expr, { kind: "call" }>, scope: Scope): Val {
    const def = this.defs.get(e.fn);
    if (def) return this.inline(def, e, scope);
    if (!(e.fn in BUILTINS)) {
      const guess = closest(e.fn, [...Object.keys(BUILTINS), ...this.defs.keys()]);
      this.fail(`unknown function ${e.fn}`, e.fnSpan, guess ? `did you mean ${guess}?` : undefined);
    }
    const a = new ArgReader(this, e, scope);
    const fn = e.fn;
    if (fn in UNARY) {
      const x = a.tensor(0, "x");
      a.done();
      if (fn === "abs" && x.type.dtype === "int") {
        return this.op(scope, { op: "unary", fn: "abs" }, [x], x.type, e.span);
      }
      return this.op(
        scope,
        { op: "unary", fn: UNARY[fn] },
        [this.cast(x, "float", scope, e.span)],
        {
          dtype: "float",
          shape: x.type.shape,
        },
        e.span,
      );
    }
    switch (fn) {
      case "int":
      case "float": {
        const x = a.value(0, "x");
        a.done();
        if (x.kind === "static") {
          return { kind: "static", value: fn === "int" ? Math.floor(x.value) : x.value, dtype: fn };
        }
        return this.cast(this.toTensor(x, scope, e.span), fn, scope, e.span);
      }
      case "where": {
        const c = this.cast(a.tensor(0, "cond"), "bool", scope, e.span);
        const x = a.value(1, "a"), y = a.value(2, "b");
        a.done();
        let xt = this.toTensor(x, scope, e.span), yt = this.toTensor(y, scope, e.span);
        let ct = c;
        [ct, xt] = this.align(ct, xt, scope, e.span);
        [ct, yt] = this.align(ct, yt, scope, e.span);
        [xt, yt] = this.align(xt, yt, scope, e.span);
        const s1 = this.broadcastShapes(
          xt.type.shape,
          yt.type.shape,
          e.span,
          "a",
          "b",
          " in where",
        );
        const shape = this.broadcastShapes(
          ct.type.shape,
          s1,
          e.span,
          "cond",
          "values",
          " in where",
        );
        const dtype: DType = xt.type.dtype === "float" || yt.type.dtype === "float"
          ? "float"
          : xt.type.dtype;
        return this.op(scope, { op: "where" }, [ct, xt, yt], { dtype, shape }, e.span);
      }
      case "clamp": {
        const x = a.value(0, "x"), lo = a.value(1, "lo"), hi = a.value(2, "hi");
        a.done();
        return this.elementwise(
          "min",
          this.elementwise("max", x, lo, e.span, scope),
          hi,
          e.span,
          scope,
        );
      }
      case "max":
      case "min":
        if (a.positional.length === 2) {
          const x = a.value(0, "a"), y = a.value(1, "b");
          a.done();
          if (x.kind === "static" && y.kind === "static") return foldStatic(fn, x, y);
          return this.elementwise(fn, x, y, e.span, scope, ` in ${fn}`);
        }
        return this.reduction(fn, a, e, scope);
      case "sum":
      case "mean":
      case "prod":
      case "norm":
        return this.reduction(fn, a, e, scope);
      case "softmax":
      case "normalize": {
        const x = this.cast(a.tensor(0, "x"), "float", scope, e.span);
        const axis = a.axis(x, -1, scope);
        a.done();
        return this.op(scope, { op: fn, axis }, [x], x.type, e.span);
      }
      case "segment_mean": {
        const x = this.cast(a.tensor(0, "x"), "float", scope, e.span);
        const m = a.staticInt(1, "segments", 1);
        a.done();
        this.noGrid(scope, e);
        if (x.type.shape.length < 1) this.fail("segment_mean needs a tensor of rank ≥ 1", e.span);
        if (typeof x.type.shape[0] === "number" && x.type.shape[0] < m) {
          this.fail(`segment_mean: ${m} segments but only ${x.type.shape[0]} rows`, e.span);
        }
        return this.op(scope, { op: "segment_mean", segments: m }, [x], {
          dtype: "float",
          shape: [m, ...x.type.shape.slice(1)],
        }, e.span);
      }
      case "scatter_add": {
        const idx = a.tensor(0, "index"), vals = a.tensor(1, "values");
        const size = a.staticInt(2, "size", 1);
        a.done();
        this.noGrid(scope, e);
        if (idx.type.dtype !== "int") {
          this.fail(`scatter_add index must be int, got ${kindType(idx.type)}`, e.span);
        }
        if (idx.type.shape.length < 1 || vals.type.shape.length < 1) {
          this.fail("scatter_add needs index [..., n] and values [n, ...]", e.span);
        }
        const n1 = idx.type.shape[idx.type.shape.length - 1], n2 = vals.type.shape[0];
        if (!this.sameDim(n1, n2)) {
          this.fail(
            `scatter_add: index has ${this.describeDim(n1)} entries per row but values have ${
              this.describeDim(n2)
            } rows`,
            e.span,
          );
        }
        return this.op(scope, { op: "scatter_add", size }, [
          idx,
          this.cast(vals, "float", scope, e.span),
        ], {
          dtype: "float",
          shape: [...idx.type.shape.slice(0, -1), size, ...vals.type.shape.slice(1)],
        }, e.span);
      }
      case "bits": {
        const x = this.cast(a.tensor(0, "x"), "bool", scope, e.span);
        a.done();
        const b = x.type.shape[x.type.shape.length - 1];
        if (typeof b !== "number" || b > 24) {
          this.fail(`bits packs at most 24 bits, got a last axis of ${b ?? "nothing"}`, e.span);
        }
        return this.op(scope, { op: "bits" }, [x], {
          dtype: "int",
          shape: x.type.shape.slice(0, -1),
        }, e.span);
      }
      case "topk": {
        const x = this.cast(a.tensor(0, "x"), "float", scope, e.span);
        const k = a.staticInt(1, "k", 1);
        a.done();
        if (x.type.shape.length - x.grid < 1) this.fail("topk needs a vector", e.span);
        const len = x.type.shape[x.type.shape.length - 1];
        if (typeof len === "number" && k > len) {
          // With a symbolic length the extra slots hold the index len (docs/language.md).
          this.fail(
            `topk: k = ${k} is more than the ${len} elements of the last axis`,
            e.span,
            `ask for at most ${len}`,
          );
        }
        return this.op(scope, { op: "topk", k }, [x], {
          dtype: "int",
          shape: [...x.type.shape.slice(0, -1), k],
        }, e.span);
      }
      case "concat": {
        // Sugar: out[j] = where(j < A, a[j], b[j − A]) over A + B rows (reads outside give 0).
        const x = a.tensor(0, "a");
        let y = a.tensor(1, "b");
        a.done();
        this.noGrid(scope, e);
        if (x.type.shape.length < 1) this.fail("concat needs a tensor of rank ≥ 1 first", e.span);
        if (y.type.shape.length === x.type.shape.length - 1) {
          y = this.emit(
            { op: "reshape" },
            [y.id],
            { ...y.type, shape: [1, ...y.type.shape] },
            e.span,
          );
        }
        const [rows, ...rest] = x.type.shape;
        const [rowsB, ...restB] = y.type.shape;
        if (restB.length !== rest.length || !rest.every((d, i) => this.sameDim(d, restB[i]))) {
          this.fail(
            `concat: rows of [${x.type.shape.join(", ")}] and [${y.type.shape.join(", ")}] differ`,
            e.span,
            "both operands need the same trailing sizes",
          );
        }
        if (typeof rows !== "number" || typeof rowsB !== "number") {
          this.fail(
            `concat needs static row counts, got ${this.describeDim(rows)} and ${
              this.describeDim(rowsB)
            }`,
            e.span,
          );
        }
        const total = rows + rowsB;
        const kinds = [x.type.dtype, y.type.dtype];
        const dtype = kinds.includes("float") ? "float" : kinds.includes("int") ? "int" : "bool";
        const int = (shape: Dim[]) => ({ dtype: "int" as const, shape });
        const j = this.emit({ op: "iota", axis: 0 }, [], int([total]), e.span);
        const jCol = this.emit(
          { op: "iota", axis: 0 },
          [],
          int([total, ...rest.map(() => 1)]),
          e.span,
        );
        const first = this.emit({ op: "const", value: rows }, [], int([]), e.span);
        const shift = this.emit(
          { op: "binary", fn: "sub" },
          [j.id, first.id],
          int([total]),
          e.span,
        );
        const inA = this.emit({ op: "binary", fn: "lt" }, [jCol.id, first.id], {
          dtype: "bool",
          shape: jCol.type.shape,
        }, e.span);
        const shape = [total, ...rest];
        const fromA = this.emit(
          { op: "gather" },
          [x.id, j.id],
          { dtype: x.type.dtype, shape },
          e.span,
        );
        const fromB = this.emit(
          { op: "gather" },
          [y.id, shift.id],
          { dtype: y.type.dtype, shape },
          e.span,
        );
        return this.emit({ op: "where" }, [inA.id, fromA.id, fromB.id], { dtype, shape }, e.span);
      }
      case "eye": {
        const n = this.dimOf(a.value(0, "size"), e.args[0]?.span ?? e.span);
        a.done();
        return this.emit({ op: "eye" }, [], { dtype: "float", shape: [n, n] }, e.span);
      }
      case "zeros":
      case "ones":
      case "full": {
        const shape = a.shape(0);
        const value = fn === "full" ? a.staticNumber(1, "value") : fn === "ones" ? 1 : 0;
        a.done();
        return this.emit({ op: "fill", value }, [], { dtype: "float", shape }, e.span);
      }
    }
    if (RANDOM.includes(fn)) {
      const shape = a.shape(0);
      const hi = fn === "randint"
        ? this.cast(a.tensor(1, "hi"), "float", scope, e.span)
        : undefined;
      const seed = this.toTensor(a.value(fn === "randint" ? 2 : 1, "seed"), scope, e.span);
      const stream = a.keyword("stream") ? a.staticInt(-1, "stream", 0) : this.streams++;
      a.done();
      this.noGrid(scope, e);
      if (seed.type.shape.length !== 0 || seed.type.dtype === "float") {
        this.fail(`seed must be an integer scalar, got ${kindType(seed.type)}`, e.span);
      }
      if (hi && hi.type.shape.length !== 0) this.fail("randint's hi must be a scalar", e.span);
      return this.emit(
        { op: "random", kind: fn as "uniform", stream },
        hi ? [seed.id, hi.id] : [seed.id],
        { dtype: fn === "randint" ? "int" : "float", shape },
        e.span,
      );
    }
    return this.fail(`unknown function ${fn}`, e.fnSpan);
  }

  /**
   * A mean, max or min over an axis of size 0 has no value (sum and prod give 0 and 1). Refused
   * when the size is known here, so neither backend returns NaN or -inf silently.
   */
  nonEmpty(fn: string, x: TensorVal, axis: number, span: Span): void {
    if ((fn === "mean" || fn === "max" || fn === "min") && x.type.shape[axis] === 0) {
      this.fail(
        `${fn} over an axis of size 0 (axis ${axis} of ${showType(x.type)}) has no value`,
        span,
        "a parameter or shape that sets this size is 0; use at least 1",
      );
    }
  }

  noGrid(scope: Scope, e: Extract<Expr, { kind: "call" }>): void {
    if (scope.grid) {
      this.fail(
        `${e.fn} is not available inside index notation`,
        e.span,
        "compute it as its own tensor first",
      );
    }
  }

  reduction(fn: string, a: ArgReader, e: Extract<Expr, { kind: "call" }>, scope: Scope): Val {
    let x = a.tensor(0, "x");
    const all = !a.has(1, "axis");
    const g = x.grid ? (scope.grid?.vars.length ?? 0) : 0;
    const axes = all
      ? Array.from({ length: x.type.shape.length - g }, (_, i) => g + i)
      : [a.axis(x, 0, scope)];
    const keepdims = a.has(2, "keepdims") ? a.staticNumber(2, "keepdims") !== 0 : false;
    a.done();
    if (fn === "norm") {
      x = this.cast(x, "float", scope, e.span);
      x = this.op(scope, { op: "binary", fn: "mul" }, [x, x], x.type, e.span);
    }
    for (const axis of axes.reverse()) {
      const shape = keepdims
        ? x.type.shape.map((d, i) => (i === axis ? 1 : d))
        : x.type.shape.filter((_, i) => i !== axis);
      const rf = (fn === "norm" ? "sum" : fn) as "sum" | "max" | "min" | "mean" | "prod";
      this.nonEmpty(rf, x, axis, e.span);
      const dtype: DType = rf === "mean" || x.type.dtype === "float"
        ? "float"
        : x.type.dtype === "bool" && rf === "sum"
        ? "int"
        : x.type.dtype;
      x = this.op(scope, { op: "reduce", fn: rf, axis, keepdims }, [x], { dtype, shape }, e.span);
    }
    if (fn === "norm") x = this.op(scope, { op: "unary", fn: "sqrt" }, [x], x.type, e.span);
    return x;
  }

  inline(def: FunctionDef, e: Extract<Expr, { kind: "call" }>, scope: Scope): Val {
    if (this.inlining.includes(def.name)) {
      this.fail(
        `${def.name} calls itself; recursion is not supported`,
        e.span,
        "use repeat for iteration",
      );
    }
    if (scope.grid) this.fail(`${def.name} cannot be called inside index notation`, e.span);
    const inner: Scope = { env: new Map(), dims: new Map() };
    const positional = e.args.filter((x) => !x.name);
    const keyword = new Map(e.args.filter((x) => x.name).map((x) => [x.name!, x]));
    if (positional.length > def.params.length) {
      this.fail(
        `${def.name} takes ${def.params.length} arguments, got ${positional.length}`,
        e.span,
      );
    }
    for (const k of keyword.keys()) {
      if (!def.params.some((p) => p.name === k)) {
        const guess = closest(k, def.params.map((p) => p.name));
        this.fail(
          `${def.name} has no parameter ${k}`,
          keyword.get(k)!.span,
          guess ? `did you mean ${guess}?` : undefined,
        );
      }
    }
    def.params.forEach((p, i) => {
      const arg: Arg | undefined = positional[i] ?? keyword.get(p.name);
      let v: Val;
      if (arg) v = this.expr(arg.value, scope);
      else if (p.default) v = { kind: "static", ...this.literal(p.default) };
      else return this.fail(`${def.name} needs an argument for ${p.name}`, e.span);
      if (p.type?.kind === "tensor") {
        const t = this.toTensor(v, scope, arg?.span ?? e.span);
        this.unify(def, p.name, p.type, t, inner, arg?.span ?? e.span);
        v = t;
      }
      inner.env.set(p.name, v);
    });
    this.inlining.push(def.name);
    const result = this.body(def, inner);
    this.inlining.pop();
    if (def.ret && result.kind === "tensor") this.checkReturn(def, result, inner);
    return result;
  }

  /** Bind a function's size names to the argument's sizes, checking repeated names agree. */
  unify(
    def: FunctionDef,
    pname: string,
    type: Extract<TypeExpr, { kind: "tensor" }>,
    t: TensorVal,
    inner: Scope,
    span: Span,
  ): void {
    const shape = t.type.shape;
    if (shape.length !== type.dims.length) {
      this.fail(
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
        else if (!this.sameDim(bound, shape[i])) {
          this.fail(
            `${def.name}: size ${d.name} of ${pname} is ${this.describeDim(shape[i])} but was ${
              this.describeDim(bound)
            } earlier`,
            span,
          );
        }
      } else {
        const want = this.dimOf(this.expr(d, inner), d.span);
        if (!this.sameDim(want, shape[i])) {
          this.fail(
            `${def.name}: axis ${i} of ${pname} should be ${want}, got ${
              this.describeDim(shape[i])
            }`,
            span,
          );
        }
      }
    });
  }
}

/** Reads a builtin call's arguments by position or keyword, with clear errors. */
class ArgReader {
  positional: Arg[];
  keywords: Map<string, Arg>;
  used = new Set<Arg>();
  constructor(
    readonly c: Checker,
    readonly e: Extract<Expr, { kind: "call" }>,
    readonly scope: Scope,
  ) {
    this.positional = e.args.filter((a) => !a.name);
    this.keywords = new Map(e.args.filter((a) => a.name).map((a) => [a.name!, a]));
    const names = e.args.filter((a) => a.name).map((a) => a.name!);
    const dup = e.args.find((a, i) =>
      a.name && names.indexOf(a.name) !== names.lastIndexOf(a.name) &&
      e.args.findIndex((b) => b.name === a.name) !== i
    );
    if (dup) c.fail(`${e.fn} got the argument ${dup.name} twice`, dup.span);
  }
  find(pos: number, name: string): Arg | undefined {
    return this.keywords.get(name) ?? (pos >= 0 ? this.positional[pos] : undefined);
  }
  has(pos: number, name: string): boolean {
    return this.find(pos, name) !== undefined;
  }
  keyword(name: string): boolean {
    return this.keywords.has(name);
  }
  arg(pos: number, name: string): Arg {
    const a = this.find(pos, name);
    if (!a) {
      this.c.fail(`${this.e.fn} is missing its argument ${name}`, this.e.span, BUILTINS[this.e.fn]);
    }
    this.used.add(a);
    return a;
  }
  value(pos: number, name: string): Val {
    return this.c.expr(this.arg(pos, name).value, this.scope);
  }
  tensor(pos: number, name: string): TensorVal {
    const a = this.arg(pos, name);
    return this.c.toTensor(this.c.expr(a.value, this.scope), this.scope, a.span);
  }
  staticNumber(pos: number, name: string): number {
    const a = this.arg(pos, name);
    const v = this.c.expr(a.value, this.scope);
    if (v.kind !== "static") {
      this.c.fail(
        `${this.e.fn}: ${name} must be known at compile time`,
        a.span,
        BUILTINS[this.e.fn],
      );
    }
    return v.value;
  }
  staticInt(pos: number, name: string, min: number): number {
    const v = this.staticNumber(pos, name);
    if (!Number.isInteger(v) || v < min) {
      this.c.fail(
        `${this.e.fn}: ${name} must be an integer ≥ ${min}, got ${v}`,
        this.arg(pos, name).span,
      );
    }
    return v;
  }
  shape(pos: number): Dim[] {
    const a = this.arg(pos, "shape");
    const v = this.c.expr(a.value, this.scope);
    if (v.kind === "shape") return v.dims;
    return [this.c.dimOf(v, a.span)];
  }
  axis(x: TensorVal, dflt: number, scope: Scope): number {
    const g = x.grid ? (scope.grid?.vars.length ?? 0) : 0;
    const rank = x.type.shape.length - g;
    const axis = this.has(1, "axis") ? this.staticNumber(1, "axis") : dflt;
    if (!Number.isInteger(axis)) {
      this.c.fail(`${this.e.fn}: axis must be an integer, got ${axis}`, this.find(1, "axis")!.span);
    }
    if (axis < -rank || axis >= rank) {
      this.c.fail(
        `${this.e.fn}: axis ${axis} is out of range for ${showType(x.type)}${
          g ? " (per index)" : ""
        }`,
        this.find(1, "axis")?.span ?? this.e.span,
        `valid axes are ${-rank} to ${rank - 1}`,
      );
    }
    return g + (axis < 0 ? rank + axis : axis);
  }
  done(): void {
    for (const a of this.e.args) {
      if (
        !this.used.has(a) &&
        !(a.name && ["axis", "keepdims", "stream"].includes(a.name) && this.usedName(a.name))
      ) {
        this.c.fail(
          a.name ? `${this.e.fn} has no argument ${a.name}` : `${this.e.fn} got too many arguments`,
          a.span,
          BUILTINS[this.e.fn],
        );
      }
    }
  }
  usedName(name: string): boolean {
    return [...this.used].some((a) => a.name === name);
  }
}

function article(kind: string): string {
  return /^[aeiou]/.test(kind) ? `an ${kind}` : `a ${kind}`;
}

/** A type with its element kind always spelled out, for messages about kinds. */
function kindType(t: TensorType): string {
  return `${t.dtype}[${t.shape.join(", ")}]`;
}

function foldStatic(fn: BinaryFn, a: Val & { kind: "static" }, b: Val & { kind: "static" }): Val {
  const x = a.value, y = b.value;
  const ints = a.dtype !== "float" && b.dtype !== "float";
  const table: Record<BinaryFn, () => number> = {
    add: () => x + y,
    sub: () => x - y,
    mul: () => x * y,
    div: () => x / y,
    idiv: () => Math.floor(x / y),
    mod: () => x - y * Math.floor(x / y),
    pow: () => x ** y,
    max: () => Math.max(x, y),
    min: () => Math.min(x, y),
    lt: () => +(x < y),
    le: () => +(x <= y),
    gt: () => +(x > y),
    ge: () => +(x >= y),
    eq: () => +(x === y),
    ne: () => +(x !== y),
    and: () => +(x !== 0 && y !== 0),
    or: () => +(x !== 0 || y !== 0),
  };
  const value = table[fn]();
  let dtype: DType = ints ? "int" : "float";
  if (["lt", "le", "gt", "ge", "eq", "ne", "and", "or"].includes(fn)) dtype = "bool";
  if (fn === "div" || (fn === "pow" && !(ints && y >= 0))) dtype = "float";
  return { kind: "static", value, dtype };
}

function mentions(e: Expr, names: string[]): boolean {
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
    case "call":
      return `${e.fn}(...)`;
    case "reduce":
      return `${e.fn}[${e.vars.map((v) => v.name).join(", ")}](...)`;
  }
}
