/** Fused attention: the score in WGSL, its key window, and the flash kernel around it. */
import type { Dim, Node, Score } from "../compiler/ir/types.ts";
import { attentionTile, fullTiles, LOOPS, splitBlock } from "../compiler/limits.ts";
import {
  dim,
  f32,
  lead,
  nodeSliceKey,
  size,
  sliceOf,
  splitUsed,
  strides,
  type SymbolSlots,
  type ThreadDim,
} from "../compiler/wgsl/syntax.ts";
import {
  BINARY,
  COMPARES,
  HELPERS,
  helpersFor,
  INT_BINARY,
  INT_UNARY,
  intLiteral,
  UNARY,
} from "../compiler/wgsl/ops.ts";
import { wrapInt32 } from "../compiler/ir/scalar.ts";
import { drawBlock, DRAWS } from "../compiler/wgsl/values.ts";
import { scoreChildren as children } from "../compiler/ir/walks.ts";
import { gridLaunch, type NodeKernel } from "../compiler/wgsl/kernel.ts";
import { nodeKey } from "../compiler/wgsl/keys.ts";
import { flashKernel, type FlashSpec, fullBlocks, isNan, tiledTrips, trims } from "./flash.ts";
import { indexInRange, masksKeys, type TileSkip, tileSkip } from "./tiles.ts";
import type { KernelRequest } from "./common.ts";

/** attention, probs: the fused flash kernel. */
export function attentionKernels(node: Node, req: KernelRequest): NodeKernel[] {
  const args = node.args.map((a) => req.byId.get(a)!);
  return [attentionKernel(node, args, req.slots, undefined, req.f16, req.split)];
}

/** Names a fused score reads for one tile row (and key: `j`, `fj` unless named). */
export interface RowNames {
  qk: string;
  fi: string;
  i: string;
  j?: string;
  fj?: string;
  /** Subtrees computed before the key loop (or once per key): their names, in this scope. */
  hoisted?: (x: Score) => string | undefined;
  /** The expression is proven free of NaN (a table index, `indexInRange`). */
  finite?: boolean;
}

/** Whether a score is computed int arithmetic: rendered in i32 (`scoreWgsl`) and bound so. */
export function computedInt(x: Score): boolean {
  return x.kind === "cast" ? x.to === "int" : "int" in x && x.int === true;
}

/** Whether a score's value is an int (of any origin), so comparing two of them is exact in i32. */
function intValued(x: Score, args: Node[]): boolean {
  switch (x.kind) {
    case "i":
    case "j":
    case "size":
    case "lead":
      return true;
    case "const":
      return Number.isInteger(x.value) && x.value === wrapInt32(x.value);
    case "leaf":
    case "table":
      return args[x.arg].type.dtype === "int";
    default:
      return computedInt(x);
  }
}

/**
 * WGSL of a fused score, reading leaves at i, j or [0] of the current slice: an f32 expression,
 * or with `int` an i32 one. Int arithmetic (`computedInt`) runs in i32 either way, exact and
 * wrapping as the interpreter's, and becomes f32 only where a float reads it.
 */
export function scoreWgsl(
  x: Score,
  args: Node[],
  slots: SymbolSlots,
  v: RowNames,
  int = false,
): string {
  const isInt = computedInt(x);
  // The f32 value of a float or stored expression, as asked.
  const f = (e: string) => (int ? `f2i(${e})` : e);
  const named = v.hoisted?.(x);
  if (named !== undefined) return isInt ? (int ? named : `f32(${named})`) : f(named);
  const r = (y: Score, i32 = false) => scoreWgsl(y, args, slots, v, i32);
  if (isInt && !int) return `f32(${r(x, true)})`;
  switch (x.kind) {
    case "qk":
      return f(v.qk);
    case "i":
      return int ? `i32(${v.i})` : v.fi;
    case "j":
      return int ? `i32(${v.j ?? "j"})` : v.fj ?? "fj";
    case "const":
      return int ? intLiteral(x.value) : f32(x.value);
    case "size":
      return `${int ? "i32" : "f32"}(${dim(x.name, slots)})`;
    case "lead":
      return int ? `i32(${lead(x.of, slots)})` : lead(x.of, slots);
    case "leaf": {
      const base = `${sliceOf(args[x.arg].id, slots)} * ${size(args[x.arg].type.shape, slots)}`;
      const at = x.at === "scalar" ? "" : ` + ${x.at === "i" ? v.i : v.j ?? "j"}`;
      return f(`a${x.arg}[${base}${at}]`);
    }
    case "table": {
      // A proven index holds no NaN: plain min/max are the NaN-propagating ones there.
      const proven = tableInRange(x, args);
      const at = x.at.map((
        y,
      ) => (proven ? scoreWgsl(y, args, slots, { ...v, finite: true }) : r(y)));
      return f(`table${x.arg}${proven ? "u" : ""}(s, ${at.join(", ")})`);
    }
    case "draw":
      return f(`draw${x.stream}(s, ${x.at.map((y) => r(y)).join(", ")})`);
    case "unary":
      return isInt ? INT_UNARY[x.fn]!(r(x.x, true)) : f(UNARY[x.fn](r(x.x)));
    case "binary": {
      if (isInt) return INT_BINARY[x.fn]!(r(x.a, true), r(x.b, true));
      // Two ints compare as i32: exact where f32 would round them past 2^24.
      const ints = COMPARES.has(x.fn) && intValued(x.a, args) && intValued(x.b, args);
      return f(
        v.finite && (x.fn === "min" || x.fn === "max")
          ? `${x.fn}(${r(x.a)}, ${r(x.b)})`
          : BINARY[x.fn](r(x.a, ints), r(x.b, ints)),
      );
    }
    case "where":
      return isInt
        ? `select(${r(x.b, true)}, ${r(x.a, true)}, ${r(x.c)} != 0.0)`
        : f(`select(${r(x.b)}, ${r(x.a)}, ${r(x.c)} != 0.0)`);
    case "cast":
      return x.to === "bool"
        ? f(`select(0.0, 1.0, ${r(x.x)} != 0.0)`)
        : x.to === "int"
        ? `f2i(${r(x.x)})`
        : f(r(x.x));
  }
}

/**
 * WGSL functions reading each table of a score, and drawing each random tensor it reads, with
 * `gather`'s rules (interp.ts): a NaN index reads NaN (tested on its bits: lavapipe folds NaN
 * comparisons), one outside its axis reads 0.
 */
export function tableFunctions(score: Score, args: Node[], slots: SymbolSlots): string {
  const fns = new Map<string, string>();
  const visit = (x: Score): void => {
    if (x.kind === "draw" && !fns.has(`draw${x.stream}`)) {
      fns.set("philox", HELPERS.philox);
      fns.set(`draw${x.stream}`, drawFunction(x, args, slots));
    }
    const name = x.kind === "table" &&
      `table${x.arg}${tableInRange(x, args) ? "u" : ""}`;
    if (x.kind === "table" && name && !fns.has(name)) {
      const shape = args[x.arg].type.shape, st = strides(shape, slots);
      const ps = x.at.map((_, k) => `x${k}: f32`).join(", ");
      const nan = x.at.map((_, k) => `(bitcast<u32>(x${k}) & 0x7fffffffu) > 0x7f800000u`);
      const out = x.at.map((_, k) => `x${k} < 0.0 || x${k} >= f32(${dim(shape[k], slots)})`);
      const off = x.at.map((_, k) => `u32(floor(x${k})) * ${st[k]}`).join(" + ");
      const read = `a${x.arg}[${sliceOf(args[x.arg].id, slots)} * ${size(shape, slots)} + ${off}]`;
      fns.set(
        name,
        name.endsWith("u")
          ? `fn ${name}(s: u32, ${ps}) -> f32 { return ${read}; }`
          : `fn ${name}(s: u32, ${ps}) -> f32 {
  if (${nan.join(" || ")}) { return bitcast<f32>(f32_bits.z); }
  if (${out.join(" || ")}) { return 0.0; }
  return ${read};
}`,
      );
    }
    for (const y of children(x)) visit(y);
  };
  visit(score);
  return [...fns.values()].join("\n");
}

/**
 * `draw{stream}(s, x0, x1, ...)`: element (x0, x1, ...) of a fused score's random tensor in
 * slice s, drawn as kernels/elementwise.ts's `random` kernel draws it (`randomValue`).
 */
function drawFunction(x: Score & { kind: "draw" }, args: Node[], slots: SymbolSlots): string {
  const none: RowNames = { qk: "0.0", fi: "0.0", i: "0u" };
  const r = (y: Score) => scoreWgsl(y, args, slots, none);
  const ps = x.at.map((_, k) => `x${k}: f32`).join(", ");
  const nan = x.at.map((_, k) => `(bitcast<u32>(x${k}) & 0x7fffffffu) > 0x7f800000u`);
  const out = x.at.map((_, k) => `x${k} < 0.0 || x${k} >= ${r(x.shape[k])}`);
  const flat = x.at.reduce(
    (acc, _, k) => (k === 0 ? "u32(x0)" : `(${acc}) * u32(${r(x.shape[k])}) + u32(x${k})`),
    "",
  );
  // An int seed is rendered in i32 and read as its bits (the interpreter's `seed >>> 0`): through
  // f32 a seed past 2^24 (`seed + head()`) rounded and every draw changed (probe 4).
  const given = x.seed.kind === "const"
    ? `${x.seed.value >>> 0}u`
    : intValued(x.seed, args)
    ? `bitcast<u32>(${scoreWgsl(x.seed, args, slots, none, true)})`
    : `u32(i32(floor(${r(x.seed)})))`;
  return `fn draw${x.stream}(s: u32, ${ps}) -> f32 {
  if (${nan.join(" || ")}) { return bitcast<f32>(f32_bits.z); }
  if (${out.join(" || ")}) { return 0.0; }
  let w = ${drawBlock(flat, given, x.stream)};
  return ${DRAWS[x.rand]("w")};
}`;
}

/** Where a hoisted subtree of a score is computed: once, once per query row, once per key. */
export type HoistAt = "once" | "row" | "key";

/**
 * The largest subtrees of a score that read neither q·k nor both i and j, each to be computed
 * outside the per-(row, key) work: constants (`sqrt(float(d))`) once per invocation, terms of i
 * alone (`doc[i]`) once per query row, terms of j alone (`doc[j]`, `bias[j]`) once per key and
 * shared by the tile's rows. The same operations on the same values, bound to a name: results
 * are unchanged (lavapipe reloaded `doc[i]` from memory for every key otherwise).
 */
export function hoistScore(score: Score): { at: HoistAt; k: number; x: Score }[] {
  const I = 1, J = 2, QK = 4;
  const memo = new Map<Score, number>();
  const deps = (x: Score): number => {
    let d = memo.get(x);
    if (d !== undefined) return d;
    d = x.kind === "qk"
      ? QK
      : x.kind === "i"
      ? I
      : x.kind === "j"
      ? J
      : x.kind === "leaf"
      ? (x.at === "i" ? I : x.at === "j" ? J : 0)
      : children(x).reduce((a, y) => a | deps(y), 0);
    memo.set(x, d);
    return d;
  };
  // Names already at hand (or literals): nothing to gain.
  const trivial = (x: Score): boolean =>
    x.kind === "const" || x.kind === "i" || x.kind === "j" || x.kind === "qk" ||
    (x.kind === "cast" && x.to === "float" && trivial(x.x));
  const out: { at: HoistAt; k: number; x: Score }[] = [];
  const count = { once: 0, row: 0, key: 0 };
  const seen = new Set<Score>();
  const visit = (x: Score): void => {
    const d = deps(x);
    if (d & QK || d === (I | J) || trivial(x)) {
      for (const y of children(x)) visit(y);
      return;
    }
    if (seen.has(x)) return;
    seen.add(x);
    const at: HoistAt = d === 0 ? "once" : d === I ? "row" : "key";
    out.push({ at, k: count[at]++, x });
  };
  visit(score);
  return out;
}

/**
 * The mask of a score where(c, x, -inf) whose condition reads no q·k: c alone says which keys a
 * row counts, so the flash kernel trims each key block to the keys between the first and the
 * last that some row of its tile counts (kernels/flash.ts).
 */
export function keyMask(score: Score): Score | undefined {
  return score.kind === "where" && score.b.kind === "const" && score.b.value === -Infinity &&
      !readsQk(score.c)
    ? score.c
    : undefined;
}

/** Whether a score reads q·k. */
function readsQk(x: Score): boolean {
  return x.kind === "qk" || children(x).some(readsQk);
}

/**
 * Whether a table read's every index is proven a number inside its axis (a static size), so the
 * read skips gather's NaN and range tests (`table{arg}u`).
 */
function tableInRange(x: Score & { kind: "table" }, args: Node[]): boolean {
  const shape = args[x.arg].type.shape;
  return x.at.every((at, k) => {
    const d = shape[k];
    return typeof d === "number" && indexInRange(at, d);
  });
}

/**
 * The keys a tile of rows [ib, ie] can see, from a score of the form where(window, x, none):
 * `j <= i` (causal) and `j < c` bound the top, `abs(i - j) <= w` both sides, `a or b` the hull of
 * both windows when each has the bound. Other keys score `none` (-inf for softmax, weight 0
 * summed) and are skipped without being computed. Returns WGSL i32 bounds, or nothing when no window is found.
 */
export function keyWindow(
  score: Score,
  none = -Infinity,
): { lo?: string; hi?: string; whole?: boolean } {
  if (score.kind !== "where" || score.b.kind !== "const" || score.b.value !== none) return {};
  // `whole`: every term of the mask is a window term (the window is then the mask, per row tile).
  const out: { lo?: string; hi?: string; whole?: boolean } = { whole: true };
  const isIdx = (x: Score, k: "i" | "j") => x.kind === k || (x.kind === "cast" && x.x.kind === k);
  const konst = (
    x: Score,
  ) => (x.kind === "const" && Number.isInteger(x.value) ? x.value : undefined);
  const visit = (c: Score): void => {
    if (c.kind === "binary" && c.fn === "and") {
      visit(c.a);
      visit(c.b);
      return;
    }
    if (c.kind === "binary" && c.fn === "or") {
      // Either side's keys: the hull of the two windows (prefix-LM: `j < P or j <= i`).
      const [p, q] = [c.a, c.b].map((x) =>
        keyWindow({ kind: "where", c: x, a: score.a, b: score.b }, none)
      );
      if (p.hi && q.hi) out.hi = `max(${p.hi}, ${q.hi})`;
      if (p.lo && q.lo) out.lo = `min(${p.lo}, ${q.lo})`;
      out.whole = false;
      return;
    }
    const before = { ...out };
    visit1(c);
    if (out.lo === before.lo && out.hi === before.hi) out.whole = false;
  };
  const visit1 = (c: Score): void => {
    if (c.kind !== "binary") return;
    const { fn, a, b } = c;
    if (
      (fn === "le" && isIdx(a, "j") && isIdx(b, "i")) ||
      (fn === "ge" && isIdx(a, "i") && isIdx(b, "j"))
    ) {
      out.hi = "i32(ie) + 1";
    } else if (
      (fn === "lt" && isIdx(a, "j") && isIdx(b, "i")) ||
      (fn === "gt" && isIdx(a, "i") && isIdx(b, "j"))
    ) {
      out.hi = "i32(ie)";
    } else if (
      (fn === "lt" || fn === "le") && isIdx(a, "j") && konst(b) !== undefined &&
      Math.abs(konst(b)!) < 2 ** 30
    ) {
      out.hi = `${konst(b)! + (fn === "le" ? 1 : 0)}`;
    } else if (
      // A band wider than 2^30 keys bounds nothing here (and its width would not fit an i32).
      fn === "le" && a.kind === "unary" && a.fn === "abs" && konst(b) !== undefined &&
      Math.abs(konst(b)!) < 2 ** 30
    ) {
      const d = a.x;
      if (
        d.kind === "binary" && d.fn === "sub" &&
        (isIdx(d.a, "i") && isIdx(d.b, "j") || isIdx(d.a, "j") && isIdx(d.b, "i"))
      ) {
        out.lo = `i32(ib) - ${konst(b)}`;
        out.hi = `i32(ie) + ${konst(b)! + 1}`;
      }
    }
  };
  visit(score.c);
  return out;
}

/**
 * A fused score in the flash skeleton's terms (`FlashSpec`): per row and key, with its hoisted
 * terms named (`hc{k}` once, `hr{r}_{k}` per row, `hk{key}_{k}` per key) and bound by `hoisted`'s
 * lets, and the mask that trims key blocks (`keyMask`).
 */
function scoreParts(
  score: Score,
  args: Node[],
  slots: SymbolSlots,
): Required<Pick<FlashSpec, "score" | "hoisted">> & Pick<FlashSpec, "mask" | "fullScore"> {
  const hoist = hoistScore(score);
  const nameOf = new Map(hoist.map((h) => [h.x, h]));
  const names = (r: number, key: string): RowNames => ({
    qk: `qk${r}`,
    fi: `fi${r}`,
    i: `i${r}`,
    hoisted: (x) => {
      const h = nameOf.get(x);
      return h &&
        (h.at === "once" ? `hc${h.k}` : h.at === "row" ? `hr${r}_${h.k}` : `hk${key}_${h.k}`);
    },
  });
  const rowScore = (r: number, key: string) => scoreWgsl(score, args, slots, names(r, key));
  const masked = keyMask(score);
  // A NaN condition counts (where(NaN, x, -inf) is x), tested on its bits as lavapipe folds NaN
  // comparisons: trimming never drops a key the score may count.
  const mask = masked && ((r: number) => {
    const c = scoreWgsl(masked, args, slots, names(r, ""));
    return `(${c} != 0.0 || ${isNan(c)})`;
  });
  // An int term is bound as i32 (`scoreWgsl` reads it so).
  const term = (at: HoistAt, name: (k: number) => string, v: RowNames) =>
    hoist.filter((h) => h.at === at).map((h) =>
      `let ${name(h.k)} = ${scoreWgsl(h.x, args, slots, v, computedInt(h.x))};`
    ).join(" ");
  const none = { qk: "0.0", fi: "0.0", i: "0u" };
  const hoisted = {
    once: term("once", (k) => `hc${k}`, none),
    row: (r: number) => term("row", (k) => `hr${r}_${k}`, { ...none, fi: `fi${r}`, i: `i${r}` }),
    key: (key: string, j: string) =>
      term("key", (k) => `hk${key}_${k}`, { ...none, j, fj: `f32(${j})` }),
  };
  // Where the tile analysis proves a block's condition true, each score there is the where's `a`.
  const fullScore = score.kind === "where"
    ? (r: number, key: string) => scoreWgsl(score.a, args, slots, names(r, key))
    : undefined;
  return { score: rowScore, hoisted, mask, fullScore };
}

/** What `explain` says of a kernel's block tests. */
function tileNote(
  tiles: TileSkip,
  spec: Pick<FlashSpec, "tiles" | "mask" | "probs" | "fullScore">,
  skips: boolean,
): string {
  const parts = [
    skips ? `key blocks of ${tiles.keys} that the mask analysis proves empty are skipped` : "",
    trims(spec)
      ? `${
        skips ? "the others run" : "each runs"
      } from the first to the last key the mask counts for some row of the tile`
      : "",
    fullBlocks(spec)
      ? `key blocks of ${tiles.keys} that it proves full run the score without the mask`
      : "",
  ];
  return parts.filter((p) => p).join("; ");
}

/**
 * The attention kernel of `node` with `r[idx] = rows` fused into its output: the rows listed in
 * `idx` get the replacement rows instead (Skeinformer's exact pilot rows), with no second pass.
 */
export function attentionWithRows(
  node: Node,
  byId: Map<number, Node>,
  slots: SymbolSlots,
  idx: number,
  rows: number,
  f16 = false,
): NodeKernel {
  return attentionKernel(node, node.args.map((a) => byId.get(a)!), slots, {
    idx: byId.get(idx)!,
    rows,
  }, f16);
}

function attentionKernel(
  node: Node,
  args: Node[],
  slots: SymbolSlots,
  replace?: { idx: Node; rows: number },
  f16 = false,
  split = false,
): NodeKernel {
  // `specialize` renders at run time: read the slots as they are now (lowering rebinds aliases).
  slots = new Map(slots);
  const score = (node.op as { score: Score }).score;
  const probs = node.op.op === "probs";
  const sum = node.op.op === "attention" && node.op.weights === "score";
  // The row log-sum-exp (summed weights: the row's sum of weights): written at the binding after
  // the reads, or by the split form's combine.
  const lse = node.op.op === "attention" && (node.op.lse === true || node.op.rowSum === true);
  if (lse && replace) throw new Error("internal: rows replaced in an attention with lse");
  const { score: rowScore, hoisted, mask, fullScore } = scoreParts(score, args, slots);
  const sample = `${rowScore(0, "")} ${hoisted.once} ${hoisted.row(0)} ${hoisted.key("", "j")}`;
  // The skeleton itself starts each row's max at -inf (f32_bits).
  // The table and draw functions call helpers too (a stored int seed's f2i); philox comes with
  // the draws.
  const tables = tableFunctions(score, args, slots);
  const helpers = [
    ...helpersFor(`${sample} ${tables} f32_bits`).filter((h) => h !== HELPERS.philox),
    tables,
  ].filter((h) => h).join("\n");
  const [a, b] = args;
  const qkv = args.slice(0, probs ? 2 : 3);
  const e = probs ? 4 : args[2].type.shape[1];
  // A weight of 0 adds nothing (the interpreter skips it, as matmul does): skipped keys are exact.
  const window = keyWindow(score, sum ? 0 : -Infinity);
  const tile = attentionTile.rows;
  // Blocks are tested where one may be skipped, except under a mask the key window states
  // whole (no block inside the window is empty), or where one may run its unmasked score
  // (`fullTiles`). The analysis proves blocks of -inf scores, which only softmax may skip;
  // summed weights are not tested.
  const tested = sum ? undefined : tileSkip(score, args, slots, tile);
  const skips = tested !== undefined && tested.empty !== "false" &&
    !(window.whole && score.kind === "where" && !masksKeys(score.a));
  const tiles = skips || (tested?.full !== undefined && fullTiles.scores) ? tested : undefined;
  const render = (d: number, e: number) =>
    flashKernel({
      score: rowScore,
      hoisted,
      mask,
      fullScore,
      rows: dim(a.type.shape[0], slots),
      cols: dim(b.type.shape[0], slots),
      keyLo: window.lo,
      keyHi: window.hi,
      tiles,
      d,
      e,
      tile,
      leafBindings: args.length - (probs ? 2 : 3),
      helpers,
      probs,
      sum,
      emptyNaN: node.op.op === "attention" && node.op.emptyNaN === true,
      f16,
      slices: qkv.some((x) => slots.has(nodeSliceKey(x.id)))
        ? [...qkv, a].map((x) => sliceOf(x.id, slots))
        : undefined,
      replace: replace &&
        { count: dim(replace.idx.type.shape[0], slots), binding: args.length + 2 },
      split: split
        ? { parts: LOOPS.parts, used: splitUsed(dim(b.type.shape[0], slots)), lse }
        : undefined,
      lse: lse && !split ? { binding: args.length + 2 } : undefined,
    }, `%${node.id} ${node.op.op}${replace ? " with rows replaced" : ""}`);
  const shown = (x: Dim) => (typeof x === "number" ? x : 4);
  const threads: ThreadDim[] = [
    ...(split ? [LOOPS.parts] : []),
    { ceilDiv: [a.type.shape[0], tile] },
  ];
  return {
    name: `${node.op.op}_${node.id}`,
    wgsl: render(shown(a.type.shape[1]), shown(e)),
    threads,
    launch: gridLaunch(threads),
    features: f16 ? ["shader-f16"] : undefined,
    reads: (replace ? [...node.args, replace.idx.id, replace.rows] : node.args).map(nodeKey),
    notes: tiles ? [tileNote(tiles, { tiles, mask, probs, fullScore }, skips)] : undefined,
    specialize: (sz) => render(sz(a.type.shape[1]), probs ? 4 : sz(e)),
    // The key loop (and for probabilities the normalizing pass) is the only loop that counts.
    trips: (sz) => {
      const keys = split ? splitBlock(sz(b.type.shape[0])) : sz(b.type.shape[0]);
      return (probs ? 2 : 1) * keys + tiledTrips(keys, tiles, trims({ tiles, mask, probs })) +
        (replace ? sz(replace.idx.type.shape[0]) : 0);
    },
  };
}
