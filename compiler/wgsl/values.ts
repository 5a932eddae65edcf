/** WGSL for the value of a random draw or a softmax / normalize fiber, shared by node kernels and regions. */
import type { FusedDraw, Node } from "../ir/types.ts";
import { dim, f32, strides } from "./syntax.ts";
import type { Reader } from "./reader.ts";

/** A random node's draw number `flat` of the current slice (Philox, docs/rng.md). */
export function randomValue(n: Node, reader: Reader, flat: string): { pre: string; value: string } {
  const op = n.op as { kind: string; stream: number };
  // A constant seed (a parameter) is exact as u32 bits, like the interpreter's `seed >>> 0`; a
  // seed computed at run time is an f32 value (exact below 2^24).
  const s0 = reader.byId.get(n.args[0])!;
  // An int seed is read as i32 (its bits, as the interpreter's `seed >>> 0`), not through f32.
  const given = s0.op.op === "const"
    ? `${s0.op.value >>> 0}u`
    : s0.type.dtype === "int"
    ? `bitcast<u32>(${reader.at(n.args[0], [], true)})`
    : `u32(i32(floor(${reader.at(n.args[0], [])})))`;
  const value = op.kind === "randint"
    ? `f32(mulhi32((w.x & 0xFFFFFE00u) | 0x100u, u32(floor(${reader.at(n.args[1], [])}))))`
    : DRAWS[op.kind as FusedDraw]("w");
  return { pre: `let w = ${drawBlock(flat, given, op.stream)};`, value };
}

/**
 * The Philox block of draw `flat` of the current slice `s` (docs/rng.md): keyed by the seed
 * (`given`; sizes[1] == 1 means the run overrides every seed with sizes[2]) and the call site's
 * stream.
 */
export function drawBlock(flat: string, given: string, stream: number): string {
  return `philox(${flat}, s + sizes[3], select(${given}, sizes[2], sizes[1] == 1u), ${stream}u)`;
}

/** Each random kind's value from its Philox block `w` (compiler/rng.ts, in the same order). */
export const DRAWS: Record<FusedDraw, (w: string) => string> = {
  uniform: (w) => `word_to_uniform(${w}.x)`,
  randn: (w) =>
    `sqrt(-2.0 * log(word_to_uniform(${w}.x))) * cos(6.283185307179586 * word_to_uniform(${w}.y))`,
  gumbel: (w) => `-log(neg_log_uniform(${w}.x))`,
};

/**
 * softmax or normalize of one fiber along the node's axis, at fiber coordinates f0, f1, ...
 * (the other axes in order), writing `target[base + ...]`. The operand is read twice for
 * softmax (max, then exp) and once for normalize (its values wait in the target).
 */
export function rowwiseBody(n: Node, reader: Reader, target: string, base: string): string {
  const slots = reader.slots;
  const op = n.op as { op: "softmax" | "normalize"; axis: number };
  const out = n.type.shape;
  const st = strides(out, slots);
  const len = dim(out[op.axis], slots);
  const fc = out.map((_, i) => (i === op.axis ? "k" : `f${i < op.axis ? i : i - 1}`));
  const startTerms = fc.flatMap((x, i) => (i === op.axis ? [] : [`${x} * ${st[i]}`]));
  const at = (k: string) => `${target}[start + ${k} * ${st[op.axis]}]`;
  // Generated only where used, so the vec4 path does not also emit the scalar reader.
  const x = () => reader.at(n.args[0], fc);
  const body = op.op === "softmax"
    ? `var m = ${f32(-Infinity)};
  var bad = false;
  for (var k = 0u; k < ${len}; k = k + 1u) {
    let x = ${x()};
    m = max(m, x);
    bad = bad | ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u);
  }
  if (bad) {
    for (var k = 0u; k < ${len}; k = k + 1u) { ${at("k")} = ${f32(NaN)}; }
  } else if (m == ${f32(-Infinity)}) {
    for (var k = 0u; k < ${len}; k = k + 1u) { ${at("k")} = 0.0; }
  } else {
    var z = 0.0;
    for (var k = 0u; k < ${len}; k = k + 1u) { let e = exp(${x()} - m); ${at("k")} = e; z = z + e; }
    for (var k = 0u; k < ${len}; k = k + 1u) { ${at("k")} = ${at("k")} / z; }
  }`
    : op.axis === out.length - 1 && reader.hasReduce4(n.args[0])
    ? `var q = 0.0;
  for (var k = 0u; k < ${len}; k = k + 4u) {
    let x4 = ${reader.at4(n.args[0], fc, len)};
    for (var u = 0u; u < 4u; u = u + 1u) {
      if (k + u < ${len}) { let x = x4[u]; ${at("(k + u)")} = x; q = q + x * x; }
    }
  }
  let den = max(sqrt(q), 1e-12);
  for (var k = 0u; k < ${len}; k = k + 1u) { ${at("k")} = ${at("k")} / den; }`
    : `var q = 0.0;
  for (var k = 0u; k < ${len}; k = k + 1u) { let x = ${x()}; ${at("k")} = x; q = q + x * x; }
  let den = max(sqrt(q), 1e-12);
  for (var k = 0u; k < ${len}; k = k + 1u) { ${at("k")} = ${at("k")} / den; }`;
  return `let start = ${base} + ${startTerms.join(" + ") || "0u"};
  ${body}`;
}
