/**
 * cumsum: an inclusive prefix sum along one axis, as a blocked parallel scan in three kernels
 * writing one buffer, the output: (1) one invocation per block of SCAN_BLOCK elements of a fiber
 * scans its block; (2) one invocation per fiber turns the blocks' last elements into running
 * totals, in order; (3) one invocation per block adds the previous block's total to every
 * element but its last (already final). Kernel 3 reads only last elements and writes only the
 * others, so its invocations never race. The operand is read once (inlined operands can be
 * costly: causal linear attention's φ(k)ᵀv outer product costs about four integer divisions per
 * element). lavapipe, n = 4096, d = e = 64, the two cumsums, kernel timings: an add-back with
 * one invocation per element (several divisions each) 1.54 s; reading the operand twice (block
 * sums, then each block scanned from its offset, the output written once) 1.03 s; this layout
 * 0.96 s (shared machine, ±25%). Sums are f32. A fiber alone in its slice (a vector) is scanned
 * by one workgroup in one dispatch instead (`vectorScan`).
 */
import type { Dim, Node } from "../compiler/ir/types.ts";
import { SCAN_BLOCK, VECTOR_SCAN } from "../compiler/limits.ts";
import { coords, dim, size, SIZES_BINDING, storage } from "../compiler/wgsl/syntax.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { helpersFor } from "../compiler/wgsl/ops.ts";
import { type KernelRequest, setup } from "./common.ts";
import { loop, readTrips } from "./trips.ts";

/**
 * cumsum: block scans, the scan of block totals, then each block's add-back; with one fiber per
 * slice, one workgroup's scan (`vectorScan`).
 */
export function scanKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { out, outSize, op, reader, slots } = setup(node, req);
  if (op.op !== "cumsum") throw new Error("internal: not cumsum");
  const axis = op.axis, B = SCAN_BLOCK;
  const outer = out.slice(0, axis), inner = out.slice(axis + 1);
  if ([...outer, ...inner].every((d) => d === 1)) return [vectorScan(node, req, axis)];
  const L = dim(out[axis], slots), I = size(inner, slots);
  const nb = `((${L} + ${B - 1}u) / ${B}u)`;
  const perBlock = [...outer, { ceilDiv: [out[axis], B] as [Dim, number] }, ...inner];
  // Element k of fiber (o, i) in this slice; the last element of block b.
  const at = (k: string) => `out[s * ${outSize} + (o * ${L} + ${k}) * ${I} + i]`;
  const last = (b: string) => `min(${b} * ${B}u + ${B - 1}u, ${L} - 1u)`;
  // x at (o, k, i): the outer and inner coordinates as c0.. and e0...
  const xk = reader.at(node.args[0], [
    ...outer.map((_, j) => `c${j}`),
    "k",
    ...inner.map((_, j) => `e${j}`),
  ]);
  const block = `let i = r % ${I};
  let b = (r / ${I}) % ${nb};
  let o = (r / ${I}) / ${nb};
  ${coords(outer, slots, "o", "c")}
  ${coords(inner, slots, "i", "e")}
  let kend = ${last("b")};`;
  const local = kernel(
    node,
    reader,
    perBlock,
    slots,
    `${block}
  var acc = 0.0;
  for (var k = b * ${B}u; k <= kend; k = k + 1u) {
    acc = acc + ${xk};
    ${at("k")} = acc;
  }`,
  );
  const totals = kernel(
    node,
    [],
    [...outer, ...inner],
    slots,
    `let i = r % ${I};
  let o = r / ${I};
  var acc = 0.0;
  for (var b = 0u; b < ${nb}; b = b + 1u) {
    let k = ${last("b")};
    acc = acc + ${at("k")};
    ${at("k")} = acc;
  }`,
  );
  const addBack = kernel(
    node,
    [],
    perBlock,
    slots,
    `let i = r % ${I};
  let b = (r / ${I}) % ${nb};
  let o = (r / ${I}) / ${nb};
  if (b == 0u) { return; }
  let kend = ${last("b")};
  let offset = ${at(`b * ${B}u - 1u`)};
  for (var k = b * ${B}u; k < kend; k = k + 1u) { ${at("k")} = ${at("k")} + offset; }`,
  );
  const { byId, inline, chunks } = req;
  const blockTrips = (sz: (d: Dim) => number) =>
    loop(Math.min(B, sz(out[axis])), readTrips(byId, inline, chunks, sz)(node.args[0]));
  return [
    { ...local, name: `${local.name}_blocks`, trips: blockTrips },
    { ...totals, name: `${totals.name}_totals`, trips: (sz) => Math.ceil(sz(out[axis]) / B) },
    { ...addBack, name: `${addBack.name}_add`, trips: (sz) => Math.min(B, sz(out[axis])) },
  ];
}

/**
 * The scan of a slice's only fiber (every other axis has length 1) by one workgroup of W
 * invocations: invocation t scans elements [t·c, t·c + c), c = ⌈L / W⌉, into `out`; after a
 * barrier it adds the totals of the invocations before it, in order. One dispatch, the operand
 * read once, `out` written twice by the invocation that owns each element.
 */
function vectorScan(node: Node, req: KernelRequest, axis: number): NodeKernel {
  const { out, outSize, reader, slots } = setup(node, req);
  const W = VECTOR_SCAN.workgroup, L = dim(out[axis], slots);
  const x = reader.at(node.args[0], out.map((_, j) => (j === axis ? "k" : "0u")));
  const at = (k: string) => `out[s * ${outSize} + ${k}]`;
  let body = `let c = (${L} + ${W - 1}u) / ${W}u;
  let k0 = min(lid * c, ${L});
  let k1 = min(k0 + c, ${L});
  var acc = 0.0;
  for (var k = k0; k < k1; k = k + 1u) {
    acc = acc + ${x};
    ${at("k")} = acc;
  }
  totals[lid] = acc;
  workgroupBarrier();
  var offset = 0.0;
  for (var t = 0u; t < lid; t = t + 1u) { offset = offset + totals[t]; }
  for (var k = k0; k < k1; k = k + 1u) { ${at("k")} = ${at("k")} + offset; }`;
  if (reader.hoisted.size) body = `${reader.prologue()}\n  ${body}`;
  const fns = [...reader.fns.values()];
  const binds = reader.bindings.map((_, i) => storage(i + 2, `a${i}`, "f32"));
  const wgsl = `// %${node.id} cumsum${node.name ? ` (${node.name})` : ""}: one workgroup per slice
${SIZES_BINDING}
${storage(1, "out", "f32", true)}
${binds.join("\n")}
${[...helpersFor([body, ...fns].join("\n")), ...fns].join("\n")}
var<workgroup> totals: array<f32, ${W}>;
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let s = wid.x + wid.y * nwg.x;
  if (s >= sizes[0]) { return; }
  ${body}
}
`;
  const { byId, inline, chunks } = req;
  return {
    name: `cumsum_${node.id}`,
    wgsl,
    threads: [],
    reads: reader.bindings,
    launch: { kind: "slice", workgroup: W },
    // Its elements (with their operand's reads), then the totals before it, then the add-back.
    trips: (sz) => {
      const c = Math.ceil(sz(out[axis]) / W);
      return loop(c, readTrips(byId, inline, chunks, sz)(node.args[0])) + c + W;
    },
  };
}
