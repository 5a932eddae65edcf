/** Host tensors: the values that flow in and out of the interpreter, the CLI and the runtime. */
import { UsageError } from "./errors.ts";

/** Element kinds of the language. The interpreter stores all of them as float64. */
export type DType = "float" | "int" | "bool";

/** A dense row-major (C order) tensor on the host. */
export interface Tensor {
  /** Sizes, outermost first; `[]` is a scalar. */
  shape: number[];
  /** The elements in row-major order (ints and bools too, as 0/1 and whole numbers). */
  data: Float64Array;
  /** What the elements mean. */
  dtype: DType;
}

/**
 * A tensor-like input: a shape and its elements in row-major order as any numeric array
 * (`number[]`, `Float32Array`, ...); copied into float64. `dtype` defaults to the input's declared
 * element kind.
 */
export interface TensorLike {
  /** Sizes, outermost first. */
  shape: readonly number[];
  /** The elements in row-major order (nested arrays are flattened). */
  data: ArrayLike<number> | readonly NestedNumbers[];
  /** What the elements mean (default: the declared kind of the input). */
  dtype?: DType;
}

/** Nested arrays of numbers (`[[1, 2], [3, 4]]`); the shape is read from the nesting. */
export type NestedNumbers = number | boolean | readonly NestedNumbers[];

/**
 * What `Program.run` accepts for an input: a {@link Tensor}, a {@link TensorLike} with a plain
 * array, or nested arrays of numbers. Anything else is a `CompileError` naming the input.
 */
export type TensorInput = Tensor | TensorLike | NestedNumbers;

/** The largest integer magnitude float32 (the GPU's buffers) holds exactly, with every smaller one. */
export const F32_EXACT_INT = 2 ** 24;

/** The smallest magnitude float32 rounds to Infinity: 2^128 − 2^103. */
export const F32_OVERFLOW = 3.4028235677973366e38;

/**
 * The smallest normal float32, 2^-126. A constant below it reads as 0 on the GPU (past 2^-149 it
 * rounds to 0; subnormals may be flushed to 0), while the float64 interpreter keeps it (fuzz:
 * `abs(i - j) < 1e-46` was i == j on the interpreter and never true on the GPU).
 */
export const F32_MIN_NORMAL = 1.1754943508222875e-38;

/** The largest size (and flat index) a GPU kernel's u32 arithmetic can hold. */
export const MAX_DIM = 0xffff_ffff;

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

/** Throw a UsageError unless `shape` is an array of whole numbers ≥ 0 with ≤ 2^53 elements. */
export function checkShape(shape: unknown, what: string): asserts shape is number[] {
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => typeof d === "number" && Number.isInteger(d) && d >= 0)
  ) {
    throw new UsageError(
      `${what}: a shape is an array of whole numbers ≥ 0, got ${
        Array.isArray(shape) ? `[${shape.join(", ")}]` : String(shape)
      }`,
    );
  }
  if (!Number.isSafeInteger(sizeOf(shape))) {
    throw new UsageError(`${what}: shape [${shape.join(", ")}] has more than 2^53 elements`);
  }
}

/** Build a tensor, copying `data` into float64. */
export function tensor(
  shape: number[],
  data: ArrayLike<number>,
  dtype: DType = "float",
): Tensor {
  checkShape(shape, "tensor");
  if (data.length !== sizeOf(shape)) {
    throw new UsageError(
      `tensor: shape [${shape.join(", ")}] holds ${
        sizeOf(shape)
      } elements but ${data.length} were given`,
    );
  }
  return { shape: [...shape], data: Float64Array.from(data), dtype };
}
