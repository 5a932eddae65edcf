/**
 * Every device fact and heuristic threshold the checker, lowering, the kernels and the runtime
 * use, once.
 * Most were measured on lavapipe (Mesa's software Vulkan adapter), the adapter the tests run on
 * and the slowest one a program meets; each says why it has its value.
 */

/**
 * Loop limits, one object so that a test can shrink them and reach the split plans at small
 * sizes (tests/differential_test.ts); nothing else changes them.
 */
export const LOOPS = {
  /**
   * Loop iterations lavapipe (Mesa ≤ 22) allows one shader invocation, all its loops together:
   * past it, loops end early with no error (measured here: `sum` over 100,000 elements gave
   * 65,747.8 against 100,305; a max over 65,536 elements missed the last one). A kernel whose
   * trips at a run's sizes exceed it runs split (see kernels/split.ts); the executor refuses
   * any that still does.
   */
  budget: 65_535,
  /**
   * Elements one invocation of a split loop takes (a long reduction's chunk, a long
   * contraction's slice of K, a long key range's block, a partial-table scatter's keys): a
   * quarter of the budget, so that the work inlined into each iteration (up to three reads)
   * still fits.
   */
  chunk: 16_384,
  /** Most chunks of a split loop; past parts · chunk elements each chunk grows. */
  parts: 256,
};

/**
 * `repeat` loops lowered as kernels (outside regions) with at most this many iterations are
 * unrolled: no copies of the carried values, and kernels of different iterations may share a
 * dispatch. Longer ones become a host-side loop over one copy of the body's dispatches
 * (`ExecPlan.loops`), so the plan does not grow with the count: unrolled, `iters = 10,000` took
 * 60 s to plan 40,005 dispatches and 100,000 ran out of memory.
 */
export const LOOP_UNROLL = 8;

/** Workgroup size of every grid kernel (one invocation per element, row or tile). */
export const WORKGROUP = 64;

/**
 * Invocations of a region's workgroup (one workgroup per slice). A merged dispatch that includes
 * a region runs all its workgroups at this size, grid parts included: one constant, since the
 * two disagreeing would make merged grid parts skip or repeat elements.
 */
export const REGION_WORKGROUP = 256;

/**
 * Grid elements per invocation in a merged dispatch that includes a region: lavapipe runs every
 * invocation of a shader with barriers as a coroutine, so their number is kept down.
 */
export const HYBRID_ELEMENTS = 16;

/** Regions with at most this many loop trips per invocation may share a dispatch with maps. */
export const HYBRID_TRIPS = 10_000;

/**
 * A prime stride that scatters the workgroups of a merged dispatch over its parts: lavapipe hands
 * each thread a contiguous run of workgroups, and a heavy part laid end to end would land on one
 * thread (measured: a matmul merged with a map ran 345 ms against 201 ms apart).
 */
export const SCATTER_STRIDE = 7919;

/** Largest value a region holds, in elements at typical sizes. */
export const REGION_ELEMENTS = 32768;

/**
 * Loop trips one region invocation may make at typical sizes: lavapipe ends an invocation's loops
 * after 65,535 iterations in total, silently; the executor re-checks at the run's real sizes.
 */
export const REGION_TRIPS = 40_000;

/**
 * The typical sequence length cost decisions assume before sizes are known; a size below it is
 * "small" (a landmark count, a head size), a value with only small sizes may live in a region, and
 * a softmax over only small sizes stays unfused with the region that holds it.
 */
export const LONG_SEQUENCE = 4096;

/**
 * Elements per block of the prefix-scan kernel (kernels/scan.ts): each invocation scans one
 * block, then one invocation per fiber scans the block totals, so a fiber of L elements costs
 * max(SCAN_BLOCK, L / SCAN_BLOCK) trips: 64 keeps both far below LOOPS.budget up to L ≈ 4M and
 * leaves n / 64 · (other axes) invocations to run in parallel. Small on purpose so that the
 * generated programs (n ≤ 100) reach both one and several blocks.
 */
export const SCAN_BLOCK = 64;

/**
 * A cumsum with one fiber per slice (a vector: log forget gates, per-position decays) runs as one
 * workgroup per slice of this many invocations, each scanning ⌈L / VECTOR_SCAN⌉ contiguous
 * elements: one dispatch instead of SCAN_BLOCK's three, whose second runs one invocation per
 * fiber anyway. 64, not more: at L = 4096 each invocation scans 64 elements, and the generated
 * programs (L ≤ 100) reach both sides, invocations with no element and with several.
 */
export const VECTOR_SCAN = { workgroup: 64 };

/**
 * Rows per chunk of a contraction over a prefix sum (`causal_contract`, kernels/causal.ts; a
 * multiple of MATMUL_TILE and 8): each chunk's d·e state is summed and scanned, and each row adds
 * its own chunk's earlier rows directly (about C·(d + e) / 2 multiply-adds per row), so a larger
 * chunk trades scan work (n / C trips per state element) for in-chunk work. lavapipe, causal
 * linear attention at n = 8192, d = e = 64, three runs each of `tools/scan_timing.ts 64 8192
 * 8192 8192` on a loaded machine (±25%), causal ms and ratio to non-causal: C = 16: 404–502 ms,
 * 1.29–1.45; 32: 381–504 ms, 1.23–1.63; 64: 428–510 ms, 1.45–1.71. 32 also keeps the tests'
 * 3C + 5 rows near 100. Fibers past 65,535 chunks (n > 2M rows) pass lavapipe's loop budget.
 */
export const CAUSAL_CHUNK = 32;

/** Output rows and columns per invocation of the matmul kernel (fixed at 8: two vec4 accumulators). */
export const MATMUL_TILE = 8;

/**
 * Query rows per invocation of the fused attention kernel (tests vary it). lavapipe, n = 2048,
 * d = 64, 8 heads, kernel time on a quiet machine (`tools/rows_timing.ts`, twice each,
 * alternating): 8 rows exact 397–438 ms, sigmoid 383–461, causal 225; 16 rows 287–292, 287–297,
 * 146–165. But 16 rows triples a kernel's cold compile (13 s → 40 s) and, since the sparse
 * variants' fixed costs stay, raises their ratios to exact (`bench --suite variants --only`:
 * window 0.14 → 0.21, documents 0.30 → 0.35, T5 about 1.05 → 1.19). Kept at 8 until the tile is chosen
 * per adapter.
 */
export const attentionTile = { rows: 8 };

/**
 * Query rows per invocation of the multi-stream attention kernel (kernels/streams.ts; tests vary
 * it). lavapipe loads a storage element lane by lane, so each key's k rows (one per stream) and v
 * row cost about as much as the arithmetic of 8 rows: more rows share them. Differential
 * attention, n = 2048, d = 64, 8 heads, as a ratio to exact attention in the same process: 8 rows
 * 1.52–1.74×, 16 rows 1.20×. The price is compile time (unrolled rows): the d = 64 kernel took
 * 85 s at 8 rows, 353 s at 16 (lavapipe on 2 shared, loaded cores; cached afterwards).
 */
export const streamTile = { rows: 16 };

/**
 * Keys per block of the fused attention kernel's blocked key loop: blocking multiplies the
 * unrolled code by it (lavapipe, d = 64: 650 → 490 ms at n = 2048; compiles in about a second).
 */
export const KEY_BLOCK = 4;

/**
 * Keys per block of the fused attention kernel's tile test (kernels/tiles.ts): a block whose
 * scores are all provably -inf is skipped. Larger blocks test less often but skip coarser; leaves
 * read at j are read once more per block. lavapipe, n = 2048, d = 64, 8 heads, kernel time as a
 * ratio to exact attention (16 / 32 / 64 keys): window 16 or 4 global tokens 0.29 / 0.18 / 0.10,
 * documents of 100–600 tokens 0.57 / 0.35 / 0.30; prefix-LM (64) against causal 1.08 at 32, 0.96
 * at 64.
 */
export const keyTile = { keys: 64 };

/**
 * Whether the fused attention kernel runs key blocks the mask analysis proves full (every pair
 * counted) with the where's unmasked branch, in a second copy of its blocked key loop
 * (FlexAttention's full blocks); tests turn it on. Off: on lavapipe it is no faster and compiles
 * longer. n = 2048, d = 64, 8 heads, kernel time (median of 5, `tools/full_timing.ts`, two
 * alternating sittings) off / on: causal 199 / 218–221 ms, documents 98–100 / 108–111, window 16
 * or 4 global 25–26 / 27–28, prefix-LM 219–220 / 219–223; cold compile 9–12 s / 17–20 s. A mask
 * costs a compare and a select per pair beside d multiply-adds; a GPU may differ.
 */
export const fullTiles = { scores: false };

/**
 * Storage buffers per dispatch that plans assume by default: lavapipe offers 32, desktop GPUs
 * more; WebGPU guarantees only 8, and devices with fewer get plans made for their limit.
 */
export const DEFAULT_STORAGE_BUFFERS = 16;

/** Largest host-drawn random tensor, in elements at typical sizes. */
export const HOST_DRAW_ELEMENTS = 1 << 16;

/**
 * Extra work (multiply-adds at typical sizes) that inlining a heavy node may add by evaluating it
 * more than once per element: about a millisecond on a software adapter, nothing on a GPU.
 */
export const HEAVY_RECOMPUTE_BUDGET = 1 << 20;

/**
 * Deepest expression inlined into one kernel, in nodes: a longer chain of elementwise values is
 * stored every INLINE_DEPTH nodes. A 2,300-statement chain inlined whole overflowed the
 * planner's stack (and would be one WGSL expression 9,000 operations deep); the examples' deepest
 * inlined expression is far below this.
 */
export const INLINE_DEPTH = 64;

/**
 * Most partial tables per scatter_add (see kernels/scatter.ts); past 4 × 16384 keys a block
 * grows. An object so tests may change it.
 */
export const SCATTER_CHUNKS = { count: 4 };

/**
 * Largest table built as partial tables (kernels/scatter.ts); bigger tables use compare-exchange
 * atomics. YOSO's τ = 8 (256 buckets) stays on partial tables (n = 8192: 407 ms against 1346 ms
 * with compare-exchange).
 */
export const PARTIAL_TABLE_BUCKETS = 256;

/**
 * Largest partial table kept in a private array; bigger ones are summed in place in the output
 * buffer. lavapipe compiles a private array with a dynamic index into a ladder of branches, and
 * its compile time grows steeply (YOSO sum, first run, shader cache emptied: 64 buckets 1.9 s,
 * 128 6.6 s, 256 16.3 s; summed in place, 0.9, 0.9, 1.1 s). In place is slower to run (scatter
 * kernel, YOSO n = 8192, 8 heads, e = 64: 256 buckets 369–386 ms against 232–284 ms, 64 buckets
 * 623 against 354), so small tables stay private. Measured with bench/scatter_tables.ts
 * (`N TAU E HEADS` = 3 τ 5 1 for compile, 8192 τ 64 8 for run), each form in turn.
 */
export const PRIVATE_TABLE_BUCKETS = 64;

/**
 * Bytes of idle buffers a device keeps for reuse (runtime/executor.ts); beyond that, returned
 * buffers are destroyed. Creating (and zero-filling) a run's buffers anew cost ~0.4 s per run on
 * lavapipe at n = 4096.
 */
export const POOL_BYTES = 1 << 30;

/**
 * Compiled pipelines a device keeps, least recently used dropped first (runtime/encoder.ts). The
 * cache was unbounded, and fuzz:input's child passed 4 GiB resident after about 90,000 programs
 * and 1,000 GPU runs of different programs in one process. A run of the largest example needs
 * under 20 pipelines. An object so tests may change it.
 */
export const PIPELINE_CACHE = { count: 512 };

/**
 * Every call is inlined, so a chain of functions each calling the next nests the checker that
 * deep (a chain of 2,000 overflowed the stack), and a function calling the previous one twice
 * doubles the program per level (depth 16: 168 s). The examples nest at most 2 calls and expand
 * to under 200 operations; a 2,300-statement program is about 9,200. These bounds leave room for
 * programs 10× past any example and stop the rest with a CompileError.
 */
export const FRONTEND_LIMITS = {
  /**
   * Characters of program text parsed at most. Ohm's parse takes about 1.2 ms per line here and
   * grows faster past a few thousand lines (5,000 straight-line statements, 128 KB: 6 s of CPU;
   * a chain of 5,000 defs, 283 KB: 15 s), so longer text is refused before parsing. At the
   * earlier 128 KB cap, fuzz:input programs of 65–128 KB (2,300 statements, 3,700 defs) took
   * 6–15 s through compile, plan and a GPU run on a loaded machine, past its 10 s bound; 32 KB
   * (about 1,000 lines) is still 30× the largest example.
   */
  sourceChars: 32_768,
  /** User-function calls nested inside one another. */
  callDepth: 256,
  /** IR nodes a program may expand to (checking one takes about 0.1 ms). */
  nodes: 50_000,
};

/**
 * Dispatches per command buffer: a run with a long host loop (`repeat 100000`) is submitted in
 * batches of these, so no one command buffer holds millions of commands.
 */
export const SUBMIT_EVERY = 4096;

/** Dispatches timed with timestamp queries at most (`profile` with timing: the first ones). */
export const TIMED = 4096;

/** Elements per chunk of a split loop over `len` elements (the host side of WGSL `splitUsed`). */
export function splitBlock(len: number): number {
  const used = Math.max(1, Math.min(LOOPS.parts, Math.ceil(len / LOOPS.chunk)));
  return Math.ceil(len / used);
}

/**
 * Most score streams one fused pass combines (`attention_mix`, differential attention): each
 * stream keeps a carrier (max, sum, e accumulators) per tile row in registers and adds a q·k per
 * key; Diff Transformer uses 2. Not measured beyond 2; a bound keeps the kernel's size small.
 */
export const MAX_STREAMS = 4;
