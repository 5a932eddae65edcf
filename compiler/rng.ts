/**
 * Counter-based random numbers for Attune: Philox-4x32-10 (Salmon, Moraes, Dror & Shaw, SC'11,
 * "Parallel random numbers: as easy as 1, 2, 3"; the Random123 library).
 *
 * Everything here is specified bit-exactly in docs/rng.md so that a WGSL shader can reproduce the
 * same u32 bits. All block arithmetic is 32-bit integer arithmetic: the low half of a 32x32 product
 * comes from `Math.imul`, the high half from four exact 16x16 partial products (no floating-point
 * product ever loses a bit). The same 16-bit split is what a WGSL shader must use, since WGSL has
 * no `mulhi`.
 *
 * Keying convention of the language:
 * - key = (seed, stream): the program's seed and the id of the random call site;
 * - counter = (index, slice, 0, 0): the row-major element index in the drawn tensor and the
 *   (batch, head) slice number.
 *
 * @module
 */
import type { RandomKind } from "./ir/types.ts";

/** Four u32 words (a Philox counter or output block), each a non-negative JS number < 2^32. */
export type Philox4 = [number, number, number, number];

/** Philox-4x32 multipliers. */
const M0 = 0xD2511F53;
const M1 = 0xCD9E8D57;
/** Weyl-sequence key increments (golden ratio and sqrt(3) - 1, scaled by 2^32). */
const W0 = 0x9E3779B9;
const W1 = 0xBB67AE85;
/** Number of rounds. */
const ROUNDS = 10;
/** 2^-24, the spacing of the half-offset uniform grid. */
const TWO_POW_M24 = 1 / 16777216;

/**
 * High 32 bits of the exact 64-bit product of two u32 values, from four 16x16 partial products.
 * Every intermediate is an integer below 2^34, so nothing is rounded; the final sum is the true high
 * word (< 2^32), so it does not wrap either.
 */
function mulhi(a: number, b: number): number {
  const al = a & 0xFFFF;
  const ah = a >>> 16;
  const bl = b & 0xFFFF;
  const bh = b >>> 16;
  const ll = Math.imul(al, bl) >>> 0;
  const lh = Math.imul(al, bh) >>> 0;
  const hl = Math.imul(ah, bl) >>> 0;
  const hh = Math.imul(ah, bh) >>> 0;
  const cross = (ll >>> 16) + (lh & 0xFFFF) + (hl & 0xFFFF);
  return (hh + (lh >>> 16) + (hl >>> 16) + (cross >>> 16)) >>> 0;
}

/**
 * The Philox-4x32-10 block function writing its four output words into `out[0..3]`. Internal hot
 * path: no allocation. Inputs must already be u32 values.
 */
function philoxInto(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array,
): void {
  for (let r = 0; r < ROUNDS; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/** Scratch block reused by every draw (single-threaded, never exposed). */
const scratch = new Uint32Array(4);

/**
 * Philox-4x32-10 block function: encrypts `counter` under `key` with 10 rounds.
 * Inputs are reduced to u32 with `>>> 0`; the four output words are non-negative numbers < 2^32.
 * Reproduces the Random123 known-answer vectors (see docs/rng.md).
 */
export function philox4x32_10(counter: Philox4, key: [number, number]): Philox4 {
  philoxInto(
    counter[0] >>> 0,
    counter[1] >>> 0,
    counter[2] >>> 0,
    counter[3] >>> 0,
    key[0] >>> 0,
    key[1] >>> 0,
    scratch,
  );
  return [scratch[0], scratch[1], scratch[2], scratch[3]];
}

/**
 * Identifies one random draw site: the program's `seed`, the `stream` (id of the random call site
 * in the program) and the `slice` (the (batch, head) slice number). Each is used modulo 2^32.
 */
export interface RandomStream {
  seed: number;
  stream: number;
  slice: number;
}

/** Fill `scratch` with the block for element `index` of stream `s`. */
function blockAt(s: RandomStream, index: number): void {
  philoxInto(index >>> 0, s.slice >>> 0, 0, 0, s.seed >>> 0, s.stream >>> 0, scratch);
}

/** Uniform on the 2^23-point half-offset grid: ((w >>> 9) + 0.5) * 2^-23, exact in float32. */
function wordToUniform(w: number): number {
  return ((w >>> 9) * 2 + 1) * TWO_POW_M24;
}

/** Box–Muller (cosine branch) in the specified formula order. */
function boxMuller(w0: number, w1: number): number {
  const u1 = wordToUniform(w0);
  const u2 = wordToUniform(w1);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** Gumbel(0, 1) by inversion. */
function wordToGumbel(w: number): number {
  return -Math.log(-Math.log(wordToUniform(w)));
}

/** floor(u * hi) computed exactly as mulhi(((w >>> 9) << 9) | 0x100, hi); `hi` already checked. */
function wordToInt(w: number, hi: number): number {
  return mulhi(((w & 0xFFFFFE00) | 0x100) >>> 0, hi);
}

/** Throw a RangeError unless `hi` is an integer in [1, 2^32 - 1]. */
function checkHi(hi: number | undefined): number {
  if (hi === undefined || !Number.isInteger(hi) || hi <= 0 || hi > 0xFFFFFFFF) {
    throw new RangeError(`randint: hi must be an integer in [1, 2^32 - 1], got ${hi}`);
  }
  return hi;
}

/**
 * Uniform draw number `index` of stream `s`: u = ((x0 >>> 9) + 0.5) * 2^-23, where x0 is the first
 * output word of the block at counter (index, slice, 0, 0) under key (seed, stream). The result lies
 * in [2^-24, 1 - 2^-24], strictly inside (0, 1), and is exactly representable in float32.
 */
export function uniformAt(s: RandomStream, index: number): number {
  blockAt(s, index);
  return wordToUniform(scratch[0]);
}

/**
 * Standard normal draw number `index` of stream `s` by Box–Muller:
 * z = sqrt(-2 ln u1) * cos(2π u2), with u1 from x0 and u2 from x1 of the same block.
 */
export function randnAt(s: RandomStream, index: number): number {
  blockAt(s, index);
  return boxMuller(scratch[0], scratch[1]);
}

/** Standard Gumbel draw number `index` of stream `s`: g = -ln(-ln u), with u from x0. */
export function gumbelAt(s: RandomStream, index: number): number {
  blockAt(s, index);
  return wordToGumbel(scratch[0]);
}

/**
 * Integer draw number `index` of stream `s`, uniform on [0, hi - 1]: floor(u * hi) with u from x0,
 * evaluated exactly in integer arithmetic. `hi` may be a runtime value (e.g. a count of valid
 * tokens). Throws RangeError unless `hi` is an integer in [1, 2^32 - 1].
 */
export function randintAt(s: RandomStream, index: number, hi: number): number {
  const h = checkHi(hi);
  blockAt(s, index);
  return wordToInt(scratch[0], h);
}

/**
 * Fill `out[i]` with draw number i of the given kind (for randint, `hi` is required).
 * Equal element-for-element to the corresponding `*At` function; allocation-free per element.
 * Returns `out`.
 */
export function fillRandom(
  out: Float64Array,
  kind: RandomKind,
  s: RandomStream,
  hi?: number,
): Float64Array {
  const n = out.length;
  if (n > 0x100000000) {
    throw new RangeError(`fillRandom: at most 2^32 elements can be drawn, got ${n}`);
  }
  const slice = s.slice >>> 0;
  const k0 = s.seed >>> 0;
  const k1 = s.stream >>> 0;
  switch (kind) {
    case "uniform":
      for (let i = 0; i < n; i++) {
        philoxInto(i, slice, 0, 0, k0, k1, scratch);
        out[i] = wordToUniform(scratch[0]);
      }
      break;
    case "randn":
      for (let i = 0; i < n; i++) {
        philoxInto(i, slice, 0, 0, k0, k1, scratch);
        out[i] = boxMuller(scratch[0], scratch[1]);
      }
      break;
    case "gumbel":
      for (let i = 0; i < n; i++) {
        philoxInto(i, slice, 0, 0, k0, k1, scratch);
        out[i] = wordToGumbel(scratch[0]);
      }
      break;
    case "randint": {
      const h = checkHi(hi);
      for (let i = 0; i < n; i++) {
        philoxInto(i, slice, 0, 0, k0, k1, scratch);
        out[i] = wordToInt(scratch[0], h);
      }
      break;
    }
    default:
      throw new RangeError(`fillRandom: unknown kind ${String(kind)}`);
  }
  return out;
}
