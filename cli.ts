/**
 * The Attune command line.
 *
 *   attune check FILE.attn [--param NAME=VALUE ...] [--entry NAME] [--verify]
 *   attune explain FILE.attn [--param ...] [--entry NAME] [--wgsl] [--json] [--verify]
 *   attune run FILE.attn --in NAME=PATH.npy ... [--param ...] [--seed N]
 *              [--backend gpu|interp] [--dtype f4|f8] --out PATH.npy
 *
 * Exit status: 0 on success, 1 on a diagnostic (printed with the source line and a caret),
 * 2 on a usage error.
 */
import { AttuneError, compileSync, type Program, verify } from "./mod.ts";
import { CompileError, DeviceError } from "./compiler/errors.ts";
import { NpyError, readNpy, writeNpy } from "./runtime/npy.ts";
import { showGraph } from "./compiler/ir.ts";
import type { Tensor } from "./compiler/tensor.ts";

const USAGE = `usage:
  attune check FILE.attn [--param NAME=VALUE ...] [--entry NAME] [--verify]
  attune explain FILE.attn [--param NAME=VALUE ...] [--entry NAME] [--wgsl] [--json] [--verify]
  attune run FILE.attn --in NAME=PATH.npy ... [--param NAME=VALUE ...] [--seed N]
             [--backend gpu|interp] [--dtype f4|f8] --out PATH.npy
  (run defaults to --backend gpu; interp is the float64 reference interpreter;
   --verify runs every optimization pass on random inputs and names the first that changed
   the result)`;

class UsageError extends Error {}

interface Args {
  command: string;
  file: string;
  params: Record<string, number | boolean>;
  inputs: Record<string, string>;
  entry?: string;
  seed?: number;
  backend: "interp" | "gpu";
  dtype: "<f4" | "<f8";
  out?: string;
  json: boolean;
  wgsl: boolean;
  verify: boolean;
}

function parseArgs(argv: string[]): Args {
  const [command, file, ...rest] = argv;
  if (!command || command === "--help" || command === "-h") throw new UsageError("");
  if (!["check", "explain", "run"].includes(command)) {
    throw new UsageError(`unknown command ${command}`);
  }
  if (!file) throw new UsageError(`${command} needs a FILE.attn`);
  const a: Args = {
    command,
    file,
    params: {},
    inputs: {},
    backend: "gpu",
    dtype: "<f4",
    json: false,
    wgsl: false,
    verify: false,
  };
  const pair = (flag: string, s: string | undefined): [string, string] => {
    const m = s?.match(/^([A-Za-z_]\w*)=(.+)$/);
    if (!m) throw new UsageError(`${flag} expects NAME=VALUE, got ${s ?? "nothing"}`);
    return [m[1], m[2]];
  };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const next = () => {
      if (i + 1 >= rest.length) throw new UsageError(`${flag} needs a value`);
      return rest[++i];
    };
    switch (flag) {
      case "--param": {
        const [k, v] = pair(flag, next());
        const num = v === "true" ? true : v === "false" ? false : Number(v);
        if (typeof num === "number" && !Number.isFinite(num)) {
          throw new UsageError(`--param ${k} expects a number, got ${v}`);
        }
        a.params[k] = num;
        break;
      }
      case "--in": {
        const [k, v] = pair(flag, next());
        a.inputs[k] = v;
        break;
      }
      case "--entry":
        a.entry = next();
        break;
      case "--seed": {
        const s = Number(next());
        if (!Number.isInteger(s)) throw new UsageError(`--seed expects an integer`);
        a.seed = s;
        break;
      }
      case "--backend": {
        const b = next();
        if (b !== "interp" && b !== "gpu") throw new UsageError(`--backend is interp or gpu`);
        a.backend = b;
        break;
      }
      case "--dtype": {
        const d = next();
        if (d !== "f4" && d !== "f8") throw new UsageError(`--dtype is f4 or f8`);
        a.dtype = d === "f4" ? "<f4" : "<f8";
        break;
      }
      case "--out":
        a.out = next();
        break;
      case "--json":
        a.json = true;
        break;
      case "--wgsl":
        a.wgsl = true;
        break;
      case "--verify":
        if (command === "run") throw new UsageError("--verify goes with check or explain");
        a.verify = true;
        break;
      default:
        throw new UsageError(`unknown option ${flag}`);
    }
  }
  if (command === "run" && !a.out) throw new UsageError("run needs --out PATH.npy");
  return a;
}

/** Run the command line on these arguments; returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    if (e.message) console.error(`attune: ${e.message}`);
    console.error(USAGE);
    return 2;
  }
  try {
    const source = await Deno.readTextFile(args.file);
    const program: Program = compileSync(source, {
      params: args.params,
      entry: args.entry,
      file: args.file,
    });
    if (args.command === "check") {
      console.log(`${args.file}: ok`);
    } else if (args.command === "explain") {
      console.log(
        args.json
          ? JSON.stringify(explainJson(program), null, 2)
          : program.explain({ wgsl: args.wgsl }),
      );
    }
    if (args.verify) {
      const r = verify(program);
      if (r.trials === 0) {
        console.error(
          `verify: no trial ran: the program rejected every size drawn (${r.rejection})`,
        );
        return 1;
      }
      if (!r.ok) {
        const f = r.failure!;
        const sizes = Object.entries(f.sizes).map(([k, v]) => `${k}=${v}`).join(" ");
        console.error(
          `verify: pass "${f.pass}" changed the result (sizes ${sizes}, seed ${f.seed}): ${f.detail}`,
        );
        return 1;
      }
      console.log(
        `verify: ${r.trials} trial${r.trials === 1 ? "" : "s"}, every pass preserves the result` +
          (r.skipped ? ` (${r.skipped} size draws rejected by the program and grown)` : ""),
      );
    }
    if (args.command === "run") {
      const inputs: Record<string, Tensor> = {};
      for (const [name, path] of Object.entries(args.inputs)) inputs[name] = await readNpy(path);
      const y = await program.run(inputs, { seed: args.seed, backend: args.backend });
      await writeNpy(args.out!, y, { dtype: args.dtype });
      console.log(`${args.out}: [${y.shape.join(", ")}] ${args.dtype.slice(1)}`);
    }
    return 0;
  } catch (e) {
    if (e instanceof CompileError) console.error(e.format());
    else if (e instanceof DeviceError) {
      console.error(
        `error: ${e.message}\nhint: --backend interp runs on the CPU reference interpreter`,
      );
    } else if (e instanceof AttuneError || e instanceof NpyError) {
      console.error(`error: ${e.message}`);
    } else if (e instanceof Deno.errors.NotFound) console.error(`error: ${e.message}`);
    else if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      console.error(`error: ${e.message}`);
    } else throw e;
    return 1;
  }
}

/** What `attune explain --json` prints: IR after each pass, kernels, buffers, dispatch count. */
export function explainJson(p: Program) {
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
      threads: k.parts ?? [k.threads],
      workgroupPerSlice: k.workgroupPerSlice ?? false,
      regions: k.regions ?? 0,
      bindings: k.bindings ?? [k.write, ...k.readBuffers],
      writes: k.writes ?? [k.write],
      wgsl: k.wgsl,
    })),
  };
}

if (import.meta.main) Deno.exit(await main(Deno.args));
