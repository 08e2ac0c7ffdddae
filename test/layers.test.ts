// The layer rule runs in CI: src/ imports point down or sideways and never form a cycle
// (scripts/check-layers.ts, docs/ARCHITECTURE.md "Layers").
import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkLayers } from "../scripts/check-layers.ts";
import { tmpDir } from "./helpers.ts";

describe("layers", () => {
  test("src/ keeps the rule", () => {
    expect(checkLayers()).toEqual([]);
  });

  test("the check sees an upward import, a type-only one, and a cycle", async () => {
    const root = await tmpDir();
    for (const d of ["util", "image", "server"]) mkdirSync(join(root, d));
    writeFileSync(join(root, "util", "a.ts"), 'import { x } from "../server/s.ts";\nexport const a = x;\n');
    writeFileSync(join(root, "image", "b.ts"), 'import type {\n  S,\n} from "../server/s.ts";\nexport type B = S;\n');
    writeFileSync(join(root, "server", "s.ts"), 'import { t } from "./t.ts";\nexport const x = t;\nexport type S = number;\n');
    writeFileSync(join(root, "server", "t.ts"), 'import { x } from "./s.ts";\nexport const t = 1;\nexport const y = x;\n');
    const found = checkLayers(root).map((v) => `${v.from} -> ${v.to}: ${v.why}`);
    expect(found).toContain("util/a.ts -> server/s.ts: base imports engines");
    expect(found).toContain("image/b.ts -> server/s.ts: formats imports engines");
    expect(found.some((f) => f.includes("import cycle"))).toBe(true);
    expect(found.length).toBe(3);
  });
});
