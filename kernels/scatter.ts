/** scatter_add kernels: partial tables (no atomics) or a compare-exchange scatter. */
import type { Dim, Node } from "../compiler/ir/types.ts";
import { coords, dim, size, strides, usedChunks } from "../compiler/wgsl/syntax.ts";
import type { Reader } from "../compiler/wgsl/reader.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { type KernelRequest, setup } from "./common.ts";
import { PRIVATE_TABLE_BUCKETS } from "../compiler/limits.ts";

/** scatter_add into a table of `size` buckets per group. */
export function scatterKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { args, out, outSize, cs, op, reader, rd, slots } = setup(node, req);
  if (op.op !== "scatter_add") throw new Error("internal: not a scatter");
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
  const chunks = req.chunks.get(node.id);
  if (chunks) return [scatterPartials(node, reader, chunks)];
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

/**
 * scatter_add as partial tables, without atomics: invocation (chunk, group, channel) walks its
 * block of keys, adding each value into its own table of `size` buckets (a private array, or
 * its slice of the output past PRIVATE_TABLE_BUCKETS). All lanes of a SIMD group share the key
 * sequence (they differ in channel), so the table is indexed uniformly. A run uses one table per LOOPS.chunk keys (up to
 * `chunks`); readers sum the tables in use (`Reader.partialSum`). Sums have a fixed order, so
 * results are deterministic. Measured on lavapipe (YOSO, n = 4096, 8 heads): 297 ms against
 * 709 ms for the compare-exchange scatter; each extra table read costs the consumer ~40%.
 */
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
  const guarded = (u: number, write: string) => `if (quad * 4u + ${u}u < ${width}) { ${write} }`;
  const codeAt = `i32(floor(${reader.at(node.args[0], [...gc, "j"])}))`;
  // Small tables live in a private array. lavapipe lowers a private array's dynamic index to a
  // ladder of branches, so its compile time grows steeply with the table (see
  // PRIVATE_TABLE_BUCKETS); larger tables are summed in place in the output, in the same order.
  const privateTable = `var acc = array<vec4<f32>, ${op.size}>();
  for (var j = c0 * blk; j < hi; j = j + 1u) {
    let code = ${codeAt};
    if (code >= 0 && code < ${op.size}) {
      acc[code] = acc[code] + vec4<f32>(${lanes.map(value).join(", ")});
    }
  }
  for (var b = 0u; b < ${op.size}u; b = b + 1u) {
    ${
    lanes.map((u) => guarded(u, `out[base + b * ${ost[g]} + quad * 4u + ${u}u] = acc[b][${u}];`))
      .join("\n    ")
  }
  }`;
  const storedTable = `for (var b = 0u; b < ${op.size}u; b = b + 1u) {
    ${
    lanes.map((u) => guarded(u, `out[base + b * ${ost[g]} + quad * 4u + ${u}u] = 0.0;`))
      .join("\n    ")
  }
  }
  for (var j = c0 * blk; j < hi; j = j + 1u) {
    let code = ${codeAt};
    if (code >= 0 && code < ${op.size}) {
      let at = base + u32(code) * ${ost[g]} + quad * 4u;
      ${lanes.map((u) => `let v${u} = ${value(u)};`).join("\n      ")}
      ${lanes.map((u) => guarded(u, `out[at + ${u}u] = out[at + ${u}u] + v${u};`)).join("\n      ")}
    }
  }`;
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
  let base = s * ${chunks}u * ${one} + c0 * ${one}${lead.length ? ` + ${lead.join(" + ")}` : ""};
  ${op.size <= PRIVATE_TABLE_BUCKETS ? privateTable : storedTable}`;
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
