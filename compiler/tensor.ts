/** Host tensors: the values that flow in and out of the interpreter, the CLI and the runtime. */

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

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let s = 1;
  for (const d of shape) s *= d;
  return s;
}

/** Build a tensor, copying `data` into float64. */
export function tensor(
  shape: number[],
  data: ArrayLike<number>,
  dtype: DType = "float",
): Tensor {
  if (data.length !== sizeOf(shape)) {
    throw new RangeError(
      `tensor: shape [${shape.join(", ")}] holds ${
        sizeOf(shape)
      } elements but ${data.length} were given`,
    );
  }
  return { shape: [...shape], data: Float64Array.from(data), dtype };
}
