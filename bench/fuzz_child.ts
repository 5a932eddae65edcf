/**
 * The worker of `deno task fuzz:input` (bench/fuzz_input.ts), run as a child process so that a
 * program that hangs, overflows memory or kills the process loses nothing but itself:
 *
 *   deno run --allow-read=examples bench/fuzz_child.ts --seed S --start A --end B
 *     [--families soup,hostile] [--gpu G --first F --count N --gpu-done K]
 *
 * For each program index in [A, B) (the program is `jobAt(S, index)` of tests/mutate.ts, which
 * the parent regenerates to save a reproduction), it writes JSON lines to stdout, each flushed
 * before going on: `{"t":"start"}`, then `{"t":"phase"}` before each of compile, plan, interp and
 * gpu, then `{"t":"done"}` with the outcome of every phase ("ok", "skip", or the class of the
 * Attune error thrown) and the findings: an exception other than an Attune error
 * ("uncaught"), a CompileError without a valid span and located one-line message ("bad-span"),
 * a run giving something that is not a tensor ("bad-output"), a DeviceError from compiled
 * kernels ("device-error"), a GPU result far from the interpreter's ("gpu-mismatch").
 *
 * Programs whose interpretation would be slow (tests/mutate.ts `cost`) are compiled and planned
 * but not run. `--gpu G` of the `N` programs from `F` run on the GPU too, spread evenly over
 * those that compile and run (`--gpu-done` says how many a previous child already ran).
 */
import { AttuneError, CompileError, compileSync, DeviceError, type Program } from "../mod.ts";
import type { Tensor } from "../mod.ts";
import { lineCol } from "../compiler/errors.ts";
import { NpyError } from "../runtime/npy.ts";
import { getDevice } from "../runtime/device.ts";
import {
  cost,
  type Family,
  type Job,
  jobAt,
  jobInputs,
  jobSizes,
  MAX_COST,
} from "../tests/mutate.ts";

/** File name the programs are compiled under (checked in every CompileError's message). */
export const FILE = "fuzz.attn";
/** The GPU runs only programs this cheap (and the hostile `dims` family, to see they fail). */
const GPU_MAX_COST = 2e5;

/** The phases of one program. */
export type Phase = "compile" | "plan" | "interp" | "gpu";

/** One problem with one program. */
export interface ChildFinding {
  kind: "uncaught" | "bad-span" | "bad-output" | "device-error" | "gpu-mismatch";
  phase: Phase;
  /** The first line of the message (with the error's class). */
  first: string;
  /** The head of the stack, for uncaught exceptions. */
  stack?: string;
}

/** The record written when a program finishes. */
export interface Done {
  t: "done";
  i: number;
  family: string;
  ms: number;
  outcomes: Partial<Record<Phase, string>>;
  findings: ChildFinding[];
}

/** Why a CompileError is not well formed, or undefined (mirrors tests/fuzz_test.ts). */
export function spanProblem(e: CompileError, source: string, file = FILE): string | undefined {
  const { start, end } = e.span ?? {};
  if (
    !(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end &&
      end <= e.source.length)
  ) return `bad span ${JSON.stringify(e.span)} for a source of length ${e.source?.length}`;
  if (e.source !== source) return "the error carries a different source text";
  if (e.message.includes("\n")) return `message is not one line: ${firstLine(e.message)}`;
  const m = /^(.+):(\d+):(\d+): \S/.exec(e.message);
  if (!m) return `message does not start with file:line:col: — ${e.message}`;
  if (m[1] !== file) return `message names ${m[1]}, not ${file}`;
  const at = lineCol(source, start);
  if (`${m[2]}:${m[3]}` !== `${at.line}:${at.col}`) return `line:col ≠ span start: ${e.message}`;
  try {
    if (!/\^/.test(e.format())) return `format() shows no caret: ${e.message}`;
  } catch (f) {
    return `format() threw ${describe(f)}`;
  }
  return undefined;
}

/** The first line of a message (with the next when the first ends in a colon). */
function firstLine(s: string): string {
  const lines = s.split("\n").map((l) => l.trim()).filter(Boolean);
  const line = lines[0]?.endsWith(":") && lines[1] ? `${lines[0]} ${lines[1]}` : lines[0] ?? "";
  return line.length > 300 ? line.slice(0, 300) + "…" : line;
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${firstLine(e.message)}` : firstLine(String(e));
}

/** The outcome of a thrown value, and a finding when it is one. */
function classify(
  e: unknown,
  job: Job,
  phase: Phase,
): { outcome: string; finding?: ChildFinding } {
  if (e instanceof CompileError) {
    const bad = spanProblem(e, job.source);
    return bad
      ? { outcome: "CompileError", finding: { kind: "bad-span", phase, first: bad } }
      : { outcome: "CompileError" };
  }
  if (e instanceof DeviceError && phase === "gpu") {
    return { outcome: e.name, finding: { kind: "device-error", phase, first: describe(e) } };
  }
  if (e instanceof AttuneError || e instanceof NpyError) return { outcome: e.name };
  const stack = e instanceof Error
    ? (e.stack ?? "").split("\n").slice(1, 9).map((l) => l.trim()).join("\n")
    : undefined;
  return {
    outcome: e instanceof Error ? e.name : typeof e,
    finding: { kind: "uncaught", phase, first: describe(e), stack },
  };
}

/** Why `y` is not a well-formed tensor, or undefined. */
function outputProblem(y: Tensor): string | undefined {
  if (!y || !Array.isArray(y.shape) || !(y.data instanceof Float64Array)) {
    return "run gave no tensor";
  }
  if (y.data.length !== y.shape.reduce((a, b) => a * b, 1)) {
    return `data length ${y.data.length} ≠ size of shape [${y.shape.join(", ")}]`;
  }
  return undefined;
}

/** Where the GPU result is far from the interpreter's (finite, moderate values only). */
function mismatch(got: Tensor, want: Tensor): string | undefined {
  if (got.shape.join() !== want.shape.join()) {
    return `gpu shape [${got.shape.join(", ")}] vs interp [${want.shape.join(", ")}]`;
  }
  if (!want.data.every(Number.isFinite) || want.data.some((v) => Math.abs(v) > 1e6)) return;
  for (let i = 0; i < want.data.length; i++) {
    const tol = 1e-3 * (1 + Math.abs(want.data[i]));
    if (!(Math.abs(got.data[i] - want.data[i]) <= tol)) {
      return `element ${i}: gpu ${got.data[i]} vs interp ${want.data[i]}`;
    }
  }
}

const encoder = new TextEncoder();
/** Write one JSON line to stdout, all of it, before returning. */
function emit(record: unknown): void {
  const bytes = encoder.encode(JSON.stringify(record) + "\n");
  for (let off = 0; off < bytes.length;) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/** Run one program through every phase, emitting progress lines. */
async function fuzzOne(
  index: number,
  job: Job,
  gpu: () => Promise<boolean>,
  wantGpu: () => boolean,
): Promise<Done> {
  const t0 = performance.now();
  const outcomes: Done["outcomes"] = {};
  const findings: ChildFinding[] = [];
  // Each phase line carries the outcomes so far, for the parent to count if the child dies.
  const phase = (p: Phase) => emit({ t: "phase", i: index, phase: p, outcomes });
  const fail = (p: Phase, e: unknown) => {
    const c = classify(e, job, p);
    outcomes[p] = c.outcome;
    if (c.finding) findings.push(c.finding);
  };
  const done = (): Done => ({
    t: "done",
    i: index,
    family: job.family,
    ms: performance.now() - t0,
    outcomes,
    findings,
  });

  phase("compile");
  let program: Program;
  try {
    program = compileSync(job.source, { file: FILE, params: job.params });
    outcomes.compile = "ok";
  } catch (e) {
    fail("compile", e);
    return done();
  }

  phase("plan");
  try {
    program.plan();
    outcomes.plan = "ok";
  } catch (e) {
    fail("plan", e);
    return done();
  }

  const c = cost(program.graph.nodes, jobSizes(job));
  let inputs: Record<string, Tensor>;
  try {
    inputs = jobInputs(job, program);
  } catch (e) {
    // Inputs for a declared shape we cannot build (a dim of 1e11): nothing to run.
    outcomes.interp = outcomes.gpu = `skip (${describe(e)})`;
    return done();
  }

  let want: Tensor[] | undefined;
  if (c <= MAX_COST) {
    phase("interp");
    try {
      want = await program.runAll(inputs, { seed: 3, backend: "interp" });
      const bad = want.map(outputProblem).find((b) => b !== undefined);
      if (bad) findings.push({ kind: "bad-output", phase: "interp", first: bad });
      outcomes.interp = bad ? "bad-output" : "ok";
    } catch (e) {
      fail("interp", e);
    }
  } else outcomes.interp = "skip";

  const gpuOk = c <= GPU_MAX_COST || job.family === "hostile/dims";
  if (gpuOk && wantGpu() && await gpu()) {
    phase("gpu");
    try {
      const got = await program.runAll(inputs, { seed: 3, backend: "gpu", poison: true });
      const bad = got.map(outputProblem).find((b) => b !== undefined);
      const far = !bad && want && outcomes.interp === "ok"
        ? got.map((g, r) => mismatch(g, want![r])).find((m) => m !== undefined)
        : undefined;
      if (bad) findings.push({ kind: "bad-output", phase: "gpu", first: bad });
      if (far) findings.push({ kind: "gpu-mismatch", phase: "gpu", first: far });
      outcomes.gpu = bad ? "bad-output" : "ok";
    } catch (e) {
      fail("gpu", e);
    }
  } else outcomes.gpu = "skip";
  return done();
}

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(Deno.args[i + 1]);
}

if (import.meta.main) {
  const seed = flag("seed", 1);
  const start = flag("start", 0);
  const end = flag("end", start + 1);
  const gpuWanted = flag("gpu", 0);
  const first = flag("first", start);
  const count = flag("count", end - first);
  let gpuDone = flag("gpu-done", 0);
  const fi = Deno.args.indexOf("--families");
  const families = (fi < 0 ? "" : Deno.args[fi + 1]).split(",").filter(Boolean) as Family[];

  let device: Promise<boolean> | undefined;
  const gpu = () =>
    device ??= getDevice().then((d) => {
      emit({ t: "info", adapter: d.facts.description });
      return true;
    }, (e) => {
      emit({ t: "info", gpu: `unavailable: ${describe(e)}` });
      return false;
    });

  for (let i = start; i < end; i++) {
    const job = jobAt(seed, i, families);
    emit({ t: "start", i, family: job.family, chars: job.source.length });
    // The GPU share: keep the count run so far at G × (programs so far) / N.
    const wantGpu = () => gpuDone < Math.ceil((gpuWanted * (i - first + 1)) / count);
    const result = await fuzzOne(i, job, gpu, wantGpu);
    if (result.outcomes.gpu && !result.outcomes.gpu.startsWith("skip")) gpuDone++;
    emit(result);
  }
  Deno.exit(0);
}
