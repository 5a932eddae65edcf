/**
 * What the probes' tests share: a cache of compiled programs, the GPU-against-interpreter test,
 * and the variant probes' programs and inputs (tests/unnamed_variants*_test.ts).
 */
import {
  type CompileOptions,
  compileSync,
  type Program,
  randomTensor,
  relativeError,
  type Tensor,
  tensor,
} from "../mod.ts";
import { LOOPS } from "../compiler/limits.ts";

const programs = new Map<string, Program>();

/** `compileSync`, once per source and options (lavapipe's pipelines are cached per kernel too). */
export function compiled(source: string, options: CompileOptions = {}): Program {
  const key = `${JSON.stringify(options)}\n${source}`;
  let p = programs.get(key);
  if (!p) programs.set(key, p = compileSync(source, options));
  return p;
}

/** Where a and b differ: NaN and ±inf must sit at the same places, the rest within tol. */
export function disagreement(a: Tensor, b: Tensor, tol = 1e-5): string | undefined {
  if (a.shape.join() !== b.shape.join()) return `shape ${a.shape} against ${b.shape}`;
  const odd = a.data.findIndex((x, t) =>
    (!Number.isFinite(x) || !Number.isFinite(b.data[t])) && !Object.is(x, b.data[t])
  );
  if (odd >= 0) return `at ${odd}: gpu ${a.data[odd]}, interp ${b.data[odd]}`;
  const finite = (t: Tensor) => ({ ...t, data: t.data.map((x) => Number.isFinite(x) ? x : 0) });
  const err = relativeError(finite(a), finite(b));
  return err < tol ? undefined : `relative error ${err}`;
}

/** Self-attention's inputs as a signature. */
export const QKV = "q: [n, d], k: [n, d], v: [n, e]";
/** Cross-attention: m keys and values beside n queries (a KV cache: query i at m - n + i). */
export const CROSS = "q: [n, d], k: [m, d], v: [m, e]";
/** The scaled dot product. */
export const SCORE = "q[i] . k[j] / sqrt(d)";
/** softmax(s) @ v for a score `s[i, j] = score`. */
export const softmaxOf = (name: string, args: string, score: string, qkv = QKV) =>
  `def ${name}(${qkv}${args}) -> [n, e] {
  s[i, j] = ${score}
  return softmax(s, axis=1) @ v
}`;

/** A run's sizes: leading (batch, heads) dims, queries, keys, head and value widths, seed. */
export interface Sizes {
  lead: number[];
  n: number;
  m: number;
  d: number;
  e: number;
  seed: number;
}

/** An attention variant of a probe and how to run it. */
export interface Variant {
  name: string;
  source: string;
  /** Inputs beyond q, k, v. */
  extra?: (x: Sizes) => Record<string, Tensor>;
  /** Inputs in place of q, k, v (a program that names them otherwise). */
  own?: (x: Sizes) => Record<string, Tensor>;
  /** Keys and values of their own length m (cross-attention). */
  cross?: boolean;
  /** Heads of k and v, fewer than q's (grouped-query attention). */
  kvHeads?: number;
  /**
   * q and k of |randn|: an unnormalized output at n = 1 is one q·k times v, and a dot that
   * cancels to near 0 would make float32's relative error large without any bug.
   */
  positive?: boolean;
  /** Runs only at these (lead, n, m, d, e) sizes (a table or a parameter bounds them). */
  sizes?: [number[], number, number, number, number][];
  /** Dispatches the docs promise ("What runs as one pass"); absent where they promise none. */
  dispatches?: number;
  /** An IR op or kernel the optimized program must hold (the fused pass the docs describe). */
  fused?: "attention" | "attention_mix" | "attention_rowsum" | "probs" | "causal_contract";
}

/** t with every element's absolute value. */
export const abs = (t: Tensor): Tensor => ({ ...t, data: t.data.map(Math.abs) });

/** One value per head, from the run's heads dim. */
export const perHead = (lead: number[], f: (h: number) => number): Tensor => {
  const heads = lead.at(-1) ?? 1;
  return tensor([heads], Array.from({ length: heads }, (_, h) => f(h)));
};

/** q, k, v of shape [...lead, n or m, d or e] (or the variant's own), then its extras. */
export function inputs(
  v: Variant,
  lead: number[],
  n: number,
  m: number,
  d: number,
  e: number,
  seed: number,
): Record<string, Tensor> {
  const sizes = { lead, n, m: v.cross ? m : n, d, e, seed: seed + 3 };
  if (v.own) return v.own({ ...sizes, seed });
  const kv = v.kvHeads === undefined ? lead : [...lead.slice(0, -1), v.kvHeads];
  const sign = v.positive ? abs : (t: Tensor) => t;
  const x: Record<string, Tensor> = {
    q: sign(randomTensor([...lead, n, d], { seed })),
    k: sign(randomTensor([...kv, sizes.m, d], { seed: seed + 1 })),
    v: randomTensor([...kv, sizes.m, e], { seed: seed + 2 }),
  };
  return { ...x, ...v.extra?.(sizes) };
}

/** GPU (poisoned) against the interpreter; the GPU's dispatches. */
export async function agree(
  what: string,
  source: string,
  x: Record<string, Tensor>,
): Promise<number> {
  const p = compiled(source);
  const gpu = await p.profile(x, { backend: "gpu", poison: true });
  const bad = disagreement(gpu.output, await p.run(x, { backend: "interp" }));
  if (bad !== undefined) throw new Error(`${what}: ${bad}`);
  return gpu.stats.dispatches;
}

/** A run's leading dims, queries, keys, head and value widths. */
export type RunSizes = [number[], number, number, number, number];

/**
 * Each variant at each of `sizes`, cross variants also with one query beside 7 keys and 7 queries
 * beside one key: GPU against the interpreter, and the dispatches the docs promise.
 */
export async function agreeAtSizes(variants: Variant[], sizes: RunSizes[], seed0: number) {
  const cross: RunSizes[] = [[[2], 1, 7, 8, 3], [[2], 7, 1, 12, 1]];
  for (const v of variants) {
    for (const [lead, n, m, d, e] of v.cross ? [...sizes, ...cross] : sizes) {
      const seed = seed0 + n;
      const what = `${v.name}, lead ${lead} n ${n} m ${
        v.cross ? m : n
      } d ${d} e ${e}, seed ${seed}`;
      const dispatches = await agree(what, v.source, inputs(v, lead, n, m, d, e, seed));
      if (v.dispatches !== undefined && dispatches !== v.dispatches) {
        throw new Error(`${what}: ${dispatches} dispatches, the docs promise ${v.dispatches}`);
      }
    }
  }
}

/**
 * Each variant compiles, holds the fused op and the dispatches the docs promise (where it states
 * them), and its interpreter output is finite at three shapes (square, more keys, fewer keys).
 */
export async function compilesFusesFinite(variants: Variant[], seed: number) {
  for (const v of variants) {
    const p = compiled(v.source);
    const kernels = p.plan().kernels.map((k) => k.name.replace(/_\d+.*$/, ""));
    const ops = [...p.optimized.nodes.map((n) => n.op.op as string), ...kernels];
    if (v.fused && !ops.includes(v.fused)) throw new Error(`${v.name}: no ${v.fused} in ${ops}`);
    if (v.dispatches !== undefined && p.plan().kernels.length !== v.dispatches) {
      throw new Error(`${v.name}: not ${v.dispatches} dispatches:\n${p.explain()}`);
    }
    for (const [n, m] of [[13, 13], [7, 20], [20, 7]]) {
      const y = await p.run(inputs(v, [3], n, m, 8, 5, seed), { backend: "interp" });
      if (!y.data.every(Number.isFinite)) {
        throw new Error(`${v.name}, n ${n} m ${m}: not finite (seed ${seed})`);
      }
    }
  }
}

/** Runs `f` with LOOPS shrunk so that keys past 60 take the split (long-loop) plans. */
export async function withSplitPlans<T>(f: () => Promise<T>): Promise<T> {
  const saved = { ...LOOPS };
  Object.assign(LOOPS, { budget: 60, chunk: 8, parts: 16 });
  try {
    return await f();
  } finally {
    Object.assign(LOOPS, saved);
  }
}
