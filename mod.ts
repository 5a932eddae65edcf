/**
 * Attune: a tensor language for attention variants. Write a variant as a short `.attn`
 * program; Attune parses and checks it, optimizes it, and runs it as fused WGSL kernels on
 * WebGPU or on the float64 reference interpreter. The default backend, for the library and the
 * `attune run` command line alike, is `"auto"`: the GPU when a WebGPU adapter exists (results
 * in float32), else the interpreter. Pass `backend: "interp"` for the float64 oracle
 * (deterministic on every machine) or `backend: "gpu"` to require the GPU; `onBackend` says
 * which one ran. Compiling and interpreting need no permissions; `verify` checks the optimizer
 * against the interpreter on random inputs.
 *
 * @example
 * ```ts
 * import { compile, randomTensor } from "./mod.ts";
 * const exact = await compile(await Deno.readTextFile("examples/exact.attn"));
 * const [q, k, v] = [1, 2, 3].map((seed) => randomTensor([2, 4, 65, 32], { seed }));
 * const y = await exact.run({ q, k, v }); // [2, 4, 65, 32]: batch and heads are leading dims
 * const oracle = await exact.run({ q, k, v }, { backend: "interp" }); // float64, any machine
 * ```
 * @module
 */
import { check } from "./compiler/frontend/check.ts";
import { AttuneError, checkSeed, DeviceError, UsageError } from "./compiler/errors.ts";
import { interpretAll } from "./compiler/interp.ts";
import type { Graph } from "./compiler/ir/types.ts";
import { showGraph } from "./compiler/ir/print.ts";
import { explainText, signatureLines } from "./compiler/explain.ts";
import { parse } from "./compiler/frontend/parse.ts";
import { eliminateDeadCode } from "./compiler/passes/dce.ts";
import { optimize } from "./compiler/passes/pipeline.ts";
import type { ExecPlan } from "./compiler/lower/plan.ts";
import { lowerGraph } from "./compiler/lower/lower.ts";
import { DEFAULT_STORAGE_BUFFERS } from "./compiler/limits.ts";
import { getDevice } from "./runtime/device.ts";
import { type CompileProgress, execute, type RunStats } from "./runtime/executor.ts";
import { fillRandom } from "./compiler/rng.ts";
import { checkShape, sizeOf, type Tensor, type TensorInput } from "./compiler/tensor.ts";
import { asTensors } from "./compiler/bind.ts";

export {
  AttuneError,
  CompileError,
  DeviceError,
  LimitError,
  MAX_SEED,
  UsageError,
} from "./compiler/errors.ts";
export type { Span } from "./compiler/errors.ts";
export type { DType, NestedNumbers, Tensor, TensorInput, TensorLike } from "./compiler/tensor.ts";
export { tensor } from "./compiler/tensor.ts";
export type {
  BinaryFn,
  Dim,
  Graph,
  InputDecl,
  Node,
  Op,
  RandomKind,
  ReduceFn,
  Score,
  TensorType,
  UnaryFn,
} from "./compiler/ir/types.ts";
export type { ExecPlan, KernelIO, PlanLoop, PlannedKernel } from "./compiler/lower/plan.ts";
export type { NodeKernel } from "./compiler/wgsl/kernel.ts";
export type { SymbolSlots, ThreadDim } from "./compiler/wgsl/syntax.ts";
export type { CompileProgress, RunStats } from "./runtime/executor.ts";
export { decodeNpy, encodeNpy, readNpy, writeNpy } from "./runtime/npy.ts";
/**
 * The error `readNpy`, `decodeNpy`, `writeNpy` and `encodeNpy` throw for any problem with a
 * `.npy` file or a tensor to write (bad magic, unsupported dtype or order, truncated data, a
 * shape that does not match the data, ...). Its message names the file when known and says what
 * to do; `err instanceof NpyError` tells it apart from `CompileError`s and file-system errors.
 */
export { NpyError } from "./runtime/npy.ts";
/**
 * Translation validation of the optimizer: `verify(program)` runs the checked graph and the
 * graph after every pass on the float64 interpreter with random inputs (each size symbol bound
 * to a small awkward value) and reports the first pass that changed the result.
 * `firstDivergence` does the same for given inputs; `compareResults` is the comparison
 * (NaN positions and infinities equal, max error ≤ rtol × scale).
 */
export {
  compareResults,
  type Divergence,
  firstDivergence,
  type Stage,
  verify,
  VERIFY_RTOL,
  type VerifyOptions,
  type VerifyReport,
} from "./compiler/verify.ts";
export type { NpyWriteDType, NpyWriteOptions } from "./runtime/npy.ts";

/**
 * Where a program runs: `"auto"` (the default of `Program.run` and of the `attune run` command
 * line), the GPU when a WebGPU adapter exists and the interpreter otherwise; `"gpu"`, the
 * compiled WGSL kernels on WebGPU (float32; a `DeviceError` when there is no adapter);
 * `"interp"`, the float64 reference interpreter (the oracle, deterministic on every machine).
 * {@link whichBackend} says which one `"auto"` picks on this machine, and
 * `RunOptions.onBackend` which one a run used.
 */
export type Backend = "interp" | "gpu" | "auto";

/**
 * The backend a run with `backend` (default `"auto"`, as in `Program.run`) uses on this
 * machine: `"auto"` is `"gpu"` when a WebGPU adapter can be acquired and `"interp"` otherwise;
 * the others are themselves.
 *
 * @example
 * ```ts
 * import { whichBackend } from "./mod.ts";
 * const where = await whichBackend(); // where `program.run(inputs)` runs here
 * if (where !== "gpu" && where !== "interp") throw new Error(where);
 * ```
 */
export async function whichBackend(backend: Backend = "auto"): Promise<"interp" | "gpu"> {
  if (backend !== "auto" && backend !== "interp" && backend !== "gpu") {
    throw new UsageError(`unknown backend ${JSON.stringify(backend)}: use interp, gpu or auto`);
  }
  if (backend !== "auto") return backend;
  try {
    await getDevice();
    return "gpu";
  } catch (e) {
    if (e instanceof DeviceError) return "interp";
    throw e;
  }
}

/** Options of `compile`. */
export interface CompileOptions {
  /** Compile-time parameters of the entry function, e.g. `{ landmarks: 64 }`. */
  params?: Record<string, number | boolean>;
  /** The function to compile; by default the last `def` of the source. */
  entry?: string;
  /** File name used in diagnostics. */
  file?: string;
  /** Fuse (default true); false gives the baseline of one kernel per IR node, no fusion at all. */
  fuse?: boolean;
  /**
   * Run connected small values (landmark matrices, pinv loops) as one workgroup-per-slice
   * dispatch each (default true).
   */
  regions?: boolean;
  /**
   * Keep fused attention's q and k rows in half precision with `shader-f16` (default false):
   * rounded to f16 on load (|values| past 65,504 become infinite), multiplied and summed in f32,
   * about 1e-3 relative error in the scores; softmax and P·V stay f32. The multi-stream pass
   * (`attention_mix`) ignores it.
   * Running it on an adapter without `shader-f16` is a DeviceError.
   */
  f16?: boolean;
}

/** Options of `Program.run`. */
export interface RunOptions {
  /** Overrides the seed of every random draw in the program. */
  seed?: number;
  /**
   * `"auto"` (the default, as for the `attune run` command line: the GPU when a WebGPU adapter
   * exists, else the interpreter; {@link whichBackend} says which), `"gpu"` (the compiled
   * kernels on WebGPU) or `"interp"` (the float64 reference interpreter). Results on the GPU are
   * float32, so they differ from the interpreter's in the last digits and by machine; pass
   * `backend: "interp"` for the float64 oracle, deterministic on every machine.
   */
  backend?: Backend;
  /**
   * Called once per run, before it starts, with the backend it runs on (`"auto"` resolved)
   * and, on the GPU, the adapter's description (e.g. "llvmpipe (LLVM 15.0.6, 256 bits)").
   */
  onBackend?: (backend: "interp" | "gpu", adapter?: string) => void;
  /** GPU only: fill intermediate buffers with NaN first so unwritten elements show. */
  poison?: boolean;
  /** `profile` only: time each kernel with timestamp queries when the adapter has them. */
  timing?: boolean;
  /**
   * GPU only: called after each shader pipeline the run compiles (the first run of a program
   * compiles every kernel; on a software adapter one may take seconds to minutes).
   */
  onProgress?: (e: CompileProgress) => void;
}

/** A checked program, ready to run. */
export interface Program {
  /** The elaborated IR of the entry function, as checked (what the interpreter runs). */
  readonly graph: Graph;
  /** The IR after the optimization passes (what the GPU runs). */
  readonly optimized: Graph;
  /** The graph after each optimization pass, in order (empty with `fuse: false`). */
  readonly passes: { pass: string; graph: Graph }[];
  /**
   * Run on host tensors; inputs may have leading batch/head dims. Each input is a `Tensor`, a
   * `{ shape, data }` with a plain `number[]` (or any typed array), or nested arrays of numbers
   * such as `[[1, 2], [3, 4]]` (see {@link TensorInput}); anything else is a `CompileError`
   * naming the input. Runs where `options.backend` says, by default `"auto"`: the GPU (float32)
   * when a WebGPU adapter exists, else the float64 interpreter; `options.onBackend` is told
   * which. Pass `backend: "interp"` for the float64 oracle, deterministic on every machine.
   * A program that returns several values (`return y, lse`) is rejected with a `UsageError`:
   * `runAll` gives them all.
   *
   * @example
   * ```ts
   * import { compile } from "./mod.ts";
   * const double = await compile("def f(x: [n]) -> [n] { return 2 * x }");
   * let ran = "";
   * const y = await double.run({ x: [1, 2] }, { onBackend: (b) => ran = b });
   * const exact = await double.run({ x: [1, 2] }, { backend: "interp" }); // float64 everywhere
   * if (ran !== "gpu" && ran !== "interp") throw new Error(ran);
   * if (String(exact.data) !== "2,4" || y.shape.join() !== "2") throw new Error();
   * ```
   */
  run(inputs: Record<string, TensorInput>, options?: RunOptions): Promise<Tensor>;
  /**
   * Run as `run` does, with the same inputs and options, and resolve to every result in the
   * order the program returns them (`return y, lse` gives `[y, lse]`; a one-result program gives
   * a list of one). Leading batch/head dims map over every result. `run` itself rejects a
   * program that returns several values.
   *
   * @example
   * ```ts
   * import { compile } from "./mod.ts";
   * const p = await compile("def f(x: [n]) -> ([n], []) { return 2 * x, sum(x) }");
   * const [twice, total] = await p.runAll({ x: [1, 2] }, { backend: "interp" });
   * if (String(twice.data) !== "2,4" || total.data[0] !== 3) throw new Error();
   * ```
   */
  runAll(inputs: Record<string, TensorInput>, options?: RunOptions): Promise<Tensor[]>;
  /**
   * Run on the GPU whatever `options.backend` says (a `DeviceError` without an adapter) and
   * report dispatches, bytes allocated and the adapter with the results: `outputs` all of them
   * in order, `output` the first (the only one of a one-result program).
   */
  profile(
    inputs: Record<string, TensorInput>,
    options?: RunOptions,
  ): Promise<{ output: Tensor; outputs: Tensor[]; stats: RunStats }>;
  /** The GPU execution plan: kernels (with WGSL), buffers, dispatch count. */
  plan(): ExecPlan;
  /**
   * Human-readable description, the text `attune explain` prints: first a summary (signature
   * with inferred shapes, parameters, dispatches, buffer memory at typical sizes, the passes
   * that changed the IR, and for attention each fused kernel's recognized form, score and mask
   * tile classes, and why each unfused softmax did not fuse), then the IR as checked and after
   * each pass that changed it (left out with `ir: false`), then the GPU kernels in dispatch
   * order (`wgsl: true` adds each kernel's source).
   *
   * @example
   * ```ts
   * import { compile } from "./mod.ts";
   * const p = await compile(await Deno.readTextFile("examples/sliding_window.attn"));
   * const text = p.explain({ ir: false, sizes: { n: 256 } });
   * if (!/tiles: \d+ empty \(skipped\)/.test(text)) throw new Error(text);
   * ```
   */
  explain(options?: ExplainOptions): string;
}

/** Options of `Program.explain`. */
export interface ExplainOptions {
  /** Show each kernel's WGSL source under its line in the plan (default false). */
  wgsl?: boolean;
  /** Show the IR as checked and after each pass that changed it (default true). */
  ir?: boolean;
  /**
   * Sizes to estimate buffer memory and mask tiles at, by size symbol; symbols left out are
   * 64 for a feature width (a symbol that only sizes inputs' last axes) and 1024 otherwise.
   */
  sizes?: Record<string, number>;
}

/**
 * Parse and check an Attune program. Throws `CompileError` (with a span, `format()` gives
 * the caret diagnostic) for any problem in the source or the parameters.
 */
export function compile(source: string, options: CompileOptions = {}): Promise<Program> {
  try {
    return Promise.resolve(compileSync(source, options));
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Synchronous form of `compile`. */
export function compileSync(source: string, options: CompileOptions = {}): Program {
  if (typeof source !== "string") {
    throw new UsageError(
      `compile takes the program text as a string, got ${
        source === null ? "null" : typeof source
      }; read a file with Deno.readTextFile first`,
    );
  }
  if (options === null || typeof options !== "object") {
    throw new UsageError(`compile's options must be an object, got ${String(options)}`);
  }
  const graph = eliminateDeadCode(check(parse(source, options.file), options));
  // The interpreter runs the checked graph as written; the GPU runs the optimized one.
  const { graph: optimized, stages } = options.fuse === false
    ? { graph, stages: [] }
    : optimize(graph);
  let plan: ExecPlan | undefined;
  const fuseElementwise = options.fuse !== false;
  const lowering = { fuseElementwise, regions: options.regions, f16: options.f16 };
  // Plans assume DEFAULT_STORAGE_BUFFERS bindings per dispatch; a device with fewer gets its own.
  const narrow = new Map<number, ExecPlan>();
  const gpuPlan = async (): Promise<ExecPlan> => {
    const limit = (await getDevice()).facts.limits.maxStorageBuffersPerShaderStage;
    if (limit >= DEFAULT_STORAGE_BUFFERS) return plan ??= lowerGraph(optimized, lowering);
    if (!narrow.has(limit)) {
      narrow.set(limit, lowerGraph(optimized, { ...lowering, maxStorageBuffers: limit }));
    }
    return narrow.get(limit)!;
  };
  const runAll = async (
    given: Record<string, TensorInput>,
    runOptions: RunOptions = {},
  ): Promise<Tensor[]> => {
    checkSeed(runOptions.seed, "run's seed");
    const inputs = asTensors(graph, given);
    if ((await whichBackend(runOptions.backend ?? "auto")) === "gpu") {
      const device = await getDevice();
      runOptions.onBackend?.("gpu", device.facts.description);
      const { outputs } = await execute(optimized, await gpuPlan(), inputs, {
        seed: runOptions.seed,
        poison: runOptions.poison,
        onProgress: runOptions.onProgress,
      });
      return outputs;
    }
    runOptions.onBackend?.("interp");
    return interpretAll(graph, inputs, { seed: runOptions.seed });
  };
  return {
    graph,
    async run(given: Record<string, TensorInput>, runOptions: RunOptions = {}): Promise<Tensor> {
      if (graph.outputs.length !== 1) {
        throw new UsageError(
          `${graph.entry} returns ${graph.outputs.length} values; run gives one: use ` +
            "runAll(inputs, options), which resolves to all of them in order",
        );
      }
      return (await runAll(given, runOptions))[0];
    },
    runAll,
    optimized,
    passes: stages,
    async profile(given: Record<string, TensorInput>, runOptions: RunOptions = {}) {
      checkSeed(runOptions.seed, "profile's seed");
      const inputs = asTensors(optimized, given);
      runOptions.onBackend?.("gpu", (await getDevice()).facts.description);
      return execute(optimized, await gpuPlan(), inputs, {
        seed: runOptions.seed,
        poison: runOptions.poison,
        timing: runOptions.timing,
        onProgress: runOptions.onProgress,
      });
    },
    plan(): ExecPlan {
      return plan ??= lowerGraph(optimized, lowering);
    },
    explain(options: ExplainOptions = {}): string {
      plan ??= lowerGraph(optimized, lowering);
      return explainText({ graph, passes: stages, optimized, plan }, {
        wgsl: options.wgsl === true,
        ir: options.ir !== false,
        sizes: explainSizes(graph, options.sizes),
        hints: { sizes: "sizes: { NAME: N }", ir: "ir: true" },
      });
    },
  };
}

/**
 * Signature, parameters and IR of a checked program: the lines `Program.explain` starts with,
 * then the checked IR.
 */
export function explainGraph(graph: Graph): string {
  return [...signatureLines(graph), "", showGraph(graph)].join("\n");
}

/** `Program.explain`'s sizes, checked: whole numbers, each naming a size symbol. */
function explainSizes(graph: Graph, sizes: unknown): Record<string, number> {
  if (sizes === undefined) return {};
  if (sizes === null || typeof sizes !== "object") {
    throw new UsageError(`explain's sizes must be an object, got ${String(sizes)}`);
  }
  const symbols = Object.keys(graph.symbols);
  for (const [k, v] of Object.entries(sizes)) {
    if (!symbols.includes(k)) {
      throw new UsageError(
        `explain's sizes name ${JSON.stringify(k)}, not a size symbol of ${graph.entry} ` +
          `(${symbols.join(", ") || "it has none"})`,
      );
    }
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new UsageError(`explain's sizes.${k} must be a whole number, got ${String(v)}`);
    }
  }
  return sizes as Record<string, number>;
}

/** Options of `randomTensor`. */
export interface RandomTensorOptions {
  /** Seed of the draw (default 0). */
  seed?: number;
  /** Standard deviation (default 1). */
  scale?: number;
  /** Distribution (default "randn"). */
  kind?: "randn" | "uniform";
}

/** A tensor of seeded random values from Attune's Philox generator (reproducible anywhere). */
export function randomTensor(shape: number[], options: RandomTensorOptions = {}): Tensor {
  checkShape(shape, "randomTensor");
  checkSeed(options.seed, "randomTensor's seed");
  const data = new Float64Array(sizeOf(shape));
  fillRandom(data, options.kind ?? "randn", { seed: options.seed ?? 0, stream: 0x7e57, slice: 0 });
  const scale = options.scale ?? 1;
  if (scale !== 1) { for (let i = 0; i < data.length; i++) data[i] *= scale; }
  return { shape: [...shape], data, dtype: "float" };
}

/** ‖a − b‖₂ / ‖b‖₂ over all elements (b is the reference). */
export function relativeError(a: Tensor, b: Tensor): number {
  sameShape(a, b);
  let num = 0, den = 0;
  for (let i = 0; i < a.data.length; i++) {
    num += (a.data[i] - b.data[i]) ** 2;
    den += b.data[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Largest |a − b| over all elements. */
export function maxAbsError(a: Tensor, b: Tensor): number {
  sameShape(a, b);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    if (!(d <= m)) m = d; // NaN wins
  }
  return m;
}

/** Options of `assertCloseTo`. */
export interface CloseOptions {
  /** Absolute tolerance (default 1e-6). */
  atol?: number;
  /** Relative tolerance (default 1e-5). */
  rtol?: number;
}

/**
 * Assert |a − b| ≤ atol + rtol·|b| elementwise (b is the reference). NaN never passes.
 * Throws an `AttuneError` naming the worst element.
 */
export function assertCloseTo(a: Tensor, b: Tensor, options: CloseOptions = {}): void {
  sameShape(a, b);
  const atol = options.atol ?? 1e-6, rtol = options.rtol ?? 1e-5;
  let worst = -1, excess = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    const over = d - (atol + rtol * Math.abs(b.data[i]));
    if (!(over <= 0) && (worst < 0 || !(over <= excess))) [worst, excess] = [i, over];
  }
  if (worst >= 0) {
    throw new AttuneError(
      `not close at flat index ${worst}: got ${a.data[worst]}, expected ${b.data[worst]} ` +
        `(atol ${atol}, rtol ${rtol}, relative error overall ${
          relativeError(a, b).toExponential(2)
        })`,
    );
  }
}

function sameShape(a: Tensor, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new AttuneError(`shapes differ: [${a.shape.join(", ")}] vs [${b.shape.join(", ")}]`);
  }
}
