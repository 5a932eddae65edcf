/**
 * WGSL for single IR nodes: the unfused baseline every program can run on. Each kernel computes
 * one node's value for all (batch, head) slices at once; one invocation writes one output element
 * (or one row, for row-wise ops). Sizes are read from a `sizes` buffer, so kernels do not depend on
 * `n` and are compiled once per program, not per input length. All values are stored as f32.
 */
import type { Dim, Node, Score, UnaryFn } from "./ir/types.ts";
import { flashKernel } from "../kernels/flash.ts";
import {
  attentionTile,
  HYBRID_ELEMENTS,
  LOOPS,
  MATMUL_TILE,
  REGION_WORKGROUP,
  SCATTER_STRIDE,
  WORKGROUP,
} from "./limits.ts";

/** A kernel for one node: WGSL source and how many invocations to launch (per slice). */
export interface NodeKernel {
  /** `op_nodeid`, for explain and timings. */
  name: string;
  /** The WGSL source (for specialized kernels, shown for placeholder head sizes). */
  wgsl: string;
  /** Sizes whose product is the number of invocations per slice. */
  threads: ThreadDim[];
  /** Node ids read, in binding order (binding 2, 3, ...). */
  reads: number[];
  /** Launch exactly one workgroup per slice (a kernel that runs a whole loop). */
  workgroupPerSlice?: boolean;
  /** For kernels specialized on head sizes: the WGSL for the run's actual sizes. */
  specialize?: (size: (d: Dim) => number) => string;
  /**
   * For kernels built from the generic template, the parts `mergeKernels` needs: the body run
   * per invocation (writing `out`, reading `a0`, `a1`, ...), the functions of inlined heavy
   * nodes it calls, and whether `out` is atomic.
   */
  part?: { body: string; fns: string[]; atomicOut: boolean };
  /** Loop iterations one invocation makes at the given sizes, where that can be large (regions). */
  trips?: (size: (d: Dim) => number) => number;
}

/** A factor of an invocation count: a size, or the larger of a size and a constant. */
export type ThreadDim = Dim | { max: [Dim, number] } | { ceilDiv: [Dim, number] };

/** Maps size symbols to their slot in the sizes buffer. */
export type SymbolSlots = Map<string, number>;

export function dim(d: Dim, slots: SymbolSlots): string {
  if (typeof d === "number") return `${d}u`;
  const k = slots.get(d);
  if (k === undefined) throw new Error(`internal: size symbol ${d} has no slot`);
  return `sizes[${k}]`;
}

export function size(shape: ThreadDim[], slots: SymbolSlots): string {
  const f = (d: ThreadDim) =>
    typeof d !== "object"
      ? dim(d, slots)
      : "max" in d
      ? `max(${dim(d.max[0], slots)}, ${d.max[1]}u)`
      : `((${dim(d.ceilDiv[0], slots)} + ${d.ceilDiv[1] - 1}u) / ${d.ceilDiv[1]}u)`;
  return shape.length ? `(${shape.map(f).join(" * ")})` : "1u";
}

/** Row-major strides of `shape`, as WGSL expressions. */
export function strides(shape: Dim[], slots: SymbolSlots): string[] {
  return shape.map((_, i) => size(shape.slice(i + 1), slots));
}

/** `let c0 = ...; let c1 = ...;` decomposing `flat` over `shape`. */
export function coords(shape: Dim[], slots: SymbolSlots, flat: string, prefix = "c"): string {
  const lines = [`var rem_${prefix} = ${flat};`];
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = dim(shape[i], slots);
    lines.push(`let ${prefix}${i} = rem_${prefix} % ${d}; rem_${prefix} = rem_${prefix} / ${d};`);
  }
  return lines.join("\n  ");
}

export function f32(x: number): string {
  if (x === Infinity) return "bitcast<f32>(f32_bits.x)";
  if (x === -Infinity) return "bitcast<f32>(f32_bits.y)";
  if (Number.isNaN(x)) return "bitcast<f32>(f32_bits.z)";
  const s = String(Math.fround(x));
  return /[.e]/.test(s) ? `f32(${s})` : `f32(${s}.0)`;
}

const UNARY: Record<UnaryFn, (x: string) => string> = {
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

const BINARY: Record<string, (a: string, b: string) => string> = {
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

/** Helpers that kernels may call; included only when used. */
const HELPERS: Record<string, string> = {
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
fn word_to_uniform(w: u32) -> f32 { return (f32(w >> 9u) + 0.5) * 1.1920928955078125e-7; }`,
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

/** One kernel of a merged dispatch, with the buffers it writes and reads. */
export interface MergePart {
  kernel: NodeKernel;
  write: number;
  /** Buffers behind the kernel's a0, a1, ... (for a region: all its bindings). */
  readBuffers: number[];
  /** For a region (one workgroup per slice): every buffer it writes. */
  writes?: number[];
}

/**
 * Horizontal fusion: independent kernels (none reads or writes what another writes) as one
 * dispatch. Their invocation ranges are laid end to end; each part runs as its own function
 * with its buffers renamed to the merged bindings (1, 2, ... in `bindings` order).
 */
export function mergeKernels(
  parts: MergePart[],
  slots: SymbolSlots,
): { wgsl: string; bindings: number[]; writes: number[]; regions: number } {
  const bindings: number[] = [];
  const vec4 = new Set<number>(); // binding indices that are vec4 views
  const writes = new Set(parts.flatMap((p) => p.writes ?? [p.write]));
  const atomic = new Set<number>();
  const bind = (b: number, asVec4 = false) => {
    let k = bindings.findIndex((x, i) => x === b && vec4.has(i) === asVec4);
    if (k < 0) {
      k = bindings.push(b) - 1;
      if (asVec4) vec4.add(k);
    }
    return `b${k}`;
  };
  const fns: string[] = [];
  const helpers = new Set<string>();
  const regionCalls: string[] = [];
  const calls: string[] = [];
  // Regions (whole workgroups, with barriers) take the first workgroups, one per slice each;
  // the grid parts follow, their invocations laid end to end.
  const regions = parts.filter((p) => p.kernel.workgroupPerSlice);
  const grid = parts.filter((p) => !p.kernel.workgroupPerSlice);
  [...regions, ...grid].forEach((p, i) => {
    const part = p.kernel.part!;
    if (part.atomicOut) atomic.add(p.write);
    const rename = (code: string) =>
      code.replace(
        /\b(out|a\d+)(?=\[)/g,
        (x) =>
          x === "out" ? bind(p.write) : bind(
            p.readBuffers[Number(x.slice(1))],
            (p.kernel.reads[Number(x.slice(1))] ?? 0) <= -VEC4_KEYS,
          ),
      )
        .replace(/\bv(\d+)(x4)?\(/g, `v$1$2_${i}(`);
    for (const h of helpersFor([part.body, ...part.fns].join("\n"))) helpers.add(h);
    fns.push(...part.fns.map(rename));
    if (p.kernel.workgroupPerSlice) {
      fns.push(`// ${p.kernel.name}
fn part${i}(s: u32, lid: u32) {
  ${rename(part.body)}
}`);
      regionCalls.push(
        `if (w < ${i + 1}u * sizes[0]) { part${i}(w - ${i}u * sizes[0], lid); return; }`,
      );
      return;
    }
    const j = i - regions.length;
    fns.push(`// ${p.kernel.name}
fn part${i}(t: u32) {
  let per = ${size(p.kernel.threads, slots)};
  let slices = sizes[0];
  if (t >= per * slices) { return; }
  let s = t / per;
  let r = t % per;
  ${rename(part.body)}
}`);
    const exit = regions.length ? "continue" : "return";
    calls.push(
      `let end${j} = ${j ? `end${j - 1} + ` : ""}${size(p.kernel.threads, slots)} * sizes[0];
  if (t < end${j}) { part${i}(t${j ? ` - end${j - 1}` : ""}); ${exit}; }`,
    );
  });
  const binds = bindings.map((b, k) =>
    `@group(0) @binding(${k + 1}) var<storage, ${
      writes.has(b) && !vec4.has(k) ? "read_write" : "read"
    }> b${k}: array<${atomic.has(b) ? "atomic<u32>" : vec4.has(k) ? "vec4<f32>" : "f32"}>;`
  );
  const W = regions.length ? REGION_WORKGROUP : WORKGROUP;
  // Workgroups visit the parts in a scattered order (w·7919 mod the workgroup count, a
  // bijection when coprime): lavapipe hands each thread a contiguous run of workgroups, and a
  // heavy part laid end to end would land on one thread (measured: a matmul merged with a map
  // ran 345 ms against 201 ms apart).
  const scatter = `let g = nwg.x * nwg.y;
  let w0 = wid.x + wid.y * nwg.x;
  let w = select((w0 * ${SCATTER_STRIDE}u) % g, w0, g % ${SCATTER_STRIDE}u == 0u || g > ${
    Math.floor(0xffffffff / SCATTER_STRIDE)
  }u);`;
  const main = regions.length
    ? `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  ${scatter}
  ${regionCalls.join("\n  ")}
  // lavapipe runs every invocation of a shader with barriers as a coroutine: each grid
  // invocation here takes ${HYBRID_ELEMENTS} elements to keep their number down.
  let t0 = ((w - ${regions.length}u * sizes[0]) * ${W}u + lid) * ${HYBRID_ELEMENTS}u;
  for (var q = 0u; q < ${HYBRID_ELEMENTS}u; q = q + 1u) {
  let t = t0 + q;`
    : `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  ${scatter}
  let t = w * ${W}u + lid;`;
  const wgsl = `// merged: ${parts.map((p) => p.kernel.name).join(", ")}
@group(0) @binding(0) var<storage, read> sizes: array<u32>;
${binds.join("\n")}
${[...helpers, ...fns].join("\n")}
@compute @workgroup_size(${W})
${main}
  ${calls.join("\n  ")}
${regions.length ? "  }\n" : ""}}
`;
  return { wgsl, bindings, writes: [...writes], regions: regions.length };
}

/** Wrap a kernel body: bindings, the slice/element split, and a bounds check. */
export function kernel(
  node: Node,
  from: number[] | Reader,
  threads: ThreadDim[],
  slots: SymbolSlots,
  body: string,
  atomicOut = false,
): NodeKernel {
  const reads = Array.isArray(from) ? from : from.bindings;
  const fns = Array.isArray(from) ? [] : [...from.fns.values()];
  if (!Array.isArray(from) && from.hoisted.size) body = `${from.prologue()}\n  ${body}`;
  const binds = reads.map((key, i) =>
    `@group(0) @binding(${i + 2}) var<storage, read> a${i}: array<${
      key <= -VEC4_KEYS ? "vec4<f32>" : "f32"
    }>;`
  );
  const helpers = helpersFor([body, ...fns].join("\n"));
  const wgsl = `// %${node.id} ${node.op.op}${node.name ? ` (${node.name})` : ""}
@group(0) @binding(0) var<storage, read> sizes: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<${atomicOut ? "atomic<u32>" : "f32"}>;
${binds.join("\n")}
${[...helpers, ...fns].join("\n")}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let per = ${size(threads, slots)};
  let t = gid.x + gid.y * nwg.x * ${WORKGROUP}u;
  let slices = sizes[0];
  if (t >= per * slices) { return; }
  let s = t / per;
  let r = t % per;
  ${body}
}
`;
  return {
    name: `${node.op.op}_${node.id}`,
    wgsl,
    threads,
    reads,
    part: { body, fns, atomicOut },
  };
}

/** Ops whose value at a coordinate is an expression of their operands at coordinates. */
export const ELEMENTWISE = new Set([
  "const",
  "dim",
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

/**
 * Statements and the final expression computing a HEAVY node's value at coordinates `c`,
 * reading operands through `reader` (shared by the node's own kernel and its inlined function).
 */
export function heavyValue(n: Node, c: string[], reader: Reader): { pre: string; value: string } {
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
  for (var k = 0u; k < ${len}; k = k + 1u) { acc = acc + ${x.read} * ${y.read}; }`,
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
  for (var k = 0u; k < ${len}; k = k + 1u) {
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

/** A random node's draw number `flat` of the current slice (Philox, docs/rng.md). */
export function randomValue(n: Node, reader: Reader, flat: string): { pre: string; value: string } {
  const op = n.op as { kind: string; stream: number };
  // sizes[1] == 1 means the run overrides every seed with sizes[2].
  // A constant seed (a parameter) is exact as u32 bits, like the interpreter's `seed >>> 0`; a
  // seed computed at run time is an f32 value (exact below 2^24).
  const s0 = reader.byId.get(n.args[0])!;
  const given = s0.op.op === "const"
    ? `${s0.op.value >>> 0}u`
    : `u32(i32(floor(${reader.at(n.args[0], [])})))`;
  const seed = `select(${given}, sizes[2], sizes[1] == 1u)`;
  const value = op.kind === "uniform"
    ? "word_to_uniform(w.x)"
    : op.kind === "randn"
    ? "sqrt(-2.0 * log(word_to_uniform(w.x))) * cos(6.283185307179586 * word_to_uniform(w.y))"
    : op.kind === "gumbel"
    ? "-log(-log(word_to_uniform(w.x)))"
    : `f32(mulhi32((w.x & 0xFFFFFE00u) | 0x100u, u32(floor(${reader.at(n.args[1], [])}))))`;
  return { pre: `let w = philox(${flat}, s + sizes[3], ${seed}, ${op.stream}u);`, value };
}

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

/**
 * Reads operand values inside a kernel: a materialized node is a buffer read; an inlined node
 * (elementwise, not materialized by lowering) is expanded into its expression at the requested
 * coordinates, recursively. This is elementwise fusion: chains of maps, broadcasts, transposes
 * and gathers run inside the kernel that consumes them.
 */
export class Reader {
  bindings: number[];
  /** WGSL functions of the inlined heavy nodes this reader called, by node id. */
  fns = new Map<number, string>();
  /**
   * Values stored somewhere other than their own buffer (a region's arena, or a buffer keyed by
   * another node): the binding key, the offset within a slice, and the slice stride.
   */
  placed = new Map<number, { key: number; offset: string; stride: string }>();
  /** Scalar expressions computed once at the top of the kernel body (`prologue`). */
  hoisted = new Map<number, string>();
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
    readonly slots: SymbolSlots,
    preset: number[] = [],
  ) {
    this.bindings = [...preset];
  }

  buffer(id: number): string {
    let k = this.bindings.indexOf(id);
    if (k < 0) k = this.bindings.push(id) - 1;
    return `a${k}`;
  }

  /** Value of node `id` at coordinates `c` (one u32 WGSL expression per axis). */
  at(id: number, c: string[]): string {
    const n = this.byId.get(id)!;
    if (this.inline.has(id) && HEAVY.has(n.op.op)) {
      return `${this.fn(n)}(${["s", ...c].join(", ")})`;
    }
    if (
      this.inline.has(id) && this.hoist && this.fnDepth === 0 && n.type.shape.length === 0 &&
      !["const", "dim", "fill"].includes(n.op.op)
    ) {
      // A scalar expression (like d^0.25) is computed once per invocation, not per read.
      if (!this.hoisted.has(id)) this.hoisted.set(id, this.expand(n, []));
      return `h${id}`;
    }
    if (this.inline.has(id)) return this.expand(n, c);
    if (n.op.op === "scatter_add" && n.op.chunks) {
      return `${this.partialSum(n, n.op.chunks)}(${["s", ...c].join(", ")})`;
    }
    return `${this.buffer(this.placed.get(id)?.key ?? id)}[${this.index(id, c)}]`;
  }

  /** A table stored as `chunks` partial tables: the function summing them at a coordinate. */
  partialSum(n: Node, chunks: number): string {
    const name = `v${n.id}`;
    if (!this.fns.has(n.id)) {
      const shape = n.type.shape;
      const c = shape.map((_, i) => `c${i}`);
      const st = strides(shape, this.slots);
      const one = size(shape, this.slots);
      const at = shape.flatMap((d, i) => (d === 1 ? [] : [`c${i} * ${st[i]}`])).join(" + ") || "0u";
      const params = ["s: u32", ...c.map((x) => `${x}: u32`)].join(", ");
      this.fns.set(
        n.id,
        `fn ${name}(${params}) -> f32 {
  let base = s * ${chunks}u * ${one} + ${at};
  var acc = 0.0;
  let used = ${usedChunks(dim(this.byId.get(n.args[0])!.type.shape.at(-1)!, this.slots), chunks)};
  for (var p = 0u; p < used; p = p + 1u) { acc = acc + ${this.buffer(n.id)}[base + p * ${one}]; }
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
    const base = p ? `s * ${p.stride} + ${p.offset}` : `s * ${size(shape, this.slots)}`;
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
      read: `${this.buffer(this.placed.get(id)?.key ?? id)}[base_${tag} + k * step_${tag}]`,
    };
  }

  /**
   * An inlined heavy node (a contraction or reduction read once per element by its consumer)
   * becomes a WGSL function of the slice and coordinates, called where it is read.
   */
  fn(n: Node): string {
    const name = `v${n.id}`;
    if (!this.fns.has(n.id)) {
      this.fns.set(n.id, "");
      const c = n.type.shape.map((_, i) => `c${i}`);
      this.fnDepth++;
      const { pre, value } = heavyValue(n, c, this);
      this.fnDepth--;
      const params = ["s: u32", ...c.map((x) => `${x}: u32`)].join(", ");
      this.fns.set(n.id, `fn ${name}(${params}) -> f32 {\n  ${pre}\n  return ${value};\n}`);
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
    if (!this.fns.has(-n.id - 1)) {
      this.fns.set(-n.id - 1, "");
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
        -n.id - 1,
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
    if (this.inline.has(id) || self) {
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

  /** The expression of an elementwise node at coordinates `c`. */
  expand(n: Node, c: string[]): string {
    const slots = this.slots;
    const arg = (k: number) => this.byId.get(n.args[k])!;
    const A = (k: number) => this.at(n.args[k], Reader.broadcast(arg(k).type.shape, c));
    const op = n.op;
    switch (op.op) {
      case "const":
      case "fill":
        return f32(op.value);
      case "dim":
        return `f32(${dim(op.name, slots)})`;
      case "iota":
        return `f32(${c[op.axis]})`;
      case "eye":
        return `select(0.0, 1.0, (${c[0]}) == (${c[1]}))`;
      case "unary":
        return UNARY[op.fn](A(0));
      case "binary":
        return BINARY[op.fn](A(0), A(1));
      case "where":
        return `select(${A(2)}, ${A(1)}, ${A(0)} != 0.0)`;
      case "cast": {
        const x = A(0);
        const to = n.type.dtype;
        return to === "bool" ? `select(0.0, 1.0, ${x} != 0.0)` : to === "int" ? `floor(${x})` : x;
      }
      case "broadcast":
        return A(0);
      case "transpose": {
        const r = c.length;
        const sw = c.map((x, i) => (i === r - 2 ? c[r - 1] : i === r - 1 ? c[r - 2] : x));
        return this.at(n.args[0], sw);
      }
      case "reshape": {
        // Same elements: linearize over this shape, delinearize over the operand's.
        const st = strides(n.type.shape, slots);
        const flat = `(${c.map((x, i) => `(${x}) * ${st[i]}`).join(" + ") || "0u"})`;
        const src = arg(0).type.shape;
        const sst = strides(src, slots);
        return this.at(n.args[0], src.map((d, i) => `((${flat} / ${sst[i]}) % ${dim(d, slots)})`));
      }
      case "gather": {
        const x = arg(0).type.shape;
        const nIdx = n.args.length - 1;
        const irank = c.length - (x.length - nIdx);
        const js = Array.from(
          { length: nIdx },
          (_, k) =>
            `i32(floor(${
              this.at(n.args[k + 1], Reader.broadcast(arg(k + 1).type.shape, c.slice(0, irank)))
            }))`,
        );
        const inside = js.map((j, k) => `(${j} >= 0 && ${j} < i32(${dim(x[k], slots)}))`).join(
          " && ",
        );
        const xc = [...js.map((j) => `u32(max(${j}, 0))`), ...c.slice(irank)];
        return `select(0.0, ${this.at(n.args[0], xc)}, ${inside})`;
      }
      default:
        throw new Error(`internal: ${op.op} is not elementwise`);
    }
  }
}

/**
 * The kernel(s) computing `node`. `inline` holds the nodes lowering chose not to materialize;
 * their expressions are generated inside this kernel wherever it reads them. Returns an empty
 * list for nodes that need no kernel (inputs, loop bookkeeping).
 */
export function nodeKernels(
  node: Node,
  byId: Map<number, Node>,
  slots: SymbolSlots,
  inline: Set<number> = new Set(),
  options: { f16?: boolean; split?: boolean } = {},
): NodeKernel[] {
  const args = node.args.map((a) => byId.get(a)!);
  const out = node.type.shape;
  const rank = out.length;
  const outSize = size(out, slots);
  const cs = (shape: Dim[], prefix = "c") => shape.map((_, i) => `${prefix}${i}`);
  const op = node.op;
  if (op.op === "input" || op.op === "loop" || op.op === "carry" || op.op === "loop_result") {
    return [];
  }
  if (ELEMENTWISE.has(op.op)) {
    const reader = new Reader(byId, inline, slots);
    const last = out.length - 1;
    if (
      (op.op === "binary" || op.op === "unary") && last >= 0 && out[last] !== 1 &&
      node.args.some((a) => reader.hasReduce4(a))
    ) {
      // Four consecutive elements of the last axis per invocation, so what a reduction inside
      // reads for all of them (Nyström's conv taps and mask) is loaded once.
      const len = dim(out[last], slots);
      const threads: ThreadDim[] = [...out.slice(0, last), { ceilDiv: [out[last], 4] }];
      const c = cs(out);
      const x4 = reader.at4(node.id, [...c.slice(0, last), `(c${last} * 4u)`], len, true);
      const quads = `((${len} + 3u) / 4u)`;
      const body = `var rem_c = r;
  let c${last} = rem_c % ${quads}; rem_c = rem_c / ${quads};
  ${
        out.slice(0, last).map((d, i) => [i, d] as const).reverse().map(([i, d]) =>
          `let c${i} = rem_c % ${dim(d, slots)}; rem_c = rem_c / ${dim(d, slots)};`
        ).join("\n  ")
      }
  let x4 = ${x4};
  let ob = s * ${outSize} + ${
        out.slice(0, last).map((_, i) => `c${i} * ${size(out.slice(i + 1), slots)}`).join(" + ") ||
        "0u"
      } + c${last} * 4u;
  for (var u = 0u; u < 4u; u = u + 1u) { if (c${last} * 4u + u < ${len}) { out[ob + u] = x4[u]; } }`;
      return [kernel(node, reader, threads, slots, body)];
    }
    const expr = reader.expand(node, cs(out));
    return [
      kernel(
        node,
        reader,
        out,
        slots,
        `${coords(out, slots, "r")}\n  out[s * ${outSize} + r] = ${expr};`,
      ),
    ];
  }
  const reader = new Reader(byId, inline, slots);
  const rd = (k: number, c: string[]) => reader.at(node.args[k], c);
  switch (op.op) {
    case "reduce":
    case "dot":
    case "bits":
    case "segment_mean": {
      const { pre, value } = heavyValue(node, cs(out), reader);
      const body = `${coords(out, slots, "r")}
  ${pre}
  out[s * ${outSize} + r] = ${value};`;
      return [kernel(node, reader, out, slots, body)];
    }
    case "softmax":
    case "normalize": {
      // One invocation per fiber along `axis`: threads over the shape with that axis removed.
      const fiber = out.filter((_, i) => i !== op.axis);
      const body = rowwiseBody(node, reader, "out", `s * ${outSize}`);
      return [kernel(node, reader, fiber, slots, `${coords(fiber, slots, "r", "f")}\n  ${body}`)];
    }
    case "matmul": {
      // A TILE×TILE block of outputs per invocation: each loaded a and b element is used
      // TILE times from registers. Edge blocks clamp their reads and skip their stores.
      const [a, b] = [args[0].type.shape, args[1].type.shape];
      const inner = dim(a[a.length - 1], slots);
      const T = MATMUL_TILE;
      const rowsD = out[rank - 2], colsD = out[rank - 1];
      const batch = out.slice(0, -2);
      // Split (a run whose K passes the loop budget, see longloops.ts): invocation (kp, tile)
      // sums its slice [klo, khi) of K into partial block kp; a second kernel adds the blocks.
      const split = options.split === true;
      const tiles: ThreadDim[] = [
        ...(split ? [LOOPS.parts] : []),
        ...batch,
        { ceilDiv: [rowsD, T] },
        { ceilDiv: [colsD, T] },
      ];
      const bc = cs(batch);
      const rows = dim(rowsD, slots), cols = dim(colsD, slots);
      const aBatch = Reader.broadcast(a.slice(0, -2), bc),
        bBatch = Reader.broadcast(b.slice(0, -2), bc);
      const tileCoords = `var rem_t = r;
  let tc = rem_t % ((${cols} + ${T - 1}u) / ${T}u); rem_t = rem_t / ((${cols} + ${T - 1}u) / ${T}u);
  let tr = rem_t % ((${rows} + ${T - 1}u) / ${T}u); rem_t = rem_t / ((${rows} + ${T - 1}u) / ${T}u);
  ${
        batch.map((d, i) =>
          `let c${i} = rem_t % ${dim(d, slots)}; rem_t = rem_t / ${dim(d, slots)};`
        ).reverse().join("\n  ")
      }${
        split
          ? `
  let kp = rem_t;
  let kused = ${splitUsed(inner)};
  if (kp >= kused) { return; }
  let kblk = ((${inner} + kused - 1u) / kused + 3u) / 4u * 4u;
  let klo = min(kp * kblk, ${inner});
  let khi = min(klo + kblk, ${inner});`
          : ""
      }`;
      const idx = Array.from({ length: T }, (_, u) => u);
      const fast = matmulVec4(node, reader, aBatch, bBatch, inner, cols, split);
      const body = `${tileCoords}
  ${
        idx.map((u) =>
          `let i${u} = min(tr * ${T}u + ${u}u, ${rows} - 1u); let j${u} = min(tc * ${T}u + ${u}u, ${cols} - 1u);`
        ).join("\n  ")
      }
  ${idx.map((u) => `var acc${u} = vec4<f32>(); var accb${u} = vec4<f32>();`).join(" ")}
  ${fast}
  for (var k = ${fast ? "kfast" : split ? "klo" : "0u"}; k < ${split ? "khi" : inner}; k = k + 1u) {
    ${idx.map((u) => `let x${u} = ${rd(0, [...aBatch, `i${u}`, "k"])};`).join("\n    ")}
    ${idx.map((u) => `let y${u} = ${rd(1, [...bBatch, "k", `j${u}`])};`).join("\n    ")}
    let yv = vec4<f32>(y0, y1, y2, y3);
    let yw = vec4<f32>(y4, y5, y6, y7);
    ${
        idx.map((u) => `acc${u} = acc${u} + x${u} * yv; accb${u} = accb${u} + x${u} * yw;`).join(
          "\n    ",
        )
      }
  }
  let ob = ${split ? `(s * ${LOOPS.parts}u + kp)` : "s"} * ${outSize} + ${
        batch.length
          ? `(${
            batch.map((_, i) => `c${i} * ${size(batch.slice(i + 1), slots)}`).join(" + ")
          }) * ${rows} * ${cols}`
          : "0u"
      };
  ${
        idx.map((u) =>
          `if (tr * ${T}u + ${u}u < ${rows}) { let ro = ob + (tr * ${T}u + ${u}u) * ${cols}; ${
            idx.map((w) =>
              `if (tc * ${T}u + ${w}u < ${cols}) { out[ro + tc * ${T}u + ${w}u] = ${
                w < 4 ? `acc${u}[${w}]` : `accb${u}[${w - 4}]`
              }; }`
            ).join(" ")
          } }`
        ).join("\n  ")
      }`;
      return [kernel(node, reader, tiles, slots, body)];
    }
    case "scatter_add": {
      // WGSL has no float atomics. Measured on lavapipe (YOSO, 8 heads, d = 64, n = 2048): a
      // gather form (each table entry scans all n codes) took 23 s per run; this scatter form
      // (zero the table, then each (key, channel) adds itself with a compare-exchange loop on the
      // f32 bits) is O(n·e) work instead of O(2^tau·n·e). Sums are exact up to f32 rounding in
      // an unspecified order.
      // One invocation per key reads its code once and adds its channels in turn, so an inlined
      // code (YOSO's hash bits, contraction included) is computed once per key.
      const idx = args[0].type.shape;
      const vals = args[1].type.shape;
      const g = idx.length - 1;
      if (op.chunks) return [scatterPartials(node, reader, op.chunks)];
      const threads = idx;
      const c = cs(threads);
      const ost = strides(out, slots);
      const lead = idx.slice(0, g).map((_, i) => `c${i} * ${ost[i]}`);
      const chans = vals.slice(1);
      const zero = kernel(node, [], out, slots, `atomicStore(&out[s * ${outSize} + r], 0u);`, true);
      const body = `${coords(threads, slots, "r")}
  let code = i32(floor(${rd(0, c)}));
  if (code < 0 || code >= ${op.size}) { return; }
  let base = s * ${outSize} + ${[...lead, `u32(code) * ${ost[g]}`].join(" + ")};
  for (var ch = 0u; ch < ${size(chans, slots)}; ch = ch + 1u) {
    ${coords(chans, slots, "ch", "h")}
    let v = ${rd(1, [c[g], ...chans.map((_, q) => `h${q}`)])};
    let p = base + ch;
    var old = atomicLoad(&out[p]);
    loop {
      let swap = atomicCompareExchangeWeak(&out[p], old, bitcast<u32>(bitcast<f32>(old) + v));
      if (swap.exchanged) { break; }
      old = swap.old_value;
    }
  }`;
      const add = kernel(node, reader, threads, slots, body, true);
      return [zero, { ...add, name: `${add.name}_add` }];
    }
    case "topk": {
      // One invocation per (row, slot): element e's rank is the number of elements before it
      // in (value desc, index asc) order; slots past the row length hold the length.
      const x = args[0].type.shape;
      const len = dim(x[x.length - 1], slots);
      const rowsShape = x.slice(0, -1);
      const k = op.k;
      const span = `max(${len}, ${k}u)`;
      const spanDim: ThreadDim = { max: [x[x.length - 1], k] };
      const rc = cs(rowsShape);
      const body = `let row = r / ${span};
  let e = r % ${span};
  ${coords(rowsShape, slots, "row")}
  let ob = s * ${outSize} + row * ${k}u;
  if (e >= ${len}) { if (e < ${k}u) { out[ob + e] = f32(${len}); } return; }
  var v = ${rd(0, [...rc, "e"])};
  if (v != v) { v = ${f32(-Infinity)}; }
  var rank = 0u;
  var jstart = 0u;
  ${topkVec4(node, reader, rc, len, k)}
  for (var j = jstart; j < ${len}; j = j + 1u) {
    var u = ${rd(0, [...rc, "j"])};
    if (u != u) { u = ${f32(-Infinity)}; }
    if (u > v || (u == v && j < e)) { rank = rank + 1u; }
    if (rank >= ${k}u) { break; } // not among the k largest: stop counting
  }
  if (rank < ${k}u) { out[ob + rank] = f32(e); }`;
      return [kernel(node, reader, [...rowsShape, spanDim], slots, body)];
    }
    case "random": {
      const { pre, value } = randomValue(node, reader, "r");
      return [kernel(node, reader, out, slots, `${pre}\n  out[s * ${outSize} + r] = ${value};`)];
    }
  }
  // The remaining kernels address their operands' buffers directly: a0, a1, ... in argument order.
  switch (op.op) {
    case "set_rows": {
      // Copy x, then write each replacement row; a later row with the same index wins.
      const rowsShape = args[2].type.shape;
      const count = dim(rowsShape[0], slots);
      const width = size(out.slice(1), slots);
      const copy = kernel(
        node,
        [node.args[0]],
        out,
        slots,
        `out[s * ${outSize} + r] = a0[s * ${outSize} + r];`,
      );
      const scatter = kernel(
        node,
        [node.args[1], node.args[2]],
        rowsShape,
        slots,
        `let w = ${width};
  let q = r / w;
  let c = r % w;
  let dest = i32(floor(a0[s * ${count} + q]));
  if (dest < 0 || u32(dest) >= ${dim(out[0], slots)}) { return; }
  for (var q2 = q + 1u; q2 < ${count}; q2 = q2 + 1u) {
    if (i32(floor(a0[s * ${count} + q2])) == dest) { return; }
  }
  out[s * ${outSize} + u32(dest) * w + c] = a1[s * ${count} * w + q * w + c];`,
      );
      return [copy, { ...scatter, name: `${scatter.name}_rows` }];
    }
    case "attention":
    case "probs":
      return [attentionKernel(node, args, slots, undefined, options.f16, options.split)];
  }
  throw new Error(`internal: no kernel for ${op.op}`);
}

/**
 * scatter_add as partial tables, without atomics: invocation (chunk, group, channel) walks its
 * block of keys, adding each value into a private table of `size` buckets, then stores the
 * table. All lanes of a SIMD group share the key sequence (they differ in channel), so the
 * private table is indexed uniformly. A run uses one table per LOOPS.chunk keys (up to
 * `chunks`); readers sum the tables in use (`Reader.partialSum`). Sums have a fixed order, so
 * results are deterministic. Measured on lavapipe (YOSO, n = 4096, 8 heads): 297 ms against
 * 709 ms for the compare-exchange scatter; each extra table read costs the consumer ~40%.
 */
/** WGSL: how many of the `chunks` partial tables a run uses, for `rows` keys. */
/** WGSL: the chunks of LOOPS.chunk elements a split loop over `len` uses (at most LOOPS.parts). */
export function splitUsed(len: string): string {
  return usedChunks(len, LOOPS.parts);
}

/** Elements per chunk of a split loop over `len` elements (the host side of `splitUsed`). */
export function splitBlock(len: number): number {
  const used = Math.max(1, Math.min(LOOPS.parts, Math.ceil(len / LOOPS.chunk)));
  return Math.ceil(len / used);
}

function usedChunks(rows: string, chunks: number): string {
  return `min(${chunks}u, (${rows} + ${LOOPS.chunk - 1}u) / ${LOOPS.chunk}u)`;
}

function scatterPartials(node: Node, reader: Reader, chunks: number): NodeKernel {
  const slots = reader.slots;
  const op = node.op as { size: number };
  const idx = reader.byId.get(node.args[0])!.type.shape;
  const vals = reader.byId.get(node.args[1])!.type.shape;
  const out = node.type.shape;
  const g = idx.length - 1;
  const groups = idx.slice(0, g), chans = vals.slice(1);
  // Four channels per invocation: one code read and one table index serve a vec4.
  const width = size(chans, slots);
  const quads = `((${width} + 3u) / 4u)`;
  const gc = groups.map((_, i) => `c${i + 1}`);
  const ost = strides(out, slots);
  const one = size(out, slots);
  const rows = dim(idx[g], slots);
  const lead = gc.map((x, i) => `${x} * ${ost[i]}`);
  const lanes = [0, 1, 2, 3];
  const chanAt = (u: number) =>
    `${coords(chans, slots, `min(quad * 4u + ${u}u, ${width} - 1u)`, `h${u}_`)}`;
  const value = (u: number) => reader.at(node.args[1], ["j", ...chans.map((_, q) => `h${u}_${q}`)]);
  const body = `var rem_t = r;
  let quad = rem_t % ${quads}; rem_t = rem_t / ${quads};
  ${
    [...groups].reverse().map((d, k) => {
      const i = groups.length - k;
      return `let c${i} = rem_t % ${dim(d, slots)}; rem_t = rem_t / ${dim(d, slots)};`;
    }).join("\n  ")
  }
  let c0 = rem_t;
  ${lanes.map(chanAt).join("\n  ")}
  let used = ${usedChunks(rows, chunks)};
  if (c0 >= used) { return; }
  let blk = (${rows} + used - 1u) / used;
  let hi = min(c0 * blk + blk, ${rows});
  var acc = array<vec4<f32>, ${op.size}>();
  for (var j = c0 * blk; j < hi; j = j + 1u) {
    let code = i32(floor(${reader.at(node.args[0], [...gc, "j"])}));
    if (code >= 0 && code < ${op.size}) {
      acc[code] = acc[code] + vec4<f32>(${lanes.map(value).join(", ")});
    }
  }
  let base = s * ${chunks}u * ${one} + c0 * ${one}${lead.length ? ` + ${lead.join(" + ")}` : ""};
  for (var b = 0u; b < ${op.size}u; b = b + 1u) {
    ${
    lanes.map((u) =>
      `if (quad * 4u + ${u}u < ${width}) { out[base + b * ${
        ost[g]
      } + quad * 4u + ${u}u] = acc[b][${u}]; }`
    ).join("\n    ")
  }
  }`;
  return kernel(
    node,
    reader,
    [chunks, ...groups, { ceilDiv: [chans.length ? chanCount(chans) : 1, 4] }],
    slots,
    body,
  );
}

/** The channel count of a scatter as one Dim when it is a single axis (the common case). */
function chanCount(chans: Dim[]): Dim {
  if (chans.length === 1) return chans[0];
  if (chans.every((d) => typeof d === "number")) {
    return (chans as number[]).reduce((p, d) => p * d, 1);
  }
  throw new Error("internal: multi-axis symbolic scatter channels (partialTables excludes them)");
}

/**
 * The vec4 fast path of the tiled matmul: a stored A is read four k at a time and a stored B
 * eight columns at a time through vec4 views of their buffers (llvmpipe pays per load, not per
 * byte). It runs while k + 4 ≤ K when K divides by 4 (and for B, on interior column tiles with
 * N divisible by 4), leaving `kfast` for the scalar loop that follows. Empty when neither
 * operand is stored.
 */
function matmulVec4(
  node: Node,
  reader: Reader,
  aBatch: string[],
  bBatch: string[],
  inner: string,
  cols: string,
  split = false,
): string {
  const stored = (id: number) => {
    const n = reader.byId.get(id)!;
    return !reader.inline.has(id) && !reader.placed.has(id) &&
      !(n.op.op === "scatter_add" && n.op.chunks);
  };
  const [a, b] = node.args;
  const aVec = stored(a), bVec = stored(b);
  if (!aVec && !bVec) return "";
  const T = MATMUL_TILE;
  const idx = Array.from({ length: T }, (_, u) => u);
  const av = aVec ? reader.buffer(vec4Key(a)) : "";
  const bv = bVec ? reader.buffer(vec4Key(b)) : "";
  const cond = [
    `${inner} % 4u == 0u`,
    ...(bVec ? [`${cols} % 4u == 0u`, `tc * ${T}u + ${T}u <= ${cols}`] : []),
  ].join(" && ");
  const lanes = [0, 1, 2, 3];
  return `var kfast = ${split ? "klo" : "0u"};
  if (${cond}) {
    ${
    aVec
      ? idx.map((u) => `let ab${u} = (${reader.index(a, [...aBatch, `i${u}`, "0u"])}) / 4u;`).join(
        " ",
      )
      : ""
  }
    ${bVec ? `let bb = (${reader.index(b, [...bBatch, "0u", `tc * ${T}u`])}) / 4u;` : ""}
    for (var k4 = ${split ? "klo / 4u" : "0u"}; k4 < ${split ? "khi" : inner} / 4u; k4 = k4 + 1u) {
      ${
    idx.map((u) =>
      aVec
        ? `let xa${u} = ${av}[ab${u} + k4];`
        : `let xa${u} = vec4<f32>(${
          lanes.map((q) => reader.at(a, [...aBatch, `i${u}`, `k4 * 4u + ${q}u`])).join(", ")
        });`
    ).join("\n      ")
  }
      ${
    lanes.map((q) => {
      const k = `k4 * 4u + ${q}u`;
      const ys = bVec
        ? `let yv${q} = ${bv}[bb + (${k}) * (${cols} / 4u)]; let yw${q} = ${bv}[bb + (${k}) * (${cols} / 4u) + 1u];`
        : `let yv${q} = vec4<f32>(${
          [0, 1, 2, 3].map((w) => reader.at(b, [...bBatch, k, `j${w}`])).join(", ")
        }); let yw${q} = vec4<f32>(${
          [4, 5, 6, 7].map((w) => reader.at(b, [...bBatch, k, `j${w}`])).join(", ")
        });`;
      return `${ys}
      ${
        idx.map((u) =>
          `acc${u} = acc${u} + xa${u}[${q}] * yv${q}; accb${u} = accb${u} + xa${u}[${q}] * yw${q};`
        ).join(" ")
      }`;
    }).join("\n      ")
  }
    }
    kfast = ${split ? "khi" : inner};
  }`;
}

/**
 * Top-k rank counting four elements per load through a vec4 view of a stored operand (rows
 * whose length divides by 4); leaves `jstart` where the scalar loop goes on.
 */
function topkVec4(node: Node, reader: Reader, rc: string[], len: string, k: number): string {
  const x = node.args[0];
  const n = reader.byId.get(x)!;
  if (reader.inline.has(x) || reader.placed.has(x) || (n.op.op === "scatter_add" && n.op.chunks)) {
    return "";
  }
  const xv = reader.buffer(vec4Key(x));
  return `if (${len} % 4u == 0u) {
    let base = (${reader.index(x, [...rc, "0u"])}) / 4u;
    let ninf = vec4<f32>(${f32(-Infinity)});
    let ev = vec4<u32>(e);
    for (var j4 = 0u; j4 < ${len} / 4u; j4 = j4 + 1u) {
      let raw = ${xv}[base + j4];
      let u = select(raw, ninf, raw != raw);
      let j = vec4<u32>(j4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
      let before = (u > vec4<f32>(v)) | ((u == vec4<f32>(v)) & (j < ev));
      rank = rank + dot(select(vec4<u32>(0u), vec4<u32>(1u), before), vec4<u32>(1u));
      if (rank >= ${k}u) { break; }
    }
    jstart = ${len};
  }`;
}

/** Binding key of a vec4 view of node `id`'s buffer (lowering maps it back to the buffer). */
export function vec4Key(id: number): number {
  return -id - VEC4_KEYS;
}

/** Offset of vec4-view binding keys (node id k has key −k − VEC4_KEYS). */
export const VEC4_KEYS = 1_000_000;

/** Names a fused score reads for one tile row. */
interface RowNames {
  qk: string;
  fi: string;
  i: string;
}

/** WGSL of a fused score, reading leaves at i, j or [0] of the current slice. */
function scoreWgsl(x: Score, args: Node[], slots: SymbolSlots, v: RowNames): string {
  const r = (y: Score) => scoreWgsl(y, args, slots, v);
  switch (x.kind) {
    case "qk":
      return v.qk;
    case "i":
      return v.fi;
    case "j":
      return "fj";
    case "const":
      return f32(x.value);
    case "size":
      return `f32(${dim(x.name, slots)})`;
    case "leaf": {
      const base = `s * ${size(args[x.arg].type.shape, slots)}`;
      const at = x.at === "scalar" ? "" : ` + ${x.at === "i" ? v.i : "j"}`;
      return `a${x.arg}[${base}${at}]`;
    }
    case "unary":
      return UNARY[x.fn](r(x.x));
    case "binary":
      return BINARY[x.fn](r(x.a), r(x.b));
    case "where":
      return `select(${r(x.b)}, ${r(x.a)}, ${r(x.c)} != 0.0)`;
    case "cast":
      return x.to === "bool"
        ? `select(0.0, 1.0, ${r(x.x)} != 0.0)`
        : x.to === "int"
        ? `floor(${r(x.x)})`
        : r(x.x);
  }
}

/**
 * The keys a tile of rows [ib, ie] can see, from a score of the form where(window, x, -inf):
 * `j <= i` (causal) bounds the top, `abs(i - j) <= w` both sides. Other keys score -inf and are
 * skipped without being computed. Returns WGSL i32 bounds, or nothing when no window is found.
 */
export function keyWindow(score: Score): { lo?: string; hi?: string } {
  if (score.kind !== "where" || score.b.kind !== "const" || score.b.value !== -Infinity) return {};
  const out: { lo?: string; hi?: string } = {};
  const isIdx = (x: Score, k: "i" | "j") => x.kind === k || (x.kind === "cast" && x.x.kind === k);
  const konst = (
    x: Score,
  ) => (x.kind === "const" && Number.isInteger(x.value) ? x.value : undefined);
  const visit = (c: Score): void => {
    if (c.kind === "binary" && c.fn === "and") {
      visit(c.a);
      visit(c.b);
      return;
    }
    if (c.kind !== "binary") return;
    const { fn, a, b } = c;
    if (
      (fn === "le" && isIdx(a, "j") && isIdx(b, "i")) ||
      (fn === "ge" && isIdx(a, "i") && isIdx(b, "j"))
    ) {
      out.hi = "i32(ie) + 1";
    } else if (
      (fn === "lt" && isIdx(a, "j") && isIdx(b, "i")) ||
      (fn === "gt" && isIdx(a, "i") && isIdx(b, "j"))
    ) {
      out.hi = "i32(ie)";
    } else if (fn === "le" && a.kind === "unary" && a.fn === "abs" && konst(b) !== undefined) {
      const d = a.x;
      if (
        d.kind === "binary" && d.fn === "sub" &&
        (isIdx(d.a, "i") && isIdx(d.b, "j") || isIdx(d.a, "j") && isIdx(d.b, "i"))
      ) {
        out.lo = `i32(ib) - ${konst(b)}`;
        out.hi = `i32(ie) + ${konst(b)! + 1}`;
      }
    }
  };
  visit(score.c);
  return out;
}

/**
 * The attention kernel of `node` with `r[idx] = rows` fused into its output: the rows listed in
 * `idx` get the replacement rows instead (Skeinformer's exact pilot rows), with no second pass.
 */
export function attentionWithRows(
  node: Node,
  byId: Map<number, Node>,
  slots: SymbolSlots,
  idx: number,
  rows: number,
  f16 = false,
): NodeKernel {
  return attentionKernel(node, node.args.map((a) => byId.get(a)!), slots, {
    idx: byId.get(idx)!,
    rows,
  }, f16);
}

function attentionKernel(
  node: Node,
  args: Node[],
  slots: SymbolSlots,
  replace?: { idx: Node; rows: number },
  f16 = false,
  split = false,
): NodeKernel {
  const score = (node.op as { score: Score }).score;
  const probs = node.op.op === "probs";
  const rowScore = (r: number) =>
    scoreWgsl(score, args, slots, { qk: `qk${r}`, fi: `fi${r}`, i: `i${r}` });
  const sample = rowScore(0);
  // The skeleton itself starts each row's max at -inf (f32_bits).
  const helpers = helpersFor(`${sample} f32_bits`).filter((h) => h !== HELPERS.philox).join("\n");
  const [a, b] = args;
  const e = probs ? 4 : args[2].type.shape[1];
  const window = keyWindow(score);
  const tile = attentionTile.rows;
  const render = (d: number, e: number) =>
    flashKernel({
      score: rowScore,
      rows: dim(a.type.shape[0], slots),
      cols: dim(b.type.shape[0], slots),
      keyLo: window.lo,
      keyHi: window.hi,
      d,
      e,
      tile,
      leafBindings: args.length - (probs ? 2 : 3),
      helpers,
      probs,
      f16,
      replace: replace &&
        { count: dim(replace.idx.type.shape[0], slots), binding: args.length + 2 },
      split: split
        ? { parts: LOOPS.parts, used: splitUsed(dim(b.type.shape[0], slots)) }
        : undefined,
    }, `%${node.id} ${node.op.op}${replace ? " with rows replaced" : ""}`);
  const shown = (x: Dim) => (typeof x === "number" ? x : 4);
  return {
    name: `${node.op.op}_${node.id}`,
    wgsl: render(shown(a.type.shape[1]), shown(e)),
    threads: [...(split ? [LOOPS.parts] : []), { ceilDiv: [a.type.shape[0], tile] }],
    reads: replace ? [...node.args, replace.idx.id, replace.rows] : node.args,
    specialize: (sz) => render(sz(a.type.shape[1]), probs ? 4 : sz(e)),
    // The key loop (and for probabilities the normalizing pass) is the only loop that counts.
    trips: (sz) =>
      (probs ? 2 : 1) * (split ? splitBlock(sz(b.type.shape[0])) : sz(b.type.shape[0])) +
      (replace ? sz(replace.idx.type.shape[0]) : 0),
  };
}
