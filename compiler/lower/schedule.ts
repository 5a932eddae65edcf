/** Dispatch order and horizontal fusion: which kernels of a plan share one dispatch. */
import type { Dim } from "../ir/types.ts";
import { mergeKernels } from "../wgsl/merge.ts";
import type { SymbolSlots } from "../wgsl/syntax.ts";
import { HYBRID_ELEMENTS, HYBRID_TRIPS, LOOPS } from "../limits.ts";
import { type ExecPlan, loopsIn, type PlanLoop, type PlannedKernel } from "./plan.ts";

/**
 * Loop trips of an invocation of a merged grid dispatch: the sum of its parts' (`group` is
 * copied). lavapipe runs eight invocations as one SIMD group; a group whose lanes fall in two
 * parts runs both parts' loops, one after the other with the other lanes masked, against one
 * budget (measured: linear attention's kᵀv, 15,000 trips, merged with its key sum over n =
 * 60,000, gave a relative error of 0.16, each alone was right).
 */
function mergedTrips(group: PlannedKernel[]): (sz: (d: Dim) => number) => number {
  const parts = [...group];
  return (sz) => parts.reduce((t, k) => t + k.trips(sz), 0);
}

/** Whether `k` is a region (one workgroup per slice). */
const isRegion = (k: PlannedKernel) => k.launch.kind === "slice";

/** Buffers `k` reads that must be written before it. */
const readsOf = (k: PlannedKernel) => k.io.flatMap((p) => p.reads);

/**
 * Order kernels by dependency level (a kernel runs after every kernel that writes what it reads
 * or writes, or reads what it writes) and merge the template kernels of each level into as few
 * dispatches as the binding limit allows.
 */
export function schedule(
  kernels: PlannedKernel[],
  slots: SymbolSlots,
  maxStorage: number,
  typical: (d: Dim) => number,
  run?: (d: Dim) => number,
) {
  // Loop trips of one invocation of a merged dispatch with a region: the regions' own, or
  // HYBRID_ELEMENTS elements of the grid parts (each at most the largest part's trips), plus
  // the loop over them. Unknown trips count as unbounded.
  function hybridTrips(group: PlannedKernel[]): (sz: (d: Dim) => number) => number;
  function hybridTrips(group: PlannedKernel[], sz: (d: Dim) => number): number;
  function hybridTrips(group: PlannedKernel[], at?: (d: Dim) => number) {
    // The grid parts' loops add up: the lanes of one SIMD group may take elements of several
    // parts, each part's code running in turn with the others masked (see `mergedTrips`).
    const grid = group.filter((k) => !isRegion(k));
    const f = (sz: (d: Dim) => number) =>
      Math.max(
        0,
        ...group.filter(isRegion).map((k) => k.trips(sz)),
        grid.length
          ? HYBRID_ELEMENTS *
              (1 + grid.reduce((t, k) => t + (k.elementTrips ? k.elementTrips(sz) : Infinity), 0)) +
            1
          : 0,
      );
    return at ? f(at) : f;
  }
  const level: number[] = [];
  kernels.forEach((k, i) => {
    const w = new Set(k.writes);
    const r = new Set(readsOf(k));
    let lv = 0;
    for (let j = 0; j < i; j++) {
      const hazard = kernels[j].writes.some((b) => r.has(b) || w.has(b)) ||
        readsOf(kernels[j]).some((b) => w.has(b));
      if (hazard) lv = Math.max(lv, level[j] + 1);
    }
    level.push(lv);
  });
  const out: PlannedKernel[] = [];
  for (let lv = 0; lv <= Math.max(-1, ...level); lv++) {
    const here = kernels.filter((_, i) => level[i] === lv);
    let group: PlannedKernel[] = [];
    const flush = () => {
      if (group.length === 1) out.push(group[0]);
      if (group.length > 1) {
        const merged = mergeKernels(group, slots);
        const regions = group.filter(isRegion);
        out.push({
          name: [...regions, ...group.filter((k) => !isRegion(k))].map((k) => k.name).join("+"),
          wgsl: merged.wgsl,
          launch: merged.launch,
          bindings: merged.bindings,
          writes: merged.writes,
          reads: [],
          io: group.flatMap((k) => k.io),
          trips: regions.length ? hybridTrips(group) : mergedTrips(group),
        });
        // A long run's dispatch stays within the loop budget: else its parts run apart.
        if (run && out.at(-1)!.trips(run) > LOOPS.budget) out.splice(-1, 1, ...group);
      }
      group = [];
    };
    // A long region would hold the grid parts' workgroups back (measured on lavapipe: Nyström's
    // 29K-trip region merged with its two maps took 474 ms at n = 8192 against 278 apart).
    // In a long run (`runSizes`), a kernel with long loops stays alone.
    const alone = (k: PlannedKernel) =>
      !k.part || (isRegion(k) && k.trips(typical) > HYBRID_TRIPS) ||
      (run !== undefined && k.trips(run) > LOOPS.budget / HYBRID_ELEMENTS);
    // Next to a region, each grid invocation computes HYBRID_ELEMENTS elements: a part with long
    // loops (a reduction over n) would pass lavapipe's loop budget of 65,535 trips per
    // invocation, after which loops end early and results are silently wrong (issue #7:
    // Skeinformer's sum(vs, axis=0) at n ≥ 4094). Such parts merge only among grid kernels.
    const loopy = (k: PlannedKernel) => !isRegion(k) && hybridTrips([k], typical) > HYBRID_TRIPS;
    const withRegion = here.some((k) => !alone(k) && isRegion(k));
    const batches = withRegion
      ? [here.filter((k) => alone(k) || !loopy(k)), here.filter((k) => !alone(k) && loopy(k))]
      : [here];
    for (const batch of batches) {
      for (const k of batch) {
        if (alone(k)) {
          out.push(k);
          continue;
        }
        const buffers = new Set([...group, k].flatMap((g) => g.bindings));
        if (group.length && buffers.size + 1 > maxStorage) flush();
        group.push(k);
      }
      flush();
    }
  }
  return out;
}

/**
 * Schedule a plan's dispatches with `sched` between the boundaries of its host loops: a loop's
 * body is scheduled on its own (its dispatches repeat; none may move in or out of it), and the
 * dispatches before and after it apart.
 */
export function scheduleAround(
  plan: Pick<ExecPlan, "kernels" | "loops">,
  sched: (kernels: PlannedKernel[]) => PlannedKernel[],
): { kernels: PlannedKernel[]; loops: PlanLoop[] } {
  const kernels: PlannedKernel[] = [];
  const loops: PlanLoop[] = [];
  const range = (start: number, end: number, parent?: PlanLoop) => {
    let at = start;
    for (const l of loopsIn(plan, start, end, parent)) {
      kernels.push(...sched(plan.kernels.slice(at, l.start)));
      const first = kernels.length;
      range(l.start, l.end, l);
      loops.push({ start: first, end: kernels.length, count: l.count }); // after its body's loops
      at = l.end;
    }
    kernels.push(...sched(plan.kernels.slice(at, end)));
  };
  range(0, plan.kernels.length);
  return { kernels, loops };
}
