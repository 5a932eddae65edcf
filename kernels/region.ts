/**
 * The region kernel: a region's values (see compiler/lower/regions.ts) computed by one workgroup
 * per slice, each stored value a phase in which the workgroup's invocations share the elements,
 * with barriers between phases; `repeat` loops run inside the kernel. Values used only inside the
 * region live in one arena buffer; values read outside get their own.
 */
import type { Dim, Node } from "../compiler/ir/types.ts";
import { REGION_WORKGROUP } from "../compiler/limits.ts";
import { coords, size, type SymbolSlots } from "../compiler/wgsl/syntax.ts";
import { HEAVY, helpersFor } from "../compiler/wgsl/ops.ts";
import { heavyValue, Reader } from "../compiler/wgsl/reader.ts";
import { randomValue, rowwiseBody } from "../compiler/wgsl/values.ts";
import type { NodeKernel } from "../compiler/wgsl/kernel.ts";
import { loopLength } from "./trips.ts";

/** A region: its top-level nodes in order (loops carry their bodies) and the values read outside. */
export interface Region {
  nodes: Node[];
  outputs: number[];
}

/** A region's kernel, the arena layout (per slice) and the buffers it binds, by node id. */
export interface RegionKernel extends NodeKernel {
  /** Binding keys the kernel writes (the arena and the outputs). */
  writes: number[];
  arena: Dim[][];
  trips: (size: (d: Dim) => number) => number;
}

/** Key under which the arena is bound (not a node id). */
export const ARENA = -1;

/** The kernel of a region. Binding keys in `reads`: node ids, and ARENA for the arena. */
export function regionKernel(
  region: Region,
  byId: Map<number, Node>,
  inline: Set<number>,
  slots: SymbolSlots,
): RegionKernel {
  const W = REGION_WORKGROUP;
  const reader = new Reader(byId, inline, slots);
  reader.hoist = false;
  const arena: Dim[][] = [];
  const outputs = new Set(region.outputs);
  const offsets: string[] = [];
  // Arena slots: offsets are sums of the sizes before them; the slice stride is the total.
  const placeArena = (id: number, shape: Dim[]) => {
    offsets.push(arena.length ? `(${arena.map((s) => size(s, slots)).join(" + ")})` : "0u");
    arena.push(shape);
    // The stride (all slots' sizes) is set once every slot is placed.
    reader.placed.set(id, { key: ARENA, offset: offsets.at(-1)!, stride: "" });
  };
  const place = (n: Node) => {
    if (n.op.op === "loop_result" || n.op.op === "loop") return;
    if (!outputs.has(n.id)) placeArena(n.id, n.type.shape);
  };
  for (const n of region.nodes) {
    place(n);
    if (n.op.op !== "loop") continue;
    const results = region.nodes.filter((r) => r.op.op === "loop_result" && r.args[0] === n.id);
    const loop = n.op;
    for (const b of loop.body) {
      if (b.op.op === "carry") {
        const index = b.op.index;
        const res = results.find((r) => r.op.op === "loop_result" && r.op.index === index);
        if (res && outputs.has(res.id)) {
          const one = size(b.type.shape, slots);
          reader.placed.set(b.id, { key: res.id, offset: "0u", stride: one });
        } else {
          placeArena(b.id, b.type.shape);
          if (res) reader.placed.set(res.id, reader.placed.get(b.id)!);
        }
      } else if (!inline.has(b.id)) place(b);
    }
    // Temporaries for the next carried values, so updates never read a half-written carry.
    loop.results.forEach((r, i) => placeArena(-100 - n.id * 16 - i, byId.get(r)!.type.shape));
  }
  const arenaStride = arena.length ? `(${arena.map((s) => size(s, slots)).join(" + ")})` : "1u";
  for (const p of reader.placed.values()) if (p.key === ARENA) p.stride = arenaStride;
  // A typical trip count and the WGSL are built together, phase by phase.
  type Trips = (sz: (d: Dim) => number) => number;
  const exprTrips = (id: number): Trips => {
    const n = byId.get(id)!;
    if (!inline.has(id)) return () => 0;
    const inner = n.args.map(exprTrips);
    const sum: Trips = (sz) => inner.reduce((t, f) => t + f(sz), 0);
    if (!HEAVY.has(n.op.op)) return sum;
    const len = loopLength(n, byId);
    return (sz) => len(sz) * (1 + sum(sz));
  };
  const trips: Trips[] = [];
  const phases: string[] = [];
  const lhs = (id: number, c: string[]) => reader.at(id, c);
  const barrier = "storageBarrier();\n  workgroupBarrier();";
  const per = (shape: Dim[], body: Trips): Trips => (sz) =>
    Math.ceil(shape.reduce<number>((p, d) => p * sz(d), 1) / W) * body(sz);
  const phase = (n: Node, scale: number): string => {
    const shape = n.type.shape;
    const c = shape.map((_, i) => `c${i}`);
    const argTrips = n.args.map(exprTrips);
    const args: Trips = (sz) => argTrips.reduce((t, f) => t + f(sz), 0);
    if (n.op.op === "softmax" || n.op.op === "normalize") {
      const axis = n.op.axis;
      const fiber = shape.filter((_, i) => i !== axis);
      const p = reader.placed.get(n.id);
      const base = p ? `s * ${arenaStride} + ${p.offset}` : `s * ${size(shape, slots)}`;
      const body = rowwiseBody(n, reader, reader.buffer(p?.key ?? n.id), base);
      trips.push((sz) => scale * per(fiber, (z) => 3 * z(shape[axis]) * (1 + args(z)))(sz));
      return `for (var e = lid; e < ${size(fiber, slots)}; e = e + ${W}u) {
    ${coords(fiber, slots, "e", "f")}
    ${body}
  }`;
    }
    if (HEAVY.has(n.op.op)) {
      const { pre, value } = heavyValue(n, c, reader);
      const len = loopLength(n, byId);
      trips.push((sz) => scale * per(shape, (z) => len(z) * (1 + args(z)))(sz));
      return `for (var e = lid; e < ${size(shape, slots)}; e = e + ${W}u) {
    ${coords(shape, slots, "e")}
    ${pre}
    ${lhs(n.id, c)} = ${value};
  }`;
    }
    if (n.op.op === "random") {
      const { pre, value } = randomValue(n, reader, "e");
      trips.push((sz) => scale * per(shape, () => 11)(sz));
      return `for (var e = lid; e < ${size(shape, slots)}; e = e + ${W}u) {
    ${coords(shape, slots, "e")}
    ${pre}
    ${lhs(n.id, c)} = ${value};
  }`;
    }
    trips.push((sz) => scale * per(shape, (z) => 1 + args(z))(sz));
    return `for (var e = lid; e < ${size(shape, slots)}; e = e + ${W}u) {
    ${coords(shape, slots, "e")}
    ${lhs(n.id, c)} = ${reader.expand(n, c)};
  }`;
  };
  const copy = (shape: Dim[], to: string, from: string, scale: number) => {
    trips.push((sz) => scale * per(shape, () => 1)(sz));
    return `for (var e = lid; e < ${size(shape, slots)}; e = e + ${W}u) {
    ${coords(shape, slots, "e")}
    ${to} = ${from};
  }`;
  };
  const at = (id: number, shape: Dim[]) => reader.at(id, shape.map((_, i) => `c${i}`));
  for (const n of region.nodes) {
    if (n.op.op === "loop_result") continue;
    if (n.op.op !== "loop") {
      phases.push(phase(n, 1), barrier);
      continue;
    }
    const loop = n.op;
    const carries = loop.body.filter((b) => b.op.op === "carry");
    for (const cn of carries) {
      const i = (cn.op as { index: number }).index;
      phases.push(copy(cn.type.shape, at(cn.id, cn.type.shape), at(n.args[i], cn.type.shape), 1));
    }
    phases.push(barrier, `for (var it = 0u; it < ${loop.count}u; it = it + 1u) {`);
    for (const b of loop.body) {
      if (b.op.op === "carry" || inline.has(b.id)) continue;
      phases.push(phase(b, loop.count), barrier);
    }
    // Next carried values: all into temporaries first, then into the carries.
    const tmp = (i: number) => -100 - n.id * 16 - i;
    for (const cn of carries) {
      const i = (cn.op as { index: number }).index;
      if (loop.results[i] === cn.id) continue;
      const t = reader.placed.get(tmp(i))!;
      const to = `${reader.buffer(ARENA)}[s * ${arenaStride} + ${t.offset} + e]`;
      phases.push(copy(cn.type.shape, to, at(loop.results[i], cn.type.shape), loop.count));
    }
    phases.push(barrier);
    for (const cn of carries) {
      const i = (cn.op as { index: number }).index;
      if (loop.results[i] === cn.id) continue;
      const t = reader.placed.get(tmp(i))!;
      const from = `${reader.buffer(ARENA)}[s * ${arenaStride} + ${t.offset} + e]`;
      phases.push(copy(cn.type.shape, at(cn.id, cn.type.shape), from, loop.count));
    }
    phases.push(barrier, "}");
  }
  reader.buffer(ARENA);
  const written = new Set([
    ARENA,
    ...region.outputs,
    ...[...reader.placed.values()].map((p) => p.key),
  ]);
  const binds = reader.bindings.map((key, i) =>
    `@group(0) @binding(${i + 1}) var<storage, ${
      written.has(key) ? "read_write" : "read"
    }> a${i}: array<f32>;`
  );
  const first = region.nodes[0];
  const fns = [...reader.fns.values()];
  const body = `${phases.join("\n  ")}
  // Keeps every binding in the pipeline's layout (an empty arena is still bound).
  if (lid == 0xffffffffu) { ${reader.bindings.map((_, i) => `_ = a${i}[0];`).join(" ")} }`;
  const wgsl = `// region: ${
    region.nodes.map((n) => `%${n.id} ${n.op.op}`).join(", ")
  } — one workgroup per slice
@group(0) @binding(0) var<storage, read> sizes: array<u32>;
${binds.join("\n")}
${helpersFor([body, ...fns].join("\n")).join("\n")}
${fns.join("\n")}
@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let s = wid.x + wid.y * nwg.x;
  if (s >= sizes[0]) { return; }
  ${body}
}
`;
  return {
    name: `region_${first.id}`,
    wgsl,
    threads: [],
    reads: reader.bindings,
    writes: [...written].filter((k) => reader.bindings.includes(k)),
    workgroupPerSlice: true,
    launch: { kind: "slice", workgroup: REGION_WORKGROUP },
    arena,
    trips: (sz) => trips.reduce((t, f) => t + f(sz), 0),
    part: { body, fns, atomicOut: false },
  };
}
