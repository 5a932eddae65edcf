/**
 * causal_contract, out[i, c] = Σ_a x[i, a] Σ_{j ≤ i} u[j, a] w[j, c] (passes/causal.ts), in
 * chunks of CAUSAL_CHUNK rows, never storing the n·d·e prefix state: (1) each chunk's state
 * Σ_{j in chunk} u[j, a] w[j, c]; (2) an exclusive scan over the chunks, in place, so chunk g
 * holds the state of the rows before it; (3) each row's scores x_i · u_j against the rows j ≤ i
 * of its own chunk (0 past i); (4) per output element, x_i against its chunk's state plus those
 * scores times w_j. Steps 1–3 write a scratch buffer of two parts (states, then scores) that step
 * 4 reads. Steps 1, 3 and 4 are products of small matrices, each invocation a register tile of
 * MATMUL_TILE rows × 8 columns as in the matmul kernel. Without w (the rank-reduced form) w is 1
 * and e is 1.
 */
import type { Dim, Node } from "../compiler/ir/types.ts";
import { CAUSAL_CHUNK, MATMUL_TILE } from "../compiler/limits.ts";
import { dim, size, type ThreadDim } from "../compiler/wgsl/syntax.ts";
import { Reader } from "../compiler/wgsl/reader.ts";
import { type BindingKey, PARTIAL } from "../compiler/wgsl/keys.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import type { KernelRequest } from "./common.ts";

const T = MATMUL_TILE;
const rowsOf = Array.from({ length: T }, (_, u) => u);
const colsOf = Array.from({ length: 8 }, (_, w) => w);
/** The tile's accumulators: row u's columns 0–3 in acc{u}, 4–7 in accb{u}. */
const ACCS = rowsOf.map((u) => `var acc${u} = vec4<f32>(); var accb${u} = vec4<f32>();`).join(" ");
const lane = (u: number, w: number) => (w < 4 ? `acc${u}[${w}]` : `accb${u}[${w - 4}]`);

/**
 * A loop adding x(u) · y(w) to the tile for k in [from, to); `keep(u)`, when given, is the
 * condition under which row u takes the step (a product with a row past it could be NaN).
 */
function tileLoop(
  k: string,
  from: string,
  to: string,
  x: (u: number) => string,
  y: (w: number) => string,
  keep?: (u: number) => string,
): string {
  const add = (u: number, acc: string, v: string) =>
    keep
      ? `${acc}${u} = select(${acc}${u}, ${acc}${u} + x${u} * ${v}, ${keep(u)});`
      : `${acc}${u} = ${acc}${u} + x${u} * ${v};`;
  return `for (var ${k} = ${from}; ${k} < ${to}; ${k} = ${k} + 1u) {
    ${rowsOf.map((u) => `let x${u} = ${x(u)};`).join(" ")}
    let yv = vec4<f32>(${colsOf.slice(0, 4).map(y).join(", ")});
    let yw = vec4<f32>(${colsOf.slice(4).map(y).join(", ")});
    ${rowsOf.map((u) => `${add(u, "acc", "yv")} ${add(u, "accb", "yw")}`).join("\n    ")}
  }`;
}

/** Stores of the tile: row u at `row(u)` (u32), if `rowIn(u)`; column w at `col(w)`. */
function tileStores(
  rowIn: (u: number) => string,
  colIn: (w: number) => string,
  at: (u: number, w: number) => string,
  value: (u: number, w: number) => string = lane,
): string {
  return rowsOf.map((u) =>
    `if (${rowIn(u)}) { ${
      colsOf.map((w) => `if (${colIn(w)}) { out[${at(u, w)}] = ${value(u, w)}; }`).join(" ")
    } }`
  ).join("\n  ");
}

/** What the four kernels share: the operands, sizes as WGSL and the scratch layout. */
function layoutOf(node: Node, req: KernelRequest) {
  const { byId, inline, chunks, slots } = req;
  const [x, u, w] = node.args;
  const C = CAUSAL_CHUNK;
  // A tile's rows share a chunk, and a chunk is whole tiles of scores.
  if (C % T || C % 8) throw new Error(`internal: CAUSAL_CHUNK ${C} is not a multiple of ${T}, 8`);
  const [rowsD, dD] = byId.get(x)!.type.shape;
  const eD = w === undefined ? 1 : byId.get(w)!.type.shape[1];
  const [n, d, e] = [rowsD, dD, eD].map((v) => dim(v, slots));
  const chunked: ThreadDim = { ceilDiv: [rowsD, C] };
  const nc = size([chunked], slots);
  // Per slice: the states [nc, d, e], then the scores [n, C].
  const scores = `${nc} * ${d} * ${e}`;
  return {
    node,
    slots,
    x,
    u,
    C,
    rowsD,
    dD,
    eD,
    n,
    d,
    e,
    nc,
    chunked,
    scores,
    scratch: [[chunked, dD, eD], [rowsD, C]] as ThreadDim[][],
    stride: `(${scores} + ${n} * ${C}u)`,
    colTiles: size([{ ceilDiv: [eD, 8] }], slots),
    reader: (preset: BindingKey[] = []) => new Reader(byId, inline, chunks, slots, preset),
    wAt: (rd: Reader, row: string, col: string) => w === undefined ? "1.0" : rd.at(w, [row, col]),
    col: (q: number) => `min(tc * 8u + ${q}u, ${e} - 1u)`,
    colIn: (q: number) => `tc * 8u + ${q}u < ${e}`,
  };
}

type Layout = ReturnType<typeof layoutOf>;

/** Step 1: each chunk's state Σ_j u[j, a] w[j, c], a tile of (a, c) per invocation. */
function statesKernel(L: Layout): NodeKernel {
  const { node, slots, u, C, dD, eD, n, d, e, colTiles, stride } = L;
  const r1 = L.reader();
  const aTiles = size([{ ceilDiv: [dD, T] }], slots);
  return kernel(
    node,
    r1,
    [L.chunked, { ceilDiv: [dD, T] }, { ceilDiv: [eD, 8] }],
    slots,
    `let tc = r % ${colTiles};
  let ar = (r / ${colTiles}) % ${aTiles} * ${T}u;
  let g = r / (${colTiles} * ${aTiles});
  let lo = g * ${C}u;
  ${ACCS}
  ${
      tileLoop(
        "j",
        "lo",
        `min(lo + ${C}u, ${n})`,
        (q) => r1.at(u, ["j", `min(ar + ${q}u, ${d} - 1u)`]),
        (q) => L.wAt(r1, "j", L.col(q)),
      )
    }
  ${
      tileStores(
        (q) => `ar + ${q}u < ${d}`,
        L.colIn,
        (q, v) => `s * ${stride} + (g * ${d} + ar + ${q}u) * ${e} + tc * 8u + ${v}u`,
      )
    }`,
  );
}

/** Step 2: the exclusive scan of the chunk states, in place, one state element per invocation. */
function scanKernel(L: Layout): NodeKernel {
  const { d, e } = L;
  return kernel(
    L.node,
    [],
    [L.dD, L.eD],
    L.slots,
    `var acc = 0.0;
  for (var g = 0u; g < ${L.nc}; g = g + 1u) {
    let at = s * ${L.stride} + g * ${d} * ${e} + r;
    let z = out[at];
    out[at] = acc;
    acc = acc + z;
  }`,
  );
}

/** Step 3: scores x_i · u_j for the rows j ≤ i of i's chunk (0 past i), a tile of (i, j). */
function scoresKernel(L: Layout): NodeKernel {
  const { C, n, d } = L;
  const r3 = L.reader();
  return kernel(
    L.node,
    r3,
    [{ ceilDiv: [L.rowsD, T] }, C / 8],
    L.slots,
    `let tt = r % ${C / 8}u;
  let i0 = r / ${C / 8}u * ${T}u;
  let j0 = i0 / ${C}u * ${C}u + tt * 8u;
  ${ACCS}
  let kend = select(0u, ${d}, j0 < i0 + ${T}u);
  ${
      tileLoop(
        "k",
        "0u",
        "kend",
        (q) => r3.at(L.x, [`min(i0 + ${q}u, ${n} - 1u)`, "k"]),
        (q) => r3.at(L.u, [`min(j0 + ${q}u, ${n} - 1u)`, "k"]),
      )
    }
  ${
      tileStores(
        (q) => `i0 + ${q}u < ${n}`,
        () => "true",
        (q, v) => `s * ${L.stride} + ${L.scores} + (i0 + ${q}u) * ${C}u + tt * 8u + ${v}u`,
        (q, v) => `select(0.0, ${lane(q, v)}, j0 + ${v}u <= i0 + ${q}u)`,
      )
    }`,
  );
}

/** Step 4: each row against its chunk's state, plus its scores times w_j, a tile of (i, c). */
function rowsKernel(L: Layout): NodeKernel {
  const { node, C, n, d, e, stride } = L;
  const r4 = L.reader([PARTIAL]);
  return kernel(
    node,
    r4,
    [{ ceilDiv: [L.rowsD, T] }, { ceilDiv: [L.eD, 8] }],
    L.slots,
    `let tc = r % ${L.colTiles};
  let i0 = r / ${L.colTiles} * ${T}u;
  let lo = i0 / ${C}u * ${C}u;
  let pb = s * ${stride} + lo / ${C}u * ${d} * ${e};
  let sb = s * ${stride} + ${L.scores};
  ${ACCS}
  ${
      tileLoop(
        "k",
        "0u",
        d,
        (q) => r4.at(L.x, [`min(i0 + ${q}u, ${n} - 1u)`, "k"]),
        (q) => `a0[pb + k * ${e} + ${L.col(q)}]`,
      )
    }
  ${
      tileLoop(
        "j",
        "lo",
        `min(i0 + ${T}u, ${n})`,
        (q) => `a0[sb + min(i0 + ${q}u, ${n} - 1u) * ${C}u + j - lo]`,
        (q) => L.wAt(r4, "j", L.col(q)),
        (q) => `j <= i0 + ${q}u`,
      )
    }
  ${
      tileStores(
        (q) => `i0 + ${q}u < ${n}`,
        L.colIn,
        (q, v) => `s * ${size(node.type.shape, L.slots)} + (i0 + ${q}u) * ${e} + tc * 8u + ${v}u`,
      )
    }`,
  );
}

/** causal_contract: chunk states, their exclusive scan, in-chunk scores, then the rows. */
export function causalKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const L = layoutOf(node, req);
  const { C, rowsD, dD, scratch } = L;
  const span = (sz: (v: Dim) => number) => Math.min(C, sz(rowsD));
  const named = (k: NodeKernel, step: string) => ({ ...k, name: `${k.name}_${step}` });
  return [
    { ...named(statesKernel(L), "states"), scratch, trips: span },
    { ...named(scanKernel(L), "scan"), scratch, trips: (sz) => Math.ceil(sz(rowsD) / C) },
    { ...named(scoresKernel(L), "scores"), scratch, trips: (sz) => sz(dD) },
    { ...named(rowsKernel(L), "rows"), trips: (sz) => sz(dD) + span(sz) },
  ];
}
