/** What the probes' tests share: a cache of compiled programs and the GPU-against-interpreter test. */
import {
  type CompileOptions,
  compileSync,
  type Program,
  relativeError,
  type Tensor,
} from "../mod.ts";

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
