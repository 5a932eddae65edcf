/**
 * Volume robustness fuzzing of bad input, outside the test suite:
 *
 *   deno task fuzz:input -- --count 100000 [--gpu 1000] [--seed S] [--timeout-ms 10000]
 *     [--heap-mb 1024] [--memory-mb 4096] [--families soup,grammar,mutant,spec,hostile]
 *     [--start I] [--only I]
 *
 * Runs `--count` programs (tests/mutate.ts `jobAt(seed, index)`: token soup, grammar-shaped
 * programs, mutated examples, generated attention programs and hostile ones: huge parameters,
 * deep nesting, thousands of statements, chains of defs, `repeat 4294967296`, duplicate names,
 * literals out of float32 range, dims of 0 and 1e11) through `compileSync` and `plan()`, the
 * cheap ones through the interpreter, and `--gpu` of them (1% by default, spread over the run,
 * small ones only) on WebGPU too, in a child process
 * (bench/fuzz_child.ts) with a V8 heap cap (`--heap-mb`). When one program runs past
 * `--timeout-ms` or the child's resident memory passes `--memory-mb`, the child is killed and a
 * new one goes on from the next program; a child that dies is a finding too.
 *
 * Findings (uncaught exceptions, CompileErrors without a valid span, hangs, process deaths,
 * memory blow-ups, DeviceErrors and GPU/interpreter mismatches) are grouped by kind, phase,
 * family and first line; the first few of each get their program saved under
 * bench/results/fuzz_input/ (`SEED-INDEX.attn`; emptied at the start of a run). `--only I`
 * reruns program I alone (what a finding's `reproduce` says; its `params` are the `--param`s).
 * Writes bench/results/fuzz_input.json (not with `--only`).
 */
import { FAMILIES, type Family, jobAt } from "../tests/mutate.ts";
import type { ChildFinding, Done, Phase } from "./fuzz_child.ts";

const FLAGS = [
  "count",
  "gpu",
  "seed",
  "start",
  "only",
  "timeout-ms",
  "heap-mb",
  "memory-mb",
  "families",
];
// `deno task fuzz:input -- --count N` passes the `--` on: it separates, it is not an option.
const args = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
for (let i = 0; i < args.length; i += 2) {
  if (!FLAGS.includes(args[i].replace(/^--/, "")) || !args[i].startsWith("--")) {
    throw new Error(`unknown option ${args[i]}: use ${FLAGS.map((f) => `--${f}`).join(" ")}`);
  }
}

function flag(name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v)) throw new Error(`--${name} expects a number, got ${args[i + 1]}`);
  return v;
}

const only = args.includes("--only") ? flag("only", 0) : undefined;
const seed = flag("seed", 1);
const first = only ?? flag("start", 0);
const count = only === undefined ? flag("count", 100_000) : 1;
/** GPU runs: 1% of the programs unless told. */
const gpuWanted = flag("gpu", only === undefined ? Math.ceil(count / 100) : 1);
const timeoutMs = flag("timeout-ms", 10_000);
const heapMb = flag("heap-mb", 1024);
const memoryMb = flag("memory-mb", 4096);
const fi = args.indexOf("--families");
const families = (fi < 0 ? "" : args[fi + 1]).split(",").filter(Boolean) as Family[];
for (const f of families) {
  if (!(f in FAMILIES)) throw new Error(`unknown family ${f}: use ${Object.keys(FAMILIES)}`);
}
/** Programs saved per distinct finding. */
const EXAMPLES_PER_FINDING = 3;

const results = new URL("./results/", import.meta.url);
const reproDir = new URL("./fuzz_input/", results);
const examplesDir = new URL("../examples/", import.meta.url).pathname;
const childPath = new URL("./fuzz_child.ts", import.meta.url).pathname;
const root = new URL("../", import.meta.url).pathname;

type Kind = ChildFinding["kind"] | "timeout" | "memory" | "death";

interface Occurrence {
  index: number;
  /** The saved program, relative to the repository root. */
  repro: string;
  params?: Record<string, string>;
  chars: number;
  /** Head of the stack (uncaught exceptions) or of the child's stderr (deaths). */
  detail?: string;
}

interface Finding {
  kind: Kind;
  phase: Phase | "between";
  family: string;
  first: string;
  count: number;
  reproduce: string;
  examples: Occurrence[];
}

const findings = new Map<string, Finding>();
/** Outcome counts per phase: `ok`, `skip`, or an error class. */
const phases: Record<Phase, Record<string, number>> = {
  compile: {},
  plan: {},
  interp: {},
  gpu: {},
};
const familyCounts: Record<string, number> = {};
/** Seconds spent per family (programs that finished). */
const familySeconds: Record<string, number> = {};
const slowest: { index: number; family: string; ms: number }[] = [];
let adapter: string | undefined;
let gpuNote: string | undefined;
let memoryNote: string | undefined;
let gpuDone = 0;
let restarts = 0;

function bump(rec: Record<string, number>, key: string): void {
  rec[key] = (rec[key] ?? 0) + 1;
}

/** Record one finding for program `index`, saving its program for the first few. */
async function record(
  index: number,
  kind: Kind,
  phase: Finding["phase"],
  first: string,
  detail?: string,
): Promise<void> {
  const job = jobAt(seed, index, families);
  // Group by what the message says, not by the numbers in it.
  const key = [kind, phase, job.family, first.replace(/\d+(\.\d+)?(e[+-]?\d+)?/g, "#")].join("|");
  let f = findings.get(key);
  if (!f) {
    f = {
      kind,
      phase,
      family: job.family,
      first,
      count: 0,
      reproduce: `deno task fuzz:input -- --seed ${seed} --only ${index}` +
        (families.length ? ` --families ${families.join(",")}` : ""),
      examples: [],
    };
    findings.set(key, f);
    console.log(`finding: ${kind} in ${phase} (${job.family}, program ${index}): ${first}`);
  }
  f.count++;
  if (f.examples.length >= EXAMPLES_PER_FINDING) return;
  await Deno.mkdir(reproDir, { recursive: true });
  const name = `${seed}-${index}.attn`;
  await Deno.writeTextFile(new URL(name, reproDir), job.source);
  const params = job.params &&
    Object.fromEntries(Object.entries(job.params).map(([k, v]) => [k, String(v)]));
  f.examples.push({
    index,
    repro: `bench/results/fuzz_input/${name}`,
    params,
    chars: job.source.length,
    detail,
  });
}

/**
 * Resident memory of a process in MiB from `ps` (Deno reads /proc/PID only with --allow-all),
 * or undefined when `ps` cannot be run: then the memory bound is off and the summary says so.
 */
async function rssMb(pid: number): Promise<number | undefined> {
  if (memoryNote) return undefined;
  try {
    const out = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(pid)] }).output();
    const kb = Number(new TextDecoder().decode(out.stdout).trim());
    return out.success && kb > 0 ? kb / 1024 : 0;
  } catch (e) {
    memoryNote = `memory bound off: ps could not be run (${(e as Error).message.split("\n")[0]})`;
    console.log(memoryNote);
    return undefined;
  }
}

/** The deno binary to run: this one where allowed, else `deno` on PATH (`--allow-run=deno`). */
function denoCommand(): string {
  const exec = Deno.execPath();
  return Deno.permissions.querySync({ name: "run", command: exec }).state === "granted"
    ? exec
    : "deno";
}

/** Lines of a byte stream. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
  if (buf) yield buf;
}

/** Run a child from program `start`; returns where the next child should start. */
async function runChild(start: number, end: number): Promise<number> {
  const child = new Deno.Command(denoCommand(), {
    args: [
      "run",
      "--no-prompt",
      `--v8-flags=--max-old-space-size=${heapMb}`,
      `--allow-read=${examplesDir}`,
      childPath,
      "--seed",
      String(seed),
      "--start",
      String(start),
      "--end",
      String(end),
      "--first",
      String(first),
      "--count",
      String(count),
      "--gpu",
      String(gpuWanted),
      "--gpu-done",
      String(gpuDone),
      ...(families.length ? ["--families", families.join(",")] : []),
    ],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();

  let current:
    | { index: number; phase: Phase | "between"; since: number; outcomes: Done["outcomes"] }
    | undefined;
  let next = start;
  let killed: "timeout" | "memory" | undefined;
  let stderrTail = "";
  const stderr = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderrTail = (stderrTail + chunk).slice(-8192);
    }
  })();
  const kill = (why: "timeout" | "memory") => {
    if (killed) return;
    killed = why;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  };
  const watchdog = setInterval(() => {
    if (current && performance.now() - current.since > timeoutMs) kill("timeout");
  }, 50);
  // Resident memory, polled with `ps` a few times a second (one poll at a time).
  let polling = false;
  const memoryWatch = setInterval(async () => {
    if (polling || killed) return;
    polling = true;
    const mb = await rssMb(child.pid);
    if (mb !== undefined && mb > memoryMb) kill("memory");
    polling = false;
  }, 250);

  for await (const line of lines(child.stdout)) {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      continue; // not ours (a library printing to stdout)
    }
    if (msg.t === "start") {
      current = { index: msg.i, phase: "between", since: performance.now(), outcomes: {} };
      stderrTail = "";
    } else if (msg.t === "phase" && current) {
      current.phase = msg.phase;
      current.outcomes = msg.outcomes;
    } else if (msg.t === "info") {
      adapter ??= msg.adapter;
      gpuNote ??= msg.gpu;
    } else if (msg.t === "done") {
      const d = msg as Done;
      current = undefined;
      next = d.i + 1;
      bump(familyCounts, d.family);
      familySeconds[d.family] = (familySeconds[d.family] ?? 0) + d.ms / 1000;
      for (const [p, o] of Object.entries(d.outcomes)) {
        bump(phases[p as Phase], o.startsWith("skip") ? "skip" : o);
      }
      if (d.outcomes.gpu && !d.outcomes.gpu.startsWith("skip")) gpuDone++;
      for (const f of d.findings) await record(d.i, f.kind, f.phase, f.first, f.stack);
      if (slowest.length < 10 || d.ms > slowest[slowest.length - 1].ms) {
        slowest.push({ index: d.i, family: d.family, ms: Math.round(d.ms) });
        slowest.sort((a, b) => b.ms - a.ms).splice(10);
      }
      const done = d.i + 1 - first;
      if (done % 500 === 0) progress(done);
    }
  }
  const status = await child.status;
  clearInterval(watchdog);
  clearInterval(memoryWatch);
  await stderr;
  if (current) {
    // The child was killed or died inside program `current.index`: a finding; go on after it.
    const why = killed === "timeout"
      ? `over ${timeoutMs} ms`
      : killed === "memory"
      ? `resident memory over ${memoryMb} MiB`
      : `process died: ${status.signal ? `signal ${status.signal}` : `exit ${status.code}`}`;
    const tail = stderrTail.split("\n").map((l) => l.replace(/^#\s*/, "").trim()).filter((l) =>
      l && !l.startsWith("<---") && !/^\[\d+:0x/.test(l) && !/^#+$/.test(l)
    );
    const detail = tail.slice(0, 6).join("\n") || undefined;
    const said = tail.find((l) => /fatal|error|panic/i.test(l)) ?? tail[0];
    const line = killed || !said ? why : `${why}: ${said}`;
    await record(current.index, killed ?? "death", current.phase, line, detail);
    for (const [p, o] of Object.entries(current.outcomes)) bump(phases[p as Phase], o);
    bump(phases[current.phase === "between" ? "compile" : current.phase], killed ?? "death");
    bump(familyCounts, jobAt(seed, current.index, families).family);
    return current.index + 1;
  }
  // Killed for memory between programs: go on from the next one.
  if (!status.success && next < end && !killed) {
    throw new Error(
      `the child exited (${status.signal ?? status.code}) outside any program:\n${stderrTail}`,
    );
  }
  return next;
}

const t0 = performance.now();
function progress(done: number): void {
  const s = (performance.now() - t0) / 1000;
  let n = 0;
  for (const f of findings.values()) n += f.count;
  console.log(
    `${done}/${count} programs, ${(done / s).toFixed(1)}/s, ${gpuDone} on the GPU, ` +
      `${n} findings (${findings.size} distinct), ${restarts} restarts`,
  );
}

if (only === undefined) await Deno.remove(reproDir, { recursive: true }).catch(() => {});
const end = first + count;
for (let start = first; start < end;) {
  start = await runChild(start, end);
  if (start < end) restarts++;
}
const seconds = (performance.now() - t0) / 1000;
progress(count);

const all = [...findings.values()].sort((a, b) =>
  a.kind.localeCompare(b.kind) || b.count - a.count
);
const summary = {
  date: new Date().toISOString(),
  seed,
  first,
  count,
  families: families.length ? families : Object.keys(FAMILIES),
  gpuWanted,
  timeoutMs,
  heapMb,
  memoryMb,
  seconds,
  programsPerSecond: count / seconds,
  throughCompile: Object.values(phases.compile).reduce((a, b) => a + b, 0),
  throughPlan: Object.values(phases.plan).reduce((a, b) => a + b, 0),
  interpRuns: Object.entries(phases.interp).filter(([k]) => k !== "skip")
    .reduce((a, [, b]) => a + b, 0),
  gpuRuns: gpuDone,
  adapter: adapter ?? null,
  gpuNote: gpuNote ?? null,
  memoryNote: memoryNote ?? null,
  restarts,
  phases,
  programsPerFamily: familyCounts,
  secondsPerFamily: Object.fromEntries(
    Object.entries(familySeconds).sort((a, b) => b[1] - a[1]).map(([f, x]) => [f, +x.toFixed(2)]),
  ),
  findingsTotal: all.reduce((a, f) => a + f.count, 0),
  findings: all,
  slowest,
};

console.log(
  `\n${count} programs in ${seconds.toFixed(1)} s (${summary.programsPerSecond.toFixed(1)}/s): ` +
    `${summary.throughPlan} through plan, ${summary.interpRuns} interpreter runs, ` +
    `${gpuDone} GPU runs${adapter ? ` (${adapter})` : gpuNote ? ` (${gpuNote})` : ""}; ` +
    `${summary.findingsTotal} findings, ${all.length} distinct:`,
);
for (const f of all) {
  const ex = f.examples[0];
  console.log(
    `  ${String(f.count).padStart(5)} × ${f.kind} in ${f.phase} (${f.family}): ${f.first}\n` +
      `          ${ex.repro}${ex.params ? ` params ${JSON.stringify(ex.params)}` : ""}; ` +
      f.reproduce,
  );
}
if (only === undefined) {
  await Deno.mkdir(results, { recursive: true });
  await Deno.writeTextFile(
    new URL("fuzz_input.json", results),
    JSON.stringify(summary, null, 2) + "\n",
  );
  console.log("wrote bench/results/fuzz_input.json");
}
