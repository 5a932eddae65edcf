/**
 * cumsum: an inclusive prefix sum along one axis, as a blocked parallel scan in three kernels
 * writing one buffer, the output: (1) one invocation per block of SCAN_BLOCK elements of a fiber
 * sums its block into the block's last element; (2) one invocation per fiber turns those into
 * running totals, in order; (3) one invocation per block scans it again from the previous
 * block's total, writing every element but its last (already final). Kernel 3 reads only last
 * elements and writes only the others, so its invocations never race; the output is written
 * once. The first layout (block scans, then an add-back pass with one invocation per element)
 * took 1.5 s at n = 4096, d = e = 64 against about 0.5 s for this one (lavapipe). Sums are f32.
 */
import type { Dim, Node } from "../compiler/ir/types.ts";
import { SCAN_BLOCK } from "../compiler/limits.ts";
import { coords, dim, size } from "../compiler/wgsl/syntax.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { type KernelRequest, setup } from "./common.ts";
import { loop, readTrips } from "./trips.ts";

/** cumsum: block sums, the scan of block totals, then each block's scan from its offset. */
export function scanKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { out, outSize, op, reader, slots } = setup(node, req);
  if (op.op !== "cumsum") throw new Error("internal: not cumsum");
  const axis = op.axis, B = SCAN_BLOCK;
  const outer = out.slice(0, axis), inner = out.slice(axis + 1);
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
  const sums = kernel(
    node,
    reader,
    perBlock,
    slots,
    `${block}
  var acc = 0.0;
  for (var k = b * ${B}u; k <= kend; k = k + 1u) { acc = acc + ${xk}; }
  ${at("kend")} = acc;`,
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
  const scan = kernel(
    node,
    reader,
    perBlock,
    slots,
    `${block}
  var acc = 0.0;
  if (b > 0u) { acc = ${at(`b * ${B}u - 1u`)}; }
  for (var k = b * ${B}u; k < kend; k = k + 1u) {
    acc = acc + ${xk};
    ${at("k")} = acc;
  }`,
  );
  const { byId, inline, chunks } = req;
  const blockTrips = (sz: (d: Dim) => number) =>
    loop(Math.min(B, sz(out[axis])), readTrips(byId, inline, chunks, sz)(node.args[0]));
  return [
    { ...sums, name: `${sums.name}_sums`, trips: blockTrips },
    { ...totals, name: `${totals.name}_totals`, trips: (sz) => Math.ceil(sz(out[axis]) / B) },
    { ...scan, name: `${scan.name}_scan`, trips: blockTrips },
  ];
}
