/**
 * Inputs at their own leading shape: which slices of each input a chunk of the run reads, and
 * the three numbers (keep, group, first) that map a run slice to them in the kernels (`sliceOf`
 * in compiler/wgsl/syntax.ts). Grouped-query k and v with 2 heads beside q with 8 are uploaded
 * once, not copied to the 4 query heads each serves; a mask of one slice is uploaded once.
 */

/** How an input's slices follow the run's: run slice S reads ⌊S / heads⌋ · keep + (S % heads) / group. */
export interface SliceMap {
  keep: number;
  group: number;
}

/**
 * The map of an input with leading dims `lead` in a run of leading dims `batch` (matched from the
 * left, a missing dim is 1), or undefined when it needs none or has none of this form (batch dims
 * partly reused: such an input is copied per slice, as before).
 */
export function sliceMap(lead: number[], batch: number[]): SliceMap | undefined {
  if (batch.length === 0) return undefined;
  const heads = batch.at(-1)!, own = lead[batch.length - 1] ?? 1;
  const outer = batch.slice(0, -1).map((_, i) => lead[i] ?? 1);
  const kept = outer.every((x, i) => x === batch[i]);
  if (kept && own === heads) return undefined;
  if (!kept && outer.some((x) => x !== 1)) return undefined;
  return { keep: kept ? own : 0, group: heads / own };
}

/**
 * The input slices [first, first + count) that run slices [from, from + slices) read, and the
 * sizes-table triple (keep, group, first); a chunk that would need more input slices than run
 * slices (a reused batch dim wrapping inside the chunk) is copied per slice instead.
 */
export function chunkSlices(
  map: SliceMap | undefined,
  heads: number,
  from: number,
  slices: number,
): { first: number; count: number; table: [number, number, number]; copied: boolean } {
  const copy = {
    first: from,
    count: slices,
    table: [heads, 1, from] as [number, number, number],
    copied: true,
  };
  if (!map) return copy;
  const at = (s: number) => Math.floor(s / heads) * map.keep + Math.floor((s % heads) / map.group);
  const last = from + slices - 1;
  const monotone = map.keep > 0 || Math.floor(from / heads) === Math.floor(last / heads) ||
    heads === map.group;
  const first = monotone ? at(from) : 0;
  const count = monotone ? at(last) - first + 1 : heads / map.group;
  if (count > slices) return copy;
  return { first, count, table: [map.keep, map.group, first], copied: false };
}
