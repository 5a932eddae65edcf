/**
 * set_rows: copy x, then write the replacement rows. These kernels address their operands'
 * buffers directly: a0, a1, ... in argument order.
 */
import type { Node } from "../compiler/ir/types.ts";
import { dim, size, sliceOf } from "../compiler/wgsl/syntax.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { nodeKey } from "../compiler/wgsl/keys.ts";
import { type KernelRequest, setup } from "./common.ts";

/** set_rows: a copy kernel, then one that writes each replacement row. */
export function setRowsKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { args, out, outSize, slots } = setup(node, req);
  // Copy x, then write each replacement row; a later row with the same index wins.
  const rowsShape = args[2].type.shape;
  const count = dim(rowsShape[0], slots);
  const width = size(out.slice(1), slots);
  const [s1, s2] = [sliceOf(args[1].id, slots), sliceOf(args[2].id, slots)];
  const copy = kernel(
    node,
    [nodeKey(node.args[0])],
    out,
    slots,
    `out[s * ${outSize} + r] = a0[${sliceOf(args[0].id, slots)} * ${outSize} + r];`,
  );
  const scatter = kernel(
    node,
    [nodeKey(node.args[1]), nodeKey(node.args[2])],
    rowsShape,
    slots,
    `let w = ${width};
  let q = r / w;
  let c = r % w;
  let dest = i32(floor(a0[${s1} * ${count} + q]));
  if (dest < 0 || u32(dest) >= ${dim(out[0], slots)}) { return; }
  for (var q2 = q + 1u; q2 < ${count}; q2 = q2 + 1u) {
    if (i32(floor(a0[${s1} * ${count} + q2])) == dest) { return; }
  }
  out[s * ${outSize} + u32(dest) * w + c] = a1[${s2} * ${count} * w + q * w + c];`,
  );
  return [copy, { ...scatter, name: `${scatter.name}_rows` }];
}
