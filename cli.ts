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
import { CompileError, DeviceError, lineCol, UsageError } from "./compiler/errors.ts";
import { NpyError, readNpy, writeNpy } from "./runtime/npy.ts";
import type { Tensor } from "./compiler/tensor.ts";
import { getDevice } from "./runtime/device.ts";
import { type Args, type Early, parseArgs } from "./cli/args.ts";
import { explainData, explainText } from "./cli/explain.ts";

export { type ExplainJson, explainJson } from "./cli/explain.ts";

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
            and write the output (several results: PATH.1.npy, PATH.2.npy, ...); says which
            backend ran

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
      const status = verifyProgram(program, args, checkJson);
      if (status !== 0) return status;
    } else if (checkJson) {
      console.log(JSON.stringify({ ok: true, diagnostics: [] }));
    }
    if (args.command === "run") await runProgram(program, args, at);
    return 0;
  } catch (e) {
    return failure(e, args, checkJson);
  }
}

/**
 * `--verify`: run every pass on random inputs; prints the verdict (as `check --json` data when
 * asked) and returns the exit status.
 */
function verifyProgram(program: Program, args: Args, checkJson: boolean): number {
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
  return 0;
}

/**
 * The files `run` writes: `-o PATH` itself for a one-result program; for several results, one
 * file per result with its number before the extension (y.npy: y.1.npy, y.2.npy, ...).
 */
function outPaths(out: string, results: number): string[] {
  if (results === 1) return [out];
  const dot = out.lastIndexOf(".");
  const cut = dot > Math.max(out.lastIndexOf("/"), out.lastIndexOf("\\")) ? dot : out.length;
  return Array.from(
    { length: results },
    (_, k) => `${out.slice(0, cut)}.${k + 1}${out.slice(cut)}`,
  );
}

/** `attune run`: read the inputs, run where asked (or where possible), write each result. */
async function runProgram(program: Program, args: Args, at: (p: string) => string) {
  const paths = outPaths(args.out!, program.graph.outputs.length);
  if (paths.length > 1) {
    for (const p of paths) await checkOut(p, at, args.file, Object.values(args.inputs));
  }
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
  const ys = await program.runAll(inputs, {
    seed: args.seed,
    backend,
    // A first run compiles its shaders (minutes for a large head size on a software adapter).
    onProgress: (e) => {
      if (e.ms > 1000) {
        console.error(
          `attune: compiled kernel ${e.done}/${e.total} (${e.kernel}) in ${
            (e.ms / 1000).toFixed(1)
          } s`,
        );
      }
    },
  });
  for (const [k, y] of ys.entries()) {
    await writeNpy(at(paths[k]), y, { dtype: args.dtype });
    console.log(`${paths[k]}: [${y.shape.join(", ")}] ${args.dtype.slice(1)} (${ran})`);
  }
}

/** Report an error Attune knows (exit status 1); anything else is a bug and is rethrown. */
function failure(e: unknown, args: Args, checkJson: boolean): number {
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

if (import.meta.main) Deno.exit(await main(Deno.args));
