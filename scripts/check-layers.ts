#!/usr/bin/env bun
// The layer check (docs/ARCHITECTURE.md, "Layers"): every import in src/ points down or sideways,
// never up, and no modules import each other in a cycle. Type-only imports count too (a type is a
// dependency as well), so imports are read from the text: Bun's transpiler would drop them.
// Usage: bun scripts/check-layers.ts   (exit 1 and one line per violation when the rule is broken)
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/** Folders (or top-level files) of src/, lowest layer first. A module may import its own layer or lower ones. */
export const LAYERS: readonly { name: string; parts: readonly string[] }[] = [
  { name: "base", parts: ["util", "device", "version.ts"] },
  { name: "formats", parts: ["image", "part", "fs", "net"] },
  { name: "engines", parts: ["capture", "target", "server", "client"] },
  { name: "commands", parts: ["cli", "agent", "daemon"] },
  { name: "faces", parts: ["cli.ts", "http", "web"] },
];

export interface Violation {
  from: string;
  to: string;
  why: string;
}

export const SRC_ROOT = resolve(import.meta.dir, "..", "src");

function layerOf(root: string, file: string): number {
  const top = relative(root, file).split("/")[0]!;
  const i = LAYERS.findIndex((l) => l.parts.includes(top));
  if (i < 0) throw new Error(`check-layers: ${relative(root, file)} is in no layer; add its folder to LAYERS`);
  return i;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return name.endsWith(".ts") ? [path] : [];
  });
}

/** `from "x"`, `import "x"` and `import("x")`, wherever they stand (multi-line imports included). */
const IMPORT_PATTERN = /\bfrom\s*["']([^"']+)["']|\bimport\s*\(?\s*["']([^"']+)["']/g;

/** Each module's imports of other modules in src/ (packages and node: built-ins left out). */
export function importGraph(files: readonly string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const specifiers = [...readFileSync(file, "utf8").matchAll(IMPORT_PATTERN)].map((m) => m[1] ?? m[2]!);
    graph.set(file, specifiers.filter((p) => p.startsWith(".")).map((p) => resolve(dirname(file), p)));
  }
  return graph;
}

function upwardImports(root: string, graph: Map<string, string[]>): Violation[] {
  const out: Violation[] = [];
  for (const [from, targets] of graph) {
    const low = layerOf(root, from);
    for (const to of targets) {
      const high = layerOf(root, to);
      if (high > low) out.push({ from: relative(root, from), to: relative(root, to), why: `${LAYERS[low]!.name} imports ${LAYERS[high]!.name}` });
    }
  }
  return out;
}

/** Every import cycle, found by depth-first search; each reported once, from its first module. */
function cycles(root: string, graph: Map<string, string[]>): Violation[] {
  const rel = (file: string): string => relative(root, file);
  const out: Violation[] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string): void => {
    state.set(file, "open");
    stack.push(file);
    for (const to of graph.get(file) ?? []) {
      if (state.get(to) === "open") {
        const loop = stack.slice(stack.indexOf(to)).map(rel);
        out.push({ from: rel(file), to: rel(to), why: `import cycle: ${[...loop, rel(to)].join(" -> ")}` });
      } else if (!state.has(to) && graph.has(to)) visit(to);
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return out;
}

/** Every upward import and every cycle among the modules under `root` (src/ by default). */
export function checkLayers(root = SRC_ROOT): Violation[] {
  const graph = importGraph(sourceFiles(root));
  return [...upwardImports(root, graph), ...cycles(root, graph)];
}

if (import.meta.main) {
  const violations = checkLayers();
  for (const v of violations) console.log(`${v.from} -> ${v.to}: ${v.why}`);
  console.log(violations.length === 0 ? "layers: every import points down or sideways, no cycles" : `layers: ${violations.length} violation(s)`);
  process.exit(violations.length === 0 ? 0 : 1);
}
