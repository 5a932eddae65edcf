/** WGSL syntax for sizes and coordinates: the text every kernel builds on. */
import type { Dim, LeadCount, LeadFn } from "../ir/types.ts";
import { LOOPS } from "../limits.ts";

/** A factor of an invocation count: a size, or the larger of a size and a constant. */
export type ThreadDim = Dim | { max: [Dim, number] } | { ceilDiv: [Dim, number] };

/** Maps size symbols to their slot in the sizes buffer. */
export type SymbolSlots = Map<string, number>;

/**
 * One storage-buffer declaration of a kernel's preamble: every kernel declares its buffers with
 * this, binding 0 being the sizes table (`SIZES_BINDING`).
 */
export function storage(binding: number, name: string, type: string, write = false): string {
  return `@group(0) @binding(${binding}) var<storage, ${
    write ? "read_write" : "read"
  }> ${name}: array<${type}>;`;
}

/** The sizes table every kernel reads its sizes (and slices, seed) from, at binding 0. */
export const SIZES_BINDING = storage(0, "sizes", "u32");

/** A size as a WGSL u32: a literal, or its slot in the sizes table. */
export function dim(d: Dim, slots: SymbolSlots): string {
  if (typeof d === "number") return `${d}u`;
  const k = slots.get(d);
  if (k === undefined) throw new Error(`internal: size symbol ${d} has no slot`);
  return `sizes[${k}]`;
}

/**
 * `lead(of)` as a WGSL f32: the slice's place among the run's leading dims, from its index in
 * the whole run (`s` counts within a chunk, which starts at slice sizes[3]).
 */
export function lead(of: LeadFn, slots: SymbolSlots): string {
  const heads = dim("heads()" satisfies LeadCount, slots);
  return of === "heads"
    ? `f32(${heads})`
    : of === "batches"
    ? `f32(${dim("batches()" satisfies LeadCount, slots)})`
    : `f32((s + sizes[3]) ${of === "head" ? "%" : "/"} ${heads})`;
}

/** The sizes-table key of the first of an input's three slice slots (`sliceOf`). */
export const inputSliceKey = (input: string) => `slice(${input})`;
/** The key under which a node whose buffer is that input's finds its slots (`sliceOf`). */
export const nodeSliceKey = (id: number) => `slice(%${id})`;

/**
 * The slice of node `id`'s buffer that slice `s` reads, as a WGSL u32: `s`, or, for an input
 * uploaded at its own leading shape (grouped heads, a reused dim of 1; `LowerOptions.inputSlices`),
 * its own slice from three slots the run fills: keep, group and first, so that run slice S reads
 * ⌊S / heads⌋ · keep + (S % heads) / group − first (keep: the input's heads, or 0 where its batch
 * dims are 1; first: the chunk's first slice of it).
 */
export function sliceOf(id: number, slots: SymbolSlots): string {
  const k = slots.get(nodeSliceKey(id));
  if (k === undefined) return "s";
  const run = "(s + sizes[3])", heads = dim("heads()" satisfies LeadCount, slots);
  return `(${run} / ${heads} * sizes[${k}] + ${run} % ${heads} / sizes[${k + 1}] - sizes[${
    k + 2
  }])`;
}

/** The product of `shape` as a WGSL u32 expression. */
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

/** A float constant as WGSL (±inf and NaN through `f32_bits`, see HELPERS). */
export function f32(x: number): string {
  if (x === Infinity) return "bitcast<f32>(f32_bits.x)";
  if (x === -Infinity) return "bitcast<f32>(f32_bits.y)";
  if (Number.isNaN(x)) return "bitcast<f32>(f32_bits.z)";
  const s = String(Math.fround(x));
  return /[.e]/.test(s) ? `f32(${s})` : `f32(${s}.0)`;
}

/** WGSL: the chunks of LOOPS.chunk elements a split loop over `len` uses (at most LOOPS.parts). */
export function splitUsed(len: string): string {
  return usedChunks(len, LOOPS.parts);
}

/** WGSL: how many of `chunks` chunks of LOOPS.chunk elements `rows` elements use. */
export function usedChunks(rows: string, chunks: number): string {
  return `min(${chunks}u, (${rows} + ${LOOPS.chunk - 1}u) / ${LOOPS.chunk}u)`;
}
