/**
 * Regions: connected sets of small values (landmark matrices, the Nyström pinv iterates, any
 * small-matrix algebra a program does between its long-sequence steps) computed in ONE dispatch
 * by one workgroup per slice. Each stored value is a phase in which the workgroup's invocations
 * share the elements, with barriers between phases; `repeat` loops run inside the kernel. Values
 * used only inside the region live in one arena buffer; values read outside get their own.
 * Without regions, the 6-step Nyström pinv alone is 24 dispatches.
 */
import type { Dim, Graph, Node } from "../ir/types.ts";
import {
  coords,
  ELEMENTWISE,
  HEAVY,
  heavyValue,
  helpersFor,
  type NodeKernel,
  randomValue,
  Reader,
  rowwiseBody,
  size,
  type SymbolSlots,
} from "../wgsl.ts";
import { LONG_SEQUENCE, REGION_ELEMENTS, REGION_TRIPS, REGION_WORKGROUP } from "../limits.ts";

/** Ops a region computes as phases. */
const PHASE_OPS = new Set([...ELEMENTWISE, ...HEAVY, "softmax", "normalize", "random"]);

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

/** Node ids a top-level node reads from outside itself (a loop: its inits and its body's free values). */
export function outerDeps(n: Node): number[] {
  if (n.op.op !== "loop") return n.args;
  const inside = new Set<number>();
  const visit = (nodes: Node[]) =>
    nodes.forEach((b) => {
      inside.add(b.id);
      if (b.op.op === "loop") visit(b.op.body);
    });
  visit(n.op.body);
  const free = new Set<number>(n.args);
  const scan = (nodes: Node[]) =>
    nodes.forEach((b) => {
      b.args.forEach((a) => inside.has(a) || free.add(a));
      if (b.op.op === "loop") scan(b.op.body);
    });
  scan(n.op.body);
  return [...free];
}

/** Find the regions of a graph, given the nodes lowering inlines and typical sizes. */
export function findRegions(
  graph: Graph,
  byId: Map<number, Node>,
  inline: Set<number>,
  typical: (d: Dim) => number,
  slots: SymbolSlots,
  maxStorageBuffers: number,
): Region[] {
  const elems = (n: Node) => n.type.shape.reduce<number>((p, d) => p * typical(d), 1);
  // Values that grow with the sequence belong to kernels over the whole grid, not one workgroup.
  const small = (n: Node) =>
    elems(n) <= REGION_ELEMENTS && n.type.shape.every((d) => typical(d) < LONG_SEQUENCE);
  const fits = (n: Node): boolean => {
    if (n.op.op === "loop") {
      return n.op.body.every((b) =>
        b.op.op === "carry" ? small(b) : inline.has(b.id) || (PHASE_OPS.has(b.op.op) && small(b))
      );
    }
    if (n.op.op === "loop_result") return fits(byId.get(n.args[0])!);
    return PHASE_OPS.has(n.op.op) && small(n);
  };
  const top = graph.nodes.filter((n) => !inline.has(n.id) && n.op.op !== "input");
  const topIds = new Set(top.map((n) => n.id));
  // Stored top-level values each node depends on, looking through inlined expressions.
  const stored = (id: number, seen = new Set<number>()): number[] => {
    if (seen.has(id)) return [];
    seen.add(id);
    if (topIds.has(id)) return [id];
    const n = byId.get(id)!;
    return inline.has(id) ? n.args.flatMap((a) => stored(a, seen)) : [];
  };
  const deps = new Map(
    top.map((n) => [n.id, [...new Set(outerDeps(n).flatMap((a) => stored(a)))]]),
  );
  const consumers = new Map<number, number[]>();
  for (const [id, ds] of deps) {
    for (const d of ds) consumers.set(d, [...(consumers.get(d) ?? []), id]);
  }
  const cand = new Set(top.filter(fits).map((n) => n.id));
  // Connected components of unassigned candidates, from the earliest; what convexity drops
  // stays unassigned and seeds a later region (Skeinformer: before and after its top-k).
  const seen = new Set<number>();
  const regions: Region[] = [];
  for (const start of cand) {
    if (seen.has(start)) continue;
    let members = new Set<number>();
    const stack = [start];
    while (stack.length) {
      const id = stack.pop()!;
      if (members.has(id) || !cand.has(id) || seen.has(id)) continue;
      members.add(id);
      stack.push(...(deps.get(id) ?? []), ...(consumers.get(id) ?? []));
    }
    // Convexity: drop members reached from the region through a value outside it (that value
    // could only run after the region, and the member before it), and loops without their results.
    for (;;) {
      const down = new Set<number>();
      const walk = [...members].flatMap((m) => consumers.get(m) ?? []).filter((c) =>
        !members.has(c)
      );
      while (walk.length) {
        const id = walk.pop()!;
        if (down.has(id)) continue;
        down.add(id);
        walk.push(...(consumers.get(id) ?? []));
      }
      const next = new Set([...members].filter((m) => !down.has(m)));
      for (const id of next) {
        const n = byId.get(id)!;
        if (n.op.op === "loop_result" && !next.has(n.args[0])) next.delete(id);
        if (n.op.op === "loop" && (consumers.get(id) ?? []).some((c) => !next.has(c))) {
          next.delete(id);
        }
      }
      if (next.size === members.size) break;
      members = next;
    }
    for (const m of members) seen.add(m);
    // Split into consecutive runs (in topological order, so each is convex) that fit the
    // binding and loop limits; keep the runs in which some member needs another.
    const nodes = top.filter((n) => members.has(n.id));
    const build = (part: Node[]): Region => {
      const ids = new Set(part.map((n) => n.id));
      const outputs = part.filter((n) =>
        n.op.op !== "loop" &&
        ((consumers.get(n.id) ?? []).some((c) => !ids.has(c)) || n.id === graph.output)
      ).map((n) => n.id);
      return { nodes: part, outputs };
    };
    const fitsLimits = (part: Node[]) => {
      if (part.some((n) => n.op.op === "loop_result" && !part.includes(byId.get(n.args[0])!))) {
        return true; // a loop without its results is not a region yet
      }
      const k = regionKernel(build(part), byId, inline, slots);
      return k.trips(typical) <= REGION_TRIPS && k.reads.length < maxStorageBuffers; // the sizes table takes one
    };
    const worth = (part: Node[]) => {
      const ids = new Set(part.map((n) => n.id));
      return part.some((n) => n.op.op === "loop" || (deps.get(n.id) ?? []).some((d) => ids.has(d)));
    };
    let run: Node[] = [];
    const close = () => {
      const loopsWhole = run.every((n) =>
        n.op.op !== "loop" ||
        (consumers.get(n.id) ?? []).every((c) => run.some((m) => m.id === c))
      );
      if (run.length && worth(run) && loopsWhole && fitsLimits(run)) regions.push(build(run));
      run = [];
    };
    for (const n of nodes) {
      if (run.length && !fitsLimits([...run, n])) close();
      run.push(n);
    }
    close();
  }
  return regions;
}

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
    reader.placed.set(id, { key: ARENA, offset: offsets.at(-1)!, stride: "ARENA_STRIDE" });
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
      const base = p ? `s * ARENA_STRIDE + ${p.offset}` : `s * ${size(shape, slots)}`;
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
      const to = `${reader.buffer(ARENA)}[s * ARENA_STRIDE + ${t.offset} + e]`;
      phases.push(copy(cn.type.shape, to, at(loop.results[i], cn.type.shape), loop.count));
    }
    phases.push(barrier);
    for (const cn of carries) {
      const i = (cn.op as { index: number }).index;
      if (loop.results[i] === cn.id) continue;
      const t = reader.placed.get(tmp(i))!;
      const from = `${reader.buffer(ARENA)}[s * ARENA_STRIDE + ${t.offset} + e]`;
      phases.push(copy(cn.type.shape, at(cn.id, cn.type.shape), from, loop.count));
    }
    phases.push(barrier, "}");
  }
  const arenaStride = arena.length ? `(${arena.map((s) => size(s, slots)).join(" + ")})` : "1u";
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
  const fns = [...reader.fns.values()].map((f) => f.replaceAll("ARENA_STRIDE", arenaStride));
  const body = `${phases.join("\n  ")}
  // Keeps every binding in the pipeline's layout (an empty arena is still bound).
  if (lid == 0xffffffffu) { ${reader.bindings.map((_, i) => `_ = a${i}[0];`).join(" ")} }`
    .replaceAll("ARENA_STRIDE", arenaStride);
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
    arena,
    trips: (sz) => trips.reduce((t, f) => t + f(sz), 0),
    part: { body, fns, atomicOut: false },
  };
}

/** Iterations of the loop computing one element of a HEAVY node, at given sizes. */
function loopLength(n: Node, byId: Map<number, Node>): (sz: (d: Dim) => number) => number {
  const a = byId.get(n.args[0])!.type.shape;
  switch (n.op.op) {
    case "matmul":
    case "dot":
    case "bits":
      return (sz) => sz(a.at(-1)!);
    case "reduce": {
      const axis = n.op.axis;
      return (sz) => sz(a[axis]);
    }
    case "segment_mean": {
      const m = n.op.segments;
      return (sz) => Math.ceil(sz(a[0]) / m);
    }
  }
  return () => 1;
}
