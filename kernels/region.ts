/**
 * The region kernel: a region's values (see compiler/lower/regions.ts) computed by one workgroup
 * per slice, each stored value a phase in which the workgroup's invocations share the elements,
 * with barriers between phases; `repeat` loops run inside the kernel. Values used only inside the
 * region live in one arena buffer; values read outside get their own.
 *
 * A region is planned before it is rendered: its arena layout (`regionLayout`) and its phases
 * (`regionPhases`) are data, from which `regionCost` gives the trips and bindings lowering decides
 * with, and `regionKernel` renders the WGSL once the region is chosen.
 */
import type { Dim, Node } from "../compiler/ir/types.ts";
import { REGION_WORKGROUP } from "../compiler/limits.ts";
import { coords, size, SIZES_BINDING, storage, type SymbolSlots } from "../compiler/wgsl/syntax.ts";
import { HEAVY, helpersFor } from "../compiler/wgsl/ops.ts";
import { heavyValue, type Placement, Reader } from "../compiler/wgsl/reader.ts";
import { randomValue, rowwiseBody } from "../compiler/wgsl/values.ts";
import type { NodeKernel } from "../compiler/wgsl/kernel.ts";
import { ARENA, type BindingKey, nodeKey } from "../compiler/wgsl/keys.ts";
import { loopLength, type Sizes } from "./trips.ts";

/** A region: its top-level nodes in order (loops carry their bodies) and the values read outside. */
export interface Region {
  nodes: Node[];
  outputs: number[];
}

/** A region's kernel, the arena layout (per slice) and the buffers it binds, by node id. */
export interface RegionKernel extends NodeKernel {
  /** Binding keys the kernel writes (the arena and the outputs). */
  writes: BindingKey[];
  arena: Dim[][];
  trips: (size: Sizes) => number;
}

/** What lowering decides a region with: its loop trips and the storage buffers it binds. */
export interface RegionCost {
  /** Loop iterations one invocation makes at given sizes (as the kernel's `trips`). */
  trips: (size: Sizes) => number;
  /** Storage buffers bound, the sizes table included. */
  bindings: number;
}

/**
 * Where a region keeps its values: the arena's arrays (per slice), the placement of each value
 * stored in the arena or in another value's buffer (a carry in its loop result's), and the arena
 * offsets of each loop's temporaries for its next carried values (by loop id, by result index).
 */
interface Layout {
  arena: Dim[][];
  placed: Map<number, Placement>;
  temps: Map<number, string[]>;
  stride: string;
}

function regionLayout(
  region: Region,
  byId: Map<number, Node>,
  inline: Set<number>,
  slots: SymbolSlots,
): Layout {
  const arena: Dim[][] = [];
  const placed = new Map<number, Placement>();
  const temps = new Map<number, string[]>();
  const outputs = new Set(region.outputs);
  // Arena slots: offsets are sums of the sizes before them; the slice stride is the total.
  const sum = () => `(${arena.map((s) => size(s, slots)).join(" + ")})`;
  const arenaSlot = (shape: Dim[]) => {
    const offset = arena.length ? sum() : "0u";
    arena.push(shape);
    return offset;
  };
  const inArena = new Map<number, string>();
  const place = (n: Node) => {
    if (n.op.op === "loop_result" || n.op.op === "loop") return;
    if (!outputs.has(n.id)) inArena.set(n.id, arenaSlot(n.type.shape));
  };
  for (const n of region.nodes) {
    place(n);
    if (n.op.op !== "loop") continue;
    const results = region.nodes.filter((r) => r.op.op === "loop_result" && r.args[0] === n.id);
    const loop = n.op;
    for (const b of loop.body) {
      if (b.op.op !== "carry") {
        if (!inline.has(b.id)) place(b);
        continue;
      }
      const index = b.op.index;
      const res = results.find((r) => r.op.op === "loop_result" && r.op.index === index);
      if (res && outputs.has(res.id)) {
        placed.set(b.id, { key: nodeKey(res.id), offset: "0u", stride: size(b.type.shape, slots) });
      } else {
        inArena.set(b.id, arenaSlot(b.type.shape));
        if (res) inArena.set(res.id, inArena.get(b.id)!);
      }
    }
    // Temporaries for the next carried values, so updates never read a half-written carry.
    temps.set(n.id, loop.results.map((r) => arenaSlot(byId.get(r)!.type.shape)));
  }
  const stride = arena.length ? sum() : "1u";
  for (const [id, offset] of inArena) placed.set(id, { key: ARENA, offset, stride });
  return { arena, placed, temps, stride };
}

/** A value a copy phase reads or writes: a node's, or loop `loop`'s temporary for result `temp`. */
type Slot = { node: number } | { loop: number; temp: number };

/** A step of a region kernel, in order. */
type Phase =
  | { step: "value"; node: Node; scale: number }
  | { step: "copy"; shape: Dim[]; to: Slot; from: Slot; scale: number }
  | { step: "barrier" }
  | { step: "loop"; count: number }
  | { step: "end" };

const BARRIER: Phase = { step: "barrier" };

/**
 * The steps of a region: a phase per stored value (each `scale` times: a loop body's once per
 * iteration); a loop copies its inits into the carries, then per iteration runs its body and
 * copies the next carried values into temporaries first, then into the carries.
 */
function regionPhases(region: Region, inline: Set<number>): Phase[] {
  const phases: Phase[] = [];
  for (const n of region.nodes) {
    if (n.op.op === "loop_result") continue;
    if (n.op.op !== "loop") {
      phases.push({ step: "value", node: n, scale: 1 }, BARRIER);
      continue;
    }
    const loop = n.op;
    const index = (cn: Node) => (cn.op as { index: number }).index;
    const carries = loop.body.filter((b) => b.op.op === "carry");
    for (const cn of carries) {
      const from = { node: n.args[index(cn)] };
      phases.push({ step: "copy", shape: cn.type.shape, to: { node: cn.id }, from, scale: 1 });
    }
    phases.push(BARRIER, { step: "loop", count: loop.count });
    for (const b of loop.body) {
      if (b.op.op === "carry" || inline.has(b.id)) continue;
      phases.push({ step: "value", node: b, scale: loop.count }, BARRIER);
    }
    const updated = carries.filter((cn) => loop.results[index(cn)] !== cn.id);
    const scale = loop.count;
    for (const cn of updated) {
      const [temp, shape] = [{ loop: n.id, temp: index(cn) }, cn.type.shape];
      phases.push({
        step: "copy",
        shape,
        to: temp,
        from: { node: loop.results[index(cn)] },
        scale,
      });
    }
    phases.push(BARRIER);
    for (const cn of updated) {
      const [temp, shape] = [{ loop: n.id, temp: index(cn) }, cn.type.shape];
      phases.push({ step: "copy", shape, to: { node: cn.id }, from: temp, scale });
    }
    phases.push(BARRIER, { step: "end" });
  }
  return phases;
}

/**
 * A region's trips and bindings, from its layout and phases (no WGSL): exactly what
 * `regionKernel` reports (tests/plan_data_test.ts checks it on every region it can find).
 */
export function regionCost(
  region: Region,
  byId: Map<number, Node>,
  inline: Set<number>,
  slots: SymbolSlots,
): RegionCost {
  const layout = regionLayout(region, byId, inline, slots);
  const phases = regionPhases(region, inline);
  // Bindings: the arena, and the buffer behind each stored value a phase reads or writes
  // (through inlined expressions, which read their operands).
  const keys = new Set<BindingKey>([ARENA]);
  const use = (id: number) => {
    if (inline.has(id)) byId.get(id)!.args.forEach(use);
    else keys.add(layout.placed.get(id)?.key ?? nodeKey(id));
  };
  for (const p of phases) {
    if (p.step === "copy") { for (const s of [p.to, p.from]) if ("node" in s) use(s.node); }
    if (p.step !== "value") continue;
    const n = p.node;
    use(n.id);
    if (n.op.op !== "random") n.args.forEach(use);
    else {
      if (byId.get(n.args[0])!.op.op !== "const") use(n.args[0]);
      if (n.op.kind === "randint") use(n.args[1]);
    }
  }
  const trips = phases.map((p) => phaseTrips(p, byId, inline));
  return { trips: (sz) => trips.reduce((t, f) => t + f(sz), 0), bindings: keys.size + 1 };
}

/** Loop trips of one phase: the elements each invocation takes, times the work of each. */
function phaseTrips(p: Phase, byId: Map<number, Node>, inline: Set<number>): (sz: Sizes) => number {
  type Trips = (sz: Sizes) => number;
  const exprTrips = (id: number): Trips => {
    const n = byId.get(id)!;
    if (!inline.has(id)) return () => 0;
    const inner = n.args.map(exprTrips);
    const sum: Trips = (sz) => inner.reduce((t, f) => t + f(sz), 0);
    if (!HEAVY.has(n.op.op)) return sum;
    const len = loopLength(n, byId);
    return (sz) => len(sz) * (1 + sum(sz));
  };
  const per = (shape: Dim[], body: Trips): Trips => (sz) =>
    Math.ceil(shape.reduce<number>((q, d) => q * sz(d), 1) / REGION_WORKGROUP) * body(sz);
  if (p.step === "copy") return (sz) => p.scale * per(p.shape, () => 1)(sz);
  if (p.step !== "value") return () => 0;
  const { node: n, scale } = p;
  const shape = n.type.shape;
  const argTrips = n.args.map(exprTrips);
  const args: Trips = (sz) => argTrips.reduce((t, f) => t + f(sz), 0);
  if (n.op.op === "softmax" || n.op.op === "normalize") {
    const axis = n.op.axis;
    const fiber = shape.filter((_, i) => i !== axis);
    return (sz) => scale * per(fiber, (z) => 3 * z(shape[axis]) * (1 + args(z)))(sz);
  }
  if (HEAVY.has(n.op.op)) {
    const len = loopLength(n, byId);
    return (sz) => scale * per(shape, (z) => len(z) * (1 + args(z)))(sz);
  }
  if (n.op.op === "random") return (sz) => scale * per(shape, () => 11)(sz);
  return (sz) => scale * per(shape, (z) => 1 + args(z))(sz);
}

/**
 * The kernel of a region. Binding keys in `reads`: node ids, and ARENA for the arena. `chunks`:
 * the partial tables it reads (see `KernelRequest`).
 */
export function regionKernel(
  region: Region,
  byId: Map<number, Node>,
  inline: Set<number>,
  chunks: ReadonlyMap<number, number>,
  slots: SymbolSlots,
): RegionKernel {
  const layout = regionLayout(region, byId, inline, slots);
  const reader = new Reader(byId, inline, chunks, slots);
  reader.hoist = false;
  for (const [id, p] of layout.placed) reader.placed.set(id, p);
  const steps = regionPhases(region, inline).map((p) => renderPhase(p, reader, layout));
  reader.buffer(ARENA);
  const written = new Set<BindingKey>([
    ARENA,
    ...region.outputs.map(nodeKey),
    ...[...reader.placed.values()].map((p) => p.key),
  ]);
  const body = `${steps.join("\n  ")}
  // Keeps every binding in the pipeline's layout (an empty arena is still bound).
  if (lid == 0xffffffffu) { ${reader.bindings.map((_, i) => `_ = a${i}[0];`).join(" ")} }`;
  const fns = [...reader.fns.values()];
  return {
    name: `region_${region.nodes[0].id}`,
    wgsl: regionWgsl(region, reader, written, body),
    threads: [],
    reads: reader.bindings,
    writes: [...written].filter((k) => reader.bindings.includes(k)),
    launch: { kind: "slice", workgroup: REGION_WORKGROUP },
    arena: layout.arena,
    trips: regionCost(region, byId, inline, slots).trips,
    part: { body, fns, atomicOut: false },
  };
}

/** The WGSL of one step of a region kernel. */
function renderPhase(p: Phase, reader: Reader, layout: Layout): string {
  const W = REGION_WORKGROUP;
  const slots = reader.slots;
  const each = (shape: Dim[], statements: string) =>
    `for (var e = lid; e < ${size(shape, slots)}; e = e + ${W}u) {
    ${coords(shape, slots, "e")}
    ${statements}
  }`;
  switch (p.step) {
    case "barrier":
      return "storageBarrier();\n  workgroupBarrier();";
    case "loop":
      return `for (var it = 0u; it < ${p.count}u; it = it + 1u) {`;
    case "end":
      return "}";
    case "copy": {
      const c = p.shape.map((_, i) => `c${i}`);
      // A temporary's binding is taken before the other side's (the order the bindings get).
      const temp = (s: Slot) =>
        "node" in s
          ? ""
          : `${reader.buffer(ARENA)}[s * ${layout.stride} + ${
            layout.temps.get(s.loop)![s.temp]
          } + e]`;
      const [toTemp, fromTemp] = [temp(p.to), temp(p.from)];
      const to = "node" in p.to ? reader.at(p.to.node, c) : toTemp;
      const from = "node" in p.from ? reader.at(p.from.node, c) : fromTemp;
      return each(p.shape, `${to} = ${from};`);
    }
  }
  const n = p.node;
  const shape = n.type.shape;
  const c = shape.map((_, i) => `c${i}`);
  if (n.op.op === "softmax" || n.op.op === "normalize") {
    const fiber = shape.filter((_, i) => i !== (n.op as { axis: number }).axis);
    const placed = reader.placed.get(n.id);
    const base = placed ? `s * ${layout.stride} + ${placed.offset}` : `s * ${size(shape, slots)}`;
    const body = rowwiseBody(n, reader, reader.buffer(placed?.key ?? nodeKey(n.id)), base);
    return `for (var e = lid; e < ${size(fiber, slots)}; e = e + ${W}u) {
    ${coords(fiber, slots, "e", "f")}
    ${body}
  }`;
  }
  if (HEAVY.has(n.op.op) || n.op.op === "random") {
    const { pre, value } = n.op.op === "random"
      ? randomValue(n, reader, "e")
      : heavyValue(n, c, reader);
    return each(shape, `${pre}\n    ${reader.at(n.id, c)} = ${value};`);
  }
  return each(shape, `${reader.at(n.id, c)} = ${reader.expand(n, c)};`);
}

/** The region kernel's WGSL around its body: bindings (read-write where written), helpers. */
function regionWgsl(region: Region, reader: Reader, written: Set<BindingKey>, body: string) {
  const binds = reader.bindings.map((key, i) => storage(i + 1, `a${i}`, "f32", written.has(key)));
  const fns = [...reader.fns.values()];
  return `// region: ${
    region.nodes.map((n) => `%${n.id} ${n.op.op}`).join(", ")
  } — one workgroup per slice
${SIZES_BINDING}
${binds.join("\n")}
${helpersFor([body, ...fns].join("\n")).join("\n")}
${fns.join("\n")}
@compute @workgroup_size(${REGION_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let s = wid.x + wid.y * nwg.x;
  if (s >= sizes[0]) { return; }
  ${body}
}
`;
}
