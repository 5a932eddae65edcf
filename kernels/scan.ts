/**
 * cumsum: an inclusive prefix sum along one axis, as a blocked parallel scan in three kernels
 * writing one buffer. (1) one invocation per block of SCAN_BLOCK elements of a fiber scans it
 * sequentially; (2) one invocation per fiber turns each block's last element into the running
 * total, in order; (3) one invocation per element adds the previous block's (now final) last
 * element to every element but a block's last. Kernel 3 reads only last elements and writes only
 * the others, so its invocations never race. Sums are f32.
 */
import type { Node } from "../compiler/ir/types.ts";
import { SCAN_BLOCK } from "../compiler/limits.ts";
import { coords, dim, size, type ThreadDim } from "../compiler/wgsl/syntax.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { type KernelRequest, setup } from "./common.ts";
import { loop, readTrips } from "./trips.ts";

/** cumsum: block scans, the scan of block totals, then the add-back. */
export function scanKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { out, outSize, op, reader, slots } = setup(node, req);
  if (op.op !== "cumsum") throw new Error("internal: not cumsum");
  const axis = op.axis, B = SCAN_BLOCK;
  const outer = out.slice(0, axis), inner = out.slice(axis + 1);
  const L = dim(out[axis], slots), I = size(inner, slots);
  const blocks: ThreadDim = { ceilDiv: [out[axis], B] };
  const nb = `((${L} + ${B - 1}u) / ${B}u)`;
  // Element k of fiber (o, i) in this slice.
  const at = (k: string) => `out[s * ${outSize} + (o * ${L} + ${k}) * ${I} + i]`;
  // x at (o, k, i): the outer and inner coordinates as c0.. and e0...
  const xc = [...outer.map((_, j) => `c${j}`), "k", ...inner.map((_, j) => `e${j}`)];
  const xk = reader.at(node.args[0], xc);
  const local = kernel(
    node,
    reader,
    [...outer, blocks, ...inner],
    slots,
    `let i = r % ${I};
  let b = (r / ${I}) % ${nb};
  let o = (r / ${I}) / ${nb};
  ${coords(outer, slots, "o", "c")}
  ${coords(inner, slots, "i", "e")}
  var acc = 0.0;
  for (var k = b * ${B}u; k < min(b * ${B}u + ${B}u, ${L}); k = k + 1u) {
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
    let k = min(b * ${B}u + ${B - 1}u, ${L} - 1u);
    acc = acc + ${at("k")};
    ${at("k")} = acc;
  }`,
  );
  const addBack = kernel(
    node,
    [],
    out,
    slots,
    `let i = r % ${I};
  let k = (r / ${I}) % ${L};
  let o = r / ${I} / ${L};
  if (k < ${B}u || k % ${B}u == ${B - 1}u || k == ${L} - 1u) { return; }
  ${at("k")} = ${at("k")} + ${at(`(k / ${B}u) * ${B}u - 1u`)};`,
  );
  const { byId, inline, chunks } = req;
  const len = (sz: (d: Node["type"]["shape"][number]) => number) => sz(out[axis]);
  return [
    {
      ...local,
      name: `${local.name}_blocks`,
      trips: (sz) => loop(Math.min(B, len(sz)), readTrips(byId, inline, chunks, sz)(node.args[0])),
    },
    { ...totals, name: `${totals.name}_totals`, trips: (sz) => Math.ceil(len(sz) / B) },
    { ...addBack, name: `${addBack.name}_add`, trips: () => 0 },
  ];
}
