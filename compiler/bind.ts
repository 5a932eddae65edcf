/**
 * Binding inputs to a program: size symbols from input shapes, the shared batch shape of the
 * leading dims, and per-slice views. Shared by the interpreter and the GPU runtime.
 */
import { CompileError } from "./errors.ts";
import type { Dim, Graph, InputDecl, LeadCount, LeadFn } from "./ir/types.ts";
import {
  type DType,
  F32_EXACT_INT,
  F32_OVERFLOW,
  sizeOf,
  type Tensor,
  type TensorInput,
} from "./tensor.ts";

/** The largest magnitude of an int input's elements: float32 holds every integer up to 2^24. */
const INT_INPUT_MAX = F32_EXACT_INT;

/** The sizes of a graph's symbols for these inputs, and the batch shape they share. */
export function bindInputs(graph: Graph, given: Record<string, TensorInput>): {
  bound: Map<string, number>;
  batch: number[];
  perInput: Map<string, (slice: number) => Tensor>;
  /** Each given input's leading dims (a defaulted input has none). */
  leads: Map<string, number[]>;
  /** The smallest and largest element of each given int input (lower/intrange.ts tracks them). */
  intRanges: Map<string, [number, number]>;
} {
  const inputs = asTensors(graph, given);
  const fail = (what: string, decl: InputDecl, hint?: string): never => {
    throw new CompileError(what, decl.span, graph.source, graph.file, hint);
  };
  const mismatch = (decl: InputDecl, lead: number[], batch: number[]) =>
    fail(
      `input ${decl.name} has batch dims [${lead.join(", ")}] that do not match [${
        batch.join(", ")
      }] of the other inputs`,
      decl,
      "leading dims are matched from the left: [batch, heads, ...]; a smaller input may omit " +
        "trailing ones, and the heads dim may divide the others' (grouped-query attention)",
    );
  for (const name of Object.keys(inputs)) {
    if (!graph.inputs.some((d) => d.name === name)) {
      const names = graph.inputs.map((d) => d.name).join(", ");
      throw new CompileError(
        `${graph.entry} has no input ${name}`,
        { start: 0, end: 0 },
        graph.source,
        graph.file,
        `its inputs are: ${names}`,
      );
    }
  }
  const bound = new Map<string, number>();
  const from = new Map<string, string>();
  let batch: number[] = [];
  const leads = new Map<string, number[]>();
  for (const decl of graph.inputs) {
    const t = inputs[decl.name];
    if (!t) continue;
    const r = decl.type.shape.length;
    if (t.shape.length < r) {
      fail(
        `input ${decl.name} should have rank ${r} (${fmtShape(decl.type.shape)}) but has shape [${
          t.shape.join(", ")
        }]`,
        decl,
      );
    }
    const lead = t.shape.slice(0, t.shape.length - r);
    const own = t.shape.slice(t.shape.length - r);
    decl.type.shape.forEach((d, i) => {
      if (typeof d === "number") {
        if (own[i] !== d) {
          fail(`input ${decl.name}: axis ${i} should be ${d} but is ${own[i]}`, decl);
        }
      } else if (bound.has(d) && bound.get(d) !== own[i]) {
        fail(
          `input ${decl.name}: size ${d} is ${own[i]} here but ${bound.get(d)} from ${from.get(d)}`,
          decl,
          "inputs sharing a size name must agree on it",
        );
      } else if (!bound.has(d)) {
        bound.set(d, own[i]);
        from.set(d, `input ${decl.name}`);
      }
    });
    // Leading batch dims are matched from the left; 1 (or a missing dim) is reused, and a size
    // that divides the other is grouped (checked below to be the heads dim).
    const merged: number[] = [];
    for (let i = 0; i < Math.max(batch.length, lead.length); i++) {
      const a = batch[i] ?? 1, b = lead[i] ?? 1;
      if (a !== b && a !== 1 && b !== 1 && Math.max(a, b) % Math.min(a, b) !== 0) {
        mismatch(decl, lead, batch);
      }
      merged.push(a === 1 ? b : b === 1 ? a : Math.max(a, b));
    }
    batch = merged;
    leads.set(decl.name, lead);
  }
  // Grouped-query attention: only the heads dim (the run's last leading dim) may be grouped
  // (k and v with 2 heads serving q with 8); any other dim is equal or 1.
  for (const [name, lead] of leads) {
    if (lead.some((x, i) => x !== 1 && x !== batch[i] && i !== batch.length - 1)) {
      mismatch(graph.inputs.find((d) => d.name === name)!, lead, batch);
    }
  }
  bound.set("heads()" satisfies LeadCount, batch.at(-1) ?? 1);
  bound.set("batches()" satisfies LeadCount, sizeOf(batch.slice(0, -1)));
  // A vector or scalar input may broadcast over the batch dims of the matrices (a key mask [B, m]
  // beside q [B, H, n, d]) but not add dims of its own: a [64, 64] tensor given for a [m] mask
  // beside a [n, d] q is a mistake, not 64 batches. Matrices and higher set the batch dims
  // between them, whatever their declared ranks: q [H, n, d] beside a per-head table [h, 3, 3]
  // read at head() (probe 5).
  const passed = graph.inputs.filter((d) => inputs[d.name]);
  const top = Math.min(2, Math.max(0, ...passed.map((d) => d.type.shape.length)));
  const topDecls = passed.filter((d) => d.type.shape.length >= top)
    .sort((a, b) => leads.get(b.name)!.length - leads.get(a.name)!.length);
  const topLead = Math.max(0, ...topDecls.map((d) => leads.get(d.name)!.length));
  for (const decl of passed) {
    const lead = leads.get(decl.name)!;
    if (lead.length <= topLead) continue;
    const ref = topDecls[0];
    fail(
      `input ${decl.name} is declared ${fmtShape(decl.type.shape)} but has shape [${
        inputs[decl.name].shape.join(", ")
      }]: its leading ${lead.length === 1 ? "dim" : "dims"} [${lead.join(", ")}] would be ${
        lead.length === 1 ? "a batch dim" : "batch dims"
      } that ${ref.name} (shape [${inputs[ref.name].shape.join(", ")}]) does not have`,
      decl,
      `check the shape; to run a smaller input over batches, give ${ref.name} leading dims too ` +
        "(a leading 1 broadcasts)",
    );
  }
  const perInput = new Map<string, (slice: number) => Tensor>();
  const intRanges = new Map<string, [number, number]>();
  for (const decl of graph.inputs) {
    const t = inputs[decl.name];
    if (!t) {
      if (decl.default === undefined) {
        fail(
          `missing input ${decl.name}`,
          decl,
          `pass a tensor of shape ${fmtShape(decl.type.shape)}`,
        );
      }
      const shape = decl.type.shape.map((d) => {
        const v = typeof d === "number" ? d : bound.get(d);
        if (v === undefined) {
          fail(`cannot size the default of ${decl.name}: ${d} is not set by any input`, decl);
        }
        return v!;
      });
      const fill: Tensor = {
        shape,
        data: new Float64Array(sizeOf(shape)).fill(decl.default!),
        dtype: decl.type.dtype,
      };
      perInput.set(decl.name, () => fill);
      continue;
    }
    if (t.data.length !== sizeOf(t.shape)) {
      fail(
        `input ${decl.name} has ${t.data.length} values for shape [${t.shape.join(", ")}]`,
        decl,
      );
    }
    const position = (flat: number) => {
      const at: number[] = [];
      let rem = flat;
      for (let i = t.shape.length - 1; i >= 0; i--) {
        at.unshift(rem % t.shape[i]);
        rem = Math.floor(rem / t.shape[i]);
      }
      return at.join(", ");
    };
    // One pass (inputs are large): NaN would vanish silently in a max-subtracted softmax, and a
    // finite value past float32's range would become ±Infinity on the GPU; both are refused
    // with their position on both backends. ±Infinity itself is accepted.
    const data = t.data;
    const int = decl.type.dtype === "int";
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < data.length; i++) {
      const x = data[i];
      if (int) [lo, hi] = [Math.min(lo, x), Math.max(hi, x)];
      if (int && !(Number.isInteger(x) && Math.abs(x) <= INT_INPUT_MAX)) {
        fail(
          `input ${decl.name} is declared int but holds ${x} at [${position(i)}]`,
          decl,
          `an int input holds whole numbers within ±${INT_INPUT_MAX} (2^24: the GPU stores ` +
            "tensors as float32, exact only that far); declare it float if it holds other values",
        );
      }
      if (Math.abs(x) < F32_OVERFLOW || Math.abs(x) === Infinity) continue;
      if (Number.isNaN(x)) {
        fail(
          `input ${decl.name} contains NaN at [${position(i)}]`,
          decl,
          "Attune refuses NaN inputs instead of propagating them; clean or mask the data first",
        );
      }
      fail(
        `input ${decl.name} has ${x} at [${position(i)}], outside float32's range ` +
          "(±3.4028235e38)",
        decl,
        "Attune computes in float32 on the GPU; scale the data into float32's range first",
      );
    }
    if (int && data.length > 0) intRanges.set(decl.name, [lo, hi]);
    const lead = leads.get(decl.name)!;
    const own = t.shape.slice(lead.length);
    const n = sizeOf(own);
    perInput.set(decl.name, (slice: number) => {
      // Decompose the slice index over the full batch shape; map onto this input's lead dims.
      let rem = slice, off = 0, stride = 1;
      const idx = new Array(batch.length);
      for (let i = batch.length - 1; i >= 0; i--) {
        idx[i] = rem % batch[i];
        rem = Math.floor(rem / batch[i]);
      }
      // A dim of size 1 is reused; a smaller heads dim serves batch[i] / lead[i] heads each.
      for (let i = lead.length - 1; i >= 0; i--) {
        off += Math.floor(idx[i] / (batch[i] / lead[i])) * stride;
        stride *= lead[i];
      }
      return {
        shape: own,
        data: t.data.subarray(off * n, off * n + n),
        dtype: decl.type.dtype,
      };
    });
  }
  return { bound, batch, perInput, leads, intRanges };
}

/** The value of `lead(of)` at `slice`, from the leading-dim counts `bindInputs` bound. */
export function leadValue(of: LeadFn, slice: number, bound: Map<string, number>): number {
  const heads = bound.get("heads()" satisfies LeadCount) ?? 1;
  return of === "heads"
    ? heads
    : of === "batches"
    ? bound.get("batches()" satisfies LeadCount) ?? 1
    : of === "head"
    ? slice % heads
    : Math.floor(slice / heads);
}

/**
 * The inputs as host tensors: a `Tensor` with float64 data is taken as is; a tensor-like
 * `{ shape, data }` with a plain array (or a typed array of another kind) and nested arrays of
 * numbers are copied into float64. Anything else is a `CompileError` naming the input.
 */
export function asTensors(
  graph: Graph,
  inputs: Record<string, TensorInput>,
): Record<string, Tensor> {
  if (inputs === null || typeof inputs !== "object" || Array.isArray(inputs)) {
    throw new CompileError(
      `${graph.entry} takes its inputs as an object of named tensors, got ${describe(inputs)}`,
      { start: 0, end: 0 },
      graph.source,
      graph.file,
      `e.g. run({ ${graph.inputs.map((d) => d.name).join(", ")} })`,
    );
  }
  const out: Record<string, Tensor> = {};
  for (const [name, value] of Object.entries(inputs)) {
    if (value !== undefined) out[name] = asTensor(graph, name, value);
  }
  return out;
}

const TENSOR_HINT = "pass { shape: [...], data: Float64Array | number[] }, nested arrays of " +
  "numbers such as [[1, 2], [3, 4]], or tensor(shape, data)";

function asTensor(graph: Graph, name: string, value: TensorInput): Tensor {
  const decl = graph.inputs.find((d) => d.name === name);
  const fail = (what: string, hint = TENSOR_HINT): never => {
    throw new CompileError(
      `input ${name} ${what}`,
      decl?.span ?? { start: 0, end: 0 },
      graph.source,
      graph.file,
      hint,
    );
  };
  const declared: DType = decl?.type.dtype ?? "float";
  if (typeof value === "number" || typeof value === "boolean" || Array.isArray(value)) {
    return { ...flatten(value, fail), dtype: declared };
  }
  if (typeof value !== "object" || value === null || !("shape" in value) || !("data" in value)) {
    return fail(
      `is not a tensor: expected { shape, data } or nested arrays, got ${describe(value)}`,
    );
  }
  const { shape, data } = value;
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => typeof d === "number" && Number.isInteger(d) && d >= 0)
  ) {
    fail(
      `has shape ${
        Array.isArray(shape) ? `[${shape.join(", ")}]` : describe(shape)
      }; a shape is an array of whole numbers ≥ 0`,
    );
  }
  const dtype: DType = value.dtype ?? declared;
  if (data instanceof Float64Array) {
    return value.dtype === undefined ? { shape: [...shape], data, dtype } : value as Tensor;
  }
  if (Array.isArray(data)) {
    const flat = flatten(data, (what) => fail(what.replace(/^is /, "has data that is ")));
    return { shape: [...shape], data: flat.data, dtype };
  }
  if (ArrayBuffer.isView(data) && !(data instanceof DataView)) {
    return { shape: [...shape], data: Float64Array.from(data as ArrayLike<number>), dtype };
  }
  return fail(`has data that is ${describe(data)}, not an array of numbers`);
}

/** Nested arrays (or one number) as a shape and float64 data; `fail` on ragged or non-numbers. */
function flatten(
  value: unknown,
  fail: (what: string) => never,
): { shape: number[]; data: Float64Array } {
  const shape: number[] = [];
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  const data = new Float64Array(sizeOf(shape));
  let k = 0;
  const walk = (v: unknown, depth: number, at: number[]): void => {
    const where = `[${at.join(", ")}]`;
    if (depth === shape.length) {
      if (typeof v === "number") data[k++] = v;
      else if (typeof v === "boolean") data[k++] = v ? 1 : 0;
      else if (Array.isArray(v)) {
        fail(`is a ragged nested array: element ${where} is an array but its siblings are numbers`);
      } else fail(`has ${describe(v)} at ${where} where a number was expected`);
      return;
    }
    if (!Array.isArray(v)) {
      return fail(
        `is a ragged nested array: element ${where} is ${describe(v)} but should be an array of ${
          shape[depth]
        }`,
      );
    }
    if (v.length !== shape[depth]) {
      fail(
        `is a ragged nested array: element ${where} has ${v.length} entries but the first one at ` +
          `that depth has ${shape[depth]}`,
      );
    }
    v.forEach((x, i) => walk(x, depth + 1, [...at, i]));
  };
  walk(value, 0, []);
  return { shape, data };
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  if (typeof v === "object") {
    const keys = Object.keys(v as object);
    return keys.length ? `an object with keys ${keys.join(", ")}` : "an empty object";
  }
  if (typeof v === "string") return `the string ${JSON.stringify(v.slice(0, 40))}`;
  return `${typeof v === "undefined" ? "" : `a ${typeof v} `}${String(v)}`.trim();
}

function fmtShape(s: Dim[]): string {
  return `[${s.join(", ")}]`;
}
