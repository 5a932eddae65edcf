/**
 * Regions: connected sets of small values (landmark matrices, the Nyström pinv iterates, any
 * small-matrix algebra a program does between its long-sequence steps) computed in ONE dispatch
 * by one workgroup per slice. Each stored value is a phase in which the workgroup's invocations
 * share the elements, with barriers between phases; `repeat` loops run inside the kernel. Values
 * used only inside the region live in one arena buffer; values read outside get their own.
 * Without regions, the 6-step Nyström pinv alone is 24 dispatches.
 */
import type { Dim, Graph, Node } from "../ir/types.ts";
import { allNodes } from "../ir/walks.ts";
import { ELEMENTWISE, HEAVY } from "../wgsl/ops.ts";
import { LONG_SEQUENCE, REGION_ELEMENTS, REGION_TRIPS } from "../limits.ts";
import { type Region, regionCost } from "../../kernels/index.ts";
import type { SymbolSlots } from "../wgsl/syntax.ts";

export type { Region } from "../../kernels/index.ts";

/** Ops a region computes as phases. */
const PHASE_OPS = new Set([...ELEMENTWISE, ...HEAVY, "softmax", "normalize", "random"]);
/** Node ids a top-level node reads from outside itself (a loop: its inits and its body's free values). */
export function outerDeps(n: Node): number[] {
  if (n.op.op !== "loop") return n.args;
  const body = allNodes(n.op.body);
  const inside = new Set(body.map((b) => b.id));
  const free = new Set<number>(n.args);
  for (const b of body) b.args.forEach((a) => inside.has(a) || free.add(a));
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
      // A result the body does not compute (an outer value, or a carried value unchanged) would
      // leave the region's output unwritten (a fuzz find): such loops run as kernels.
      const computed = new Set(n.op.body.filter((b) => b.op.op !== "carry").map((b) => b.id));
      return n.op.results.every((r) => computed.has(r)) &&
        n.op.body.every((b) =>
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
    members = convex(members, consumers, byId);
    for (const m of members) seen.add(m);
    // Split into consecutive runs (in topological order, so each is convex) that fit the
    // binding and loop limits; keep the runs in which some member needs another.
    const nodes = top.filter((n) => members.has(n.id));
    const build = (part: Node[]): Region => {
      const ids = new Set(part.map((n) => n.id));
      const outputs = part.filter((n) =>
        n.op.op !== "loop" &&
        ((consumers.get(n.id) ?? []).some((c) => !ids.has(c)) || graph.outputs.includes(n.id))
      ).map((n) => n.id);
      return { nodes: part, outputs };
    };
    const fitsLimits = (part: Node[]) => {
      if (part.some((n) => n.op.op === "loop_result" && !part.includes(byId.get(n.args[0])!))) {
        return true; // a loop without its results is not a region yet
      }
      const cost = regionCost(build(part), byId, inline, slots);
      return cost.trips(typical) <= REGION_TRIPS && cost.bindings <= maxStorageBuffers;
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
      // And a loop's results only with their loop (a loop too long for a region leaves its
      // results to ordinary kernels: grouped without it, a region read a value never stored).
      const resultsWhole = run.every((n) =>
        n.op.op !== "loop_result" || run.some((m) => m.id === n.args[0])
      );
      if (run.length && worth(run) && loopsWhole && resultsWhole && fitsLimits(run)) {
        regions.push(build(run));
      }
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

/**
 * Convexity: drop members reached from the region through a value outside it (that value could
 * only run after the region, and the member before it), and loops without their results.
 */
function convex(
  members: Set<number>,
  consumers: Map<number, number[]>,
  byId: Map<number, Node>,
): Set<number> {
  for (;;) {
    const down = new Set<number>();
    const walk = [...members].flatMap((m) => consumers.get(m) ?? []).filter((c) => !members.has(c));
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
    if (next.size === members.size) return members;
    members = next;
  }
}
