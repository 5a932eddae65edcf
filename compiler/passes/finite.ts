/**
 * What a score term can never be, by its form alone: ±inf (`neverInf`), zero (`neverZero`). The
 * attention builder moves a factor out of a dot product, `(c * q[i]) . k[j]` to `c * (q[i] . k[j])`,
 * only where that is exact in IEEE arithmetic too: an infinite c turns a zero term of the dot into
 * NaN on one side only, and dividing by c = 0 makes each term infinite on one side only. NaN is
 * allowed: it is NaN on both sides. Overflow of finite values is the same on both sides, and
 * ignored.
 */
import type { Score } from "../ir/types.ts";

// Bounded whatever their operand (NaN aside).
const BOUNDED = new Set(["tanh", "sigmoid", "sin", "cos", "erf", "sign", "not", "acos"]);
// Finite on a finite operand (or NaN).
const KEEPS_FINITE = new Set(["neg", "abs", "relu", "floor", "ceil", "sqrt", "elu"]);

/** Whether `x` is never ±inf (it may be NaN). */
export function neverInf(x: Score): boolean {
  switch (x.kind) {
    case "i":
    case "j":
    case "size":
    case "lead":
      return true;
    case "const":
      return Math.abs(x.value) !== Infinity;
    case "cast":
      return x.to !== "float" || neverInf(x.x);
    case "unary":
      if (BOUNDED.has(x.fn)) return true;
      if (KEEPS_FINITE.has(x.fn)) return neverInf(x.x);
      // log is -inf only at 0 (and +inf at +inf); exp overflows only where its operand is large.
      return x.fn === "log" && neverInf(x.x) && positive(x.x);
    case "binary":
      if (["add", "sub", "mul", "max", "min"].includes(x.fn)) {
        return neverInf(x.a) && neverInf(x.b);
      }
      if (x.fn === "div") return neverInf(x.a) && neverZero(x.b);
      // Comparisons and logic give 0 or 1; an int's // and % are ints.
      return ["lt", "le", "gt", "ge", "eq", "ne", "and", "or"].includes(x.fn) || x.int === true;
    case "where":
      return neverInf(x.a) && neverInf(x.b);
    default:
      return false; // q·k, leaves and tables read data
  }
}

/** Whether `x` is never zero (nor NaN): a constant, or positive by its form. */
export function neverZero(x: Score): boolean {
  return (x.kind === "const" && x.value !== 0 && !Number.isNaN(x.value)) || positive(x);
}

/** Whether `x` is > 0 (and not NaN) by its form. */
function positive(x: Score): boolean {
  switch (x.kind) {
    case "const":
      return x.value > 0;
    case "cast":
      return x.to === "float" && positive(x.x);
    case "unary":
      return (x.fn === "exp" || x.fn === "sigmoid") && neverNaN(x.x) ||
        (x.fn === "sqrt" && positive(x.x));
    case "binary":
      // An int sum of positions and a positive constant does not wrap (positions are below 2^31
      // by far), so i + 1 is positive.
      return (x.fn === "add" && ((positive(x.a) && nonNegative(x.b)) ||
        (nonNegative(x.a) && positive(x.b)))) ||
        (x.fn === "mul" && positive(x.a) && positive(x.b) && x.int !== true);
    default:
      return false;
  }
}

/** Whether `x` is ≥ 0 (and not NaN) by its form. */
function nonNegative(x: Score): boolean {
  switch (x.kind) {
    case "i":
    case "j":
    case "size":
    case "lead":
      return true;
    case "const":
      return x.value >= 0;
    default:
      return positive(x);
  }
}

/** Whether `x` is never NaN: positions, sizes and finite constants and their sums. */
function neverNaN(x: Score): boolean {
  return nonNegative(x) || (x.kind === "const" && !Number.isNaN(x.value));
}
