/** The register-tiled matmul kernel (and its split form over slices of K). */
import type { Node } from "../compiler/ir/types.ts";
import { LOOPS, MATMUL_TILE } from "../compiler/limits.ts";
import { dim, size, splitUsed, type ThreadDim } from "../compiler/wgsl/syntax.ts";
import { Reader } from "../compiler/wgsl/reader.ts";
import { vec4Key } from "../compiler/wgsl/keys.ts";
import { kernel, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { type KernelRequest, setup } from "./common.ts";

/** matmul: a MATMUL_TILE × MATMUL_TILE block of outputs per invocation. */
export function matmulKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const { args, out, rank, outSize, cs, reader, rd, slots } = setup(node, req);
  // A TILE×TILE block of outputs per invocation: each loaded a and b element is used
  // TILE times from registers. Edge blocks clamp their reads and skip their stores.
  const [a, b] = [args[0].type.shape, args[1].type.shape];
  const inner = dim(a[a.length - 1], slots);
  const T = MATMUL_TILE;
  const rowsD = out[rank - 2], colsD = out[rank - 1];
  const batch = out.slice(0, -2);
  // Split (a run whose K passes the loop budget, see kernels/split.ts): invocation (kp, tile)
  // sums its slice [klo, khi) of K into partial block kp; a second kernel adds the blocks.
  const split = req.split === true;
  const tiles: ThreadDim[] = [
    ...(split ? [LOOPS.parts] : []),
    ...batch,
    { ceilDiv: [rowsD, T] },
    { ceilDiv: [colsD, T] },
  ];
  const bc = cs(batch);
  const rows = dim(rowsD, slots), cols = dim(colsD, slots);
  const aBatch = Reader.broadcast(a.slice(0, -2), bc),
    bBatch = Reader.broadcast(b.slice(0, -2), bc);
  const tileCoords = `var rem_t = r;
  let tc = rem_t % ((${cols} + ${T - 1}u) / ${T}u); rem_t = rem_t / ((${cols} + ${T - 1}u) / ${T}u);
  let tr = rem_t % ((${rows} + ${T - 1}u) / ${T}u); rem_t = rem_t / ((${rows} + ${T - 1}u) / ${T}u);
  ${
    batch.map((d, i) => `let c${i} = rem_t % ${dim(d, slots)}; rem_t = rem_t / ${dim(d, slots)};`)
      .reverse().join("\n  ")
  }${
    split
      ? `
  let kp = rem_t;
  let kused = ${splitUsed(inner)};
  if (kp >= kused) { return; }
  let kblk = ((${inner} + kused - 1u) / kused + 3u) / 4u * 4u;
  let klo = min(kp * kblk, ${inner});
  let khi = min(klo + kblk, ${inner});`
      : ""
  }`;
  const idx = Array.from({ length: T }, (_, u) => u);
  const fast = matmulVec4(node, reader, aBatch, bBatch, inner, cols, split);
  const body = `${tileCoords}
  ${
    idx.map((u) =>
      `let i${u} = min(tr * ${T}u + ${u}u, ${rows} - 1u); let j${u} = min(tc * ${T}u + ${u}u, ${cols} - 1u);`
    ).join("\n  ")
  }
  ${idx.map((u) => `var acc${u} = vec4<f32>(); var accb${u} = vec4<f32>();`).join(" ")}
  ${fast}
  for (var k = ${fast ? "kfast" : split ? "klo" : "0u"}; k < ${split ? "khi" : inner}; k = k + 1u) {
    ${idx.map((u) => `let x${u} = ${rd(0, [...aBatch, `i${u}`, "k"])};`).join("\n    ")}
    ${idx.map((u) => `let y${u} = ${rd(1, [...bBatch, "k", `j${u}`])};`).join("\n    ")}
    let yv = vec4<f32>(y0, y1, y2, y3);
    let yw = vec4<f32>(y4, y5, y6, y7);
    ${
    idx.map((u) => `acc${u} = acc${u} + x${u} * yv; accb${u} = accb${u} + x${u} * yw;`).join(
      "\n    ",
    )
  }
  }
  let ob = ${split ? `(s * ${LOOPS.parts}u + kp)` : "s"} * ${outSize} + ${
    batch.length
      ? `(${
        batch.map((_, i) => `c${i} * ${size(batch.slice(i + 1), slots)}`).join(" + ")
      }) * ${rows} * ${cols}`
      : "0u"
  };
  ${
    idx.map((u) =>
      `if (tr * ${T}u + ${u}u < ${rows}) { let ro = ob + (tr * ${T}u + ${u}u) * ${cols}; ${
        idx.map((w) =>
          `if (tc * ${T}u + ${w}u < ${cols}) { out[ro + tc * ${T}u + ${w}u] = ${
            w < 4 ? `acc${u}[${w}]` : `accb${u}[${w - 4}]`
          }; }`
        ).join(" ")
      } }`
    ).join("\n  ")
  }`;
  return [kernel(node, reader, tiles, slots, body)];
}

/**
 * The vec4 fast path of the tiled matmul: a stored A is read four k at a time and a stored B
 * eight columns at a time through vec4 views of their buffers (llvmpipe pays per load, not per
 * byte). It runs while k + 4 ≤ K when K divides by 4 (and for B, on interior column tiles with
 * N divisible by 4), leaving `kfast` for the scalar loop that follows. Empty when neither
 * operand is stored.
 */
function matmulVec4(
  node: Node,
  reader: Reader,
  aBatch: string[],
  bBatch: string[],
  inner: string,
  cols: string,
  split = false,
): string {
  const stored = (id: number) =>
    !reader.inline.has(id) && !reader.placed.has(id) && !reader.chunks.has(id);
  const [a, b] = node.args;
  const aVec = stored(a), bVec = stored(b);
  if (!aVec && !bVec) return "";
  const T = MATMUL_TILE;
  const idx = Array.from({ length: T }, (_, u) => u);
  const av = aVec ? reader.buffer(vec4Key(a)) : "";
  const bv = bVec ? reader.buffer(vec4Key(b)) : "";
  const cond = [
    `${inner} % 4u == 0u`,
    ...(bVec ? [`${cols} % 4u == 0u`, `tc * ${T}u + ${T}u <= ${cols}`] : []),
  ].join(" && ");
  const lanes = [0, 1, 2, 3];
  return `var kfast = ${split ? "klo" : "0u"};
  if (${cond}) {
    ${
    aVec
      ? idx.map((u) => `let ab${u} = (${reader.index(a, [...aBatch, `i${u}`, "0u"])}) / 4u;`).join(
        " ",
      )
      : ""
  }
    ${bVec ? `let bb = (${reader.index(b, [...bBatch, "0u", `tc * ${T}u`])}) / 4u;` : ""}
    for (var k4 = ${split ? "klo / 4u" : "0u"}; k4 < ${split ? "khi" : inner} / 4u; k4 = k4 + 1u) {
      ${
    idx.map((u) =>
      aVec
        ? `let xa${u} = ${av}[ab${u} + k4];`
        : `let xa${u} = vec4<f32>(${
          lanes.map((q) => reader.at(a, [...aBatch, `i${u}`, `k4 * 4u + ${q}u`])).join(", ")
        });`
    ).join("\n      ")
  }
      ${
    lanes.map((q) => {
      const k = `k4 * 4u + ${q}u`;
      const ys = bVec
        ? `let yv${q} = ${bv}[bb + (${k}) * (${cols} / 4u)]; let yw${q} = ${bv}[bb + (${k}) * (${cols} / 4u) + 1u];`
        : `let yv${q} = vec4<f32>(${
          [0, 1, 2, 3].map((w) => reader.at(b, [...bBatch, k, `j${w}`])).join(", ")
        }); let yw${q} = vec4<f32>(${
          [4, 5, 6, 7].map((w) => reader.at(b, [...bBatch, k, `j${w}`])).join(", ")
        });`;
      return `${ys}
      ${
        idx.map((u) =>
          `acc${u} = acc${u} + xa${u}[${q}] * yv${q}; accb${u} = accb${u} + xa${u}[${q}] * yw${q};`
        ).join(" ")
      }`;
    }).join("\n      ")
  }
    }
    kfast = ${split ? "khi" : inner};
  }`;
}
