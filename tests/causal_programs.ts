/**
 * Contractions over prefix sums for the program generator (tests/programs.ts): the forms
 * passes/causal.ts fuses into `causal_contract` (causal linear attention's numerator and
 * denominator, the operands swapped, the contraction along w's axis, x read transposed or as a
 * vector, w read at a shifted row) and the near misses it must leave alone (the scan read one
 * row back, a scan along another axis, a scanned value that is no outer product, an x that
 * varies along the output axis, the scan read twice, an exclusive scan written as S - kv).
 * Rows: the key axis, or a static slice of 1, C - 1, C, C + 1 or 3C + 5 rows (C = CAUSAL_CHUNK).
 */
import fc from "fast-check";
import { CAUSAL_CHUNK } from "../compiler/limits.ts";

/** What is contracted with the prefix sum (see the module comment). */
export type ContractVariant =
  | "num"
  | "swap"
  | "wside"
  | "den"
  | "ratio"
  | "shiftw"
  | "xt"
  | "xvec"
  | "shift"
  | "axis1"
  | "notouter"
  | "xvaries"
  | "reused"
  | "exclusive";

/** `causal_contract` nodes each variant must become (near misses: none). */
export const CONTRACTS: Record<ContractVariant, number> = {
  num: 1,
  swap: 1,
  wside: 1,
  den: 1,
  ratio: 2,
  shiftw: 1,
  xt: 1,
  xvec: 1,
  shift: 0,
  axis1: 0,
  notouter: 0,
  xvaries: 0,
  reused: 0,
  exclusive: 0,
};

/** A contraction over a prefix sum, added to the program as a scalar like the other extras. */
export interface ContractExtra {
  k: "contract";
  variant: ContractVariant;
  /** The key axis ("M"), or a static slice of this many rows. */
  rows: number | "M";
}

const C = CAUSAL_CHUNK;
/** Static row counts: one, both sides of a chunk, several chunks and a partial one. */
export const CONTRACT_ROWS = [1, C - 1, C, C + 1, 3 * C + 5] as const;

export const contractArb: fc.Arbitrary<ContractExtra> = fc.record({
  k: fc.constant("contract" as const),
  variant: fc.constantFrom(...(Object.keys(CONTRACTS) as ContractVariant[])),
  rows: fc.constantFrom<number | "M">("M", ...CONTRACT_ROWS),
});

/** Statements defining `z{idx}` from k [M, d] and v [M, e]. */
export function contractLines(x: ContractExtra, idx: number): string[] {
  const L = x.rows;
  const [K, V] = L === "M" ? ["k", "v"] : [`k[0:${L}]`, `v[0:${L}]`];
  const ramp = L === "M" ? "" : ` + 0.01 * float(arange(${L})[jj])`;
  const [fk, vv, fx, S, N, z] = ["fk", "vv", "fx", "S", "N", "z"].map((s) => `${s}${idx}`);
  const kv = `${fk}[jj, aa] * ${vv}[jj, cc]`;
  const lines = [
    `${fk}[jj, aa] = elu(${K}[jj, aa]) + 1${ramp}`,
    `${vv}[jj, cc] = tanh(${V}[jj, cc])${ramp}`,
    `${fx} = sigmoid(${fk}) * 2`,
  ];
  const scan = (
    y: string,
    axis = 0,
  ) => [`kv${idx}[jj, aa, cc] = ${y}`, `${S} = cumsum(kv${idx}, axis=${axis})`];
  const num = (xa: string, s = `${S}[jj, aa, cc]`) => `${z}[jj, cc] = sum[aa](${xa} * ${s})`;
  switch (x.variant) {
    case "num":
      return [...lines, ...scan(kv), num(`${fx}[jj, aa]`)];
    case "swap":
      return [...lines, ...scan(kv), `${z}[jj, cc] = sum[aa](${S}[jj, aa, cc] * ${fk}[jj, aa])`];
    case "wside":
      return [
        ...lines,
        ...scan(kv),
        `${z}[jj, aa] = sum[cc]((${vv}[jj, cc] * 0.5 + 1) * ${S}[jj, aa, cc])`,
      ];
    case "den":
      return [
        ...lines,
        `${N} = cumsum(${fk}, axis=0)`,
        `${z}[jj] = sum[aa](${fx}[jj, aa] * ${N}[jj, aa])`,
      ];
    case "ratio":
      return [
        ...lines,
        ...scan(kv),
        `${N} = cumsum(${fk}, axis=0)`,
        `${z}[jj, cc] = sum[aa](${fk}[jj, aa] * ${S}[jj, aa, cc]) / sum[aa](${fk}[jj, aa] * ${N}[jj, aa])`,
      ];
    case "shiftw":
      return [...lines, ...scan(`${fk}[jj, aa] * ${vv}[jj + 1, cc]`), num(`${fx}[jj, aa]`)];
    case "xt":
      return [...lines, `xt${idx} = sigmoid(${fk}^T)`, ...scan(kv), num(`xt${idx}[aa, jj]`)];
    case "xvec":
      return [...lines, `xb${idx} = sum(${fk}, axis=0)`, ...scan(kv), num(`xb${idx}[aa]`)];
    case "shift":
      return [...lines, ...scan(kv), num(`${fx}[jj, aa]`, `${S}[jj - 1, aa, cc]`)];
    case "axis1":
      return [...lines, ...scan(kv, 1), num(`${fx}[jj, aa]`)];
    case "notouter":
      return [...lines, ...scan(`tanh(${kv})`), num(`${fx}[jj, aa]`)];
    case "xvaries":
      return [...lines, ...scan(kv), num(`${fx}[jj, aa] * ${vv}[jj, cc]`)];
    case "reused":
      return [
        ...lines,
        ...scan(kv),
        `${z}[jj, cc] = sum[aa](${fx}[jj, aa] * ${S}[jj, aa, cc]) + ${S}[jj, 0, cc]`,
      ];
    case "exclusive":
      return [
        ...lines,
        ...scan(kv),
        num(`${fx}[jj, aa]`, `(${S}[jj, aa, cc] - kv${idx}[jj, aa, cc])`),
      ];
  }
}
