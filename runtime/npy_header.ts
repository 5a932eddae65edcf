/**
 * The header of a `.npy` file: a Python literal dict such as
 * `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, parsed and checked into the
 * element format and shape; and the error every problem with a file is reported as.
 */

/** A `.npy` file could not be read or a tensor could not be written. */
export class NpyError extends Error {
  /** Build an error; `message` says what went wrong, where, and what to do. */
  constructor(message: string) {
    super(message);
    this.name = "NpyError";
  }
}

/** The advice for a file that is not valid .npy. */
export const RESAVE = "the file is not a valid .npy file; re-save the array with np.save";

/** Throw an {@link NpyError} as "npy: PROBLEM in NAME; ADVICE". */
export function fail(problem: string, name: string | undefined, advice: string): never {
  const where = name === undefined ? "" : ` in ${name}`;
  throw new NpyError(`npy: ${problem}${where}; ${advice}`);
}

// ---------------------------------------------------------------------------
// The header: a Python literal dict such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// ---------------------------------------------------------------------------

/** A Python literal value as it can appear in a `.npy` header. */
type PyValue =
  | { kind: "str"; value: string }
  | { kind: "int"; value: bigint }
  | { kind: "bool"; value: boolean }
  | { kind: "none" }
  | { kind: "tuple"; items: PyValue[] }
  | { kind: "list"; items: PyValue[] }
  | { kind: "dict"; entries: Map<string, PyValue> };

/** Parser state over the header text. */
interface Cursor {
  text: string;
  pos: number;
  name: string | undefined;
  /** Open brackets around the cursor (a real header nests two deep). */
  depth: number;
}

/** Nesting past this is refused: a header nests 2 deep, and recursion must not overflow. */
const MAX_HEADER_DEPTH = 32;

/** Report a syntax error in the header at the cursor. */
function syntaxError(c: Cursor, what: string): never {
  const shown = c.text.length > 120 ? `${c.text.slice(0, 120)}...` : c.text;
  return fail(
    `cannot parse the header dictionary (${what} at character ${c.pos} of ${
      JSON.stringify(shown.trimEnd())
    })`,
    c.name,
    RESAVE,
  );
}

/** Skip blanks between tokens. */
function skipSpace(c: Cursor): void {
  while (c.pos < c.text.length && " \t\r\n".includes(c.text[c.pos])) c.pos++;
}

/** Describe the character at the cursor for an error message. */
function describeNext(c: Cursor): string {
  return c.pos < c.text.length ? `unexpected ${JSON.stringify(c.text[c.pos])}` : "unexpected end";
}

/** Parse one Python literal starting at the cursor. */
function parseValue(c: Cursor): PyValue {
  skipSpace(c);
  const ch = c.text[c.pos];
  if (ch === "'" || ch === '"') return { kind: "str", value: parseString(c) };
  if (ch === "(" || ch === "[" || ch === "{") {
    if (c.depth >= MAX_HEADER_DEPTH) {
      return syntaxError(c, `brackets nested more than ${MAX_HEADER_DEPTH} deep`);
    }
    c.depth++;
    const v = ch === "("
      ? parseSequence(c, ")", "tuple")
      : ch === "["
      ? parseSequence(c, "]", "list")
      : parseDict(c);
    c.depth--;
    return v;
  }
  const intMatch = /[+-]?[0-9]+[lL]?/y;
  intMatch.lastIndex = c.pos;
  const int = intMatch.exec(c.text);
  if (int !== null) {
    c.pos += int[0].length;
    return { kind: "int", value: BigInt(int[0].replace(/[lL]$/, "")) };
  }
  const identMatch = /[A-Za-z_][A-Za-z0-9_]*/y;
  identMatch.lastIndex = c.pos;
  const ident = identMatch.exec(c.text);
  if (ident !== null) {
    const word = ident[0];
    if (word === "True" || word === "False") {
      c.pos += word.length;
      return { kind: "bool", value: word === "True" };
    }
    if (word === "None") {
      c.pos += word.length;
      return { kind: "none" };
    }
    return syntaxError(c, `unknown name ${JSON.stringify(word)}`);
  }
  return syntaxError(c, describeNext(c));
}

/** Parse a quoted string with the common backslash escapes. */
function parseString(c: Cursor): string {
  const quote = c.text[c.pos];
  const start = c.pos;
  c.pos++;
  let out = "";
  while (c.pos < c.text.length) {
    const ch = c.text[c.pos];
    if (ch === quote) {
      c.pos++;
      return out;
    }
    if (ch === "\n") break;
    if (ch === "\\") {
      const next = c.text[c.pos + 1];
      if (next === undefined) break;
      const escapes: Record<string, string> = {
        "n": "\n",
        "t": "\t",
        "r": "\r",
        "\\": "\\",
        "'": "'",
        '"': '"',
      };
      out += escapes[next] ?? `\\${next}`;
      c.pos += 2;
      continue;
    }
    out += ch;
    c.pos++;
  }
  c.pos = start;
  return syntaxError(c, "unterminated string");
}

/** Parse a tuple or list; `(x)` without a comma is just `x`, as in Python. */
function parseSequence(c: Cursor, close: ")" | "]", kind: "tuple" | "list"): PyValue {
  c.pos++;
  const items: PyValue[] = [];
  let commas = 0;
  for (;;) {
    skipSpace(c);
    if (c.text[c.pos] === close) {
      c.pos++;
      break;
    }
    items.push(parseValue(c));
    skipSpace(c);
    if (c.text[c.pos] === ",") {
      c.pos++;
      commas++;
    } else if (c.text[c.pos] !== close) {
      return syntaxError(c, `${describeNext(c)}, expected ',' or '${close}'`);
    }
  }
  if (kind === "tuple" && items.length === 1 && commas === 0) return items[0];
  return { kind, items };
}

/** Parse a dict with string keys. */
function parseDict(c: Cursor): PyValue {
  c.pos++;
  const entries = new Map<string, PyValue>();
  for (;;) {
    skipSpace(c);
    if (c.text[c.pos] === "}") {
      c.pos++;
      break;
    }
    const keyPos = c.pos;
    const key = parseValue(c);
    if (key.kind !== "str") {
      c.pos = keyPos;
      return syntaxError(c, "dictionary keys must be strings");
    }
    skipSpace(c);
    if (c.text[c.pos] !== ":") return syntaxError(c, `${describeNext(c)}, expected ':'`);
    c.pos++;
    entries.set(key.value, parseValue(c));
    skipSpace(c);
    if (c.text[c.pos] === ",") {
      c.pos++;
    } else if (c.text[c.pos] !== "}") {
      return syntaxError(c, `${describeNext(c)}, expected ',' or '}'`);
    }
  }
  return { kind: "dict", entries };
}

/** How the elements of an array are stored. */
export interface ElementFormat {
  /** The descr string from the header, e.g. `<f4`. */
  descr: string;
  /** `f` float, `i` signed int, `u` unsigned int, `b` bool. */
  kind: "f" | "i" | "u" | "b";
  /** Bytes per element. */
  size: number;
  littleEndian: boolean;
}

/** What the header says about the array. */
interface Header {
  format: ElementFormat;
  shape: number[];
}

const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export const SUPPORTED_DTYPES =
  "Attune reads float (f2, f4, f8), integer (i1-i8, u1-u8) and bool (b1) arrays; " +
  "convert with arr.astype(np.float32) before saving";

/** Interpret a descr string such as `<f4` or `|b1`. */
function parseDescr(descr: string, name: string | undefined): ElementFormat {
  const m = /^([<>|=])([a-zA-Z])(\d+)$/.exec(descr);
  const sizes: Record<string, number[]> = {
    f: [2, 4, 8],
    i: [1, 2, 4, 8],
    u: [1, 2, 4, 8],
    b: [1],
  };
  if (m === null || !(m[2] in sizes) || !sizes[m[2]].includes(Number(m[3]))) {
    return fail(`unsupported dtype ${JSON.stringify(descr)}`, name, SUPPORTED_DTYPES);
  }
  const size = Number(m[3]);
  const order = m[1];
  if (order === "|" && size !== 1) {
    return fail(
      `dtype ${JSON.stringify(descr)} has no byte order but ${size}-byte elements`,
      name,
      RESAVE,
    );
  }
  return {
    descr,
    kind: m[2] as ElementFormat["kind"],
    size,
    littleEndian: order === ">" ? false : order === "=" ? HOST_LITTLE_ENDIAN : true,
  };
}

/** Parse and check the header text. */
export function parseHeader(text: string, name: string | undefined): Header {
  const c: Cursor = { text, pos: 0, name, depth: 0 };
  skipSpace(c);
  if (c.text[c.pos] !== "{") {
    return syntaxError(c, `${describeNext(c)}, expected '{'`);
  }
  const dict = parseValue(c);
  skipSpace(c);
  if (c.pos < text.length) return syntaxError(c, `${describeNext(c)} after the dictionary`);
  if (dict.kind !== "dict") return syntaxError(c, "the header is not a dictionary");
  const get = (key: string): PyValue => {
    const v = dict.entries.get(key);
    if (v === undefined) return fail(`the header has no '${key}' entry`, name, RESAVE);
    return v;
  };

  const descr = get("descr");
  if (descr.kind === "list") {
    return fail(
      "structured (record) dtypes are not supported",
      name,
      "save each field as its own plain numeric array, e.g. np.save(path, arr['x'])",
    );
  }
  if (descr.kind !== "str") {
    return fail("the header's 'descr' is not a string", name, RESAVE);
  }
  const format = parseDescr(descr.value, name);

  const fortran = get("fortran_order");
  if (fortran.kind !== "bool") {
    return fail("the header's 'fortran_order' is not True or False", name, RESAVE);
  }
  if (fortran.value) {
    return fail(
      "the array is stored in Fortran (column-major) order",
      name,
      "Attune needs C-order arrays; save np.ascontiguousarray(arr) instead",
    );
  }

  const shapeValue = get("shape");
  if (shapeValue.kind !== "tuple") {
    return fail("the header's 'shape' is not a tuple such as (2, 3)", name, RESAVE);
  }
  const shape: number[] = [];
  for (const d of shapeValue.items) {
    if (d.kind !== "int" || d.value < 0n) {
      return fail(
        "the header's 'shape' must hold non-negative integers",
        name,
        RESAVE,
      );
    }
    if (d.value > BigInt(Number.MAX_SAFE_INTEGER)) {
      return fail(
        `the header's 'shape' has a dimension of ${d.value}, past 2^53 - 1 (the largest size ` +
          "Attune can address)",
        name,
        "no such array fits in memory; the header is damaged or was written wrongly",
      );
    }
    shape.push(Number(d.value));
  }
  return { format, shape };
}

/** Decode the header bytes: latin-1 for versions 1 and 2, UTF-8 for version 3. */
export function headerText(bytes: Uint8Array, major: number, name: string | undefined): string {
  if (major === 3) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return fail("the version 3.0 header is not valid UTF-8", name, RESAVE);
    }
  }
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return text;
}
