/** Elementwise kernels: one output element per invocation (four along the last axis over reductions). */
import type { Node } from "../compiler/ir/types.ts";
import { coords, dim, size, type ThreadDim } from "../compiler/wgsl/syntax.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { randomValue } from "../compiler/wgsl/values.ts";
import { type KernelRequest, setup } from "./common.ts";

/** A map, broadcast, layout change or gather: its expression at each output element. */
export function elementwiseKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { out, outSize, cs, op, reader, slots } = setup(node, req);
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

/** A random draw per element (Philox). */
export function randomKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { out, outSize, reader, slots } = setup(node, req);
  const { pre, value } = randomValue(node, reader, "r");
  return [kernel(node, reader, out, slots, `${pre}\n  out[s * ${outSize} + r] = ${value};`)];
}
