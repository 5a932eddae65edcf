/**
 * Ops the GPU computes through others, rewritten before lowering. `logsumexp(x, axis)` becomes
 * a max reduction, a clamp, and a sum of exponentials: reductions that already have kernels,
 * split forms for long loops, trip counts and inlining rules, so the row log-sum-exp needs none
 * of its own. (A log-sum-exp of an attention's own score comes from the flash pass instead:
 * passes/lse.ts.)
 */
import type { Graph, Node, Op, TensorType } from "../ir/types.ts";
import { mapNodes, nodesById } from "../ir/walks.ts";

/**
 * The largest finite float32. Clamping the shift to ±F32_MAX keeps the form free of inf
 * arithmetic: a row of -inf sums exp(-inf) = 0 (log gives -inf), a row holding +inf sums
 * exp(inf) = inf, exactly as the interpreter's shift by 0 for a max of ±inf; finite rows shift
 * by their max. NaN propagates through max (max_nan) and exp.
 */
const F32_MAX = 3.4028234663852886e38;

/** `graph` with every logsumexp written as max, clamp, exp, sum, log (same ids for results). */
export function expandLogsumexp(graph: Graph): Graph {
  const byId = nodesById(graph);
  if (![...byId.values()].some((n) => n.op.op === "logsumexp")) return graph;
  let next = Math.max(...byId.keys()) + 1;
  return mapNodes(graph, (n) => {
    if (n.op.op !== "logsumexp") return n;
    const { axis, keepdims } = n.op;
    const x = byId.get(n.args[0])!;
    const keep: TensorType = {
      dtype: "float",
      shape: x.type.shape.map((d, i) => (i === axis ? 1 : d)),
    };
    const scalar: TensorType = { dtype: "float", shape: [] };
    const out: Node[] = [];
    const add = (op: Op, args: number[], type: TensorType, id = next++): number => {
      out.push({ id, op, args, type, span: n.span });
      return id;
    };
    const m = add({ op: "reduce", fn: "max", axis, keepdims: true }, [x.id], keep);
    const lo = add({ op: "const", value: -F32_MAX }, [], scalar);
    const hi = add({ op: "const", value: F32_MAX }, [], scalar);
    const shift = add({ op: "binary", fn: "min" }, [
      add({ op: "binary", fn: "max" }, [m, lo], keep),
      hi,
    ], keep);
    const e = add({ op: "unary", fn: "exp" }, [
      add({ op: "binary", fn: "sub" }, [x.id, shift], { ...x.type, dtype: "float" }),
    ], { ...x.type, dtype: "float" });
    const sum = add({ op: "reduce", fn: "sum", axis, keepdims: true }, [e], keep);
    const log = add({ op: "unary", fn: "log" }, [sum], keep);
    if (keepdims) add({ op: "binary", fn: "add" }, [shift, log], n.type, n.id);
    else {
      const r = add({ op: "binary", fn: "add" }, [shift, log], keep);
      add({ op: "reshape" }, [r], n.type, n.id);
    }
    out[out.length - 1].name = n.name;
    return out;
  });
}
