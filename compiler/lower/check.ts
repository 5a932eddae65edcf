/** The plan check: data flow of a plan, verified on every plan lowering makes. */
import type { ExecPlan, PlannedKernel } from "./plan.ts";

/**
 * Check a plan's data flow (run on every plan `lowerGraph` makes; tests run it too): every
 * buffer a dispatch reads was written by an earlier dispatch, an input upload or a host draw;
 * no part of a merged dispatch reads or writes a buffer another part of it writes (parts run in
 * no set order); each dispatch's parts account for all of its bindings; every output is written;
 * host loops lie inside the plan and nest or are disjoint.
 * A violation is a compiler bug: it throws an internal error naming the dispatch and buffer.
 */
export function checkPlan(plan: ExecPlan): void {
  const written = new Set<number>([
    ...plan.inputs.map((i) => i.buffer),
    ...plan.hostDraws.map((h) => h.buffer),
  ]);
  const fail = (i: number, k: PlannedKernel, what: string): never => {
    throw new Error(`internal: plan check: dispatch ${i} (${k.name}) ${what}`);
  };
  plan.kernels.forEach((k, i) => {
    const io = k.io;
    const bound = new Set(k.bindings);
    const covered = new Set(io.flatMap((p) => [...p.reads, ...p.writes]));
    for (const b of bound) if (!covered.has(b)) fail(i, k, `binds buffer ${b} no part uses`);
    const writes = new Set(k.writes);
    for (const p of io) {
      for (const b of p.writes) if (!writes.has(b)) fail(i, k, `part ${p.name} writes ${b}`);
      for (const q of io) {
        if (q === p) continue;
        const clash = q.writes.find((b) => p.reads.includes(b) || p.writes.includes(b));
        if (clash !== undefined) {
          fail(i, k, `part ${p.name} uses buffer ${clash}, which part ${q.name} writes`);
        }
      }
    }
    for (const p of io) {
      for (const b of p.reads) {
        if (!written.has(b)) {
          fail(i, k, `part ${p.name} reads buffer ${b}, which nothing before it writes`);
        }
      }
    }
    for (const b of writes) written.add(b);
  });
  const n = plan.kernels.length;
  for (const l of plan.loops) {
    if (!(0 <= l.start && l.start <= l.end && l.end <= n && Number.isInteger(l.count))) {
      throw new Error(`internal: plan check: loop ${JSON.stringify(l)} outside the plan`);
    }
    for (const o of plan.loops) {
      const disjoint = o.end <= l.start || l.end <= o.start;
      const nested = (o.start <= l.start && l.end <= o.end) ||
        (l.start <= o.start && o.end <= l.end);
      if (!disjoint && !nested) {
        throw new Error(`internal: plan check: loops ${JSON.stringify([l, o])} overlap`);
      }
    }
  }
  for (const o of plan.outputs) {
    if (!written.has(o)) {
      throw new Error(`internal: plan check: output buffer ${o} is never written`);
    }
  }
}
