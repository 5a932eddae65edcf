/**
 * What lowering stores and what it computes inside the kernels that read it: inlined nodes,
 * and the scatter_adds stored as partial tables.
 */
import type { Graph, Node } from "../ir/types.ts";
import { typicalSizes } from "../ir/cost.ts";
import { allNodes, forEachRead } from "../ir/walks.ts";
import { ELEMENTWISE, HEAVY, READS_BY_COORDINATE } from "../wgsl/ops.ts";
import {
  HEAVY_RECOMPUTE_BUDGET,
  INLINE_DEPTH,
  LOOPS,
  MATMUL_TILE,
  PARTIAL_TABLE_BUCKETS,
  SCATTER_CHUNKS,
} from "../limits.ts";

/** Ops that only move elements. */
const LAYOUT = new Set(["transpose", "reshape", "broadcast"]);

/** Ops cheap enough to recompute in every consumer rather than store. */
const CHEAP = new Set(["const", "dim", "lead", "iota", "fill", "eye"]);

/**
 * The nodes that need no buffer, computed inside the kernels that read them:
 * - elementwise values read only by kernels that read by coordinate, used once (or cheap to
 *   recompute);
 * - contractions and reductions (HEAVY) whose every element is read about once by such kernels
 *   (YOSO's hash bits inside the table scatter, a reduction inside the map that consumes it),
 *   or whose recomputation stays within HEAVY_RECOMPUTE_BUDGET.
 * Decisions go from consumers to producers, counting how often each value would be evaluated.
 */
export function inlinedNodes(
  graph: Graph,
  byId: Map<number, Node>,
): { inline: Set<number>; alsoStored: Set<number> } {
  const { order, consumers } = nodeOrder(graph);
  const { inline, alsoStored } = inlineByReads(graph, byId, order, consumers);
  storeCostlyOperands(byId, inline, alsoStored);
  capDepth(order, inline);
  for (const id of alsoStored) if (!inline.has(id)) alsoStored.delete(id);
  return { inline, alsoStored };
}

/**
 * Every node, loop bodies included, producers first; and each value's readers (undefined: read
 * as a loop's result or as the output).
 */
function nodeOrder(graph: Graph) {
  const consumers = new Map<number, (Node | undefined)[]>();
  forEachRead(graph, (id, by) => consumers.set(id, [...(consumers.get(id) ?? []), by]));
  return { order: allNodes(graph.nodes), consumers };
}

/**
 * Operand elements one element of a node reads (`perElement`), and the reads of operand k by the
 * kernel that stores a node (`kernelReads`), at typical sizes.
 */
function readCounts(graph: Graph, byId: Map<number, Node>) {
  const size = typicalSizes(graph);
  const elems = (n: Node) => n.type.shape.reduce<number>((p, d) => p * size(d), 1);
  const arg = (c: Node, k: number) => byId.get(c.args[k])!;
  // Operand elements one element of `c` reads.
  const perElement = (c: Node): number => {
    switch (c.op.op) {
      case "matmul":
      case "dot":
        return size(arg(c, 0).type.shape.at(-1)!);
      case "reduce":
        return size(arg(c, 0).type.shape[c.op.axis]);
      case "bits":
        return size(arg(c, 0).type.shape.at(-1)!);
      case "segment_mean":
        return Math.ceil(size(arg(c, 0).type.shape[0]) / c.op.segments);
      default:
        return 1;
    }
  };
  // Reads of operand k by the kernel that stores `c`.
  const kernelReads = (c: Node, k: number): number => {
    const a = arg(c, k);
    switch (c.op.op) {
      case "softmax": // a max pass, then an exp pass that keeps its values in the output
        return 2 * elems(a);
      case "matmul": {
        const [m, n] = c.type.shape.slice(-2).map(size);
        return (elems(c) / n) * perElement(c) * Math.ceil((k === 0 ? n : m) / MATMUL_TILE);
      }
      case "topk":
        return elems(a) * size(a.type.shape.at(-1)!);
      case "scatter_add":
        // Partial tables: each key's code is read once per channel, its values once per group.
        return k === 0 ? elems(a) * (elems(arg(c, 1)) / size(a.type.shape.at(-1)!)) : elems(a) *
          (elems(arg(c, 0)) / size(a.type.shape[0]));
      default:
        return elems(c) * perElement(c);
    }
  };
  return { perElement, kernelReads, elems };
}

/**
 * Ops per element of an expression over the values `within` admits (others are buffer reads):
 * gathers (but of one element per slice), transcendentals and loops count 99. An expression
 * deeper than INLINE_DEPTH counts as expensive (it will not be inlined whole).
 */
function costOf(byId: Map<number, Node>, within: (n: Node) => boolean) {
  const memo = new Map<number, number>();
  const cost = (id: number, depth = 0): number => {
    const n = byId.get(id)!;
    if (!within(n)) return 0;
    if (depth > INLINE_DEPTH) return 99;
    if (!memo.has(id)) {
      // A gather of one element per slice (`sink[head()]`) is one read, not an index computation,
      // and so is a gather at the grid's own coordinates (`k[j]`, `q[i, c]`: every index an iota).
      const view = n.op.op === "gather" &&
        n.args.slice(1).every((a) => byId.get(a)!.op.op === "iota");
      const heavy = HEAVY.has(n.op.op) ||
        (n.op.op === "gather" && n.type.shape.length > 0 && !view) ||
        (n.op.op === "unary" && !["neg", "abs"].includes(n.op.fn));
      const own = heavy ? 99 : LAYOUT.has(n.op.op) || CHEAP.has(n.op.op) ? 0 : 1;
      memo.set(id, own + n.args.reduce((t, a) => t + cost(a, depth + 1), 0));
    }
    return memo.get(id)!;
  };
  return (id: number) => cost(id);
}

/** The decisions from consumers to producers, counting how often each value would be evaluated. */
function inlineByReads(
  graph: Graph,
  byId: Map<number, Node>,
  order: Node[],
  consumers: Map<number, (Node | undefined)[]>,
) {
  const { perElement, kernelReads, elems } = readCounts(graph, byId);
  const inline = new Set<number>();
  const evals = new Map<number, number>();
  const exprCost = costOf(byId, (n) => ELEMENTWISE.has(n.op.op));
  // Cheap values that a fused kernel must read from a buffer (attention's q and k) are stored
  // for it, and recomputed by every kernel that reads by coordinate, which then need not wait.
  const alsoStored = new Set<number>();
  for (const n of [...order].reverse()) {
    const all = consumers.get(n.id) ?? [];
    const by = all.filter((c) => c && READS_BY_COORDINATE.has(c.op.op));
    if (by.length === 0) continue;
    if (by.length < all.length) {
      const direct = all.filter((c) => !by.includes(c));
      const fusedReaders = direct.every((c) =>
        c && ["attention", "attention_mix", "probs"].includes(c.op.op)
      );
      if (!fusedReaders || !ELEMENTWISE.has(n.op.op) || exprCost(n.id) > 4) continue;
      alsoStored.add(n.id);
    }
    let total = 0;
    for (const c of by as Node[]) {
      c.args.forEach((a, k) => {
        if (a !== n.id) return;
        total += inline.has(c.id) ? evals.get(c.id)! * perElement(c) : kernelReads(c, k);
      });
    }
    // A matmul keeps its register-tiled kernel: inlined, each element would be a plain dot
    // product with two loads per multiply-add (measured ~10× slower on lavapipe for YOSO's
    // hash projections inlined into the bits that read them).
    if (n.op.op === "matmul") continue;
    const heavy = HEAVY.has(n.op.op);
    if (heavy) {
      const extra = (total - elems(n)) * perElement(n);
      if (total > elems(n) * 1.001 && extra > HEAVY_RECOMPUTE_BUDGET) continue;
      // A loop inside a consumer's loop multiplies their trips: Performer's global max of a row
      // max ran n · features trips per invocation, past lavapipe's budget from n ≈ 1000, which
      // forced the split plan (11 dispatches). Stored, the consumer loops n times.
      if ((by as Node[]).some((c) => perElement(c) * perElement(n) > LOOPS.chunk)) continue;
    } else if (!ELEMENTWISE.has(n.op.op)) continue;
    // An elementwise value read by several kernels is recomputed in each: fine when it is a
    // few arithmetic ops over stored values (Skeinformer's scaled q, k and v).
    else if (by.length > 1 && !CHEAP.has(n.op.op) && exprCost(n.id) > 4) continue;
    inline.add(n.id);
    evals.set(n.id, total);
  }
  return { inline, alsoStored };
}

/**
 * A matmul, dot or topk reads each operand element many times, so what is inlined there is
 * recomputed per use: keep only small, cheap expressions (layout changes, constants, a few
 * adds and multiplies, like 13·I − P); anything with gathers, transcendentals or loops, or
 * larger, is stored first.
 */
function storeCostlyOperands(
  byId: Map<number, Node>,
  inline: Set<number>,
  alsoStored: Set<number>,
): void {
  for (const n of byId.values()) {
    if (n.op.op !== "matmul" && n.op.op !== "dot" && n.op.op !== "topk") continue;
    for (const a of n.args) {
      if (costOf(byId, (m) => inline.has(m.id))(a) > 4) {
        inline.delete(a);
        alsoStored.delete(a);
      }
    }
  }
}

/**
 * No inlined expression nests deeper than INLINE_DEPTH: a longer chain is stored every
 * INLINE_DEPTH nodes (producers first, so the cut falls where the depth is reached).
 */
function capDepth(order: Node[], inline: Set<number>): void {
  const depth = new Map<number, number>();
  for (const n of order) {
    const d = inline.has(n.id) ? 1 + Math.max(0, ...n.args.map((a) => depth.get(a) ?? 0)) : 0;
    if (d > INLINE_DEPTH) {
      inline.delete(n.id);
      depth.set(n.id, 0);
    } else depth.set(n.id, d);
  }
}

/**
 * The scatter_adds stored as partial tables, with the number of tables (one per block of keys,
 * summed where they are read): small tables (≤ PARTIAL_TABLE_BUCKETS buckets, a private array per
 * invocation) read only by kernels that read by coordinate (they sum the partials); a table that
 * is the output or read by a fused attention kernel is built with atomics instead.
 */
export function partialTables(graph: Graph, byId: Map<number, Node>): Map<number, number> {
  // Values read other than by coordinate: by a loop, as the output, or by a kernel that does not.
  const direct = new Set<number>();
  forEachRead(graph, (id, by) => {
    if (!by || !READS_BY_COORDINATE.has(by.op.op)) direct.add(id);
  });
  const out = new Map<number, number>();
  for (const n of byId.values()) {
    if (n.op.op !== "scatter_add" || n.op.size > PARTIAL_TABLE_BUCKETS || direct.has(n.id)) {
      continue;
    }
    // More keys than the tables can take (lavapipe's loop budget) keep the atomic form.
    const keys = n.args.length ? byId.get(n.args[0])!.type.shape.at(-1) : undefined;
    if (typeof keys === "number" && keys > SCATTER_CHUNKS.count * LOOPS.chunk) continue;
    const chans = byId.get(n.args[1])!.type.shape.slice(1);
    if (chans.length > 1 && !chans.every((d) => typeof d === "number")) continue;
    out.set(n.id, SCATTER_CHUNKS.count);
  }
  return out;
}
