/** IR as text: types, nodes, graphs and fused scores, for `explain` and test messages. */
import type { Graph, Node, Score, TensorType } from "./types.ts";

/** Render a type as `float[n, 64]`. */
export function showType(t: TensorType): string {
  const dims = `[${t.shape.join(", ")}]`;
  return t.dtype === "float" ? dims : `${t.dtype}${dims}`;
}

/** Render one node as a line of IR text. */
export function showNode(n: Node): string {
  const { op, ...attrs } = n.op;
  const parts = Object.entries(attrs)
    .filter(([k]) => k !== "body" && k !== "results")
    .map(([k, v]) => `${k}=${showAttr(k, v)}`);
  const args = n.args.map((a) => `%${a}`).join(", ");
  const name = n.name ? `  # ${n.name}` : "";
  return `%${n.id}: ${showType(n.type)} = ${op}${
    parts.length ? `{${parts.join(", ")}}` : ""
  }(${args})${name}`;
}

/** An op's attribute as text: scores as `showScore`, streams field by field. */
function showAttr(k: string, v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (k === "score" || k === "coef") return showScore(v as Score);
  if (Array.isArray(v)) return `[${v.map((x) => showAttr(k, x)).join(", ")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.entries(v).map(([f, x]) => `${f}=${showAttr(f, x)}`).join(", ")}}`;
  }
  return String(v);
}

/** Render a graph as IR text, loops indented. */
export function showGraph(g: Graph): string {
  const lines: string[] = [];
  const walk = (nodes: Node[], indent: string) => {
    for (const n of nodes) {
      lines.push(indent + showNode(n));
      if (n.op.op === "loop") {
        walk(n.op.body, indent + "  ");
        lines.push(`${indent}  yield ${n.op.results.map((r) => `%${r}`).join(", ")}`);
      }
    }
  };
  for (const i of g.inputs) lines.push(`input ${i.name}: ${showType(i.type)}`);
  walk(g.nodes, "");
  lines.push(`return ${g.outputs.map((o) => `%${o}`).join(", ")}`);
  return lines.join("\n");
}

/** Render a fused attention score as an expression over q·k, i, j and its leaves. */
export function showScore(s: Score): string {
  switch (s.kind) {
    case "qk":
      return "a_i·b_j";
    case "i":
    case "j":
      return s.kind;
    case "const":
      return String(s.value);
    case "size":
      return s.name;
    case "lead":
      return `${s.of}()`;
    case "leaf":
      return s.at === "scalar" ? `%arg${s.arg}` : `%arg${s.arg}[${s.at}]`;
    case "table":
      return `%arg${s.arg}[${s.at.map(showScore).join(", ")}]`;
    case "draw":
      return `${s.rand}([${s.shape.map(showScore).join(", ")}], ${showScore(s.seed)})[${
        s.at.map(showScore).join(", ")
      }]`;
    case "unary":
      return `${s.fn}(${showScore(s.x)})`;
    case "binary":
      return `${s.fn}(${showScore(s.a)}, ${showScore(s.b)})`;
    case "where":
      return `where(${showScore(s.c)}, ${showScore(s.a)}, ${showScore(s.b)})`;
    case "cast":
      return `${s.to}(${showScore(s.x)})`;
  }
}
