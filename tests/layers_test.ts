/**
 * The layers of the compiler and what each may import, checked on the static import lines
 * (`import`, `import type`, `export ... from`) of every .ts file outside tests/. Front end → IR →
 * passes → lowering → kernels / WGSL → runtime; the interpreter, the oracle, stays apart from code
 * generation. A rule naming a directory that does not exist yet holds vacuously. Imports that
 * break a rule today are listed in KNOWN_VIOLATIONS; the list may only shrink: an entry that no
 * longer occurs fails the test too, so it is removed as the code moves.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

// Where each layer lives.
const IR = ["compiler/ir/"];
const BASE = ["compiler/errors.ts", "compiler/tensor.ts"];
const LIMITS = ["compiler/limits.ts"];
const FRONTEND = ["compiler/frontend/"];
const PASSES = ["compiler/passes/"];
const LOWER = ["compiler/lower/"];
/** The plan: what lowering hands the runtime (data types and host-side helpers over them). */
const PLAN = ["compiler/lower/plan.ts"];
const WGSL = ["compiler/wgsl/"];
const KERNELS = ["kernels/"];
const RUNTIME = ["runtime/"];

/**
 * One rule: the files it covers; `may`, when given, is everything they may import (an entry
 * ending in "/" is a directory, "npm:" entries are prefixes); `types` may be imported as types
 * only (`import type`, or every name marked `type`); `never` may not be imported at all.
 */
interface Rule {
  layer: string;
  files: string[];
  may?: string[];
  types?: string[];
  never?: string[];
}

const RULES: Rule[] = [
  { layer: "foundation", files: BASE, may: BASE },
  // Device facts and thresholds: read by every layer that decides, importing nothing.
  { layer: "limits", files: LIMITS, may: [] },
  { layer: "ir", files: IR, may: [...IR, ...LIMITS, ...BASE] },
  {
    layer: "front end",
    files: FRONTEND,
    may: [...FRONTEND, ...IR, ...LIMITS, ...BASE, "npm:ohm-js@"],
  },
  { layer: "passes", files: PASSES, may: [...PASSES, ...IR, ...LIMITS, ...BASE] },
  { layer: "interpreter", files: ["compiler/interp.ts"], never: [...LOWER, ...KERNELS, ...WGSL] },
  {
    layer: "lowering",
    files: LOWER,
    may: [...LOWER, ...IR, ...KERNELS, ...WGSL, ...LIMITS, ...BASE],
  },
  { layer: "kernels", files: KERNELS, may: [...KERNELS, ...WGSL, ...IR, ...LIMITS, ...BASE] },
  { layer: "plan", files: PLAN, may: [], types: [...IR, ...WGSL] },
  { layer: "wgsl", files: WGSL, may: [...WGSL, ...LIMITS], types: IR },
  {
    layer: "runtime",
    files: RUNTIME,
    may: [...RUNTIME, ...PLAN, ...LIMITS, ...BASE, "compiler/bind.ts", "compiler/rng.ts"],
    types: IR,
  },
];

/** Imports that break a rule today, `file → import`, each removed when the code moves. */
const KNOWN_VIOLATIONS: [file: string, imports: string][] = [];

/** One static import: where it is, what it names (repo-relative, or the raw specifier). */
interface Import {
  file: string;
  line: number;
  target: string;
  typeOnly: boolean;
}

const CLAUSE = String.raw`(?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?|[\w$]+)`;
const STATIC = new RegExp(
  String.raw`^(?:import|export)\s+(type\s+)?(${CLAUSE})\s*from\s*["']([^"']+)["']` +
    String.raw`|^import\s*["']([^"']+)["']`,
  "gm",
);

/** The static imports of one source text. */
function importsOf(file: string, text: string): Import[] {
  return [...text.matchAll(STATIC)].map((m) => {
    const spec = m[3] ?? m[4];
    const names = m[2]?.startsWith("{") ? m[2].slice(1, -1).split(",").map((s) => s.trim()) : [];
    const typeOnly = m[1] !== undefined ||
      (names.length > 0 && names.filter((s) => s).every((s) => s.startsWith("type ")));
    const target = spec.startsWith(".")
      ? new URL(spec, new URL(file, ROOT)).href.slice(ROOT.href.length)
      : spec;
    return { file, line: text.slice(0, m.index).split("\n").length, target, typeOnly };
  });
}

async function sourceFiles(dir = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(new URL(dir || ".", ROOT))) {
    const path = dir + e.name;
    if (e.isDirectory && !e.name.startsWith(".") && !["tests", "node_modules"].includes(e.name)) {
      out.push(...await sourceFiles(path + "/"));
    } else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

const matches = (path: string, entries: string[]) =>
  entries.some((e) =>
    path === e || ((e.endsWith("/") || e.startsWith("npm:")) && path.startsWith(e))
  );

/** Why an import breaks a rule, if it does. */
function broken(imp: Import, rule: Rule): string | undefined {
  const { target } = imp;
  if (rule.never && matches(target, rule.never)) {
    return `${rule.layer} never imports ${rule.never.join(", ")}`;
  }
  if (!rule.may) return undefined;
  if (matches(target, rule.may)) return undefined;
  if (rule.types && matches(target, rule.types)) {
    return imp.typeOnly
      ? undefined
      : `${rule.layer} imports only types from ${rule.types.join(", ")}`;
  }
  const types = rule.types ? `; types from ${rule.types.join(", ")}` : "";
  return `${rule.layer} may import only ${rule.may.join(", ")}${types}`;
}

async function violations(): Promise<{ key: string; text: string }[]> {
  const out: { key: string; text: string }[] = [];
  for (const file of await sourceFiles()) {
    const imports = importsOf(file, await Deno.readTextFile(new URL(file, ROOT)));
    for (const imp of imports) {
      for (const rule of RULES.filter((r) => matches(file, r.files))) {
        const why = broken(imp, rule);
        if (why) {
          out.push({ key: `${file} → ${imp.target}`, text: `${file}:${imp.line}: ${why}` });
        }
      }
    }
  }
  return out;
}

const KNOWN = new Set(KNOWN_VIOLATIONS.map(([f, i]) => `${f} → ${i}`));

Deno.test("every import obeys its layer's rule (or is a known violation)", async () => {
  const found = await violations();
  const fresh = found.filter((v) => !KNOWN.has(v.key));
  const show = fresh.map((v) => `  ${v.key}\n    ${v.text}`).join("\n");
  assert.equal(fresh.length, 0, `imports that break the layering:\n${show}`);
});

Deno.test("every known violation still occurs (remove the ones that are fixed)", async () => {
  const found = new Set((await violations()).map((v) => v.key));
  const stale = [...KNOWN].filter((k) => !found.has(k));
  assert.equal(
    stale.length,
    0,
    `KNOWN_VIOLATIONS entries that no longer occur:\n  ${stale.join("\n  ")}`,
  );
});

Deno.test("the import reader sees every form of static import", () => {
  const text = `import a from "./a.ts";
import type { B } from "./b.ts";
import { type C, type D } from "./c.ts";
import { e, type F } from "./e.ts";
import * as g from "npm:g@1";
import {
  h,
} from "../h.ts";
export { i } from "./i.ts";
export type { J } from "./j.ts";
export * from "./k.ts";
import "./l.ts";
export const m = "taken from 'nowhere'";
// import { n } from "./n.ts" is a comment
`;
  const got = importsOf("compiler/x.ts", text).map((i) => [i.target, i.typeOnly, i.line]);
  assert.deepEqual(got, [
    ["compiler/a.ts", false, 1],
    ["compiler/b.ts", true, 2],
    ["compiler/c.ts", true, 3],
    ["compiler/e.ts", false, 4],
    ["npm:g@1", false, 5],
    ["h.ts", false, 6],
    ["compiler/i.ts", false, 9],
    ["compiler/j.ts", true, 10],
    ["compiler/k.ts", false, 11],
    ["compiler/l.ts", false, 12],
  ]);
});
