/**
 * Binding inputs to a program: size symbols from input shapes, the shared batch shape of the
 * leading dims, and per-slice views. Shared by the interpreter and the GPU runtime.
 */
import { CompileError } from "./errors.ts";
import type { Dim, Graph, InputDecl } from "./ir.ts";
import { sizeOf, type Tensor } from "./tensor.ts";

/** The smallest magnitude float32 rounds to Infinity: 2^128 − 2^103. */
const F32_OVERFLOW = 3.4028235677973366e38;

/** The sizes of a graph's symbols for these inputs, and the batch shape they share. */
export function bindInputs(graph: Graph, inputs: Record<string, Tensor>): {
  bound: Map<string, number>;
  batch: number[];
  perInput: Map<string, (slice: number) => Tensor>;
} {
  const fail = (what: string, decl: InputDecl, hint?: string): never => {
    throw new CompileError(what, decl.span, graph.source, graph.file, hint);
  };
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
    // Leading batch dims are matched from the left; 1 (or a missing dim) is reused.
    const merged: number[] = [];
    for (let i = 0; i < Math.max(batch.length, lead.length); i++) {
      const a = batch[i] ?? 1, b = lead[i] ?? 1;
      if (a !== b && a !== 1 && b !== 1) {
        fail(
          `input ${decl.name} has batch dims [${lead.join(", ")}] that do not match [${
            batch.join(", ")
          }] of the other inputs`,
          decl,
          "leading dims are matched from the left: [batch, heads, ...]; a smaller input may omit trailing ones",
        );
      }
      merged.push(a === 1 ? b : a);
    }
    batch = merged;
    leads.set(decl.name, lead);
  }
  const perInput = new Map<string, (slice: number) => Tensor>();
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
    for (let i = 0; i < data.length; i++) {
      const x = data[i];
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
      for (let i = lead.length - 1; i >= 0; i--) {
        off += (lead[i] === 1 ? 0 : idx[i]) * stride;
        stride *= lead[i];
      }
      return {
        shape: own,
        data: t.data.subarray(off * n, off * n + n),
        dtype: decl.type.dtype,
      };
    });
  }
  return { bound, batch, perInput };
}

function fmtShape(s: Dim[]): string {
  return `[${s.join(", ")}]`;
}
