import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeNpy, encodeNpy, NpyError, readNpy, writeNpy } from "../runtime/npy.ts";
import { sizeOf, type Tensor, tensor } from "../compiler/tensor.ts";

// Fixtures in tests/data/ were written by numpy (tests/data/make_npy_fixtures.py).
const DATA = new URL("./data/", import.meta.url);

function fixturePath(name: string): string {
  return new URL(name, DATA).pathname;
}

function fixture(name: string): Uint8Array {
  return Deno.readFileSync(fixturePath(name));
}

/** Assert element-wise identity with Object.is (distinguishes -0, matches NaN). */
function assertSameValues(actual: ArrayLike<number>, expected: ArrayLike<number>): void {
  assert.equal(actual.length, expected.length, "length");
  for (let i = 0; i < expected.length; i++) {
    assert.ok(
      Object.is(actual[i], expected[i]),
      `element ${i}: got ${actual[i]}, expected ${expected[i]}`,
    );
  }
}

/** Build .npy bytes by hand from a header text and a body, for malformed-input tests. */
function rawNpy(header: string, body: Uint8Array = new Uint8Array(), major = 1): Uint8Array {
  const text = new TextEncoder().encode(header);
  const lengthBytes = major === 1 ? 2 : 4;
  const out = new Uint8Array(8 + lengthBytes + text.length + body.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, text.length, true);
  else view.setUint32(8, text.length, true);
  out.set(text, 8 + lengthBytes);
  out.set(body, 8 + lengthBytes + text.length);
  return out;
}

function f8Header(shape: string): string {
  return `{'descr': '<f8', 'fortran_order': False, 'shape': ${shape}, }\n`;
}

/** Assert that `f` throws an NpyError whose message contains every fragment. */
function assertNpyError(f: () => unknown, ...fragments: string[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof NpyError, `expected NpyError, got ${e}`);
    for (const frag of fragments) {
      assert.ok(e.message.includes(frag), `message ${JSON.stringify(e.message)} lacks ${frag}`);
    }
    return true;
  });
}

// Shapes of rank 0..5 with small dimensions (0 allowed), optionally behind leading batch dims.
const shapeArb = fc
  .tuple(
    fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }),
    fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }),
  )
  .map(([batch, rest]) => [...batch, ...rest]);

const tensorArb = shapeArb.chain((shape) =>
  fc
    .array(fc.double(), { minLength: sizeOf(shape), maxLength: sizeOf(shape) })
    .map((values): Tensor => tensor(shape, values))
);

Deno.test("round trip <f8 is exact for random shapes, scalars and batch dims", () => {
  fc.assert(
    fc.property(tensorArb, (t) => {
      const back = decodeNpy(encodeNpy(t, { dtype: "<f8" }));
      assert.deepEqual(back.shape, t.shape);
      assert.equal(back.dtype, "float");
      assertSameValues(back.data, t.data);
    }),
    { numRuns: 300 },
  );
});

Deno.test("round trip <f4 (the default) gives Math.fround of every input", () => {
  fc.assert(
    fc.property(tensorArb, (t) => {
      const back = decodeNpy(encodeNpy(t));
      assert.deepEqual(back.shape, t.shape);
      assert.equal(back.dtype, "float");
      assertSameValues(back.data, Array.from(t.data, Math.fround));
    }),
    { numRuns: 300 },
  );
});

Deno.test("round trip of a scalar keeps shape [] and its single value", () => {
  const back = decodeNpy(encodeNpy(tensor([], [-2.75]), { dtype: "<f8" }));
  assert.deepEqual(back.shape, []);
  assertSameValues(back.data, [-2.75]);
});

Deno.test("encodeNpy header is 64-byte aligned, newline-terminated and matches np.save", () => {
  fc.assert(
    fc.property(tensorArb, fc.constantFrom<"<f4" | "<f8">("<f4", "<f8"), (t, dtype) => {
      const bytes = encodeNpy(t, { dtype });
      assert.equal(bytes[6], 1, "version 1.0");
      const hlen = bytes[8] | (bytes[9] << 8);
      assert.equal((10 + hlen) % 64, 0);
      assert.equal(bytes[10 + hlen - 1], 0x0a);
      assert.equal(bytes.length, 10 + hlen + sizeOf(t.shape) * (dtype === "<f4" ? 4 : 8));
    }),
  );
  // Byte-for-byte identical to the files numpy wrote.
  const f4 = decodeNpy(fixture("f4_2x3x5.npy"));
  assert.deepEqual(encodeNpy(f4), fixture("f4_2x3x5.npy"));
  const f8 = decodeNpy(fixture("f8_7.npy"));
  assert.deepEqual(encodeNpy(f8, { dtype: "<f8" }), fixture("f8_7.npy"));
  const scalar = decodeNpy(fixture("f8_scalar.npy"));
  assert.deepEqual(encodeNpy(scalar, { dtype: "<f8" }), fixture("f8_scalar.npy"));
});

Deno.test("encodeNpy writes int and bool tensors as float values", () => {
  const back = decodeNpy(encodeNpy(tensor([3], [1, 0, 1], "bool")));
  assert.equal(back.dtype, "float");
  assertSameValues(back.data, [1, 0, 1]);
});

Deno.test("reads numpy <f4 [2,3,5] fixture exactly", () => {
  const t = decodeNpy(fixture("f4_2x3x5.npy"));
  assert.deepEqual(t.shape, [2, 3, 5]);
  assert.equal(t.dtype, "float");
  assertSameValues(t.data, Array.from({ length: 30 }, (_, i) => Math.fround((i - 3) / 3)));
});

Deno.test("reads numpy <f8 [7] fixture exactly", () => {
  const t = decodeNpy(fixture("f8_7.npy"));
  assert.deepEqual(t.shape, [7]);
  assert.equal(t.dtype, "float");
  assertSameValues(t.data, Array.from({ length: 7 }, (_, i) => (i - 3) / 3));
});

Deno.test("reads numpy scalar (shape ()) as shape [] with one element", () => {
  const t = decodeNpy(fixture("f8_scalar.npy"));
  assert.deepEqual(t.shape, []);
  assertSameValues(t.data, [2.5]);
});

Deno.test("reads numpy big-endian >f8 fixture by byte swapping", () => {
  const t = decodeNpy(fixture("f8_be_3.npy"));
  assert.deepEqual(t.shape, [3]);
  assertSameValues(t.data, [-1 / 7, 0, 1 / 7]);
});

Deno.test("reads numpy format versions 2.0 and 3.0", () => {
  for (const name of ["f4_v2_3x2.npy", "f4_v3_3x2.npy"]) {
    const bytes = fixture(name);
    assert.equal(bytes[6], name.includes("v2") ? 2 : 3);
    const t = decodeNpy(bytes, name);
    assert.deepEqual(t.shape, [3, 2]);
    assert.equal(t.dtype, "float");
    assertSameValues(t.data, [-1, -0.75, -0.5, -0.25, 0, 0.25]);
  }
});

Deno.test("reads numpy integer fixtures (<i8, <i4, |i1, |u1, <u4) as dtype int", () => {
  const cases: [string, number[]][] = [
    ["i8_4.npy", [-3, 0, 7, 2 ** 40]],
    ["i4_3.npy", [-(2 ** 31), 0, 2 ** 31 - 1]],
    ["i1_3.npy", [-128, -1, 127]],
    ["u1_3.npy", [0, 128, 255]],
    ["u4_2.npy", [0, 2 ** 32 - 1]],
  ];
  for (const [name, values] of cases) {
    const t = decodeNpy(fixture(name), name);
    assert.deepEqual(t.shape, [values.length], name);
    assert.equal(t.dtype, "int", name);
    assertSameValues(t.data, values);
  }
});

Deno.test("reads numpy |b1 fixture as dtype bool with 0/1 values", () => {
  const t = decodeNpy(fixture("b1_3.npy"));
  assert.deepEqual(t.shape, [3]);
  assert.equal(t.dtype, "bool");
  assertSameValues(t.data, [1, 0, 1]);
});

Deno.test("readNpy and writeNpy round trip through a file under /tmp", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "attune_npy_" });
  try {
    const path = `${dir}/t.npy`;
    const t = tensor([2, 2], [0.1, -2, 3.5, 1e300]);
    await writeNpy(path, t, { dtype: "<f8" });
    const back = await readNpy(path);
    assert.deepEqual(back.shape, [2, 2]);
    assertSameValues(back.data, t.data);
    const read = await readNpy(fixturePath("f8_7.npy"));
    assert.deepEqual(read.shape, [7]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readNpy of a missing file gives NpyError naming the path", async () => {
  await assert.rejects(readNpy("/tmp/attune_no_such_dir/missing.npy"), (e: unknown) => {
    assert.ok(e instanceof NpyError);
    assert.match(e.message, /cannot read the file/);
    assert.match(e.message, /\/tmp\/attune_no_such_dir\/missing\.npy/);
    return true;
  });
});

Deno.test("error: Fortran-order file asks for np.ascontiguousarray and names the file", () => {
  assertNpyError(
    () => decodeNpy(fixture("f8_fortran_2x3.npy"), "f8_fortran_2x3.npy"),
    "Fortran",
    "C-order",
    "np.ascontiguousarray",
    "in f8_fortran_2x3.npy",
  );
});

Deno.test("error: <i8 value beyond 2^53 is rejected rather than rounded", () => {
  assertNpyError(
    () => decodeNpy(fixture("i8_too_big.npy"), "big.npy"),
    String(2n ** 60n),
    "2^53",
    "in big.npy",
  );
});

Deno.test("error: bad magic string, empty file and truncated prefix", () => {
  assertNpyError(
    () => decodeNpy(new TextEncoder().encode("PK\x03\x04 zip"), "a.npz"),
    "magic",
    "a.npz",
  );
  assertNpyError(() => decodeNpy(new Uint8Array()), "magic");
  assertNpyError(() => decodeNpy(fixture("f8_7.npy").subarray(0, 9)), "ends inside the header");
});

Deno.test("error: unsupported format version", () => {
  const bytes = fixture("f8_7.npy").slice();
  bytes[6] = 9;
  assertNpyError(() => decodeNpy(bytes), "version 9.0", "1.0, 2.0 and 3.0");
});

Deno.test("error: header length pointing past the end of the file", () => {
  const bytes = fixture("f8_7.npy").slice(0, 40);
  assertNpyError(() => decodeNpy(bytes, "cut.npy"), "ends inside the header", "cut.npy");
});

Deno.test("error: data shorter than the shape implies (truncated data)", () => {
  const full = fixture("f4_2x3x5.npy");
  assertNpyError(
    () => decodeNpy(full.subarray(0, full.length - 3), "t.npy"),
    "truncated",
    "[2, 3, 5]",
    "needs 120 bytes",
    "only 117",
    "t.npy",
  );
  const v2 = fixture("f4_v2_3x2.npy");
  assertNpyError(() => decodeNpy(v2.subarray(0, v2.length - 1)), "truncated");
});

Deno.test("error: unexpected bytes after the data", () => {
  const full = fixture("f8_7.npy");
  const longer = new Uint8Array(full.length + 8);
  longer.set(full);
  assertNpyError(() => decodeNpy(longer), "8 unexpected bytes");
});

Deno.test("error: unparseable header dictionaries name the problem", () => {
  const cases: [string, string][] = [
    ["not a dict\n", "expected '{'"],
    ["{'descr': '<f8', 'fortran_order': False, 'shape': (2,)\n", "expected ',' or '}'"],
    ["{'descr': '<f8, 'fortran_order': False, 'shape': (2,), }\n", "cannot parse"],
    ["{'descr': '<f8', 'fortran_order': Maybe, 'shape': (2,), }\n", 'unknown name "Maybe"'],
    ["{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3.0), }\n", "cannot parse"],
    ["{'descr': '<f8' 'fortran_order': False}\n", "expected ',' or '}'"],
    ["{3: 4}\n", "keys must be strings"],
    ["{'descr': '<f8', 'fortran_order': False, 'shape': (2,), } junk\n", "after the dictionary"],
    ["{'descr': 'unterminated\n", "unterminated string"],
  ];
  for (const [header, fragment] of cases) {
    assertNpyError(() => decodeNpy(rawNpy(header), "h.npy"), fragment, "header", "h.npy");
  }
});

Deno.test("error: header with missing keys, bad values or unsupported dtypes", () => {
  const body = new Uint8Array(16);
  const cases: [string, string[]][] = [
    ["{'descr': '<f8', 'shape': (2,), }", ["no 'fortran_order' entry"]],
    ["{'fortran_order': False, 'shape': (2,), }", ["no 'descr' entry"]],
    ["{'descr': '<f8', 'fortran_order': False, }", ["no 'shape' entry"]],
    ["{'descr': '<f8', 'fortran_order': False, 'shape': [2], }", ["'shape' is not a tuple"]],
    ["{'descr': '<f8', 'fortran_order': False, 'shape': (2), }", ["'shape' is not a tuple"]],
    ["{'descr': '<f8', 'fortran_order': False, 'shape': (-2,), }", ["non-negative integers"]],
    ["{'descr': '<f8', 'fortran_order': 0, 'shape': (2,), }", ["'fortran_order'"]],
    ["{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", ["unsupported dtype", "astype"]],
    ["{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", ["unsupported dtype"]],
    ["{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", ["unsupported dtype"]],
    [
      "{'descr': [('x', '<f8')], 'fortran_order': False, 'shape': (2,), }",
      ["structured", "arr['x']"],
    ],
  ];
  for (const [header, fragments] of cases) {
    assertNpyError(() => decodeNpy(rawNpy(header + "\n", body), "h.npy"), ...fragments, "h.npy");
  }
});

Deno.test("hand-built headers: Python 2 'L' suffixes, double quotes and empty shapes parse", () => {
  const two = new Uint8Array(16);
  new DataView(two.buffer).setFloat64(0, 1.5, true);
  new DataView(two.buffer).setFloat64(8, -4, true);
  const t = decodeNpy(rawNpy(`{"descr": "<f8", "fortran_order": False, "shape": (2L,)}\n`, two));
  assert.deepEqual(t.shape, [2]);
  assertSameValues(t.data, [1.5, -4]);
  const empty = decodeNpy(rawNpy(f8Header("(0, 3)")));
  assert.deepEqual(empty.shape, [0, 3]);
  assert.equal(empty.data.length, 0);
  const v2 = decodeNpy(rawNpy(f8Header("(2,)"), two, 2));
  assertSameValues(v2.data, [1.5, -4]);
});

Deno.test("error: version 3.0 header that is not UTF-8", () => {
  const bytes = rawNpy(f8Header("()"), new Uint8Array(8), 3);
  bytes[12] = 0xff;
  assertNpyError(() => decodeNpy(bytes), "UTF-8");
});

Deno.test("error: encodeNpy rejects shape/data mismatch and bad shapes", () => {
  const bad: Tensor = { shape: [2, 2], data: new Float64Array(3), dtype: "float" };
  assertNpyError(() => encodeNpy(bad), "[2, 2]", "4 elements", "3");
  const negative: Tensor = { shape: [-1], data: new Float64Array(0), dtype: "float" };
  assertNpyError(() => encodeNpy(negative), "non-negative");
});

Deno.test("hand-built <f2 (half precision) values decode exactly", () => {
  const body = new Uint8Array(10);
  const view = new DataView(body.buffer);
  [0x3c00, 0xc000, 0x0001, 0x7c00, 0x8000].forEach((bits, i) => view.setUint16(2 * i, bits, true));
  const t = decodeNpy(
    rawNpy("{'descr': '<f2', 'fortran_order': False, 'shape': (5,), }\n", body),
  );
  assert.equal(t.dtype, "float");
  assertSameValues(t.data, [1, -2, 2 ** -24, Infinity, -0]);
});
