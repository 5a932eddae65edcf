/**
 * A snapshot of everything the compiler decides, for behaviour-preserving refactors:
 *
 *   deno task snapshot OUTDIR [--generated N]
 *
 * For every example under several option sets (default, `fuse: false`, `regions: false`,
 * `f16: true`, an 8-binding device) it writes the checked IR, the IR after each pass, and the whole
 * plan: every kernel's launch, bindings, reads and writes, loop trips at fixed sizes and WGSL
 * (specialized at fixed head sizes), and the long-loop plan at sizes past the loop budget. N
 * generated programs (tests/programs.ts, seeded) add the forms the fuzzer reaches. Two snapshots
 * taken before and after a refactor must agree: `diff -r BEFORE AFTER`.
 */
import fc from "fast-check";
import { compileSync, type ExecPlan } from "../mod.ts";
import type { Dim, Graph } from "../compiler/ir/types.ts";
import { showGraph } from "../compiler/ir/print.ts";
import { lowerGraph } from "../compiler/lower/lower.ts";
import type { LowerOptions } from "../compiler/lower/plan.ts";
import { printProgram, specArb } from "../tests/programs.ts";

const args = Deno.args.filter((a) => a !== "--");
const out = args.find((a) => !a.startsWith("--") && !/^\d+$/.test(a));
if (!out) {
  console.error("usage: deno task snapshot OUTDIR [--generated N]");
  Deno.exit(2);
}
const genFlag = args.indexOf("--generated");
const generated = genFlag >= 0 ? Number(args[genFlag + 1]) : 150;

const OPTION_SETS: {
  name: string;
  compile: { fuse?: boolean; regions?: boolean; f16?: boolean };
  narrow?: number;
}[] = [
  { name: "default", compile: {} },
  { name: "nofuse", compile: { fuse: false } },
  { name: "noregions", compile: { regions: false } },
  { name: "f16", compile: { f16: true } },
  { name: "narrow8", compile: {}, narrow: 8 },
];

/**
 * Odd sizes for symbols, so trip counts and specialized WGSL are fixed and telling: 6 for a dim
 * that ends some input (a feature dim; kept small since specialized kernels unroll over them),
 * `rows` for the rest (sequence lengths).
 */
function sizesFor(graph: Graph, rows: number): (d: Dim) => number {
  const feature = new Set(graph.inputs.map((i) => i.type.shape.at(-1)));
  return (d) => typeof d === "number" ? d : feature.has(d) ? 6 : rows;
}

/**
 * A kernel's fields in the form snapshots have always printed them (the plan once kept a write,
 * readBuffers, parts, regions and a region's arena on each kernel; they now follow from its
 * launch, bindings and writes).
 */
function fieldsOf(plan: ExecPlan, k: ExecPlan["kernels"][number]): Record<string, unknown> {
  const { name, launch, bindings, writes, reads, io } = k;
  const write = writes[0];
  const unwritten = bindings.filter((b) => !writes.includes(b));
  if (launch.kind === "slice") {
    const arena = plan.buffers[write].parts;
    const readBuffers = unwritten;
    return {
      name,
      threads: [],
      reads,
      writes,
      workgroupPerSlice: true,
      arena,
      write,
      readBuffers,
      bindings,
      io,
    };
  }
  if (io.length > 1) {
    const { parts, regions } = launch;
    return {
      name,
      threads: [],
      reads,
      write,
      readBuffers: unwritten,
      bindings,
      writes,
      parts,
      regions,
      io,
    };
  }
  return { name, threads: launch.parts[0], reads, write, readBuffers: bindings.slice(1), io };
}

function showPlan(plan: ExecPlan, sizes: (d: Dim) => number): string {
  const lines: string[] = [];
  lines.push(`output ${plan.outputs.join(" ")}`);
  lines.push(`slots ${JSON.stringify([...plan.slots])}`);
  lines.push(`buffers ${JSON.stringify(plan.buffers)}`);
  lines.push(`inputs ${JSON.stringify(plan.inputs.map((i) => [i.decl.name, i.buffer]))}`);
  lines.push(
    `guards ${JSON.stringify(plan.guards.map((g) => [g.node.id, g.rows, g.min, g.what]))}`,
  );
  lines.push(
    `hostDraws ${JSON.stringify(plan.hostDraws.map((h) => [h.buffer, h.node.id, h.seed, h.hi]))}`,
  );
  if (plan.loops.length) lines.push(`loops ${JSON.stringify(plan.loops)}`);
  for (const [i, k] of plan.kernels.entries()) {
    const { wgsl, specialize, trips, elementTrips, part } = k;
    lines.push(`--- kernel ${i} ${k.name}`);
    lines.push(JSON.stringify(fieldsOf(plan, k)));
    lines.push(
      `part ${part ? JSON.stringify({ fns: part.fns.length, atomicOut: part.atomicOut }) : "-"}`,
    );
    lines.push(
      `trips ${trips ? trips(sizes) : "-"} elementTrips ${
        elementTrips ? elementTrips(sizes) : "-"
      }`,
    );
    lines.push(specialize ? specialize(sizes) : wgsl);
  }
  return lines.join("\n") + "\n";
}

async function snapshot(dir: string, source: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const set of OPTION_SETS) {
    const sub = `${dir}/${set.name}`;
    let text: string;
    try {
      const p = compileSync(source, set.compile);
      if (set.name === "default") {
        await Deno.writeTextFile(`${dir}/checked.ir`, showGraph(p.graph) + "\n");
        for (const [i, s] of p.passes.entries()) {
          await Deno.writeTextFile(
            `${dir}/pass${i}-${s.pass.replaceAll(" ", "_")}.ir`,
            showGraph(s.graph) + "\n",
          );
        }
      }
      const lowering: LowerOptions = {
        fuseElementwise: set.compile.fuse !== false,
        regions: set.compile.regions,
        f16: set.compile.f16,
        maxStorageBuffers: set.narrow,
      };
      const plan = lowerGraph(p.optimized as Graph, lowering);
      text = showPlan(plan, sizesFor(p.optimized, 97));
      if (plan.long) {
        // Past LOOPS.budget: the long-loop plan.
        const long = sizesFor(p.optimized, 70_001);
        try {
          text += "=== long\n" + showPlan(plan.long(long), long);
        } catch (e) {
          text += `=== long: ${(e as Error).name}: ${(e as Error).message}\n`;
        }
      }
    } catch (e) {
      text = `${(e as Error).name}: ${(e as Error).message}\n`;
    }
    await Deno.writeTextFile(`${sub}.plan`, text);
  }
}

const examples = [...Deno.readDirSync(new URL("../examples", import.meta.url))]
  .filter((e) => e.name.endsWith(".attn")).map((e) => e.name).sort();
for (const name of examples) {
  const source = await Deno.readTextFile(new URL(`../examples/${name}`, import.meta.url));
  await snapshot(`${out}/${name.replace(".attn", "")}`, source);
}
const specs = fc.sample(specArb(), { numRuns: generated, seed: 20261130 });
for (const [i, spec] of specs.entries()) {
  const source = printProgram(spec);
  await Deno.mkdir(`${out}/gen${String(i).padStart(4, "0")}`, { recursive: true });
  await Deno.writeTextFile(`${out}/gen${String(i).padStart(4, "0")}/program.attn`, source);
  await snapshot(`${out}/gen${String(i).padStart(4, "0")}`, source);
}
console.log(
  `snapshot: ${examples.length} examples and ${specs.length} generated programs in ${out}`,
);
