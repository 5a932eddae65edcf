/** Op renderers: WGSL for the IR's unary and binary functions, reductions, and the helpers they call. */
import type { BinaryFn, UnaryFn } from "../ir/types.ts";
import { f32 } from "./syntax.ts";

export const UNARY: Record<UnaryFn, (x: string) => string> = {
  neg: (x) => `-(${x})`,
  not: (x) => `select(1.0, 0.0, ${x} != 0.0)`,
  exp: (x) => `exp(${x})`,
  log: (x) => `log(${x})`,
  sqrt: (x) => `sqrt(${x})`,
  abs: (x) => `abs(${x})`,
  tanh: (x) => `tanh(${x})`,
  // WGSL's acos may be coarse near ±1; atan2 form keeps float32 accuracy there.
  acos: (x) => `atan2(sqrt(max((1.0 - ${x}) * (1.0 + ${x}), 0.0)), ${x})`,
  cos: (x) => `cos(${x})`,
  sin: (x) => `sin(${x})`,
  sigmoid: (x) => `(1.0 / (1.0 + exp(-(${x}))))`,
  relu: (x) => `max(${x}, 0.0)`,
  elu: (x) => `select(exp(${x}) - 1.0, ${x}, ${x} > 0.0)`,
  floor: (x) => `floor(${x})`,
  ceil: (x) => `ceil(${x})`,
  sign: (x) => `sign(${x})`,
  erf: (x) => `erf_approx(${x})`,
};

export const BINARY: Record<string, (a: string, b: string) => string> = {
  add: (a, b) => `(${a} + ${b})`,
  sub: (a, b) => `(${a} - ${b})`,
  mul: (a, b) => `(${a} * ${b})`,
  div: (a, b) => `(${a} / ${b})`,
  idiv: (a, b) => `floor(${a} / ${b})`,
  mod: (a, b) => `(${a} - ${b} * floor(${a} / ${b}))`,
  pow: (a, b) => `pow_real(${a}, ${b})`,
  // WGSL's max/min may drop a NaN operand and order ±0 either way: these follow Math.max/min.
  max: (a, b) => `max_nan(${a}, ${b})`,
  min: (a, b) => `min_nan(${a}, ${b})`,
  lt: (a, b) => `select(0.0, 1.0, ${a} < ${b})`,
  le: (a, b) => `select(0.0, 1.0, ${a} <= ${b})`,
  gt: (a, b) => `select(0.0, 1.0, ${a} > ${b})`,
  ge: (a, b) => `select(0.0, 1.0, ${a} >= ${b})`,
  eq: (a, b) => `select(0.0, 1.0, ${a} == ${b})`,
  ne: (a, b) => `select(0.0, 1.0, ${a} != ${b})`,
  and: (a, b) => `select(0.0, 1.0, ${a} != 0.0 && ${b} != 0.0)`,
  or: (a, b) => `select(0.0, 1.0, ${a} != 0.0 || ${b} != 0.0)`,
};

/** The comparisons: two ints compare as i32 (exact where f32 would round them past 2^24). */
export const COMPARES = new Set(["lt", "le", "gt", "ge", "eq", "ne"]);

/** i32 renderers of the unary functions that keep ints (see compiler/ir/scalar.ts INT_UNARY). */
export const INT_UNARY: Partial<Record<UnaryFn, (x: string) => string>> = {
  neg: (x) => `-(${x})`, // wraps at -2^31, as WGSL defines for i32
  abs: (x) => `abs(${x})`,
};

/** i32 renderers of the binary functions that give ints (compiler/ir/scalar.ts INT_BINARY). */
export const INT_BINARY: Partial<Record<BinaryFn, (a: string, b: string) => string>> = {
  add: (a, b) => `(${a} + ${b})`,
  sub: (a, b) => `(${a} - ${b})`,
  mul: (a, b) => `(${a} * ${b})`,
  idiv: (a, b) => `idiv_i(${a}, ${b})`,
  mod: (a, b) => `mod_i(${a}, ${b})`,
  max: (a, b) => `max(${a}, ${b})`,
  min: (a, b) => `min(${a}, ${b})`,
};

/**
 * An int constant as an i32 literal: wrapped into 32 bits as compiler/ir/scalar.ts `wrapInt32`
 * (JS's ToInt32, `| 0`) does on the interpreter. -2^31 has no literal of its own.
 */
export function intLiteral(v: number): string {
  const x = v | 0;
  return x === -(2 ** 31) ? "(-2147483647i - 1i)" : `${x}i`;
}

/** Helpers that kernels may call; included only when used. */
export const HELPERS: Record<string, string> = {
  f32_bits: `
// WGSL constant expressions may not evaluate to ±inf or NaN (Chromium's shader compiler refuses
// them; naga accepts): the bit patterns are read from a private variable, made at run time.
var<private> f32_bits: vec3<u32> = vec3<u32>(0x7f800000u, 0xff800000u, 0x7fc00000u);`,
  // NaN is tested on the bits: lavapipe folds x != x to false.
  max_nan: `
// Math.max: NaN if either is NaN, +0 above -0 (WGSL's max may do neither).
fn max_nan(a: f32, b: f32) -> f32 {
  let ua = bitcast<u32>(a); let ub = bitcast<u32>(b);
  if ((ua & 0x7fffffffu) > 0x7f800000u || (ub & 0x7fffffffu) > 0x7f800000u) {
    return bitcast<f32>(f32_bits.z);
  }
  if (a == b) { return bitcast<f32>(ua & ub); }
  return select(b, a, a > b);
}
fn max_nan4(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
  let ua = bitcast<vec4<u32>>(a); let ub = bitcast<vec4<u32>>(b);
  let m = vec4<u32>(0x7fffffffu); let inf = vec4<u32>(0x7f800000u);
  let nan = ((ua & m) > inf) | ((ub & m) > inf);
  let eq = bitcast<vec4<f32>>(ua & ub);
  return select(select(select(b, a, a > b), eq, a == b), vec4<f32>(bitcast<f32>(f32_bits.z)), nan);
}`,
  min_nan: `
// Math.min: NaN if either is NaN, -0 below +0 (WGSL's min may do neither).
fn min_nan(a: f32, b: f32) -> f32 {
  let ua = bitcast<u32>(a); let ub = bitcast<u32>(b);
  if ((ua & 0x7fffffffu) > 0x7f800000u || (ub & 0x7fffffffu) > 0x7f800000u) {
    return bitcast<f32>(f32_bits.z);
  }
  if (a == b) { return bitcast<f32>(ua | ub); }
  return select(b, a, a < b);
}
fn min_nan4(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
  let ua = bitcast<vec4<u32>>(a); let ub = bitcast<vec4<u32>>(b);
  let m = vec4<u32>(0x7fffffffu); let inf = vec4<u32>(0x7f800000u);
  let nan = ((ua & m) > inf) | ((ub & m) > inf);
  let eq = bitcast<vec4<f32>>(ua | ub);
  return select(select(select(b, a, a < b), eq, a == b), vec4<f32>(bitcast<f32>(f32_bits.z)), nan);
}`,
  f2i: `
// A float into int arithmetic (compiler/ir/scalar.ts toInt32): floor, saturating; NaN is 0.
fn f2i(x: f32) -> i32 {
  if ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) { return 0i; }
  if (x >= 2147483648.0) { return 2147483647i; }
  if (x < -2147483648.0) { return -2147483647i - 1i; }
  return i32(floor(x));
}`,
  idiv_i: `
// Floor division of ints; x // 0 is 0 and x // -1 wraps at -2^31 (as the interpreter's).
fn idiv_i(a: i32, b: i32) -> i32 {
  if (b == 0i) { return 0i; }
  if (b == -1i) { return -a; }
  let q = a / b;
  return select(q, q - 1i, q * b != a && (a < 0i) != (b < 0i));
}`,
  mod_i: `
// Floor remainder of ints (the divisor's sign); x % 0 is x.
fn mod_i(a: i32, b: i32) -> i32 {
  if (b == 0i) { return a; }
  if (b == -1i) { return 0i; }
  let r = a % b;
  return select(r, r + b, r != 0i && (r < 0i) != (b < 0i));
}`,
  pow_real: `
// WGSL pow is undefined for a negative base; integer exponents keep their sign as in float64.
fn pow_real(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (a >= 0.0) { return pow(a, b); }
  if (floor(b) == b) {
    let m = pow(-a, b);
    return select(m, -m, (abs(b) % 2.0) == 1.0);
  }
  return bitcast<f32>(f32_bits.z);
}`,
  erf_approx: `
// Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf_approx(x: f32) -> f32 {
  let t = 1.0 / (1.0 + 0.3275911 * abs(x));
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t +
    0.254829592) * t * exp(-x * x);
  return sign(x) * y;
}`,
  philox: `
fn mulhi32(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
  let cross = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return hh + (lh >> 16u) + (hl >> 16u) + (cross >> 16u);
}
// Philox-4x32-10 (docs/rng.md): counter (index, slice, 0, 0), key (seed, stream).
fn philox(index: u32, slice: u32, seed: u32, stream: u32) -> vec4<u32> {
  var c = vec4<u32>(index, slice, 0u, 0u);
  var k0 = seed; var k1 = stream;
  for (var r = 0u; r < 10u; r = r + 1u) {
    if (r > 0u) { k0 = k0 + 0x9E3779B9u; k1 = k1 + 0xBB67AE85u; }
    let hi0 = mulhi32(0xD2511F53u, c.x); let lo0 = 0xD2511F53u * c.x;
    let hi1 = mulhi32(0xCD9E8D57u, c.z); let lo1 = 0xCD9E8D57u * c.z;
    c = vec4<u32>(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
  }
  return c;
}
fn word_to_uniform(w: u32) -> f32 { return (f32(w >> 9u) + 0.5) * 1.1920928955078125e-7; }
// -log(u) of word_to_uniform(w), accurate in the tail: for u near 1 the f32 log (lavapipe's has
// absolute, not relative, error there) is replaced by the series t + t²/2 + t³/3 + t⁴/4 in
// t = 1 - u, exact in f32 (error below t⁵/5, under 1e-8 relative for t < 2^-6). Gumbel's tail
// draws lost 2.5e-3 otherwise (probe 4).
fn neg_log_uniform(w: u32) -> f32 {
  let t = (8388608.0 - f32(w >> 9u) - 0.5) * 1.1920928955078125e-7;
  if (t < 0.015625) { return t * (1.0 + t * (0.5 + t * (0.3333333333333333 + t * 0.25))); }
  return -log(word_to_uniform(w));
}`,
};

/** The HELPERS that `code` calls. */
export function helpersFor(code: string): string[] {
  // Helpers may call helpers (max_nan makes a NaN from f32_bits): add them until none is new.
  const used = new Set<string>();
  let text = code.includes("word_to_uniform") ? code + HELPERS.philox : code;
  for (let grew = true; grew;) {
    grew = false;
    for (const h of Object.keys(HELPERS)) {
      if (used.has(h) || !text.includes(h)) continue;
      used.add(h);
      text += HELPERS[h];
      grew = true;
    }
  }
  if (code.includes("word_to_uniform")) used.add("philox");
  return Object.keys(HELPERS).filter((h) => used.has(h)).map((h) => HELPERS[h]);
}

/** Ops whose value at a coordinate is an expression of their operands at coordinates. */
export const ELEMENTWISE = new Set([
  "const",
  "dim",
  "lead",
  "iota",
  "fill",
  "eye",
  "unary",
  "binary",
  "where",
  "cast",
  "broadcast",
  "transpose",
  "reshape",
  "gather",
]);
/** Ops whose kernels read their operands by coordinate, so producers can be inlined into them. */
export const READS_BY_COORDINATE = new Set([
  ...ELEMENTWISE,
  "reduce",
  "softmax",
  "normalize",
  "cumsum",
  "matmul",
  "dot",
  "scatter_add",
  "segment_mean",
  "bits",
  "topk",
  "random",
]);

/** Initial accumulator of each reduction. */
export const REDUCE_INIT = {
  max: f32(-Infinity),
  min: f32(Infinity),
  prod: "1.0",
  sum: "0.0",
  mean: "0.0",
};

/** The next accumulator of a reduction from `acc` and the element `x` (scalar or vec4). */
export function reduceStep(fn: keyof typeof REDUCE_INIT, vec4 = false): string {
  // NaN propagates and ±0 orders as in the interpreter (Math.max/min).
  return fn === "max"
    ? `max_nan${vec4 ? "4" : ""}(acc, x)`
    : fn === "min"
    ? `min_nan${vec4 ? "4" : ""}(acc, x)`
    : fn === "prod"
    ? "acc * x"
    : "acc + x";
}

/** Ops whose value at a coordinate is a loop over operand elements; inlined as functions. */
export const HEAVY = new Set(["matmul", "dot", "reduce", "bits", "segment_mean"]);
