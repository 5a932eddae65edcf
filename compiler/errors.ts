/** Error classes. Every message says what went wrong, where, and what to do. */

/** A half-open range of character offsets into one source text. */
export interface Span {
  /** First character (0-based offset). */
  start: number;
  /** One past the last character. */
  end: number;
}

/** Line and column (both 1-based) of an offset in `source`. */
export function lineCol(source: string, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < source.length; i++) {
    if (source[i] === "\n") {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, col: offset - lineStart + 1 };
}

/** Base class of all errors Attune raises on purpose. */
export class AttuneError extends Error {
  /** The class name, shown by runtimes when the error escapes. */
  override name = "AttuneError";
}

/**
 * A problem in an Attune program: syntax, names, types, shapes, parameters, or inputs that do
 * not fit the program's declared shapes. `message` is one line, `file:line:col: what`;
 * `format()` adds the source line, a caret under the span, and a hint.
 */
export class CompileError extends AttuneError {
  /** The class name. */
  override name = "CompileError";
  /** 1-based line of the span's start. */
  readonly line: number;
  /** 1-based column of the span's start. */
  readonly col: number;
  /**
   * An error at `span` of `source`.
   * @param what the problem, one line
   * @param span where it is
   * @param source the program text
   * @param file the file name for the message
   * @param hint what to do about it
   */
  constructor(
    readonly what: string,
    readonly span: Span,
    readonly source: string,
    readonly file = "<program>",
    readonly hint?: string,
  ) {
    const { line, col } = lineCol(source, span.start);
    super(`${file}:${line}:${col}: ${what}`);
    this.line = line;
    this.col = col;
  }

  /** The full diagnostic: the message, the source line with a caret, and the hint. */
  format(): string {
    const lines = this.source.split("\n");
    const text = lines[this.line - 1] ?? "";
    const width = Math.max(
      1,
      Math.min(this.span.end - this.span.start, text.length - this.col + 1),
    );
    const gutter = String(this.line).padStart(4) + " | ";
    const out = [
      `error: ${this.message}`,
      gutter + text,
      " ".repeat(gutter.length + this.col - 1) + "^".repeat(width),
    ];
    if (this.hint) out.push(`hint: ${this.hint}`);
    return out.join("\n");
  }
}

/** A WebGPU device could not be had or failed; the message says what to install or change. */
export class DeviceError extends AttuneError {
  /** The class name. */
  override name = "DeviceError";
}

/** A size exceeds a device limit; the message names the limit, the size, and what to do. */
export class LimitError extends AttuneError {
  /** The class name. */
  override name = "LimitError";
}

/**
 * The library or the command line was called wrongly: an argument of the wrong kind, an unknown
 * option value, a seed the generator does not take. The message names the argument, what it got
 * and what it takes.
 */
export class UsageError extends AttuneError {
  /** The class name. */
  override name = "UsageError";
}

/** The largest seed: seeds are a u32 key of the Philox generator. */
export const MAX_SEED = 0xffff_ffff;

/** Throw a UsageError unless `seed` is undefined or an integer in [0, MAX_SEED]. */
export function checkSeed(seed: unknown, what = "seed"): void {
  if (seed === undefined) return;
  if (typeof seed !== "number" || !Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    const got = typeof seed === "string" ? `the string ${JSON.stringify(seed)}` : String(seed);
    throw new UsageError(
      `${what} must be a whole number from 0 to ${MAX_SEED} (the generator's u32 key), got ${got}`,
    );
  }
}

/** Levenshtein distance, for "did you mean" suggestions. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** The closest candidate to `name`, if it is close enough to be a likely typo. */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(name.length / 3)) + 1
    ? best
    : undefined;
}
