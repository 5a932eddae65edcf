/**
 * The Attune command line.
 *
 *   attune check FILE.attn [--param NAME=VALUE ...] [--entry NAME] [--verify] [--json]
 *   attune explain FILE.attn [--param ...] [--entry NAME] [--ir] [--wgsl] [--json] [--verify]
 *                  [--size NAME=N ...]
 *   attune run FILE.attn --in NAME=PATH.npy ... [--param ...] [--seed N]
 *              [--backend auto|gpu|interp] [--dtype f4|f8] -o PATH.npy
 *   attune --help | --version
 *
 * Relative paths (the program, `--in` files, `--out`) are resolved against the directory the
 * command was started from: under `deno task attune` that is `INIT_CWD` (Deno runs tasks in the
 * config's directory), otherwise the working directory. Every `--flag VALUE` may be written
 * `--flag=VALUE`.
 *
 * Exit status: 0 on success, 1 on a diagnostic (printed with the source line and a caret),
 * 2 on a usage error.
 *
 * @module
 */
import { AttuneError, compileSync, type Program, verify } from "./mod.ts";
import { CompileError, DeviceError, lineCol, MAX_SEED, UsageError } from "./compiler/errors.ts";
import { NpyError, readNpy, writeNpy } from "./runtime/npy.ts";
import { showGraph } from "./compiler/ir/print.ts";
import { sizeOf, type Tensor } from "./compiler/tensor.ts";
import { getDevice } from "./runtime/device.ts";
import type { Dim, Graph, TensorType, ThreadDim } from "./mod.ts";
import { dispatchesPerRun } from "./compiler/lower/plan.ts";

/** The version of Attune (the `version` of deno.json; a test keeps the two equal). */
export const VERSION = "0.1.0";

const USAGE = `attune ${VERSION}: a tensor language for attention variants

usage:
  attune check FILE.attn [--param NAME=VALUE ...] [--entry NAME] [--verify] [--json]
  attune explain FILE.attn [--param NAME=VALUE ...] [--entry NAME] [--size NAME=N ...]
                 [--ir] [--wgsl] [--json] [--verify]
  attune run FILE.attn --in NAME=PATH.npy ... [--param NAME=VALUE ...] [--seed N]
             [--backend auto|gpu|interp] [--dtype f4|f8] -o PATH.npy
  attune --help | --version

commands:
  check     parse and type-check; --json prints { ok, diagnostics } for editors
  explain   summary (signature, dispatches, kernels, buffer memory at typical sizes), then the
            GPU plan; --ir adds the IR as checked and after each optimization pass, --wgsl each
            kernel's source, --json all of it as data; --size n=4096 sets a size for the estimate
  run       run on .npy inputs (float32 or float64, C order, leading batch/head dims allowed)
            and write the output; says which backend ran

options:
  --param NAME=VALUE   compile-time parameter of the entry function (number, true or false)
  --entry NAME         the function to compile (default: the last def)
  --verify             run every optimization pass on random inputs (float64 interpreter) and
                       name the first that changed the result (check, explain)
  --backend B          auto (default: the GPU when a WebGPU adapter exists, else the
                       interpreter), gpu (WebGPU, float32) or interp (float64 reference)
  --seed N             override the seed of every random draw
  --dtype f4|f8        element type of the output file (default f4)
  -o, --out PATH       output file of run
  -h, --help           this text;  --version  the version

Relative paths are taken from the directory you ran the command in. --flag=VALUE works for
every option. Exit status: 0 ok, 1 diagnostic, 2 usage error.`;

/**
 * A decimal number as people type it: digits with an optional sign, point and exponent. No hex,
 * no blanks, no empty string (`Number` reads "" and " " as 0 and "0x10" as 16).
 */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** `text` as a number if it is one written in decimal, else undefined. */
function strictNumber(text: string): number | undefined {
  if (!DECIMAL.test(text)) return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/** Why `parseArgs` stopped early: the user asked for help or the version. */
type Early = { early: "help" | "version" };

interface Args {
  command: string;
  file: string;
  params: Record<string, number | boolean>;
  inputs: Record<string, string>;
  sizes: Record<string, number>;
  entry?: string;
  seed?: number;
  backend: "interp" | "gpu" | "auto";
  dtype: "<f4" | "<f8";
  out?: string;
  json: boolean;
  wgsl: boolean;
  ir: boolean;
  verify: boolean;
}

/** Options that take a value, with the commands they go with. */
const VALUED: Record<string, string[]> = {
  "--param": ["check", "explain", "run"],
  "--entry": ["check", "explain", "run"],
  "--in": ["run"],
  "--seed": ["run"],
  "--backend": ["run"],
  "--dtype": ["run"],
  "--out": ["run"],
  "--size": ["explain"],
};
/** Flags without a value, with the commands they go with. */
const FLAGS: Record<string, string[]> = {
  "--json": ["check", "explain"],
  "--wgsl": ["explain"],
  "--ir": ["explain"],
  "--verify": ["check", "explain"],
};
const ALIASES: Record<string, string> = { "-o": "--out" };

function parseArgs(argv: string[]): Args | Early {
  // --help and --version win wherever they are (before a "--" separator).
  const end = argv.indexOf("--") < 0 ? argv.length : argv.indexOf("--");
  const head = argv.slice(0, end);
  if (head.some((a) => a === "--help" || a === "-h") || argv[0] === "help") {
    return { early: "help" };
  }
  if (head.some((a) => a === "--version" || a === "-V") || argv[0] === "version") {
    return { early: "version" };
  }
  const [command, ...rest] = argv;
  if (!command) throw new UsageError("");
  if (!["check", "explain", "run"].includes(command)) {
    throw new UsageError(
      command.startsWith("-")
        ? `the command comes first: check, explain or run (got ${command})`
        : `unknown command ${command}: use check, explain or run`,
    );
  }
  const a: Args = {
    command,
    file: "",
    params: {},
    inputs: {},
    sizes: {},
    backend: "auto",
    dtype: "<f4",
    json: false,
    wgsl: false,
    ir: false,
    verify: false,
  };
  const pair = (flag: string, s: string): [string, string] => {
    const m = s.match(/^([A-Za-z_]\w*)=(.+)$/);
    if (!m) throw new UsageError(`${flag} expects NAME=VALUE, got ${s || "nothing"}`);
    return [m[1], m[2]];
  };
  // Given twice, an option is refused rather than the last one silently winning.
  const single: Record<string, true> = {};
  const once = (flag: string, name: string, seen: Record<string, unknown>) => {
    const key = name || flag;
    if (key in seen) throw new UsageError(`${name ? `${flag} ${name}` : flag} is given twice`);
    if (!name) single[flag] = true;
  };
  const files: string[] = [];
  let onlyFiles = false;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (onlyFiles || !arg.startsWith("-") || arg === "-") {
      files.push(arg);
      continue;
    }
    if (arg === "--") {
      onlyFiles = true;
      continue;
    }
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const raw = eq < 0 ? arg : arg.slice(0, eq);
    const flag = ALIASES[raw] ?? raw;
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const goesWith = VALUED[flag] ?? FLAGS[flag];
    if (!goesWith) throw new UsageError(`unknown option ${raw}`);
    if (!goesWith.includes(command)) {
      throw new UsageError(`${raw} goes with ${goesWith.join(" or ")}, not ${command}`);
    }
    if (flag in FLAGS) {
      if (inline !== undefined) throw new UsageError(`${flag} takes no value`);
      a[flag.slice(2) as "json" | "wgsl" | "ir" | "verify"] = true;
      continue;
    }
    let value: string;
    if (inline !== undefined) value = inline;
    else {
      if (i + 1 >= rest.length) throw new UsageError(`${raw} needs a value`);
      value = rest[++i];
    }
    switch (flag) {
      case "--param": {
        const [k, v] = pair(flag, value);
        const num = v === "true" ? true : v === "false" ? false : strictNumber(v);
        if (num === undefined) {
          throw new UsageError(
            `--param ${k} expects a decimal number, true or false, got ${JSON.stringify(v)}`,
          );
        }
        once(flag, k, a.params);
        a.params[k] = num;
        break;
      }
      case "--size": {
        const [k, v] = pair(flag, value);
        const n = strictNumber(v);
        if (n === undefined || !Number.isSafeInteger(n) || n < 0) {
          throw new UsageError(`--size ${k} expects a whole number, got ${JSON.stringify(v)}`);
        }
        once(flag, k, a.sizes);
        a.sizes[k] = n;
        break;
      }
      case "--in": {
        const [k, v] = pair(flag, value);
        once(flag, k, a.inputs);
        a.inputs[k] = v;
        break;
      }
      case "--entry":
        once(flag, "", single);
        a.entry = value;
        break;
      case "--seed": {
        const s = /^\d+$/.test(value) ? Number(value) : NaN;
        if (!(s <= MAX_SEED)) {
          throw new UsageError(
            `--seed expects a whole number from 0 to ${MAX_SEED}, got ${JSON.stringify(value)}`,
          );
        }
        once(flag, "", single);
        a.seed = s;
        break;
      }
      case "--backend": {
        if (value !== "interp" && value !== "gpu" && value !== "auto") {
          throw new UsageError(`--backend is auto, gpu or interp, got ${value}`);
        }
        once(flag, "", single);
        a.backend = value;
        break;
      }
      case "--dtype": {
        if (value !== "f4" && value !== "f8") {
          throw new UsageError(`--dtype is f4 or f8, got ${value}`);
        }
        once(flag, "", single);
        a.dtype = value === "f4" ? "<f4" : "<f8";
        break;
      }
      case "--out":
        once(flag, "", single);
        a.out = value;
        break;
    }
  }
  if (files.length === 0) throw new UsageError(`${command} needs a FILE.attn`);
  if (files.length > 1) {
    throw new UsageError(`${command} takes one FILE.attn, got ${files.join(" ")}`);
  }
  a.file = files[0];
  if (command === "run" && !a.out) throw new UsageError("run needs -o PATH.npy (or --out)");
  return a;
}

/**
 * The directory relative paths on the command line are taken from: `INIT_CWD` when it is set
 * and readable (`deno task` sets it to where the task was started, while the task itself runs
 * in the config's directory; the `attune` task grants `--allow-env=INIT_CWD`), else
 * `Deno.cwd()`. Never prompts for a permission.
 */
export function callerDir(): string {
  try {
    const allowed = Deno.permissions.querySync({ name: "env", variable: "INIT_CWD" });
    const init = allowed.state === "granted" ? Deno.env.get("INIT_CWD") : undefined;
    if (init) return init;
  } catch {
    // No permission API or no environment: fall back to the working directory.
  }
  return Deno.cwd();
}

/** `path` resolved against `base` unless it is absolute. */
export function resolvePath(base: string, path: string): string {
  if (path.startsWith("/") || /^[A-Za-z]:[\\/]/.test(path) || path.startsWith("\\\\")) return path;
  const sep = base.includes("\\") && !base.includes("/") ? "\\" : "/";
  return base.endsWith("/") || base.endsWith("\\") ? base + path : base + sep + path;
}

/** Options of `main`. */
export interface MainOptions {
  /** The directory relative paths are taken from (default: `callerDir()`). */
  cwd?: string;
}

/** One editor diagnostic of `attune check --json`: 1-based lines and columns, end exclusive. */
export interface Diagnostic {
  /** The file as given on the command line. */
  file: string;
  /** First line (1-based). */
  line: number;
  /** First column (1-based, UTF-16 code units). */
  col: number;
  /** Line of the end of the span. */
  endLine: number;
  /** Column one past the span's last character (1-based; equals `col` for an empty span). */
  endCol: number;
  /** One line: what is wrong (without the `file:line:col:` prefix). */
  message: string;
  /** What to do about it, when Attune knows; else null. */
  hint: string | null;
}

/** The diagnostic for an error, or undefined for one Attune does not report (a bug). */
function diagnostic(e: unknown, file: string): Diagnostic | undefined {
  if (e instanceof CompileError) {
    const end = lineCol(e.source, e.span.end);
    return {
      file,
      line: e.line,
      col: e.col,
      endLine: Math.max(end.line, e.line),
      endCol: end.line > e.line ? end.col : Math.max(end.col, e.col),
      message: e.what,
      hint: e.hint ?? null,
    };
  }
  if (
    e instanceof AttuneError || e instanceof NpyError || e instanceof Deno.errors.NotFound ||
    e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied ||
    e instanceof Deno.errors.IsADirectory || e instanceof Deno.errors.InvalidData
  ) {
    return { file, line: 1, col: 1, endLine: 1, endCol: 1, message: e.message, hint: null };
  }
  return undefined;
}

/**
 * Run the command line on these arguments; returns the exit status (0 ok, 1 diagnostic,
 * 2 usage error). Output goes to `console.log` (results, `--help`, `--version`, `--json`) and
 * `console.error` (diagnostics, usage errors).
 */
export async function main(argv: string[], options: MainOptions = {}): Promise<number> {
  let parsed: Args | Early;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    if (e.message) console.error(`attune: ${e.message}`);
    console.error(USAGE);
    return 2;
  }
  if ("early" in parsed) {
    console.log(parsed.early === "help" ? USAGE : `attune ${VERSION}`);
    return 0;
  }
  const args = parsed;
  const base = options.cwd ?? callerDir();
  const at = (p: string) => resolvePath(base, p);
  const checkJson = args.command === "check" && args.json;
  try {
    // Before any compute: an output that cannot be written should not cost the run first.
    if (args.out) await checkOut(args.out, at, args.file, Object.values(args.inputs));
    const source = await readProgram(at(args.file), args.file);
    const program: Program = compileSync(source, {
      params: args.params,
      entry: args.entry,
      file: args.file,
    });
    if (args.command === "check" && !checkJson) {
      console.log(`${args.file}: ok`);
    } else if (args.command === "explain") {
      console.log(
        args.json ? JSON.stringify(explainData(program, args.sizes), null, 2) : explainText(
          program,
          args,
        ),
      );
    }
    if (args.verify) {
      const r = verify(program);
      let problem: string | undefined;
      if (r.trials === 0) {
        problem = `verify: no trial ran: the program rejected every size drawn (${r.rejection})`;
      } else if (!r.ok) {
        const f = r.failure!;
        const sizes = Object.entries(f.sizes).map(([k, v]) => `${k}=${v}`).join(" ");
        problem =
          `verify: pass "${f.pass}" changed the result (sizes ${sizes}, seed ${f.seed}): ${f.detail}`;
      }
      if (checkJson) {
        const diagnostics = problem
          ? [{
            file: args.file,
            line: 1,
            col: 1,
            endLine: 1,
            endCol: 1,
            message: problem,
            hint: null,
          }]
          : [];
        console.log(JSON.stringify({ ok: !problem, diagnostics, verify: r.trials }));
        return problem ? 1 : 0;
      }
      if (problem) {
        console.error(problem);
        return 1;
      }
      console.log(
        `verify: ${r.trials} trial${r.trials === 1 ? "" : "s"}, every pass preserves the result` +
          (r.skipped ? ` (${r.skipped} size draws rejected by the program and grown)` : ""),
      );
    } else if (checkJson) {
      console.log(JSON.stringify({ ok: true, diagnostics: [] }));
    }
    if (args.command === "run") {
      const inputs: Record<string, Tensor> = {};
      for (const [name, path] of Object.entries(args.inputs)) {
        inputs[name] = await readNpy(at(path));
      }
      let backend: "interp" | "gpu" = args.backend === "interp" ? "interp" : "gpu";
      let ran: string;
      if (backend === "gpu") {
        try {
          ran = `gpu, ${(await getDevice()).facts.description}`;
        } catch (e) {
          if (!(e instanceof DeviceError) || args.backend === "gpu") throw e;
          backend = "interp";
          ran = "interp, float64 interpreter: no WebGPU adapter";
          console.error(
            `attune: no WebGPU adapter, running on the float64 interpreter (${e.message})`,
          );
        }
      } else ran = "interp, float64 interpreter";
      const y = await program.run(inputs, { seed: args.seed, backend });
      await writeNpy(at(args.out!), y, { dtype: args.dtype });
      console.log(`${args.out}: [${y.shape.join(", ")}] ${args.dtype.slice(1)} (${ran})`);
    }
    return 0;
  } catch (e) {
    if (checkJson) {
      const d = diagnostic(e, args.file);
      if (!d) throw e;
      console.log(JSON.stringify({ ok: false, diagnostics: [d] }));
      return 1;
    }
    if (e instanceof CompileError) console.error(e.format());
    else if (e instanceof DeviceError) {
      console.error(
        `error: ${e.message}\nhint: --backend interp runs on the CPU reference interpreter`,
      );
    } else if (diagnostic(e, args.file)) console.error(`error: ${(e as Error).message}`);
    else throw e;
    return 1;
  }
}

/** The program text; a directory or a missing file is named as such. */
async function readProgram(path: string, shown: string): Promise<string> {
  const info = await Deno.stat(path).catch(() => undefined);
  if (info?.isDirectory) {
    const dir = shown.replace(/[\\/]+$/, "");
    throw new UsageError(`${shown} is a directory; give one FILE.attn (e.g. ${dir}/exact.attn)`);
  }
  return await Deno.readTextFile(path);
}

/** `path` with symbolic links resolved where it exists, else as given. */
async function real(path: string): Promise<string> {
  return await Deno.realPath(path).catch(() => path);
}

/**
 * Refuse an output path that cannot be written or would destroy what the run reads: a directory,
 * a path in a directory that does not exist, the program or an input file.
 */
async function checkOut(
  shown: string,
  at: (p: string) => string,
  program: string,
  inputs: string[],
): Promise<void> {
  const out = at(shown);
  const info = await Deno.stat(out).catch(() => undefined);
  if (info?.isDirectory) throw new UsageError(`--out ${shown} is a directory; name a file in it`);
  const slash = Math.max(out.lastIndexOf("/"), out.lastIndexOf("\\"));
  const dir = slash < 0 ? "." : out.slice(0, slash) || "/";
  const dirInfo = await Deno.stat(dir).catch(() => undefined);
  if (!dirInfo?.isDirectory) {
    throw new UsageError(`--out ${shown}: the directory ${dir} does not exist; create it first`);
  }
  if (!info) return;
  const target = await real(out);
  if (target === await real(at(program))) {
    throw new UsageError(`--out ${shown} is the program file; writing it would destroy the source`);
  }
  for (const input of inputs) {
    if (target === await real(at(input))) {
      throw new UsageError(
        `--out ${shown} is also an input (--in ${input}); write to another file`,
      );
    }
  }
}

/**
 * The sizes `explain` estimates memory at: each size symbol that only ever sizes the last axis
 * of inputs (a feature width such as d or e) is 64, every other one (token counts) 1024;
 * `given` overrides.
 */
function typicalSizes(g: Graph, given: Record<string, number> = {}): Record<string, number> {
  const sizes: Record<string, number> = {};
  for (const s of Object.keys(g.symbols)) {
    const uses = g.inputs.flatMap((i) =>
      i.type.shape.flatMap((d, k) => d === s ? [k === i.type.shape.length - 1] : [])
    );
    sizes[s] = given[s] ?? (uses.length > 0 && uses.every((last) => last) ? 64 : 1024);
  }
  return sizes;
}

/** Bytes of the plan's buffers for one (batch, head) slice at these sizes (float32). */
function planBytes(p: Program, sizes: Record<string, number>): number {
  const value = (d: Dim) => typeof d === "number" ? d : sizes[d] ?? 1024;
  const elements = (shape: Dim[]) => sizeOf(shape.map(value));
  return p.plan().buffers.reduce(
    (t, b) => t + 4 * (b.parts ? b.parts.reduce((s, q) => s + elements(q), 0) : elements(b.shape)),
    0,
  );
}

function showBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let u = -1;
  do {
    n /= 1024;
    u++;
  } while (n >= 1024 && u < units.length - 1);
  return `${n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0)} ${units[u]}`;
}

/** `explainJson` with the memory estimate of the summary: sizes used and bytes per slice. */
function explainData(p: Program, given: Record<string, number>) {
  const sizes = typicalSizes(p.graph, given);
  return { ...explainJson(p), typicalSizes: sizes, bufferBytesPerSlice: planBytes(p, sizes) };
}

/** What `attune explain` prints: a summary, the GPU plan, and the IR with `--ir`. */
function explainText(p: Program, args: Args): string {
  const full = p.explain({ wgsl: args.wgsl });
  const split = full.indexOf("\nGPU plan: ");
  const [irPart, planPart] = [full.slice(0, split), full.slice(split + 1)];
  const header = irPart.split("\n").slice(0, 3); // signature, params, size symbols
  const ir = irPart.split("\n").slice(4).join("\n");
  const plan = p.plan();
  const perRun = dispatchesPerRun(plan);
  const sizes = typicalSizes(p.graph, args.sizes);
  const at = Object.entries(sizes).map(([k, v]) => `${k} = ${v}`).join(", ");
  let last = showGraph(p.graph);
  const changed = p.passes.filter(({ graph }) => {
    const shown = showGraph(graph);
    const differs = shown !== last;
    last = shown;
    return differs;
  }).map((s) => s.pass);
  const summary = [
    ...header,
    `dispatches: ${plan.kernels.length} (kernels below)` +
    (perRun === plan.kernels.length
      ? ""
      : `; a run makes ${perRun}: host loops repeat their bodies`),
    `buffers: ${plan.buffers.length}, ${showBytes(planBytes(p, sizes))} per (batch, head) slice` +
    (at ? ` at ${at}` : "") + " (float32; --size NAME=N for others)",
    `optimizer: ${changed.length ? changed.join(", ") : "no pass"} changed the IR` +
    (args.ir ? "" : " (--ir shows it)"),
  ];
  return [
    ...summary,
    ...(args.ir ? ["", ir] : []),
    "",
    planPart.replace(/^GPU plan: .*/, "GPU plan (kernel, threads per (batch, head) slice):"),
  ].join("\n");
}

/** What `attune explain --json` prints: IR after each pass, kernels, buffers, dispatch count. */
export interface ExplainJson {
  /** The compiled function. */
  entry: string;
  /** Compile-time parameters with their values. */
  params: Graph["params"];
  /** The tensor inputs with their declared kinds and shapes. */
  inputs: { name: string; dtype: TensorType["dtype"]; shape: TensorType["shape"] }[];
  /** The result's type. */
  output: TensorType | undefined;
  /** Size symbols. */
  symbols: string[];
  /** The IR as checked, one line per node. */
  ir: string[];
  /** The IR after each optimization pass that changed it. */
  passes: { pass: string; ir: string[] }[];
  /** GPU dispatches per run. */
  dispatches: number;
  /** The plan's buffers with their per-slice shapes (arenas: their parts). */
  buffers: { id: number; shape: Dim[]; parts: Dim[][] | undefined }[];
  /** Random draws made on the host: the buffer and the IR node of each. */
  hostDraws: { buffer: number; node: number }[];
  /** The dispatches in order. */
  kernels: {
    name: string;
    threads: ThreadDim[][];
    workgroupPerSlice: boolean;
    regions: number;
    bindings: number[];
    writes: number[];
    wgsl: string;
  }[];
}

/** What `attune explain --json` prints: IR after each pass, kernels, buffers, dispatch count. */
export function explainJson(p: Program): ExplainJson {
  const g = p.graph;
  const plan = p.plan();
  return {
    entry: g.entry,
    params: g.params,
    inputs: g.inputs.map((i) => ({ name: i.name, dtype: i.type.dtype, shape: i.type.shape })),
    output: g.nodes.find((n) => n.id === g.output)?.type,
    symbols: Object.keys(g.symbols),
    ir: showGraph(g).split("\n"),
    passes: p.passes.map((s) => ({ pass: s.pass, ir: showGraph(s.graph).split("\n") })),
    dispatches: plan.kernels.length,
    buffers: plan.buffers.map((b) => ({ id: b.id, shape: b.shape, parts: b.parts })),
    hostDraws: plan.hostDraws.map((h) => ({ buffer: h.buffer, node: h.node.id })),
    kernels: plan.kernels.map((k) => ({
      name: k.name,
      threads: k.launch.kind === "grid" ? k.launch.parts : [[]],
      workgroupPerSlice: k.launch.kind === "slice",
      regions: k.launch.kind === "grid" ? k.launch.regions : 0,
      bindings: k.bindings,
      writes: k.writes,
      wgsl: k.wgsl,
    })),
  };
}

if (import.meta.main) Deno.exit(await main(Deno.args));
