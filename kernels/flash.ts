/**
 * The flash-attention skeleton. Each invocation owns `rows` query rows (a Q tile) and streams
 * every key once: the key row and value row are loaded once and reused by all of its query rows,
 * and each row keeps its online-softmax carrier (running max, running sum, accumulator) in
 * registers: sums, divided once at the end (WEIGHT_SCALE says why). The score is spliced in per
 * row. Loops over the head sizes d and e are unrolled (vec4 when they divide by 4), which keeps
 * each invocation far under lavapipe's 65,535-iteration loop budget (only the key loop counts);
 * the kernel is specialized on d and e, never on sequence lengths. Keys outside the rows' window
 * (causal, sliding window) are never visited.
 */
import { fullTiles, KEY_BLOCK, WORKGROUP } from "../compiler/limits.ts";
import { SIZES_BINDING, storage } from "../compiler/wgsl/syntax.ts";
import type { TileSkip } from "./tiles.ts";

/** What the skeleton needs. */
/** Length of a private array of `n` head elements: WGSL has no empty arrays (d = 0 or e = 0). */
export const arrayLength = (n: number) => Math.max(1, n);

export interface FlashSpec {
  /**
   * WGSL f32 score for tile row r, in terms of `qk{r}`, `fi{r}`, `i{r}`, `fj`, `j` and the
   * hoisted terms: the key's are named with suffix `key` ("" in the one-key loop, the key's
   * place in a block otherwise).
   */
  score: (r: number, key: string) => string;
  /**
   * Let statements of the score's hoisted terms: once per invocation, per query row (after
   * `i{r}`), per key (suffix `key`, at key index `j`, a WGSL u32 expression).
   */
  hoisted?: { once: string; row: (r: number) => string; key: (key: string, j: string) => string };
  /**
   * WGSL bool: whether the score's mask lets key `j` count for row r (the score is -inf wherever
   * it is false). With `tiles`, each block's keys before the first and after the last that some
   * row counts are not visited: exact, as the mask is the score's own.
   */
  mask?: (r: number) => string;
  /**
   * The score where `tiles` proves a block full (its top-level where's condition true for every
   * pair): the where's `a` branch, in the same names as `score`.
   */
  fullScore?: (r: number, key: string) => string;
  /** WGSL u32 expressions: query rows and keys per slice. */
  rows: string;
  cols: string;
  /** Optional key window for the tile's rows: WGSL i32 expressions of `ib` (first row) and `ie` (last). */
  keyLo?: string;
  keyHi?: string;
  d: number;
  e: number;
  /** Query rows per invocation. */
  tile: number;
  leafBindings: number;
  helpers: string;
  /**
   * Write the probabilities softmax_j(score) as an [rows, cols] matrix instead of multiplying
   * them into v (no v binding; leaves start at a2). The raw scores are stored during the key
   * loop and normalized by a second pass once each row's max and sum are known.
   */
  probs?: boolean;
  /**
   * Row replacement fused into the output (`r[J] = rows` on the attention result): `count`
   * indices in binding `aJ`, replacement rows in `aR`; a later index wins; indices outside the
   * rows are ignored.
   */
  replace?: { count: string; binding: number };
  /**
   * The score is each key's weight itself (`f(score) @ v` without softmax): no running max or
   * sum; the accumulator is the plain weighted sum Σ_j score · v_j, which NaN enters as is.
   */
  sum?: boolean;
  /** A row whose scores are all -inf (l = 0) is NaN, not zeros (a softmax written out). */
  emptyNaN?: boolean;
  /** q and k rows rounded to f16 on load (needs `shader-f16`), multiplied and summed in f32. */
  f16?: boolean;
  /**
   * Key range split across invocations (more keys than one invocation may loop over): `parts`
   * key blocks, of which the WGSL u32 `used` are in use; invocation (block, tile) visits its
   * block's keys and writes each row's carrier (max, sum, weighted mean: e + 2 floats) to
   * `out[((s * parts + block) * rows + i) * (e + 2)]`, which a second kernel combines.
   */
  split?: {
    parts: number;
    used: string;
    /**
     * For a row log-sum-exp: a row whose max is +inf stores its sum as 1, not the NaN of
     * inf − inf, so that a NaN sum means a NaN score (`splitLse` tells them apart).
     */
    lse?: boolean;
  };
  /**
   * Also write each row's log-sum-exp m + log l (its softmax's normalizer; `rowLse`), or with
   * `sum` its sum of weights Σ_j score, to `lse[s * rows + i]` at this binding.
   */
  lse?: { binding: number };
  /** Key blocks whose scores are all -inf are skipped (kernels/tiles.ts). */
  tiles?: TileSkip;
  /**
   * The slices of q, k and v that slice `s` reads (WGSL u32, `sliceOf`), where some is an input
   * read at its own leading shape (grouped-query k and v); by default all `s`.
   */
  slices?: string[];
}

/**
 * The q and k rows' WGSL type (`ht`), their load (`half`) and their dot product: with f16 the
 * rows are kept in half precision and multiplied and summed in f32 (an f16 sum overflows past
 * 65,504: NaN rows at |q·k| ~ 1e5; a product of two f16 values is exact in f32).
 */
export function qkRows(dv: boolean, h: boolean) {
  const dt = dv ? "vec4<f32>" : "f32";
  const ht = h ? (dv ? "vec4<f16>" : "f16") : dt;
  const half = (x: string) => (h ? `${ht}(${x})` : x);
  const wide = (x: string) => (h ? `${dt}(${x})` : x);
  const dot = dv
    ? (a: string, b: string) => `dot(${wide(a)}, ${wide(b)})`
    : (a: string, b: string) => `${wide(a)} * ${wide(b)}`;
  return { h, ht, half, dot };
}

/** Render the fused attention kernel. Bindings: sizes, out, a, b, v, leaves... */
export function flashKernel(spec: FlashSpec, title: string): string {
  const { d, e, tile: R } = spec;
  const dv = d % 4 === 0, ev = e % 4 === 0;
  const dw = dv ? d / 4 : d, ew = ev ? e / 4 : e;
  const [sq, sk, sv] = spec.slices ? ["sq", "sk", "sv"] : ["s", "s", "s"];
  // With d = 0 (or e = 0) no element of q and k (or v) is read or written; a phony read keeps
  // each binding in the pipeline's automatic layout, which drops unused ones.
  const phony = [
    ...(dw === 0 ? ["a0", "a1"] : []),
    ...(ew === 0 && !spec.probs ? ["a2", "out"] : []),
  ]
    .map((b) => `  _ = ${b}[0];\n`).join("");
  const dt = dv ? "vec4<f32>" : "f32", et = ev ? "vec4<f32>" : "f32";
  const { h, ht, half, dot } = qkRows(dv, spec.f16 === true);
  const rowsOf = (f: (r: number) => string) =>
    Array.from({ length: R }, (_, r) => f(r)).join("\n  ");
  const cols = (n: number, f: (c: number) => string) =>
    Array.from({ length: n }, (_, c) => f(c)).join(" ");
  const shape: Shape = { e, ev, dw, ew, et, dot, cols, rowsOf };
  const probs = spec.probs === true, sum = spec.sum === true;
  const first = probs ? 2 : 3;
  const leaves = Array.from(
    { length: spec.leafBindings },
    (_, k) => storage(k + first + 2, `a${k + first}`, "f32"),
  ).join("\n");
  // With tile skipping the key loops run per key block [jt, jte) of a loop over blocks.
  const [kl, kh] = spec.tiles ? (trims(spec) ? ["jk0", "jk1"] : ["jt", "jte"]) : ["jlo", "jhi"];
  // The blocked key loop with a given score (the masked one, or a full block's `fullScore`).
  const keyBlocks = (score: FlashSpec["score"]) =>
    blocked(spec, { dw, ew, dt: ht, et, dot, half, kl, kh, sk, sv, score });
  const lo = spec.keyLo ? `u32(clamp(${spec.keyLo}, 0, i32(cols)))` : "0u";
  const hi = spec.keyHi ? `u32(clamp(${spec.keyHi}, 0, i32(cols)))` : "cols";
  return `${h ? "enable f16;\n" : ""}// ${title}: fused ${
    sum
      ? "score @ v; weights summed, no softmax"
      : `softmax(score)${probs ? "" : " @ v"}; online softmax`
  }; ${R} query rows per invocation; d = ${d}, e = ${e}
${SIZES_BINDING}
${storage(1, "out", probs || spec.split ? "f32" : et, true)}
${storage(2, "a0", dt)}
${storage(3, "a1", dt)}
${probs ? "" : storage(4, "a2", et)}
${leaves}
${
    spec.replace
      ? `${storage(spec.replace.binding, "aJ", "f32")}
${storage(spec.replace.binding + 1, "aR", et)}`
      : ""
  }${spec.lse ? `\n${storage(spec.lse.binding, "lse", "f32", true)}` : ""}
${spec.helpers}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
${phony}  let rows = ${spec.rows};
  let cols = ${spec.cols};
  let tiles = (rows + ${R - 1}u) / ${R}u;
  ${
    spec.split
      ? `let t0 = gid.x + gid.y * nwg.x * ${WORKGROUP}u;
  if (t0 >= ${spec.split.parts}u * tiles * sizes[0]) { return; }
  let kp = t0 / (tiles * sizes[0]);
  let kused = ${spec.split.used};
  if (kp >= kused) { return; }
  let kblk = (cols + kused - 1u) / kused;
  let t = t0 % (tiles * sizes[0]);`
      : `let t = gid.x + gid.y * nwg.x * ${WORKGROUP}u;
  if (t >= tiles * sizes[0]) { return; }`
  }
  let s = t / tiles;${
    spec.slices
      ? `\n  let sq = ${spec.slices[0]}; let sk = ${spec.slices[1]}; let sv = ${spec.slices[2]};`
      : ""
  }
  let ib = (t % tiles) * ${R}u;
  let ie = min(ib + ${R - 1}u, rows - 1u);
  ${rowsOf((r) => `let i${r} = min(ib + ${r}u, rows - 1u); let fi${r} = f32(i${r});`)}
  ${spec.hoisted?.once ?? ""}
  ${rowsOf((r) => spec.hoisted?.row(r) ?? "")}
  ${
    rowsOf((r) =>
      `var q${r} = array<${ht}, ${arrayLength(dw)}>(); ${
        cols(dw, (c) => `q${r}[${c}] = ${half(`a0[(${sq} * rows + i${r}) * ${dw}u + ${c}u]`)};`)
      }`
    )
  }
  ${
    rowsOf((r) =>
      `var acc${r} = array<${et}, ${
        arrayLength(ew)
      }>(); var mx${r} = bitcast<f32>(f32_bits.y); var l${r} = 0.0; var bad${r} = false;`
    )
  }
  let jlo = ${spec.split ? `max(${lo}, min(kp * kblk, cols))` : lo};
  let jhi = ${spec.split ? `min(${hi}, min(kp * kblk + kblk, cols))` : hi};
  ${tiled(spec, "open")}var jstart = ${kl};
  ${
    // Blocking multiplies the unrolled code by KEY_BLOCK: only for vec4 head sizes up to 128,
    // where it pays (lavapipe, d = 64: 650 -> 490 ms at n = 2048) and compiles in about a second.
    probs || !dv || !ev || dw > 32 || ew > 32 ? "" : fullBlocks(spec)
      ? `if (tfull) {
    ${keyBlocks(spec.fullScore!)}
  } else {
    ${keyBlocks(spec.score)}
  }`
      : keyBlocks(spec.score)}
  for (var j = jstart; j < ${kh}; j = j + 1u) {
    let fj = f32(j);
    ${spec.hoisted?.key("", "j") ?? ""}
    let kb = (${sk} * cols + j) * ${dw}u;
    var k = array<${ht}, ${arrayLength(dw)}>();
    ${cols(dw, (c) => `k[${c}] = ${half(`a1[kb + ${c}u]`)};`)}
    ${
    probs ? "" : `let vb = (${sv} * cols + j) * ${ew}u;
    var vr = array<${et}, ${arrayLength(ew)}>();
    ${cols(ew, (c) => `vr[${c}] = a2[vb + ${c}u];`)}`
  }
    ${Array.from({ length: R }, (_, r) => keyStep(spec, r, shape)).join("\n    ")}
  }${tiled(spec, "close")}
  ${epilogue(spec, shape)}
}
`;
}

/** Head-size facts of a flash kernel, shared by its parts. */
interface Shape {
  e: number;
  ev: boolean;
  /** Elements (vec4 or f32) of a q or k row, and of a v row. */
  dw: number;
  ew: number;
  /** The v row's element type. */
  et: string;
  /** The dot product of a q row and a k row (f32 arithmetic, also for f16 rows). */
  dot: (a: string, b: string) => string;
  cols: (n: number, f: (c: number) => string) => string;
  rowsOf: (f: (r: number) => string) => string;
}

/** Row r's work for one key `j` of the one-key loop (k row `k`, v row `vr`), by mode. */
function keyStep(spec: FlashSpec, r: number, t: Shape): string {
  const { cols, dot } = t;
  const qk = `var qh${r} = 0.0;
      ${cols(t.dw, (c) => `qh${r} = qh${r} + ${dot(`q${r}[${c}]`, `k[${c}]`)};`)}
      let qk${r} = qh${r};`;
  // Summed weights: a weight of 0 adds nothing (as the interpreter's matmul skips it); NaN is
  // added, tested on its bits, as lavapipe folds `w != 0.0` to false for NaN (a sigmoid of a
  // row emptied by its mask, -inf - max, was 0 where the interpreter gives NaN: fuzz seed 44).
  return spec.sum
    ? `{
      ${qk}
      let w = ${spec.score(r, "")};${
      rowSums(spec)
        ? `
      l${r} = l${r} + w;`
        : ""
    }
      if (w != 0.0 || ${isNan("w")}) { ${
      cols(t.ew, (c) => `acc${r}[${c}] = acc${r}[${c}] + w * vr[${c}];`)
    } }
    }`
    : spec.probs
    ? `{
      ${qk}
      let sc = ${spec.score(r, "")};
      bad${r} = bad${r} | ${isNan("sc")};
      if (ib + ${r}u < rows) { out[(s * rows + i${r}) * cols + j] = sc; }
      if (sc > mx${r}) { l${r} = l${r} * exp(mx${r} - sc); mx${r} = sc; }
      if (sc > bitcast<f32>(f32_bits.y)) { l${r} = l${r} + exp(sc - mx${r}); }
    }`
    : `{
      ${qk}
      let sc = ${spec.score(r, "")};
      ${softmaxStep(r, t.ew, cols)}
    }`;
}

/**
 * What each row writes once its keys are done: its normalized probabilities (probs), its carrier
 * (split), its output with listed rows replaced (replace), or its output (and log-sum-exp).
 */
function epilogue(spec: FlashSpec, t: Shape): string {
  const { e, ev, ew, et, cols, rowsOf } = t;
  // The rows written NaN: a NaN score, and with emptyNaN a row no key counted.
  const nan = (r: number) => spec.emptyNaN ? `(bad${r} || l${r} == 0.0)` : `bad${r}`;
  // Softmax carriers hold sums (softmaxStep); summed weights are the output as they are.
  const mean = (r: number, c: string) => spec.sum ? `acc${r}[${c}]` : normalized(r, c);
  const sums = (r: number) => spec.sum ? `l${r}` : rowSum(`l${r}`);
  return spec.probs
    ? `for (var j = 0u; j < cols; j = j + 1u) {
    let inside = j >= jlo && j < jhi;
    ${
      rowsOf((r) =>
        `if (ib + ${r}u < rows) { let o = (s * rows + i${r}) * cols + j; out[o] = select(select(0.0, exp(out[o] - mx${r}) / l${r}, inside && l${r} > 0.0), bitcast<f32>(f32_bits.z), bad${r}); }`
      )
    }
  }`
    : spec.split
    ? rowsOf((r) =>
      `if (ib + ${r}u < rows) { let ob = ((s * ${spec.split!.parts}u + kp) * rows + i${r}) * ${
        e + 2
      }u; out[ob] = mx${r}; out[ob + 1u] = select(${
        spec.split!.lse ? `select(${sums(r)}, 1.0, bitcast<u32>(mx${r}) == 0x7f800000u)` : sums(r)
      }, bitcast<f32>(f32_bits.z), bad${r}); ${
        Array.from(
          { length: e },
          (_, c) => `out[ob + ${c + 2}u] = ${mean(r, ev ? `${c >> 2}][${c & 3}` : `${c}`)};`,
        ).join(" ")
      } }`
    )
    : spec.replace
    ? `${rowsOf((r) => `var pick${r} = -1;`)}
  for (var q = 0u; q < ${spec.replace.count}; q = q + 1u) {
    let jq = i32(floor(aJ[s * ${spec.replace.count} + q]));
    ${rowsOf((r) => `if (jq == i32(i${r})) { pick${r} = i32(q); }`)}
  }
  ${
      rowsOf((r) =>
        `if (ib + ${r}u < rows) { let ob = (s * rows + i${r}) * ${ew}u; let rb = (s * ${
          spec.replace!.count
        } + u32(max(pick${r}, 0))) * ${ew}u; ${
          cols(
            ew,
            (c) =>
              `out[ob + ${c}u] = select(select(${
                mean(r, `${c}`)
              }, ${et}(bitcast<f32>(f32_bits.z)), ${nan(r)}), aR[rb + ${c}u], pick${r} >= 0);`,
          )
        } }`
      )
    }`
    : rowsOf((r) =>
      `if (ib + ${r}u < rows) { let ob = (s * rows + i${r}) * ${ew}u; ${
        cols(
          ew,
          (c) =>
            `out[ob + ${c}u] = select(${mean(r, `${c}`)}, ${et}(bitcast<f32>(f32_bits.z)), ${
              nan(r)
            });`,
        )
      }${
        spec.lse
          ? ` lse[s * rows + i${r}] = ${spec.sum ? sums(r) : rowLse(`mx${r}`, sums(r), `bad${r}`)};`
          : ""
      } }`
    );
}

/**
 * The key loop in blocks of KEY_BLOCK keys: each row computes the block's scores first, then
 * rescales its carrier once per block (not per key) and adds the block's weighted values, which
 * gives the compiler independent work to interleave. Leaves `jstart` at the first key the
 * one-key loop still has to visit.
 */
function blocked(
  spec: FlashSpec,
  t: {
    dw: number;
    ew: number;
    dt: string;
    et: string;
    dot: (a: string, b: string) => string;
    half: (x: string) => string;
    kl: string;
    kh: string;
    sk: string;
    sv: string;
    score: (r: number, key: string) => string;
  },
): string {
  const B = KEY_BLOCK, R = spec.tile;
  const keys = Array.from({ length: B }, (_, b) => b);
  const cols = (n: number, f: (c: number) => string) =>
    Array.from({ length: n }, (_, c) => f(c)).join(" ");
  const rowBlock = (r: number) =>
    `{
      ${keys.map((b) => `var s${b} = 0.0;`).join(" ")}
      ${
      keys.map((b) =>
        `{
        let j = jb + ${b}u;
        let fj = f32(j);
        var qh${r} = 0.0;
        ${cols(t.dw, (c) => `qh${r} = qh${r} + ${t.dot(`q${r}[${c}]`, `k${b}[${c}]`)};`)}
        let qk${r} = qh${r};
        s${b} = ${t.score(r, `${b}`)};
      }`
      ).join("\n      ")
    }
      ${
      spec.sum
        ? (rowSums(spec) ? `l${r} = l${r} + ${pairSums(keys.map((b) => `s${b}`))};\n      ` : "") +
          cols(
            t.ew,
            (c) =>
              `acc${r}[${c}] = acc${r}[${c}] + ${
                keys.map((b) => `s${b} * v${b}[${c}]`).join(" + ")
              };`,
          )
        : softmaxBlock(r, t.ew, keys, cols)
    }
    }`;
  return `for (var jb = ${t.kl}; jb + ${B}u <= ${t.kh}; jb = jb + ${B}u) {
    ${
    keys.map((b) =>
      `var k${b} = array<${t.dt}, ${arrayLength(t.dw)}>(); ${
        cols(
          t.dw,
          (c) => `k${b}[${c}] = ${t.half(`a1[(${t.sk} * cols + jb + ${b}u) * ${t.dw}u + ${c}u]`)};`,
        )
      }`
    ).join("\n    ")
  }
    ${
    keys.map((b) =>
      `var v${b} = array<${t.et}, ${arrayLength(t.ew)}>(); ${
        cols(t.ew, (c) => `v${b}[${c}] = a2[(${t.sv} * cols + jb + ${b}u) * ${t.ew}u + ${c}u];`)
      }`
    ).join("\n    ")
  }
    ${finiteValues(B, t.ew)}
    ${keys.map((b) => spec.hoisted?.key(`${b}`, `(jb + ${b}u)`) ?? "").join("\n    ")}
    ${Array.from({ length: R }, (_, r) => rowBlock(r)).join("\n    ")}
    jstart = jb + ${B}u;
  }`;
}

/**
 * Loop trips tile skipping adds to a key loop over `keys` keys: up to two per key block, and two
 * more where blocks are trimmed to their counted keys (a trimmed key is one trip less of the key
 * loop and one more of a trim loop, whose exits add one each).
 */
export function tiledTrips(keys: number, tiles: TileSkip | undefined, trim = false): number {
  return tiles ? (trim ? 4 : 2) * Math.ceil(keys / tiles.keys) + 2 : 0;
}

/**
 * Whether the kernel tells full key blocks (`tfull`) from partial ones (`fullTiles`): where the
 * analysis proves a block's condition true, its blocked key loop runs `fullScore`, without the
 * mask's arithmetic (a second copy of that loop; the one-key loop keeps the masked score).
 */
export function fullBlocks(spec: Pick<FlashSpec, "tiles" | "fullScore" | "probs">): boolean {
  return fullTiles.scores && spec.tiles?.full !== undefined && spec.fullScore !== undefined &&
    spec.probs !== true;
}

/** Whether a summed-weights kernel keeps each row's sum of weights in `l` (`lse`, split's lse). */
function rowSums(spec: Pick<FlashSpec, "sum" | "lse" | "split">): boolean {
  return spec.sum === true && (spec.lse !== undefined || spec.split?.lse === true);
}

/** Whether the kernel trims each key block to the keys its mask counts (`FlashSpec.mask`). */
export function trims(spec: Pick<FlashSpec, "tiles" | "mask" | "probs">): boolean {
  return spec.tiles !== undefined && spec.mask !== undefined && spec.probs !== true;
}

/**
 * The loop over key blocks of `spec.tiles` around the key loops ("open" and "close"). An inner
 * loop moves each invocation on to its next block that is not empty (the probabilities kernel
 * still stores a skipped block's -inf scores, which its normalizing pass turns into 0 as
 * before): lavapipe runs invocations as SIMD lanes, a loop body at least once even with every
 * lane masked off, so skipping with `continue` still ran each empty block's key loops once, and
 * lanes in different documents took turns.
 */
export function tiled(
  spec: Pick<FlashSpec, "tiles" | "tile" | "probs" | "mask" | "hoisted" | "fullScore">,
  part: "open" | "close",
): string {
  const t = spec.tiles;
  if (!t) return "";
  if (part === "close") return "\n  jt = jte;\n  }";
  const R = spec.tile;
  const minusInf = "bitcast<f32>(f32_bits.y)";
  const store = spec.probs
    ? `for (var j = jt; j < jte; j = j + 1u) { ${
      Array.from(
        { length: R },
        (_, r) => `if (ib + ${r}u < rows) { out[(s * rows + i${r}) * cols + j] = ${minusInf}; }`,
      ).join(" ")
    } }`
    : "";
  const full = fullBlocks(spec);
  return `${t.rows}
  var jt = jlo;
  loop {
    var jte = jt;${full ? "\n    var tfull = false;" : ""}
    loop {
      if (jt >= jhi) { break; }
      jte = min(jt + ${t.keys}u, jhi);
      ${t.block.replaceAll("\n    ", "\n      ")}
      if (!(${t.empty})) { ${full ? `tfull = ${t.full}; ` : ""}break; }
      ${store}
      jt = jte;
    }
    if (jt >= jhi) { break; }
    ${trims(spec) ? trim(spec) : ""}`;
}

/**
 * Narrows a block [jt, jte) that is not empty to [jk0, jk1): from its first key that some row's
 * mask counts to its last. Data masks (document ids) leave blocks that straddle a boundary
 * mostly masked; lavapipe runs 8 invocations (64 rows) as SIMD lanes, so whole-block skipping
 * alone works at a grain of 64 rows × 64 keys.
 */
function trim(
  spec: Pick<FlashSpec, "tile" | "mask" | "hoisted" | "tiles" | "fullScore" | "probs">,
): string {
  const counted = Array.from({ length: spec.tile }, (_, r) => spec.mask!(r)).join(" || ");
  // A full block counts every key: nothing to trim.
  const stop = fullBlocks(spec) ? "tfull || " : "";
  const at = (j: string) => `let j = ${j}; let fj = f32(j); ${spec.hoisted?.key("", "j") ?? ""}`;
  return `var jk0 = jt;
    loop {
      if (${stop}jk0 >= jte) { break; }
      ${at("jk0")}
      if (${counted}) { break; }
      jk0 = jk0 + 1u;
    }
    var jk1 = jte;
    loop {
      if (${stop}jk1 <= jk0) { break; }
      ${at("jk1 - 1u")}
      if (${counted}) { break; }
      jk1 = jk1 - 1u;
    }
    `;
}

/**
 * WGSL: leave the blocked key loop, before anything of the block is added, when one of its value
 * rows `v0..v{keys-1}` (vec4 arrays of `ew`) holds ±inf or NaN: a key the mask removes has weight
 * 0, which adds nothing (docs/language.md), but the block's sums would multiply it into that
 * value (0 · inf = NaN); the one-key loop visits counted keys only. Any non-finite element makes
 * the sum non-finite (a finite overflow only takes the slower path).
 */
export function finiteValues(keys: number, ew: number): string {
  if (ew === 0) return "";
  const all = Array.from(
    { length: keys },
    (_, b) => Array.from({ length: ew }, (_, c) => `v${b}[${c}]`),
  )
    .flat();
  return `{ let vs = ${
    pairwise(all, (a, b) => `(${a} + ${b})`)
  }; if (any((bitcast<vec4<u32>>(vs) & vec4<u32>(0x7fffffffu)) >= vec4<u32>(0x7f800000u))) { break; } }`;
}

/**
 * A softmax carrier keeps sums, l = Σ p and acc = Σ p v with p = exp(s - mx) · 2^-24, rescaled
 * by exp(old - new) as the max moves (`rescale`), and the epilogue divides once (`normalized`). A running mean (acc =
 * acc·(l/l') + v·(p/l')) rounded its two factors every key, and where weights fall under an ulp of
 * the sum (scores falling along the keys, as a decay does) the rounding walked one way: rows 1.5e-4
 * off 1 at 4097 keys. Sums take the same steps in acc and l (v of ones gives 1). The scale is a
 * power of two, so exact, and bounds l by 1 up to 2^24 keys: acc stays within the values' range
 * and does not overflow where the answer does not (uniform attention over values of 1e37).
 */
const WEIGHT_SCALE = "5.9604644775390625e-8";

/** WGSL: a carrier's sum of exp(score - max), undoing WEIGHT_SCALE (log-sum-exp, split carriers). */
export function rowSum(l: string): string {
  return `(${l} * 16777216.0)`;
}

/**
 * WGSL: carrier `r` moved to the max of its max and `m`, its sums rescaled by exp(old - new) (1
 * where the max stays, also at -inf, where exp(-inf - -inf) would be NaN). Without a branch: with
 * the rescale of acc inside an `if`, lavapipe's cold build of the causal kernel (n = 2048,
 * d = 64, `MESA_SHADER_CACHE_DISABLE=true`) took 18.9 s, against 12.2 s for the running mean
 * before and 11.1 s branch-free.
 */
function rescale(
  r: number | string,
  m: string,
  ew: number,
  cols: (n: number, f: (c: number) => string) => string,
): string {
  return `{ let mn = max(mx${r}, ${m});
        let a = select(exp(mx${r} - mn), 1.0, mx${r} == mn);
        l${r} = l${r} * a;
        ${cols(ew, (c) => `acc${r}[${c}] = acc${r}[${c}] * a;`)}
        mx${r} = mn; }`;
}

/** One key's online-softmax step for carrier `r`, its score `sc` and value row `vr`. */
export function softmaxStep(
  r: number | string,
  ew: number,
  cols: (n: number, f: (c: number) => string) => string,
): string {
  return `bad${r} = bad${r} | ${isNan("sc")};
      ${rescale(r, "sc", ew, cols)}
      if (sc > bitcast<f32>(f32_bits.y)) {
        let p = exp(sc - mx${r}) * ${WEIGHT_SCALE};
        l${r} = l${r} + p;
        ${cols(ew, (c) => `acc${r}[${c}] = acc${r}[${c}] + p * vr[${c}];`)}
      }`;
}

/** The softmax part of a key block: the block's max, the rescale to it, the weighted values. */
export function softmaxBlock(
  r: number | string,
  ew: number,
  keys: number[],
  cols: (n: number, f: (c: number) => string) => string,
): string {
  return `bad${r} = bad${r} | ${keys.map((b) => isNan(`s${b}`)).join(" | ")};
      let mb = ${pairwise(keys.map((b) => `s${b}`), (x, y) => `max(${x}, ${y})`)};
      ${rescale(r, "mb", ew, cols)}
      if (mx${r} > bitcast<f32>(f32_bits.y)) {
        ${keys.map((b) => `let p${b} = exp(s${b} - mx${r}) * ${WEIGHT_SCALE};`).join(" ")}
        l${r} = l${r} + ${pairSums(keys.map((b) => `p${b}`))};
        ${
    // The same order as l's sum: with values of 1, acc and l are equal.
    cols(
      ew,
      (c) => `acc${r}[${c}] = acc${r}[${c}] + ${pairSums(keys.map((b) => `p${b} * v${b}[${c}]`))};`,
    )}
      }`;
}

/**
 * WGSL: carrier `r`'s weighted mean, element `c`: its sum over its row sum (0 for a row no key
 * counted, whose sums are 0).
 */
export function normalized(r: number | string, c: number | string): string {
  return `(acc${r}[${c}] * select(0.0, 1.0 / l${r}, l${r} > 0.0))`;
}

/** `xs` combined by `f` as a balanced tree (independent operations for the compiler). */
function pairwise(xs: string[], f: (a: string, b: string) => string): string {
  if (xs.length === 1) return xs[0];
  const h = Math.ceil(xs.length / 2);
  return f(pairwise(xs.slice(0, h), f), pairwise(xs.slice(h), f));
}

/** The sum of `xs` in pairs: `(p0 + p1) + (p2 + p3)`. */
function pairSums(xs: string[]): string {
  const pairs = [];
  for (let i = 0; i < xs.length; i += 2) {
    pairs.push(i + 1 < xs.length ? `(${xs[i]} + ${xs[i + 1]})` : xs[i]);
  }
  return pairs.join(" + ");
}

/**
 * WGSL: a row's log-sum-exp from its running max `mx` and sum `l` (of exp(score - mx)): mx +
 * log l; the max itself when it is ±inf (a row of -inf scores, or one holding +inf: inf − inf
 * made its sum NaN); NaN when `bad` (a NaN score), as the interpreter's logsumexp.
 */
export function rowLse(mx: string, l: string, bad: string): string {
  const inf = `(bitcast<u32>(${mx}) & 0x7fffffffu) == 0x7f800000u`;
  return `select(select(${mx} + log(${l}), ${mx}, ${inf}), bitcast<f32>(f32_bits.z), ${bad})`;
}

/**
 * WGSL: whether a score is NaN, tested on its bits (lavapipe folds \`x != x\` to false). A NaN
 * score makes its whole row NaN, as in the interpreter, instead of being skipped like -inf. Rows
 * combine these flags with the non-short-circuit `|`: `||` branches, in the hot key loop.
 */
export function isNan(x: string): string {
  return `((bitcast<u32>(${x}) & 0x7fffffffu) > 0x7f800000u)`;
}
