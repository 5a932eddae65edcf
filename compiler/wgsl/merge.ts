/** Horizontal fusion in WGSL: independent kernels rendered as one dispatch. */
import { HYBRID_ELEMENTS, REGION_WORKGROUP, SCATTER_STRIDE, WORKGROUP } from "../limits.ts";
import { size, SIZES_BINDING, storage, type SymbolSlots } from "./syntax.ts";
import { helpersFor } from "./ops.ts";
import { type BindingKey, decodeKey } from "./keys.ts";
import type { Launch, NodeKernel } from "./kernel.ts";

const isVec4 = (key: BindingKey | undefined) => key !== undefined && "vec4" in decodeKey(key);

/** One kernel of a merged dispatch, placed over buffers. */
export interface MergePart {
  name: string;
  /** `slice`: a region (whole workgroups, with barriers); `grid`: its one part's invocations. */
  launch: Launch;
  /** What its code reads as a0, a1, ... */
  reads: BindingKey[];
  part?: NodeKernel["part"];
  /** Buffers at its bindings 1, 2, ...: a grid kernel's `out`, a0, a1, ...; a region's a0, a1, ... */
  bindings: number[];
  /** Buffers it writes. */
  writes: number[];
}

/**
 * Horizontal fusion: independent kernels (none reads or writes what another writes) as one
 * dispatch. Their invocation ranges are laid end to end; each part runs as its own function
 * with its buffers renamed to the merged bindings (1, 2, ... in `bindings` order).
 * The renaming is the one place a regex runs over rendered WGSL: kernel bodies name their
 * bindings `out`, `a0`, `a1`, ... and their functions `v<id>`, which are unique within a body.
 */
export function mergeKernels(
  parts: MergePart[],
  slots: SymbolSlots,
): { wgsl: string; bindings: number[]; writes: number[]; launch: Launch } {
  const bindings: number[] = [];
  const vec4 = new Set<number>(); // binding indices that are vec4 views
  const writes = new Set(parts.flatMap((p) => p.writes));
  const atomic = new Set<number>();
  const bind = (b: number, asVec4 = false) => {
    let k = bindings.findIndex((x, i) => x === b && vec4.has(i) === asVec4);
    if (k < 0) {
      k = bindings.push(b) - 1;
      if (asVec4) vec4.add(k);
    }
    return `b${k}`;
  };
  const fns: string[] = [];
  const helpers = new Set<string>();
  const regionCalls: string[] = [];
  const calls: string[] = [];
  // Regions (whole workgroups, with barriers) take the first workgroups, one per slice each;
  // the grid parts follow, their invocations laid end to end.
  const regions = parts.filter((p) => p.launch.kind === "slice");
  const grid = parts.filter((p) => p.launch.kind === "grid");
  const threads = (p: MergePart) => p.launch.kind === "grid" ? p.launch.parts[0] : [];
  [...regions, ...grid].forEach((p, i) => {
    const part = p.part!;
    // A grid kernel binds `out` first, then a0, a1, ...; a region binds a0, a1, ... only.
    const first = p.launch.kind === "grid" ? 1 : 0;
    if (part.atomicOut) atomic.add(p.bindings[0]);
    const rename = (code: string) =>
      code.replace(
        /\b(out|a\d+)(?=\[)/g,
        (x) =>
          x === "out" ? bind(p.bindings[0]) : bind(
            p.bindings[first + Number(x.slice(1))],
            isVec4(p.reads[Number(x.slice(1))]),
          ),
      )
        .replace(/\bv(\d+)(x4)?\(/g, `v$1$2_${i}(`);
    for (const h of helpersFor([part.body, ...part.fns].join("\n"))) helpers.add(h);
    fns.push(...part.fns.map(rename));
    if (p.launch.kind === "slice") {
      fns.push(`// ${p.name}
fn part${i}(s: u32, lid: u32) {
  ${rename(part.body)}
}`);
      regionCalls.push(
        `if (w < ${i + 1}u * sizes[0]) { part${i}(w - ${i}u * sizes[0], lid); return; }`,
      );
      return;
    }
    const j = i - regions.length;
    fns.push(`// ${p.name}
fn part${i}(t: u32) {
  let per = ${size(threads(p), slots)};
  let slices = sizes[0];
  if (t >= per * slices) { return; }
  let s = t / per;
  let r = t % per;
  ${rename(part.body)}
}`);
    const exit = regions.length ? "continue" : "return";
    calls.push(
      `let end${j} = ${j ? `end${j - 1} + ` : ""}${size(threads(p), slots)} * sizes[0];
  if (t < end${j}) { part${i}(t${j ? ` - end${j - 1}` : ""}); ${exit}; }`,
    );
  });
  const binds = bindings.map((b, k) =>
    storage(
      k + 1,
      `b${k}`,
      atomic.has(b) ? "atomic<u32>" : vec4.has(k) ? "vec4<f32>" : "f32",
      writes.has(b) && !vec4.has(k),
    )
  );
  const W = regions.length ? REGION_WORKGROUP : WORKGROUP;
  const main = mergedMain(regions.length, regionCalls, W);
  const wgsl = `// merged: ${parts.map((p) => p.name).join(", ")}
${SIZES_BINDING}
${binds.join("\n")}
${[...helpers, ...fns].join("\n")}
@compute @workgroup_size(${W})
${main}
  ${calls.join("\n  ")}
${regions.length ? "  }\n" : ""}}
`;
  const launch: Launch = {
    kind: "grid",
    parts: grid.map(threads),
    workgroup: W,
    elements: regions.length ? HYBRID_ELEMENTS : 1,
    regions: regions.length,
  };
  return { wgsl, bindings, writes: [...writes], launch };
}

/**
 * The start of a merged dispatch's `main`: the workgroup's place `w` in a scattered order, the
 * calls of the regions (`regions` of them, in the first workgroups), then the grid invocation
 * `t` (HYBRID_ELEMENTS of them per invocation, in a loop left open, next to regions).
 */
function mergedMain(regions: number, regionCalls: string[], W: number): string {
  // Workgroups visit the parts in a scattered order (w·7919 mod the workgroup count, a
  // bijection when coprime): lavapipe hands each thread a contiguous run of workgroups, and a
  // heavy part laid end to end would land on one thread (measured: a matmul merged with a map
  // ran 345 ms against 201 ms apart).
  const scatter = `let g = nwg.x * nwg.y;
  let w0 = wid.x + wid.y * nwg.x;
  let w = select((w0 * ${SCATTER_STRIDE}u) % g, w0, g % ${SCATTER_STRIDE}u == 0u || g > ${
    Math.floor(0xffffffff / SCATTER_STRIDE)
  }u);`;
  return regions
    ? `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  ${scatter}
  ${regionCalls.join("\n  ")}
  // lavapipe runs every invocation of a shader with barriers as a coroutine: each grid
  // invocation here takes ${HYBRID_ELEMENTS} elements to keep their number down.
  let t0 = ((w - ${regions}u * sizes[0]) * ${W}u + lid) * ${HYBRID_ELEMENTS}u;
  for (var q = 0u; q < ${HYBRID_ELEMENTS}u; q = q + 1u) {
  let t = t0 + q;`
    : `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  ${scatter}
  let t = w * ${W}u + lid;`;
}
