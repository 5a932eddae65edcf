/**
 * Reading and writing NumPy `.npy` files, the format Attune uses to exchange tensors with Python.
 *
 * Reading accepts format versions 1.0, 2.0 and 3.0, C-order arrays of float (`f2`, `f4`, `f8`),
 * signed and unsigned integer (`i1`..`i8`, `u1`..`u8`) and bool (`b1`) elements in either byte
 * order. Writing produces version 1.0 (2.0 only if the header does not fit), C order,
 * little-endian `<f4` or `<f8`, with the same header bytes `np.save` writes.
 *
 * Every problem with a file is reported as an {@link NpyError} whose message says what went
 * wrong, in which file (when known) and what to do about it.
 *
 * @module
 */

import { type DType, sizeOf, type Tensor } from "../compiler/tensor.ts";
import {
  type ElementFormat,
  fail,
  headerText,
  parseHeader,
  RESAVE,
  SUPPORTED_DTYPES,
} from "./npy_header.ts";

export { NpyError } from "./npy_header.ts";

/** The float dtypes {@link encodeNpy} can write. */
export type NpyWriteDType = "<f4" | "<f8";

/** Options of {@link encodeNpy} and {@link writeNpy}. */
export interface NpyWriteOptions {
  /** Element type of the file; `<f4` (float32, the default) or `<f8` (float64). */
  dtype?: NpyWriteDType;
}

/** `\x93NUMPY`. */
const MAGIC: readonly number[] = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
/** Magic string plus the two version bytes. */
const MAGIC_LEN = 8;
/** numpy aligns the start of the data to this many bytes. */
const ARRAY_ALIGN = 64;
/** numpy leaves room after the dict so the leading dimension can grow in place. */
const GROWTH_AXIS_MAX_DIGITS = 21;

/** Format a shape for messages, e.g. `[2, 3]`. */
function showShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/** Read element `i` of the data section as a number. */
function elementReader(
  format: ElementFormat,
  name: string | undefined,
): (view: DataView, offset: number) => number {
  const le = format.littleEndian;
  switch (`${format.kind}${format.size}`) {
    case "f2":
      return (v, o) => halfToNumber(v.getUint16(o, le));
    case "f4":
      return (v, o) => v.getFloat32(o, le);
    case "f8":
      return (v, o) => v.getFloat64(o, le);
    case "i1":
      return (v, o) => v.getInt8(o);
    case "i2":
      return (v, o) => v.getInt16(o, le);
    case "i4":
      return (v, o) => v.getInt32(o, le);
    case "u1":
      return (v, o) => v.getUint8(o);
    case "u2":
      return (v, o) => v.getUint16(o, le);
    case "u4":
      return (v, o) => v.getUint32(o, le);
    case "b1":
      return (v, o) => (v.getUint8(o) === 0 ? 0 : 1);
    case "i8":
    case "u8":
      return (v, o) => {
        const big = format.kind === "i" ? v.getBigInt64(o, le) : v.getBigUint64(o, le);
        const max = BigInt(Number.MAX_SAFE_INTEGER);
        if (big > max || big < -max) {
          return fail(
            `integer ${big} does not fit exactly in a float64 (|value| must be at most 2^53 - 1)`,
            name,
            "Attune stores values as float64; convert with arr.astype(np.float64) if rounding is acceptable",
          );
        }
        return Number(big);
      };
    default:
      return fail(`unsupported dtype ${JSON.stringify(format.descr)}`, name, SUPPORTED_DTYPES);
  }
}

/** Convert IEEE 754 half-precision bits to a number. */
function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The tensor dtype for an element kind. */
function tensorDType(kind: ElementFormat["kind"]): DType {
  return kind === "f" ? "float" : kind === "b" ? "bool" : "int";
}

/**
 * Parse the bytes of a `.npy` file (format versions 1.0, 2.0, 3.0).
 *
 * Float arrays become dtype `"float"`, integer arrays `"int"` and bool arrays `"bool"` (0/1);
 * all values are stored as float64. A shape of `()` gives a scalar tensor with shape `[]`.
 *
 * @param bytes The whole file.
 * @param name The file name, used in error messages.
 * @throws {NpyError} if the bytes are not a supported `.npy` file.
 */
export function decodeNpy(bytes: Uint8Array, name?: string): Tensor {
  if (bytes.length < MAGIC.length || MAGIC.some((b, i) => bytes[i] !== b)) {
    return fail("missing the .npy magic string \\x93NUMPY at the start", name, RESAVE);
  }
  if (bytes.length < MAGIC_LEN + 2) {
    return fail(`the file ends inside the header (only ${bytes.length} bytes)`, name, RESAVE);
  }
  const major = bytes[6];
  const minor = bytes[7];
  if (![1, 2, 3].includes(major) || minor !== 0) {
    return fail(
      `unsupported .npy format version ${major}.${minor}`,
      name,
      "Attune reads versions 1.0, 2.0 and 3.0; re-save the array with np.save",
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lengthBytes = major === 1 ? 2 : 4;
  if (bytes.length < MAGIC_LEN + lengthBytes) {
    return fail(`the file ends inside the header (only ${bytes.length} bytes)`, name, RESAVE);
  }
  const headerLength = major === 1
    ? view.getUint16(MAGIC_LEN, true)
    : view.getUint32(MAGIC_LEN, true);
  const headerStart = MAGIC_LEN + lengthBytes;
  const dataStart = headerStart + headerLength;
  if (dataStart > bytes.length) {
    return fail(
      `the file ends inside the header (header needs ${dataStart} bytes, file has ${bytes.length})`,
      name,
      "the file is truncated; copy or re-save it",
    );
  }
  const text = headerText(bytes.subarray(headerStart, dataStart), major, name);
  const { format, shape } = parseHeader(text, name);

  const count = sizeOf(shape);
  const needed = count * format.size;
  const available = bytes.length - dataStart;
  if (needed > available) {
    return fail(
      `the data is truncated: shape ${showShape(shape)} of ${format.descr} needs ${needed} bytes ` +
        `but only ${available} follow the header`,
      name,
      "the file is incomplete; copy or re-save it",
    );
  }
  if (needed < available) {
    return fail(
      `${available - needed} unexpected bytes follow the data of shape ${showShape(shape)} ` +
        `(${format.descr})`,
      name,
      "the file may be corrupt or hold several arrays; save exactly one array per file with np.save",
    );
  }
  const read = elementReader(format, name);
  const data = new Float64Array(count);
  for (let i = 0; i < count; i++) data[i] = read(view, dataStart + i * format.size);
  return { shape, data, dtype: tensorDType(format.kind) };
}

/** Python repr of a shape tuple: `()`, `(3,)`, `(2, 3)`. */
function pythonShape(shape: readonly number[]): string {
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(", ")})`;
}

/**
 * Encode a tensor as `.npy` version 1.0, C order, little-endian, dtype `<f4` or `<f8`
 * (default `<f4`).
 *
 * The header is the one `np.save` writes: the dict, spare room for the leading dimension to
 * grow, then spaces and a final `\n` so the data starts at a multiple of 64 bytes. Writing
 * `<f4` rounds every value to float32 (as `Math.fround` / `Float32Array` do). Integer and bool
 * tensors are written as floats. Version 2.0 is used only if the header exceeds 65535 bytes.
 *
 * @throws {NpyError} if the shape is invalid or does not match the data length.
 */
export function encodeNpy(t: Tensor, options: NpyWriteOptions = {}): Uint8Array {
  const descr = options.dtype ?? "<f4";
  if (descr !== "<f4" && descr !== "<f8") {
    return fail(
      `cannot write dtype ${JSON.stringify(descr)}`,
      undefined,
      "choose dtype '<f4' or '<f8'",
    );
  }
  for (const d of t.shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      return fail(
        `cannot write a tensor with shape ${showShape(t.shape)}`,
        undefined,
        "every dimension must be a non-negative integer",
      );
    }
  }
  const count = sizeOf(t.shape);
  if (t.data.length !== count) {
    return fail(
      `cannot write a tensor whose shape ${showShape(t.shape)} holds ${count} elements ` +
        `but whose data has ${t.data.length}`,
      undefined,
      "build tensors with tensor(shape, data) so shape and data agree",
    );
  }

  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${pythonShape(t.shape)}, }`;
  if (t.shape.length > 0) {
    dict += " ".repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(t.shape[0]).length));
  }
  // numpy's _wrap_header: 1 to 64 spaces, then '\n', so the data starts 64-byte aligned.
  let major = 1;
  let lengthBytes = 2;
  const hlen = dict.length + 1;
  let padlen = ARRAY_ALIGN - ((MAGIC_LEN + lengthBytes + hlen) % ARRAY_ALIGN);
  if (hlen + padlen > 0xffff) {
    major = 2;
    lengthBytes = 4;
    padlen = ARRAY_ALIGN - ((MAGIC_LEN + lengthBytes + hlen) % ARRAY_ALIGN);
  }
  const header = `${dict}${" ".repeat(padlen)}\n`;
  const itemSize = descr === "<f4" ? 4 : 8;
  const dataStart = MAGIC_LEN + lengthBytes + header.length;
  const out = new Uint8Array(dataStart + count * itemSize);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[6] = major;
  out[7] = 0;
  if (major === 1) view.setUint16(MAGIC_LEN, header.length, true);
  else view.setUint32(MAGIC_LEN, header.length, true);
  for (let i = 0; i < header.length; i++) out[MAGIC_LEN + lengthBytes + i] = header.charCodeAt(i);
  if (itemSize === 4) {
    for (let i = 0; i < count; i++) view.setFloat32(dataStart + 4 * i, t.data[i], true);
  } else {
    for (let i = 0; i < count; i++) view.setFloat64(dataStart + 8 * i, t.data[i], true);
  }
  return out;
}

/**
 * Read a `.npy` file.
 *
 * @throws {NpyError} if the file cannot be read or is not a supported `.npy` file.
 */
export async function readNpy(path: string): Promise<Tensor> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return fail(
      `cannot read the file (${why})`,
      path,
      "check that the path exists and that read permission is granted (--allow-read)",
    );
  }
  return decodeNpy(bytes, path);
}

/**
 * Write a tensor to a `.npy` file (see {@link encodeNpy} for the format).
 *
 * @throws {NpyError} if the tensor is invalid or the file cannot be written.
 */
export async function writeNpy(
  path: string,
  t: Tensor,
  options: NpyWriteOptions = {},
): Promise<void> {
  const bytes = encodeNpy(t, options);
  try {
    await writeFileAtomic(path, bytes);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    return fail(
      `cannot write the file (${why}); any previous file at that path is unchanged`,
      path,
      "check that the directory exists, has room, and that write permission is granted " +
        "(--allow-write covering the directory: the file is written beside it first)",
    );
  }
}

/**
 * Write `bytes` to `path` whole or not at all: into a temporary file in the same directory,
 * renamed over `path` once complete, so a write that fails part-way (a full disk) leaves the
 * previous file intact. `write` writes some bytes and returns how many (a test hook).
 */
export async function writeFileAtomic(
  path: string,
  bytes: Uint8Array,
  write: (file: Deno.FsFile, bytes: Uint8Array) => Promise<number> = (f, b) => f.write(b),
): Promise<void> {
  const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const file = await Deno.open(temp, { write: true, createNew: true });
  try {
    for (let done = 0; done < bytes.length;) done += await write(file, bytes.subarray(done));
    await file.sync();
    file.close();
    await Deno.rename(temp, path);
  } catch (e) {
    try {
      file.close();
    } catch { /* already closed */ }
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}
