/**
 * `attention_mix` (differential attention): the flash skeleton of kernels/flash.ts with one
 * online-softmax carrier (running max, sums of weights and weighted values) per stream and tile row. Each key's
 * k rows (one per stream) and its v row are loaded once per invocation; at the end each row
 * writes Σ_t coef_t · acc_t / l_t. The carriers cannot share one accumulator: each stream's
 * weights are normalized by its own row sum, known only after the last key, so the sum is formed
 * at the end. Keys outside the hull of the streams' windows are not visited (inside it, a key
 * masked in one stream scores -inf there), and key blocks that every stream masks whole are
 * skipped (kernels/tiles.ts, on the max of the scores). No split form: a run whose key loop
 * passes lavapipe's budget is refused by the executor, never cut short.
 */
import type { AttentionStream, Node, Score } from "../compiler/ir/types.ts";
import { KEY_BLOCK, streamTile, WORKGROUP } from "../compiler/limits.ts";
import {
  dim,
  SIZES_BINDING,
  sliceOf,
  storage,
  type SymbolSlots,
  type ThreadDim,
} from "../compiler/wgsl/syntax.ts";
import { HELPERS, helpersFor } from "../compiler/wgsl/ops.ts";
import { gridLaunch, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { nodeKey } from "../compiler/wgsl/keys.ts";
import { keyWindow, scoreWgsl, tableFunctions } from "./attention.ts";
import {
  arrayLength,
  finiteValues,
  type FlashSpec,
  normalized,
  qkRows,
  softmaxBlock,
  softmaxStep,
  tiled,
  tiledTrips,
} from "./flash.ts";
import { masksKeys, tileSkip } from "./tiles.ts";
import type { KernelRequest } from "./common.ts";

/** The one kernel of an `attention_mix` node. */
export function mixKernels(node: Node, req: KernelRequest): NodeKernel[] {
  if (node.op.op !== "attention_mix") return [];
  const streams = node.op.streams;
  const slots = new Map(req.slots);
  const args = node.args.map((a) => req.byId.get(a)!);
  const [a, b, v] = args;
  const windows = streams.map((st) => keyWindow(st.score));
  const hull = (xs: (string | undefined)[], f: string) =>
    xs.every((x) => x !== undefined) ? xs.reduce((p, x) => `${f}(${p}, ${x})`) : undefined;
  const tile = streamTile.rows;
  // As flash.ts: a window every stream states whole, the same for all, leaves nothing to test;
  // otherwise key blocks where every stream masks every key are skipped.
  const one = windows.every((w) => w.whole && w.lo === windows[0].lo && w.hi === windows[0].hi) &&
    streams.every((st) => st.score.kind === "where" && !masksKeys(st.score.a));
  const tiles = one || !streams.every((st) => masksKeys(st.score))
    ? undefined
    : tileSkip(mixScore(streams), args, slots, tile);
  const render = (d: number, e: number) =>
    mixKernel({
      streams,
      args,
      slots,
      rows: dim(a.type.shape[0], slots),
      cols: dim(b.type.shape[0], slots),
      keyLo: hull(windows.map((w) => w.lo), "min"),
      keyHi: hull(windows.map((w) => w.hi), "max"),
      tiles,
      tile,
      d,
      e,
      f16: req.f16 === true,
    }, `%${node.id} attention_mix`);
  const shown = (x: number | string) => (typeof x === "number" ? x : 4);
  const threads: ThreadDim[] = [{ ceilDiv: [a.type.shape[0], tile] }];
  return [{
    name: `attention_mix_${node.id}`,
    wgsl: render(shown(a.type.shape[1]), shown(v.type.shape[1])),
    threads,
    launch: gridLaunch(threads),
    features: req.f16 ? ["shader-f16"] : undefined,
    reads: node.args.map(nodeKey),
    specialize: (sz) => render(sz(a.type.shape[1]), sz(v.type.shape[1])),
    trips: (sz) => sz(b.type.shape[0]) + tiledTrips(sz(b.type.shape[0]), tiles),
  }];
}

/** The flash skeleton's sizes, key window and tiles, with the streams and operands of the mix. */
interface MixSpec
  extends
    Pick<FlashSpec, "rows" | "cols" | "keyLo" | "keyHi" | "tiles" | "tile" | "d" | "e" | "f16"> {
  streams: AttentionStream[];
  args: Node[];
  slots: SymbolSlots;
}

/** Render the kernel. Bindings: sizes, out, then a0, a1, ... (every operand). */
function mixKernel(spec: MixSpec, title: string): string {
  // The slice of operand k that run slice s reads (grouped or reused inputs: wgsl/syntax.ts).
  const sl = (k: number) => sliceOf(spec.args[k].id, spec.slots);
  const { d, e, streams, args, tile: R } = spec;
  const T = streams.length;
  const dv = d % 4 === 0, ev = e % 4 === 0;
  const dw = dv ? d / 4 : d, ew = ev ? e / 4 : e;
  const dt = dv ? "vec4<f32>" : "f32", et = ev ? "vec4<f32>" : "f32";
  const { h, ht, half, dot } = qkRows(dv, spec.f16 === true);
  const each = <X>(xs: X[], f: (x: X) => string, sep = "\n  ") => xs.map(f).join(sep);
  const range = (n: number) => Array.from({ length: n }, (_, k) => k);
  const B = KEY_BLOCK;
  const rows = range(R), ss = range(T), keys = range(B);
  const cols = (n: number, f: (c: number) => string) => range(n).map(f).join(" ");
  const cores = new Set(streams.flatMap((st) => [st.q, st.k]));
  const types = args.map((_, k) => (cores.has(k) ? dt : k === 2 ? et : "f32"));
  // With d = 0 (or e = 0) nothing of q, k (or v) is read: a phony read keeps each binding.
  const phony =
    args.map((_, k) =>
      (dw === 0 && cores.has(k)) || (ew === 0 && k === 2) ? `  _ = a${k}[0];\n` : ""
    ).join("") + (ew === 0 ? "  _ = out[0];\n" : "");
  const names = (r: number) => ({ qk: `qk${r}`, fi: `fi${r}`, i: `i${r}` });
  const score = (t: number, r: number) => scoreWgsl(streams[t].score, args, spec.slots, names(r));
  const coef = (t: number, r: number) =>
    scoreWgsl(streams[t].coef, args, spec.slots, { ...names(r), qk: "0.0" });
  const tables = tableFunctions(mixScore(streams), args, spec.slots);
  const helpers = [
    ...helpersFor(`${ss.map((t) => `${score(t, 0)} ${coef(t, 0)}`).join(" ")} ${tables} f32_bits`)
      .filter((h) => h !== HELPERS.philox),
    tables,
  ].filter((h) => h).join("\n");
  // Row r's q·k of stream t against the key row `k`, then the score `into`.
  const scored = (t: number, r: number, k: string, into: string) =>
    `{ var qh = 0.0; ${cols(dw, (c) => `qh = qh + ${dot(`q${t}_${r}[${c}]`, `${k}[${c}]`)};`)} ` +
    `let qk${r} = qh; ${into} = ${score(t, r)}; }`;
  const keyRow = (t: number, name: string, j: string) =>
    `var ${name} = array<${ht}, ${arrayLength(dw)}>(); ${
      cols(dw, (c) =>
        `${name}[${c}] = ${
          half(`a${streams[t].k}[(${sl(streams[t].k)} * cols + ${j}) * ${dw}u + ${c}u]`)
        };`)
    }`;
  const valueRow = (name: string, j: string) =>
    `var ${name} = array<${et}, ${arrayLength(ew)}>(); ${
      cols(ew, (c) => `${name}[${c}] = a2[(${sl(2)} * cols + ${j}) * ${ew}u + ${c}u];`)
    }`;
  // With tile skipping the key loops run per key block [jt, jte) of a loop over blocks.
  const [kl, kh] = spec.tiles ? ["jt", "jte"] : ["jlo", "jhi"];
  const parts: MixParts = { each, ss, rows, keys, keyRow, valueRow, scored, ew, cols };
  const blocked = !dv || !ev || dw > 32 || ew > 32 ? "" : mixBlocked(parts, kl, kh);
  const lo = spec.keyLo ? `u32(clamp(${spec.keyLo}, 0, i32(cols)))` : "0u";
  const hi = spec.keyHi ? `u32(clamp(${spec.keyHi}, 0, i32(cols)))` : "cols";
  const nan = `${et}(bitcast<f32>(f32_bits.z))`;
  return `${
    h ? "enable f16;\n" : ""
  }// ${title}: fused Σ_t c_t softmax(score_t) @ v over ${T} streams; online softmax; ${R} query rows per invocation; d = ${d}, e = ${e}
${SIZES_BINDING}
${storage(1, "out", et, true)}
${each(args.map((_, k) => k), (k) => storage(k + 2, `a${k}`, types[k]), "\n")}
${helpers}
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
${phony}  let rows = ${spec.rows};
  let cols = ${spec.cols};
  let tiles = (rows + ${R - 1}u) / ${R}u;
  let t = gid.x + gid.y * nwg.x * ${WORKGROUP}u;
  if (t >= tiles * sizes[0]) { return; }
  let s = t / tiles;
  let ib = (t % tiles) * ${R}u;
  let ie = min(ib + ${R - 1}u, rows - 1u);
  ${each(rows, (r) => `let i${r} = min(ib + ${r}u, rows - 1u); let fi${r} = f32(i${r});`)}
  ${
    each(ss, (t) =>
      each(rows, (r) =>
        `var q${t}_${r} = array<${ht}, ${arrayLength(dw)}>(); ${
          cols(dw, (c) =>
            `q${t}_${r}[${c}] = ${
              half(`a${streams[t].q}[(${sl(streams[t].q)} * rows + i${r}) * ${dw}u + ${c}u]`)
            };`)
        }
  var acc${t}_${r} = array<${et}, ${arrayLength(ew)}>(); ` +
        `var mx${t}_${r} = bitcast<f32>(f32_bits.y); var l${t}_${r} = 0.0; var bad${t}_${r} = false;`))
  }
  let jlo = ${lo};
  let jhi = ${hi};
  ${tiled({ tiles: spec.tiles, tile: R }, "open")}var jstart = ${kl};
  ${blocked}
  for (var j = jstart; j < ${kh}; j = j + 1u) {
    let fj = f32(j);
    ${valueRow("vr", "j")}
    ${
    each(ss, (t) =>
      `{
      ${keyRow(t, "k", "j")}
      ${
        each(rows, (r) =>
          `{ var sc = 0.0; ${scored(t, r, "k", "sc")}
      ${softmaxStep(`${t}_${r}`, ew, cols)} }`, "\n      ")
      }
    }`, "\n    ")
  }
  }${tiled({ tiles: spec.tiles, tile: R }, "close")}
  ${
    each(rows, (r) =>
      `if (ib + ${r}u < rows) { let ob = (s * rows + i${r}) * ${ew}u; ${
        each(ss, (t) =>
          `let c${t} = ${coef(t, r)};`, " ")
      } ${
        cols(ew, (c) =>
          `out[ob + ${c}u] = ${
            ss.map((t) => `c${t} * select(${normalized(`${t}_${r}`, c)}, ${nan}, bad${t}_${r})`)
              .join(" + ")
          };`)
      } }`)
  }
}
`;
}

/** What the blocked key loop of the mix kernel is written with (`mixKernel`'s helpers). */
interface MixParts {
  each: <X>(xs: X[], f: (x: X) => string, sep?: string) => string;
  /** Streams, tile rows and keys of a block, as index lists. */
  ss: number[];
  rows: number[];
  keys: number[];
  keyRow: (t: number, name: string, j: string) => string;
  valueRow: (name: string, j: string) => string;
  scored: (t: number, r: number, k: string, into: string) => string;
  ew: number;
  cols: (n: number, f: (c: number) => string) => string;
}

/**
 * The key loop in blocks of KEY_BLOCK keys (as flash.ts, for vec4 head sizes up to 128): every
 * stream's scores of the block first, one stream's key rows live at a time; then the value rows,
 * and one rescale per stream and row. Runs over [kl, kh) and leaves `jstart` after its last key.
 */
function mixBlocked(m: MixParts, kl: string, kh: string): string {
  const { each, ss, rows, keys, keyRow, valueRow, scored, ew, cols } = m;
  const B = KEY_BLOCK;
  const sv = (t: number, r: number, x: number) => `s${t}_${r}_${x}`;
  return `for (var jb = ${kl}; jb + ${B}u <= ${kh}; jb = jb + ${B}u) {
    ${
    each(
      ss,
      (t) => each(rows, (r) => each(keys, (x) => `var ${sv(t, r, x)} = 0.0;`, " ")),
      "\n    ",
    )
  }
    ${
    each(
      ss,
      (t) =>
        `{
      ${each(keys, (x) => keyRow(t, `k${x}`, `jb + ${x}u`), "\n      ")}
      ${
          each(keys, (x) =>
            `{ let j = jb + ${x}u; let fj = f32(j); ${
              each(rows, (r) => scored(t, r, `k${x}`, sv(t, r, x)), "\n        ")
            } }`, "\n      ")
        }
    }`,
      "\n    ",
    )
  }
    ${each(keys, (x) => valueRow(`v${x}`, `jb + ${x}u`), "\n    ")}
    ${finiteValues(B, ew)}
    ${
    each(rows, (r) =>
      each(
        ss,
        (t) =>
          `{
      ${each(keys, (x) => `let s${x} = ${sv(t, r, x)};`, " ")}
      ${softmaxBlock(`${t}_${r}`, ew, keys, cols)}
    }`,
        "\n    ",
      ), "\n    ")
  }
    jstart = jb + ${B}u;
  }`;
}

/**
 * One score standing for all streams in the tile analysis (kernels/tiles.ts) and table reads:
 * the max of the streams' scores is -inf exactly where every stream's is, and NaN-flagged where
 * any may be NaN, so a block it proves empty holds no key any stream counts.
 */
export function mixScore(streams: AttentionStream[]): Score {
  return streams.map((st) => st.score).reduce((a, b) => ({ kind: "binary", fn: "max", a, b }));
}
