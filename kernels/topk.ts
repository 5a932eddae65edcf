/** The top-k kernel: each element's rank in its row by counting. */
import type { Node } from "../compiler/ir/types.ts";
import { coords, dim, f32, type ThreadDim } from "../compiler/wgsl/syntax.ts";
import type { Reader } from "../compiler/wgsl/reader.ts";
import { vec4Key } from "../compiler/wgsl/keys.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { type KernelRequest, setup } from "./common.ts";

/** topk: one invocation per (row, slot). */
export function topkKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { args, outSize, cs, op, reader, rd, slots } = setup(node, req);
  if (op.op !== "topk") throw new Error("internal: not topk");
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

/**
 * Top-k rank counting four elements per load through a vec4 view of a stored operand (rows
 * whose length divides by 4); leaves `jstart` where the scalar loop goes on.
 */
function topkVec4(node: Node, reader: Reader, rc: string[], len: string, k: number): string {
  const x = node.args[0];
  if (reader.inline.has(x) || reader.placed.has(x) || reader.chunks.has(x)) return "";
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
