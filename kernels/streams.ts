/**
 * `attention_mix` (differential attention): the flash skeleton of kernels/flash.ts with one
 * online-softmax carrier (running max, sum, weighted mean) per stream and tile row. Each key's
 * k rows (one per stream) and its v row are loaded once per invocation; at the end each row
 * writes Σ_t coef_t · acc_t. Keys outside the hull of the streams' windows are not visited
 * (inside it, a key masked in one stream scores -inf there). No tile skipping and no split form:
 * a run whose key loop passes lavapipe's budget is refused by the executor, never cut short.
 */
import type { AttentionStream, Node, Score } from "../compiler/ir/types.ts";
import { attentionTile, KEY_BLOCK, WORKGROUP } from "../compiler/limits.ts";
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
import { arrayLength, type FlashSpec, isNan, softmaxBlock } from "./flash.ts";
import type { KernelRequest } from "./common.ts";

/** The one kernel of an `attention_mix` node. */
export function mixKernels(node: Node, req: KernelRequest): NodeKernel[] {
  if (node.op.op !== "attention_mix") return [];
  const streams = node.op.streams;
  const args = node.args.map((a) => req.byId.get(a)!);
  const [a, b, v] = args;
  const windows = streams.map((st) => keyWindow(st.score));
  const hull = (xs: (string | undefined)[], f: string) =>
    xs.every((x) => x !== undefined) ? xs.reduce((p, x) => `${f}(${p}, ${x})`) : undefined;
  const render = (d: number, e: number) =>
    mixKernel({
      streams,
      args,
      slots: req.slots,
      rows: dim(a.type.shape[0], req.slots),
      cols: dim(b.type.shape[0], req.slots),
      keyLo: hull(windows.map((w) => w.lo), "min"),
      keyHi: hull(windows.map((w) => w.hi), "max"),
      d,
      e,
    }, `%${node.id} attention_mix`);
  const shown = (x: number | string) => (typeof x === "number" ? x : 4);
  const threads: ThreadDim[] = [{ ceilDiv: [a.type.shape[0], attentionTile.rows] }];
  return [{
    name: `attention_mix_${node.id}`,
    wgsl: render(shown(a.type.shape[1]), shown(v.type.shape[1])),
    threads,
    launch: gridLaunch(threads),
    reads: node.args.map(nodeKey),
    specialize: (sz) => render(sz(a.type.shape[1]), sz(v.type.shape[1])),
    trips: (sz) => sz(b.type.shape[0]),
  }];
}

/** The flash skeleton's sizes and key window, with the streams and operands of the mix. */
interface MixSpec extends Pick<FlashSpec, "rows" | "cols" | "keyLo" | "keyHi" | "d" | "e"> {
  streams: AttentionStream[];
  args: Node[];
  slots: SymbolSlots;
}

/** Render the kernel. Bindings: sizes, out, then a0, a1, ... (every operand). */
function mixKernel(spec: MixSpec, title: string): string {
  // The slice of operand k that run slice s reads (grouped or reused inputs: wgsl/syntax.ts).
  const sl = (k: number) => sliceOf(spec.args[k].id, spec.slots);
  const { d, e, streams, args } = spec;
  const R = attentionTile.rows, T = streams.length;
  const dv = d % 4 === 0, ev = e % 4 === 0;
  const dw = dv ? d / 4 : d, ew = ev ? e / 4 : e;
  const dt = dv ? "vec4<f32>" : "f32", et = ev ? "vec4<f32>" : "f32";
  const dot = dv
    ? (x: string, y: string) => `dot(${x}, ${y})`
    : (x: string, y: string) => `${x} * ${y}`;
  const each = <T>(xs: T[], f: (x: T, k: number) => string, sep = "\n  ") => xs.map(f).join(sep);
  const range = (n: number) => Array.from({ length: n }, (_, k) => k);
  const rows = range(R), ss = range(T);
  const cols = (n: number, f: (c: number) => string) => range(n).map(f).join(" ");
  const cores = new Set(streams.flatMap((st) => [st.q, st.k]));
  const types = args.map((_, k) => (cores.has(k) ? dt : k === 2 ? et : "f32"));
  // With d = 0 (or e = 0) nothing of q, k (or v) is read: a phony read keeps each binding.
  const phony = args.map((
    _,
    k,
  ) => ((dw === 0 && cores.has(k)) || (ew === 0 && k === 2) ? `  _ = a${k}[0];\n` : ""))
    .join("") + (ew === 0 ? "  _ = out[0];\n" : "");
  const score = (st: AttentionStream, r: number) =>
    scoreWgsl(st.score, args, spec.slots, { qk: `qk${r}`, fi: `fi${r}`, i: `i${r}` });
  const coef = (st: AttentionStream, r: number) =>
    scoreWgsl(st.coef, args, spec.slots, { qk: "0.0", fi: `fi${r}`, i: `i${r}` });
  const all: Score = streams.map((st): Score => ({
    kind: "binary",
    fn: "add",
    a: st.score,
    b: st.coef,
  }))
    .reduce((x, y) => ({ kind: "binary", fn: "add", a: x, b: y }));
  const helpers = [
    ...helpersFor(`${streams.map((st) => `${score(st, 0)} ${coef(st, 0)}`).join(" ")} f32_bits`)
      .filter((h) => h !== HELPERS.philox),
    tableFunctions(all, args, spec.slots),
  ].filter((h) => h).join("\n");
  const qk = (t: number, r: number, k: string) =>
    `var qh${r} = 0.0; ${
      cols(dw, (c) => `qh${r} = qh${r} + ${dot(`q${t}_${r}[${c}]`, `${k}[${c}]`)};`)
    } let qk${r} = qh${r};`;
  // One key: each stream's score, then its carrier's online-softmax step.
  const step = (t: number, r: number) =>
    `{
      ${qk(t, r, `k${t}`)}
      let sc = ${score(streams[t], r)};
      bad${t}_${r} = bad${t}_${r} | ${isNan("sc")};
      if (sc > mx${t}_${r}) { l${t}_${r} = l${t}_${r} * exp(mx${t}_${r} - sc); mx${t}_${r} = sc; }
      if (sc > bitcast<f32>(f32_bits.y)) {
        let p = exp(sc - mx${t}_${r});
        let ln = l${t}_${r} + p;
        let inv = 1.0 / ln;
        let keep = l${t}_${r} * inv;
        let w = p * inv;
        l${t}_${r} = ln;
        ${cols(ew, (c) => `acc${t}_${r}[${c}] = acc${t}_${r}[${c}] * keep + w * vr[${c}];`)}
      }
    }`;
  const keyRow = (t: number, name: string, j: string) =>
    `var ${name} = array<${dt}, ${arrayLength(dw)}>(); ${
      cols(dw, (c) =>
        `${name}[${c}] = a${streams[t].k}[(${sl(streams[t].k)} * cols + ${j}) * ${dw}u + ${c}u];`)
    }`;
  // Blocks of KEY_BLOCK keys (as flash.ts, for vec4 head sizes up to 128): one rescale per block.
  const keys = range(KEY_BLOCK);
  const blockRow = (t: number, r: number) =>
    `{
      ${each(keys, (x) => `var s${x} = 0.0;`, " ")}
      ${
      each(keys, (x) =>
        `{ let j = jb + ${x}u; let fj = f32(j); ${qk(t, r, `k${t}_${x}`)} s${x} = ${
          score(streams[t], r)
        }; }`, "\n      ")
    }
      ${softmaxBlock(`${t}_${r}`, ew, keys, cols)}
    }`;
  const blocked = !dv || !ev || dw > 32 || ew > 32
    ? ""
    : `for (var jb = jlo; jb + ${KEY_BLOCK}u <= jhi; jb = jb + ${KEY_BLOCK}u) {
    ${each(ss, (t) => each(keys, (x) => keyRow(t, `k${t}_${x}`, `jb + ${x}u`), "\n    "), "\n    ")}
    ${
      each(keys, (x) =>
        `var v${x} = array<${et}, ${arrayLength(ew)}>(); ${
          cols(ew, (c) => `v${x}[${c}] = a2[(${sl(2)} * cols + jb + ${x}u) * ${ew}u + ${c}u];`)
        }`, "\n    ")
    }
    ${each(ss, (t) => each(rows, (r) => blockRow(t, r), "\n    "), "\n    ")}
    jstart = jb + ${KEY_BLOCK}u;
  }`;
  const lo = spec.keyLo ? `u32(clamp(${spec.keyLo}, 0, i32(cols)))` : "0u";
  const hi = spec.keyHi ? `u32(clamp(${spec.keyHi}, 0, i32(cols)))` : "cols";
  const nan = `${et}(bitcast<f32>(f32_bits.z))`;
  return `// ${title}: fused Σ_t c_t softmax(score_t) @ v over ${T} streams; online softmax; ${R} query rows per invocation; d = ${d}, e = ${e}
${SIZES_BINDING}
${storage(1, "out", et, true)}
${each(args, (_, k) => storage(k + 2, `a${k}`, types[k]), "\n")}
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
        `var q${t}_${r} = array<${dt}, ${arrayLength(dw)}>(); ${
          cols(dw, (c) =>
            `q${t}_${r}[${c}] = a${streams[t].q}[(${
              sl(streams[t].q)
            } * rows + i${r}) * ${dw}u + ${c}u];`)
        }
  var acc${t}_${r} = array<${et}, ${
          arrayLength(ew)
        }>(); var mx${t}_${r} = bitcast<f32>(f32_bits.y); var l${t}_${r} = 0.0; var bad${t}_${r} = false;`))
  }
  let jlo = ${lo};
  let jhi = ${hi};
  var jstart = jlo;
  ${blocked}
  for (var j = jstart; j < jhi; j = j + 1u) {
    let fj = f32(j);
    ${each(ss, (t) => keyRow(t, `k${t}`, "j"), "\n    ")}
    var vr = array<${et}, ${arrayLength(ew)}>(); ${
    cols(ew, (c) => `vr[${c}] = a2[(${sl(2)} * cols + j) * ${ew}u + ${c}u];`)
  }
    ${each(ss, (t) => each(rows, (r) => step(t, r), "\n    "), "\n    ")}
  }
  ${
    each(rows, (r) =>
      `if (ib + ${r}u < rows) { let ob = (s * rows + i${r}) * ${ew}u; ${
        each(ss, (t) =>
          `let c${t} = ${coef(streams[t], r)};`, " ")
      } ${
        cols(ew, (c) =>
          `out[ob + ${c}u] = ${
            ss.map((t) => `c${t} * select(acc${t}_${r}[${c}], ${nan}, bad${t}_${r})`).join(" + ")
          };`)
      } }`)
  }
}
`;
}
