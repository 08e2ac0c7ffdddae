// Item 5 and 6 of the hardening issue: chunk headers and the manifest's info are checked against
// each other before anything is written. Each image here passes every digest check (re-sealed),
// so only the structural checks can refuse it.
import { beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { join } from "node:path";
import { extImage } from "../fixtures/ext.ts";
import { discus, discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";
import { exitCodeByKind } from "../../src/util/errors.ts";
import { resealImage, withHeader } from "./reseal.ts";
import type { Manifest } from "../../src/image/manifest.ts";

const MiB = 1 << 20;
let dir = "";
let good = "";
let target = "";
let targetSha = "";
let chunks = 0;

beforeAll(async () => {
  dir = await tmpDir();
  const source = await extImage("ext4", { imageMiB: 64, contentMiB: 12, label: "errors" });
  good = join(dir, "good.dsc");
  await discusOk(["create", "--quiet", "--chunk-size", "256K", source, good]);
  chunks = (JSON.parse(await discusOk(["info", "--json", good])) as { chunks: number }).chunks;
  target = join(dir, "target.img");
  await $`head -c ${64 * MiB} /dev/urandom > ${target}`;
  targetSha = await sha256File(target);
}, FIXTURE_TIMEOUT_MS);

async function edited(name: string, edit: Parameters<typeof resealImage>[1], editManifest?: (m: Manifest) => Manifest): Promise<string> {
  const path = join(dir, `${name}.dsc`);
  await $`cp ${good} ${path}`;
  resealImage(path, edit, editManifest);
  return path;
}

/** verify names the chunk and exits 3; restore --free zero refuses before writing a byte. */
async function expectRefused(image: string, chunkMessage: RegExp): Promise<void> {
  const v = await discus(["verify", image]);
  expect(v.stderr).not.toContain("internal error");
  expect(v.code).toBe(exitCodeByKind.input);
  expect(v.stdout).toMatch(chunkMessage);
  const r = await discus(["restore", "--quiet", "--free", "zero", image, target]);
  expect(r.stderr).not.toContain("internal error");
  expect(r.code).toBe(exitCodeByKind.input);
  expect(r.stderr).toContain("Nothing was written");
  expect(await sha256File(target)).toBe(targetSha);
}

describe("chunk headers must tile the source", () => {
  test("a middle chunk that claims sector 0 (the probe's case) is refused by verify and restore", async () => {
    expect(chunks).toBeGreaterThan(20);
    const k = 18;
    const image = await edited("claims-zero", (i, c, m) => (i === k ? withHeader(c, m.chunkBytes, (h) => ({ ...h, firstSector: 0 })) : null));
    await expectRefused(image, new RegExp(`chunk ${k}: range starts at sector 0, but the chunk before it ends at \\d+`));
    // Nor is it served: every client would refuse that chunk, so the network would carry it for nothing.
    const served = await discus(["serve", image, "--group", "239.192.77.1", "--iface", "127.0.0.1", "--idle-exit", "1s"]);
    expect(served.code).toBe(exitCodeByKind.input);
    expect(served.stderr).toContain(`chunk ${k}: range starts at sector 0`);
  });

  test("a chunk whose range runs past the source is refused", async () => {
    const k = chunks - 1;
    const image = await edited("past-end", (i, c, m) => (i === k ? withHeader(c, m.chunkBytes, (h) => ({ ...h, endSector: h.endSector + 8 })) : null));
    await expectRefused(image, new RegExp(`chunk ${k}: range ends at sector \\d+, past the source's \\d+`));
  });

  test("two chunks swapped with their digests is refused (each header names its own index)", async () => {
    const a = 3;
    const b = 7;
    const bytes: Uint8Array[] = [];
    const image = await edited("swapped", (i, c) => {
      if (i === a || i === b) bytes[i] = c.slice();
      return i === b ? bytes[a]! : null;
    });
    await expectRefused(image, new RegExp(`chunk ${b}: header says chunk ${a}`));
  });

  test("a chunk that ends in free space before the last chunk is refused", async () => {
    const k = 5;
    const image = await edited("gap", (i, c, m) => (i === k ? withHeader(c, m.chunkBytes, (h) => ({ ...h, endSector: h.endSector + 1 })) : null));
    await expectRefused(image, new RegExp(`chunk ${k}: range ends past its data but is not the last chunk`));
  });
});

describe("the manifest's info is validated when the image is opened", () => {
  test("info without partitionTable: info and restore refuse it with the field's name", async () => {
    const image = await edited("no-table", () => null, (m) => {
      const info = { ...m.info } as Partial<Manifest["info"]>;
      delete info.partitionTable;
      return { ...m, info: info as Manifest["info"] };
    });
    const i = await discus(["info", image]);
    expect(i.code).toBe(exitCodeByKind.input);
    expect(i.stderr).toContain("manifest info: partitionTable should be present");
    expect(i.stderr).not.toContain("internal error");
    const r = await discus(["restore", "--quiet", image, target]);
    expect(r.code).toBe(exitCodeByKind.input);
    expect(r.stderr).toContain("partitionTable should be present");
    expect(await sha256File(target)).toBe(targetSha);
  });

  test("a mistyped area field is named with its path", async () => {
    const image = await edited("bad-area", () => null, (m) => ({ ...m, info: { ...m.info, areas: m.info.areas.map((a) => ({ ...a, sizeBytes: "big" as unknown as number })) } }));
    const i = await discus(["info", image]);
    expect(i.code).toBe(exitCodeByKind.input);
    expect(i.stderr).toContain("manifest info: areas[0].sizeBytes should be a whole number");
  });

  test("data sectors that disagree with the chunks: refused", async () => {
    const image = await edited("data-sectors", () => null, (m) => ({ ...m, dataSectors: m.dataSectors - 1 }));
    await expectRefused(image, /image: chunks hold \d+ data sectors, the manifest says \d+/);
  });
});
