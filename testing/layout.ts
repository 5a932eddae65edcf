/**
 * Layout helpers over leading (batch/head) dims, matched from the left as Attune's interpreter
 * matches them.
 */
import type { Tensor } from "../mod.ts";

/** The leading dims of `t` before its last `rank` axes. */
export function lead(t: Tensor, rank: number): number[] {
  return t.shape.slice(0, t.shape.length - rank);
}

/**
 * The leading dims all of `leads` broadcast to (matched from the left). As in the language, the
 * heads dim (the last of the result) may be grouped: a size that divides the largest serves
 * consecutive heads (grouped-query attention).
 */
export function broadcastLead(leads: number[][]): number[] {
  const out: number[] = [];
  for (const l of leads) l.forEach((x, a) => (out[a] = Math.max(out[a] ?? 1, x)));
  for (const l of leads) {
    l.forEach((x, a) => {
      const grouped = a === out.length - 1 && out[a] % x === 0;
      if (x !== 1 && x !== out[a] && !grouped) {
        throw new RangeError(`leading dims [${l}] do not match [${out}] (matched from the left)`);
      }
    });
  }
  return out;
}

/** Index (in units of the per-slice block) of slice `s` of `outLead` inside a tensor `tLead`. */
export function leadOffset(tLead: number[], outLead: number[], s: number): number {
  const idx = new Array<number>(outLead.length);
  let rem = s;
  for (let a = outLead.length - 1; a >= 0; a--) {
    idx[a] = rem % outLead[a];
    rem = Math.floor(rem / outLead[a]);
  }
  let off = 0;
  // A grouped heads dim of size t serves outLead[a] / t consecutive heads each.
  for (let a = 0; a < tLead.length; a++) {
    off = off * tLead[a] + Math.floor(idx[a] / (outLead[a] / tLead[a]));
  }
  return off;
}

/**
 * (b, h) of slice s, as the language's batch() and head(): rank 0 → (0, 0); otherwise h along
 * the last leading dim and b the flat index over the dims before it (rank 1 → (0, s)).
 */
export function batchHead(outLead: number[], s: number): [number, number] {
  if (outLead.length === 0) return [0, 0];
  const h = outLead[outLead.length - 1];
  return [Math.floor(s / h), s % h];
}

/** The number of elements of `shape`. */
export function count(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Throw unless `a` and `b` have the same shape. */
export function sameShape(a: Tensor, b: Tensor, what: string): void {
  if (a.shape.length !== b.shape.length || a.shape.some((x, i) => x !== b.shape[i])) {
    throw new RangeError(`${what}: shapes differ: [${a.shape}] vs [${b.shape}]`);
  }
}
