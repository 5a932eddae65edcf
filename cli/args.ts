/**
 * The command line's arguments: one table of options, each with the commands it goes with and
 * how its value is read, and `parseArgs`, which reads argv through it. Every problem is a
 * `UsageError` (exit status 2).
 */
import { MAX_SEED, UsageError } from "../compiler/errors.ts";

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
export type Early = { early: "help" | "version" };

/** The commands. */
type Command = "check" | "explain" | "run";
const COMMANDS: Command[] = ["check", "explain", "run"];

/** What the command line asks for. */
export interface Args {
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

/** The NAME=VALUE of a keyed option such as `--param`. */
function pair(flag: string, s: string): [string, string] {
  const m = s.match(/^([A-Za-z_]\w*)=(.+)$/);
  if (!m) throw new UsageError(`${flag} expects NAME=VALUE, got ${s || "nothing"}`);
  return [m[1], m[2]];
}

/** `name`, unless a keyed option already gave it (refused rather than the last one winning). */
function fresh(flag: string, name: string, seen: Record<string, unknown>): string {
  if (Object.hasOwn(seen, name)) throw new UsageError(`${flag} ${name} is given twice`);
  return name;
}

/** One option: the commands it goes with and how its value is read. */
interface Option {
  commands: Command[];
  /** Reads the value into the arguments; absent for a flag, which takes no value. */
  read?: (a: Args, value: string) => void;
  /** Refused when given twice (keyed options refuse a repeated NAME themselves, in `read`). */
  single?: boolean;
}

const OPTIONS: Record<string, Option> = {
  "--param": {
    commands: ["check", "explain", "run"],
    read: (a, value) => {
      const [k, v] = pair("--param", value);
      const num = v === "true" ? true : v === "false" ? false : strictNumber(v);
      if (num === undefined) {
        throw new UsageError(
          `--param ${k} expects a decimal number, true or false, got ${JSON.stringify(v)}`,
        );
      }
      a.params[fresh("--param", k, a.params)] = num;
    },
  },
  "--entry": { commands: ["check", "explain", "run"], single: true, read: (a, v) => a.entry = v },
  "--in": {
    commands: ["run"],
    read: (a, value) => {
      const [k, v] = pair("--in", value);
      a.inputs[fresh("--in", k, a.inputs)] = v;
    },
  },
  "--seed": {
    commands: ["run"],
    single: true,
    read: (a, value) => {
      const s = /^\d+$/.test(value) ? Number(value) : NaN;
      if (!(s <= MAX_SEED)) {
        throw new UsageError(
          `--seed expects a whole number from 0 to ${MAX_SEED}, got ${JSON.stringify(value)}`,
        );
      }
      a.seed = s;
    },
  },
  "--backend": {
    commands: ["run"],
    single: true,
    read: (a, value) => {
      if (value !== "interp" && value !== "gpu" && value !== "auto") {
        throw new UsageError(`--backend is auto, gpu or interp, got ${value}`);
      }
      a.backend = value;
    },
  },
  "--dtype": {
    commands: ["run"],
    single: true,
    read: (a, value) => {
      if (value !== "f4" && value !== "f8") {
        throw new UsageError(`--dtype is f4 or f8, got ${value}`);
      }
      a.dtype = value === "f4" ? "<f4" : "<f8";
    },
  },
  "--out": { commands: ["run"], single: true, read: (a, v) => a.out = v },
  "--size": {
    commands: ["explain"],
    read: (a, value) => {
      const [k, v] = pair("--size", value);
      const n = strictNumber(v);
      if (n === undefined || !Number.isSafeInteger(n) || n < 0) {
        throw new UsageError(`--size ${k} expects a whole number, got ${JSON.stringify(v)}`);
      }
      a.sizes[fresh("--size", k, a.sizes)] = n;
    },
  },
  "--json": { commands: ["check", "explain"] },
  "--wgsl": { commands: ["explain"] },
  "--ir": { commands: ["explain"] },
  "--verify": { commands: ["check", "explain"] },
};
const ALIASES: Record<string, string> = { "-o": "--out" };

/** `--help` or `--version` anywhere before a "--" separator (or as the command) wins. */
function early(argv: string[]): Early | undefined {
  const end = argv.indexOf("--") < 0 ? argv.length : argv.indexOf("--");
  const head = argv.slice(0, end);
  if (head.some((a) => a === "--help" || a === "-h") || argv[0] === "help") {
    return { early: "help" };
  }
  if (head.some((a) => a === "--version" || a === "-V") || argv[0] === "version") {
    return { early: "version" };
  }
}

/** The command, which comes first. */
function command(word: string | undefined): Command {
  if (!word) throw new UsageError("");
  if (!(COMMANDS as string[]).includes(word)) {
    throw new UsageError(
      word.startsWith("-")
        ? `the command comes first: check, explain or run (got ${word})`
        : `unknown command ${word}: use check, explain or run`,
    );
  }
  return word as Command;
}

/**
 * Read the command line: a command, one FILE.attn and the options of the table above. A leading
 * "--" is `deno task attune -- explain ...` passing its separator on, and is dropped.
 */
export function parseArgs(line: string[]): Args | Early {
  const argv = line[0] === "--" ? line.slice(1) : line;
  const stop = early(argv);
  if (stop) return stop;
  const [word, ...rest] = argv;
  const cmd = command(word);
  const a: Args = {
    command: cmd,
    file: "",
    // Maps from user-given names: no prototype, so `--param constructor=1` is a name like any.
    params: Object.create(null),
    inputs: Object.create(null),
    sizes: Object.create(null),
    backend: "auto",
    dtype: "<f4",
    json: false,
    wgsl: false,
    ir: false,
    verify: false,
  };
  // Given twice, an option is refused rather than the last one silently winning.
  const given = new Set<string>();
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
    const option = Object.hasOwn(OPTIONS, flag) ? OPTIONS[flag] : undefined;
    if (!option) throw new UsageError(`unknown option ${raw}`);
    if (!option.commands.includes(cmd)) {
      throw new UsageError(`${raw} goes with ${option.commands.join(" or ")}, not ${cmd}`);
    }
    if (!option.read) {
      if (inline !== undefined) throw new UsageError(`${flag} takes no value`);
      a[flag.slice(2) as "json" | "wgsl" | "ir" | "verify"] = true;
      continue;
    }
    if (inline === undefined && i + 1 >= rest.length) throw new UsageError(`${raw} needs a value`);
    option.read(a, inline ?? rest[++i]);
    if (option.single) {
      if (given.has(flag)) throw new UsageError(`${flag} is given twice`);
      given.add(flag);
    }
  }
  if (files.length === 0) throw new UsageError(`${cmd} needs a FILE.attn`);
  if (files.length > 1) throw new UsageError(`${cmd} takes one FILE.attn, got ${files.join(" ")}`);
  a.file = files[0];
  if (cmd === "run" && !a.out) throw new UsageError("run needs -o PATH.npy (or --out)");
  return a;
}
