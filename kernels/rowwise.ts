/** Row-wise kernels: reductions and contractions per output element, softmax / normalize per fiber. */
import type { Node } from "../compiler/ir/types.ts";
import { coords } from "../compiler/wgsl/syntax.ts";
import { heavyValue } from "../compiler/wgsl/reader.ts";
import { rowwiseBody } from "../compiler/wgsl/values.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { type KernelRequest, setup } from "./common.ts";

/** reduce, dot, bits, segment_mean: one output element per invocation, running its loop. */
export function reduceKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { out, outSize, cs, reader, slots } = setup(node, req);
  const { pre, value } = heavyValue(node, cs(out), reader);
  const body = `${coords(out, slots, "r")}
  ${pre}
  out[s * ${outSize} + r] = ${value};`;
  return [kernel(node, reader, out, slots, body)];
}

/** softmax, normalize: one invocation per fiber along the axis. */
export function rowwiseKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { out, outSize, op, reader, slots } = setup(node, req);
  if (op.op !== "softmax" && op.op !== "normalize") throw new Error("internal: not row-wise");
  // One invocation per fiber along `axis`: threads over the shape with that axis removed.
  const fiber = out.filter((_, i) => i !== op.axis);
  const body = rowwiseBody(node, reader, "out", `s * ${outSize}`);
  return [kernel(node, reader, fiber, slots, `${coords(fiber, slots, "r", "f")}\n  ${body}`)];
}
