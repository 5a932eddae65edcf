/**
 * The flash-attention skeleton: one invocation per query row streams every key once, keeping the
 * online-softmax carrier (running max, running sum, accumulator row) in registers. The score is
 * spliced in as a WGSL expression of `qk`, `i`, `j`, sizes and leaf vectors. Loops over the head
 * sizes d and e are fully unrolled, which keeps each invocation far under lavapipe's 65,535-iteration
 * loop budget (only the key loop counts) and lets the compiler keep rows in registers; the kernel
 * is therefore specialized on d and e at run time, never on the sequence lengths.
 */

/** What the skeleton needs: the score expression and how to address each buffer. */
export interface FlashSpec {
  /** WGSL f32 expression of `qk` (a_i·b_j), `fi`, `fj` (i and j as f32) and leaf reads. */
  score: string;
  /** WGSL expressions for the number of query rows and keys per slice. */
  rows: string;
  cols: string;
  /** Head sizes (known when the kernel is specialized). */
  d: number;
  e: number;
  /** Extra bindings (leaf vectors), declared after a, b, v. */
  leafBindings: number;
  /** Helper functions the score needs. */
  helpers: string;
}

/** Render the fused attention kernel. Bindings: sizes, out, a, b, v, leaves... */
export function flashKernel(spec: FlashSpec, title: string): string {
  const { d, e } = spec;
  const leaves = Array.from(
    { length: spec.leafBindings },
    (_, k) => `@group(0) @binding(${k + 5}) var<storage, read> a${k + 3}: array<f32>;`,
  ).join("\n");
  const qLoad = Array.from({ length: d }, (_, c) => `qv[${c}] = a0[ab + ${c}u];`).join(" ");
  const dotTerms = Array.from({ length: d }, (_, c) => `qv[${c}] * a1[kb + ${c}u]`);
  const dot = [];
  for (let c = 0; c < d; c += 8) dot.push(`qk = qk + ${dotTerms.slice(c, c + 8).join(" + ")};`);
  const rescale = Array.from({ length: e }, (_, c) => `acc[${c}] = acc[${c}] * f;`).join(" ");
  const addV = Array.from({ length: e }, (_, c) => `acc[${c}] = acc[${c}] + p * a2[vb + ${c}u];`)
    .join(" ");
  const store = Array.from({ length: e }, (_, c) => `out[ob + ${c}u] = acc[${c}] * inv;`).join(" ");
  return `// ${title}: fused softmax(score) @ v, online softmax, d = ${d}, e = ${e}
@group(0) @binding(0) var<storage, read> sizes: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a0: array<f32>;
@group(0) @binding(3) var<storage, read> a1: array<f32>;
@group(0) @binding(4) var<storage, read> a2: array<f32>;
${leaves}
${spec.helpers}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let rows = ${spec.rows};
  let cols = ${spec.cols};
  let t = gid.x + gid.y * nwg.x * 64u;
  if (t >= rows * sizes[0]) { return; }
  let s = t / rows;
  let i = t % rows;
  let fi = f32(i);
  let ab = (s * rows + i) * ${d}u;
  var qv = array<f32, ${d}>();
  ${qLoad}
  var acc = array<f32, ${e}>();
  var mx = bitcast<f32>(0xff800000u);
  var l = 0.0;
  for (var j = 0u; j < cols; j = j + 1u) {
    let fj = f32(j);
    let kb = (s * cols + j) * ${d}u;
    var qk = 0.0;
    ${dot.join("\n    ")}
    let sc = ${spec.score};
    if (sc > mx) {
      let f = exp(mx - sc);
      l = l * f;
      ${rescale}
      mx = sc;
    }
    if (sc > bitcast<f32>(0xff800000u)) {
      let p = exp(sc - mx);
      l = l + p;
      let vb = (s * cols + j) * ${e}u;
      ${addV}
    }
  }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let ob = (s * rows + i) * ${e}u;
  ${store}
}
`;
}
