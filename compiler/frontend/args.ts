/** Reads a builtin call's arguments by position or keyword, with clear errors. */
import type { Arg, ExprOf } from "./ast.ts";
import type { Dim } from "../ir/types.ts";
import { showType } from "../ir/print.ts";
import type { Checker } from "./check.ts";
import type { Scope, TensorVal, Val } from "./scope.ts";
import { dimOf, toTensor } from "./shapes.ts";

export class ArgReader {
  positional: Arg[];
  keywords: Map<string, Arg>;
  used = new Set<Arg>();
  /** `sig` is the builtin's signature, the hint of every message about its arguments. */
  constructor(
    readonly c: Checker,
    readonly e: ExprOf<"call">,
    readonly scope: Scope,
    readonly sig: string | undefined,
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
    if (!a) this.c.fail(`${this.e.fn} is missing its argument ${name}`, this.e.span, this.sig);
    this.used.add(a);
    return a;
  }
  value(pos: number, name: string): Val {
    return this.c.expr(this.arg(pos, name).value, this.scope);
  }
  tensor(pos: number, name: string): TensorVal {
    const a = this.arg(pos, name);
    return toTensor(this.c, this.c.expr(a.value, this.scope), a.span);
  }
  staticNumber(pos: number, name: string): number {
    const a = this.arg(pos, name);
    const v = this.c.expr(a.value, this.scope);
    if (v.kind !== "static") {
      this.c.fail(`${this.e.fn}: ${name} must be known at compile time`, a.span, this.sig);
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
    return [dimOf(this.c, v, a.span)];
  }
  /** The `axis` argument (position 1) as an axis of `x`, counted after any grid axes. */
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
  /** Refuse any argument not read. */
  done(): void {
    for (const a of this.e.args) {
      if (
        !this.used.has(a) &&
        !(a.name && ["axis", "keepdims", "stream"].includes(a.name) && this.usedName(a.name))
      ) {
        this.c.fail(
          a.name ? `${this.e.fn} has no argument ${a.name}` : `${this.e.fn} got too many arguments`,
          a.span,
          this.sig,
        );
      }
    }
  }
  usedName(name: string): boolean {
    return [...this.used].some((a) => a.name === name);
  }
}
