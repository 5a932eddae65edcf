/** The Reader: operand values inside a kernel, read from buffers or expanded inline. */
import type { Dim, Node } from "../ir/types.ts";
import { dim, f32, lead, size, sliceOf, strides, type SymbolSlots, usedChunks } from "./syntax.ts";
import {
  BINARY,
  COMPARES,
  ELEMENTWISE,
  HEAVY,
  INT_BINARY,
  INT_UNARY,
  intLiteral,
  REDUCE_INIT,
  reduceStep,
  UNARY,
} from "./ops.ts";
import { type BindingKey, nodeKey } from "./keys.ts";

/**
 * Ops whose int values `expand` renders as i32: the elementwise ones (eye is never int); the rest
 * are read as f32 and converted.
 */
const INT_EXPANDED = ELEMENTWISE;
/** Of those, the ones whose int value is computed (not read or counted): f32 only at the end. */
const INT_ARITHMETIC = new Set(["unary", "binary", "where", "cast"]);

/** Where a value is stored other than its own buffer: a binding, an offset in a slice, a stride. */
export interface Placement {
  key: BindingKey;
  offset: string;
  stride: string;
}

/**
 * Statements and the final expression computing a HEAVY node's value at coordinates `c`,
 * reading operands through `reader` (shared by the node's own kernel and its inlined function).
 * A contraction or reduction runs its loop over k in [`range.lo`, `range.hi`) when given (a split
 * loop's chunk), else over the whole axis.
 */
export function heavyValue(
  n: Node,
  c: string[],
  reader: Reader,
  range?: { lo: string; hi: string },
): { pre: string; value: string } {
  const slots = reader.slots;
  const arg = (k: number) => reader.byId.get(n.args[k])!;
  const rd = (k: number, at: string[]) => reader.at(n.args[k], at);
  const op = n.op;
  switch (op.op) {
    case "matmul":
    case "dot": {
      const [a, b] = [arg(0).type.shape, arg(1).type.shape];
      const len = dim(a[a.length - 1], slots);
      const r = c.length;
      const [ac, bc] = op.op === "dot"
        ? [[...Reader.broadcast(a.slice(0, -1), c), "k"], [
          ...Reader.broadcast(b.slice(0, -1), c),
          "k",
        ]]
        : [
          [...Reader.broadcast(a.slice(0, -2), c.slice(0, -2)), c[r - 2], "k"],
          [...Reader.broadcast(b.slice(0, -2), c.slice(0, -2)), "k", c[r - 1]],
        ];
      const x = reader.along(n.args[0], ac, ac.length - 1, "x");
      const y = reader.along(n.args[1], bc, op.op === "dot" ? bc.length - 1 : bc.length - 2, "y");
      return {
        pre: `${x.setup} ${y.setup}
  var acc = 0.0;
  for (var k = ${range?.lo ?? "0u"}; k < ${
          range?.hi ?? len
        }; k = k + 1u) { acc = acc + ${x.read} * ${y.read}; }`,
        value: "acc",
      };
    }
    case "reduce": {
      const src = arg(0).type.shape;
      const len = dim(src[op.axis], slots);
      // Output coordinates → source coordinates, with the reduced axis running over k.
      const srcCoord = src.map((_, i) =>
        i === op.axis ? "k" : c[op.keepdims || i < op.axis ? i : i - 1]
      );
      const init = REDUCE_INIT[op.fn];
      const step = `acc = ${reduceStep(op.fn)};`;
      return {
        pre: `var acc = ${init};
  for (var k = ${range?.lo ?? "0u"}; k < ${range?.hi ?? len}; k = k + 1u) {
    let x = ${rd(0, srcCoord)};
    ${step}
  }`,
        value: op.fn === "mean" ? `acc / f32(${len})` : "acc",
      };
    }
    case "bits": {
      const b = arg(0).type.shape.at(-1) as number;
      return {
        pre: `var acc = 0.0;
  for (var k = 0u; k < ${b}u; k = k + 1u) {
    if (${rd(0, [...c, "k"])} != 0.0) { acc = acc + f32(1u << k); }
  }`,
        value: "acc",
      };
    }
    case "segment_mean": {
      const rows = dim(arg(0).type.shape[0], slots);
      const m = (op as { segments: number }).segments;
      return {
        pre: `let sz = ${rows} / ${m}u;
  let k1 = (sz + 1u) * ${m}u - ${rows};
  let len = select(sz + 1u, sz, ${c[0]} < k1);
  let first = select(k1 * sz + (${c[0]} - k1) * (sz + 1u), ${c[0]} * sz, ${c[0]} < k1);
  var acc = 0.0;
  for (var q = 0u; q < len; q = q + 1u) { acc = acc + ${rd(0, ["first + q", ...c.slice(1)])}; }`,
        value: "acc / f32(len)",
      };
    }
  }
  throw new Error(`internal: ${op.op} is not a heavy op`);
}

/**
 * Reads operand values inside a kernel: a materialized node is a buffer read; an inlined node
 * (elementwise, not materialized by lowering) is expanded into its expression at the requested
 * coordinates, recursively. This is elementwise fusion: chains of maps, broadcasts, transposes
 * and gathers run inside the kernel that consumes them.
 */
export class Reader {
  bindings: BindingKey[];
  /** WGSL functions of the inlined heavy nodes this reader called, by function name. */
  fns = new Map<string, string>();
  /**
   * Values stored somewhere other than their own buffer (a region's arena, or a buffer keyed by
   * another node): the binding key, the offset within a slice, and the slice stride.
   */
  placed = new Map<number, Placement>();
  /** Scalar expressions computed once at the top of the kernel body (`prologue`). */
  hoisted = new Map<number, string>();
  /** The hoisted scalars bound as i32 (int arithmetic), not f32. */
  private hoistedInt = new Set<number>();
  /** Whether scalars may be hoisted (not in regions, where values change between phases). */
  hoist = true;
  private fnDepth = 0;

  /** `let` statements of the hoisted scalars, in dependency order. */
  prologue(): string {
    return [...this.hoisted].map(([id, e]) => `let h${id} = ${e};`).join("\n  ");
  }
  constructor(
    readonly byId: Map<number, Node>,
    readonly inline: Set<number>,
    /** The scatter_adds stored as partial tables: how many tables each (see `partialSum`). */
    readonly chunks: ReadonlyMap<number, number>,
    readonly slots: SymbolSlots,
    preset: BindingKey[] = [],
  ) {
    this.bindings = [...preset];
  }

  /** The name of the binding of `key` (bound on first use). */
  buffer(key: BindingKey): string {
    let k = this.bindings.indexOf(key);
    if (k < 0) k = this.bindings.push(key) - 1;
    return `a${k}`;
  }

  /**
   * Value of node `id` at coordinates `c` (one u32 WGSL expression per axis): an f32 expression,
   * or with `int` an i32 one (int arithmetic runs in i32 inside an expression: exact, wrapping as
   * the interpreter's; values stored in buffers are f32).
   */
  at(id: number, c: string[], int = false): string {
    const n = this.byId.get(id)!;
    const i32 = n.type.dtype === "int" && INT_EXPANDED.has(n.op.op);
    const asInt = (f32expr: string) => (int ? `f2i(${f32expr})` : f32expr);
    if (this.inline.has(id) && HEAVY.has(n.op.op)) {
      return asInt(`${this.fn(n)}(${["s", ...c].join(", ")})`);
    }
    if (
      this.inline.has(id) && this.hoist && this.fnDepth === 0 && n.type.shape.length === 0 &&
      !["const", "dim", "fill"].includes(n.op.op)
    ) {
      // A scalar expression (like d^0.25) is computed once per invocation, not per read.
      if (!this.hoisted.has(id)) {
        this.hoisted.set(id, this.expand(n, [], i32));
        if (i32) this.hoistedInt.add(id);
      }
      const h = `h${id}`;
      return this.hoistedInt.has(id) ? (int ? h : `f32(${h})`) : asInt(h);
    }
    if (this.inline.has(id)) return int && !i32 ? asInt(this.expand(n, c)) : this.expand(n, c, int);
    const chunks = this.chunks.get(id);
    if (chunks) return asInt(`${this.partialSum(n, chunks)}(${["s", ...c].join(", ")})`);
    return asInt(`${this.buffer(this.placed.get(id)?.key ?? nodeKey(id))}[${this.index(id, c)}]`);
  }

  /** A table stored as `chunks` partial tables: the function summing them at a coordinate. */
  partialSum(n: Node, chunks: number): string {
    const name = `v${n.id}`;
    if (!this.fns.has(name)) {
      const shape = n.type.shape;
      const c = shape.map((_, i) => `c${i}`);
      const st = strides(shape, this.slots);
      const one = size(shape, this.slots);
      const at = shape.flatMap((d, i) => (d === 1 ? [] : [`c${i} * ${st[i]}`])).join(" + ") || "0u";
      const params = ["s: u32", ...c.map((x) => `${x}: u32`)].join(", ");
      this.fns.set(
        name,
        `fn ${name}(${params}) -> f32 {
  let base = s * ${chunks}u * ${one} + ${at};
  var acc = 0.0;
  let used = ${usedChunks(dim(this.byId.get(n.args[0])!.type.shape.at(-1)!, this.slots), chunks)};
  for (var p = 0u; p < used; p = p + 1u) { acc = acc + ${
          this.buffer(nodeKey(n.id))
        }[base + p * ${one}]; }
  return acc;
}`,
      );
    }
    return name;
  }

  /** Flat index of a stored node's element at coordinates `c` in the current slice. */
  index(id: number, c: string[]): string {
    const shape = this.byId.get(id)!.type.shape;
    const st = strides(shape, this.slots);
    const terms = shape.flatMap((d, i) => (d === 1 ? [] : [`(${c[i]}) * ${st[i]}`]));
    const p = this.placed.get(id);
    const base = p
      ? `s * ${p.stride} + ${p.offset}`
      : `${sliceOf(id, this.slots)} * ${size(shape, this.slots)}`;
    return `${base} + ${terms.join(" + ") || "0u"}`;
  }

  /**
   * Reading node `id` along axis `axis` (coordinate "k") at the other coordinates of `c`:
   * `setup` statements and the read expression. A stored operand gets its base index and
   * stride hoisted out of the loop; an inlined one is expanded per element.
   */
  along(id: number, c: string[], axis: number, tag: string): { setup: string; read: string } {
    if (this.inline.has(id)) return { setup: "", read: this.at(id, c) };
    const shape = this.byId.get(id)!.type.shape;
    const base = this.index(id, c.map((x, i) => (i === axis ? "0u" : x)));
    const stride = shape[axis] === 1 ? "0u" : strides(shape, this.slots)[axis];
    return {
      setup: `let base_${tag} = ${base}; let step_${tag} = ${stride};`,
      read: `${
        this.buffer(this.placed.get(id)?.key ?? nodeKey(id))
      }[base_${tag} + k * step_${tag}]`,
    };
  }

  /**
   * An inlined heavy node (a contraction or reduction read once per element by its consumer)
   * becomes a WGSL function of the slice and coordinates, called where it is read.
   */
  fn(n: Node): string {
    const name = `v${n.id}`;
    if (!this.fns.has(name)) {
      this.fns.set(name, "");
      const c = n.type.shape.map((_, i) => `c${i}`);
      this.fnDepth++;
      const { pre, value } = heavyValue(n, c, this);
      this.fnDepth--;
      const params = ["s: u32", ...c.map((x) => `${x}: u32`)].join(", ");
      this.fns.set(name, `fn ${name}(${params}) -> f32 {\n  ${pre}\n  return ${value};\n}`);
    }
    return name;
  }

  /**
   * For an inlined reduction: a function giving four consecutive elements along the last axis
   * (clamped at its end) as a vec4. Operand reads that do not depend on that axis (YOSO's
   * bucket codes) are then computed once for four outputs. Undefined for other nodes.
   */
  fn4(id: number): string | undefined {
    const n = this.byId.get(id)!;
    if (n.op.op !== "reduce" || !this.inline.has(id) || n.type.shape.length === 0) return undefined;
    const name = `v${n.id}x4`;
    if (!this.fns.has(name)) {
      this.fns.set(name, "");
      const op = n.op;
      const out = n.type.shape;
      const src = this.byId.get(n.args[0])!.type.shape;
      const c = out.map((_, i) => `c${i}`);
      const last = out.length - 1;
      const lanes = [0, 1, 2, 3].map((
        u,
      ) => [...c.slice(0, last), `min(c${last} + ${u}u, ${dim(out[last], this.slots)} - 1u)`]);
      const srcAt = (cu: string[]) =>
        src.map((_, i) => (i === op.axis ? "k" : cu[op.keepdims || i < op.axis ? i : i - 1]));
      const init = REDUCE_INIT[op.fn];
      const step = reduceStep(op.fn, true);
      const len = dim(src[op.axis], this.slots);
      this.fnDepth++;
      const xs = lanes.map((cu) => this.at(n.args[0], srcAt(cu))).join(", ");
      this.fnDepth--;
      const params = ["s: u32", ...c.map((x) => `${x}: u32`)].join(", ");
      this.fns.set(
        name,
        `fn ${name}(${params}) -> vec4<f32> {
  var acc = vec4<f32>(${init});
  for (var k = 0u; k < ${len}; k = k + 1u) {
    let x = vec4<f32>(${xs});
    acc = ${step};
  }
  return ${op.fn === "mean" ? `acc / f32(${len})` : "acc"};
}`,
      );
    }
    return name;
  }

  /** Whether `id` is an inlined expression containing an inlined reduction (see `at4`). */
  hasReduce4(id: number): boolean {
    const n = this.byId.get(id)!;
    if (!this.inline.has(id)) return false;
    if (n.op.op === "reduce") return n.type.shape.length > 0;
    return ["unary", "binary", "broadcast"].includes(n.op.op) &&
      n.args.some((a) => this.hasReduce4(a));
  }

  /**
   * Four consecutive elements along the last axis (coordinate c[last] + 0..3, clamped below
   * `len`) as a vec4 expression: inlined reductions through their vec4 functions, values that
   * do not vary along the axis read once and splatted, arithmetic on vectors, the rest read
   * element by element.
   */
  at4(id: number, c: string[], len: string, self = false): string {
    const n = this.byId.get(id)!;
    const last = c.length - 1;
    const shape = n.type.shape;
    if (shape.length === 0 || shape[shape.length - 1] === 1) return `vec4<f32>(${this.at(id, c)})`;
    if ((this.inline.has(id) || self) && n.type.dtype !== "int") {
      if (n.op.op === "reduce") return `${this.fn4(id)}(${["s", ...c].join(", ")})`;
      const arg = (k: number) => this.byId.get(n.args[k])!;
      const A = (k: number) => this.at4(n.args[k], Reader.broadcast(arg(k).type.shape, c), len);
      if (n.op.op === "broadcast") return A(0);
      if (n.op.op === "binary" && ["max", "min"].includes(n.op.fn)) {
        return `${n.op.fn}_nan4(${A(0)}, ${A(1)})`;
      }
      if (n.op.op === "binary" && ["add", "sub", "mul", "div"].includes(n.op.fn)) {
        return BINARY[n.op.fn](A(0), A(1));
      }
      if (n.op.op === "unary" && ["neg", "exp", "log", "sqrt", "abs", "tanh"].includes(n.op.fn)) {
        return UNARY[n.op.fn](A(0));
      }
    }
    // Lane by lane; a kernel's own node (`self`) has no buffer to read yet: expand it.
    const lanes = [0, 1, 2, 3].map((u) => {
      const cu = [...c.slice(0, last), `min(${c[last]} + ${u}u, ${len} - 1u)`];
      return self ? this.expand(n, cu) : this.at(id, cu);
    });
    return `vec4<f32>(${lanes.join(", ")})`;
  }

  /** Coordinates of an operand of shape `shape` broadcast (right-aligned) into `c`. */
  static broadcast(shape: Dim[], c: string[]): string[] {
    const lead = c.length - shape.length;
    return shape.map((d, i) => (d === 1 ? "0u" : c[lead + i]));
  }

  /**
   * The expression of an elementwise node at coordinates `c`: f32, or i32 with `int` (for an int
   * node of `INT_EXPANDED`; an int node's arithmetic is i32 in either case, converted once).
   */
  expand(n: Node, c: string[], int = false): string {
    const slots = this.slots;
    const op = n.op;
    const intNode = n.type.dtype === "int" && INT_EXPANDED.has(op.op);
    if (!int && intNode && INT_ARITHMETIC.has(op.op)) {
      return `f32(${this.expand(n, c, true)})`;
    }
    const arg = (k: number) => this.byId.get(n.args[k])!;
    const A = (k: number, i32 = int) =>
      this.at(n.args[k], Reader.broadcast(arg(k).type.shape, c), i32);
    switch (op.op) {
      case "const":
      case "fill":
        return int ? intLiteral(op.value) : f32(op.value);
      case "dim":
        return `${int ? "i32" : "f32"}(${dim(op.name, slots)})`;
      case "lead":
        return int ? `i32(${lead(op.of, slots)})` : lead(op.of, slots);
      case "iota":
        return `${int ? "i32" : "f32"}(${c[op.axis]})`;
      case "eye":
        return `select(0.0, 1.0, (${c[0]}) == (${c[1]}))`;
      case "unary":
        return int ? INT_UNARY[op.fn]!(A(0)) : UNARY[op.fn](A(0));
      case "binary": {
        if (int) return INT_BINARY[op.fn]!(A(0), A(1));
        // Two ints compare as i32: exact where f32 would round them past 2^24.
        const ints = n.type.dtype === "bool" && COMPARES.has(op.fn) &&
          [0, 1].every((k) => arg(k).type.dtype === "int");
        return BINARY[op.fn](A(0, ints), A(1, ints));
      }
      case "where":
        return `select(${A(2)}, ${A(1)}, ${A(0, false)} != 0.0)`;
      case "cast": {
        const x = A(0, false);
        const to = n.type.dtype;
        return to === "bool" ? `select(0.0, 1.0, ${x} != 0.0)` : to === "int" ? `f2i(${x})` : x;
      }
      case "broadcast":
        return A(0);
      case "transpose": {
        const r = c.length;
        const sw = c.map((x, i) => (i === r - 2 ? c[r - 1] : i === r - 1 ? c[r - 2] : x));
        return this.at(n.args[0], sw, int);
      }
      case "reshape": {
        // Same elements: linearize over this shape, delinearize over the operand's.
        const st = strides(n.type.shape, slots);
        const flat = `(${c.map((x, i) => `(${x}) * ${st[i]}`).join(" + ") || "0u"})`;
        const src = arg(0).type.shape;
        const sst = strides(src, slots);
        return this.at(
          n.args[0],
          src.map((d, i) => `((${flat} / ${sst[i]}) % ${dim(d, slots)})`),
          int,
        );
      }
      case "gather": {
        const x = arg(0).type.shape;
        const nIdx = n.args.length - 1;
        const irank = c.length - (x.length - nIdx);
        // An int index is read as i32 (exact); a float one floors, as before ints were i32.
        const js = Array.from({ length: nIdx }, (_, k) => {
          const ix = arg(k + 1), at = Reader.broadcast(ix.type.shape, c.slice(0, irank));
          return ix.type.dtype === "int"
            ? `(${this.at(ix.id, at, true)})`
            : `i32(floor(${this.at(ix.id, at)}))`;
        });
        const inside = js.map((j, k) => `(${j} >= 0 && ${j} < i32(${dim(x[k], slots)}))`).join(
          " && ",
        );
        const xc = [...js.map((j) => `u32(max(${j}, 0))`), ...c.slice(irank)];
        return int
          ? `select(0i, ${this.at(n.args[0], xc, true)}, ${inside})`
          : `select(0.0, ${this.at(n.args[0], xc)}, ${inside})`;
      }
      default:
        throw new Error(`internal: ${op.op} is not elementwise`);
    }
  }
}
