// Whole images, damaged every way a disk, a copy or a hand can damage them: flipped bytes,
// truncation, appended garbage, swapped chunks, and edits re-sealed with every digest
// recomputed. Each restore either refuses with a clear input error and leaves the target as it
// was, or writes exactly what the image says (an independent reading of it, below); never a
// hang, never another error. Restores run in-process (the real restoreImage with its workers).
import { beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { appendFileSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { chunkFreeRanges, chunkHeaderBytes, decodeChunkHeader } from "../../src/image/chunk.ts";
import { closeImage, openImage, readChunk } from "../../src/image/reader.ts";
import { restoreImage } from "../../src/target/restore.ts";
import { DiscusError } from "../../src/util/errors.ts";
import { extImage } from "../fixtures/ext.ts";
import { discusOk, FIXTURE_TIMEOUT_MS, tmpDir } from "../helpers.ts";
import { rng, type Rng } from "../rng.ts";
import { resealImage, withHeader } from "./reseal.ts";

const MiB = 1 << 20;
const HANG_MS = 60_000;
let dir = "";
let good = "";
let target = "";
let before = new Uint8Array(0);

beforeAll(async () => {
  dir = await tmpDir();
  const source = await extImage("ext4", { imageMiB: 24, contentMiB: 6, label: "fuzz", deleteEveryNth: 3 });
  good = join(dir, "good.dsc");
  await discusOk(["create", "--quiet", "--chunk-size", "64K", source, good]);
  target = join(dir, "target.img");
  // Random old contents, so any byte a refused restore wrote would show.
  before = new Uint8Array(24 * MiB);
  for (let at = 0; at < before.length; at += 65536) crypto.getRandomValues(before.subarray(at, at + 65536));
}, FIXTURE_TIMEOUT_MS);

/** What the image says the target holds afterwards (free space skipped): read independently. */
function expectedDisk(image: string, old: Uint8Array): Uint8Array {
  const out = old.slice();
  const img = openImage(image);
  try {
    for (let i = 0; i < img.manifest.dataChunkCount; i++) {
      const c = readChunk(img, i);
      const h = decodeChunkHeader(c, img.manifest.chunkBytes);
      const start = chunkHeaderBytes(h.regions.length);
      const raw = zstdDecompressSync(c.subarray(start, start + h.payloadBytes));
      let at = 0;
      for (const r of h.regions) {
        out.set(raw.subarray(at, at + r.length * 512), r.start * 512);
        at += r.length * 512;
      }
      expect(chunkFreeRanges(h).every((f) => f.start + f.length <= out.length / 512)).toBe(true);
    }
  } finally {
    closeImage(img);
  }
  return out;
}

type Outcome = "restored" | "refused" | "refused mid-write";

/** Restores `image` onto a target holding `before`; checks the outcome is one of the two allowed. */
async function restoreAndCheck(image: string): Promise<Outcome> {
  writeFileSync(target, before);
  let timer: Timer | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`restore of ${image} hung`)), HANG_MS)));
  const run = restoreImage({ image, target, freeMode: "skip", workers: 2, order: "sequential", seed: 1, publicKey: null, keyPath: null });
  try {
    await Promise.race([run, hang]);
  } catch (e) {
    if (!(e instanceof DiscusError)) throw new Error(`restore of ${image} failed with ${(e as Error).stack}`);
    expect(e.kind).toBe("input");
    const after = readFileSync(target);
    if (Buffer.compare(after, before) === 0) return "refused";
    // Only a chunk whose container matches the manifest but whose data does not can be found
    // late, and then the error says how much had been written.
    expect(e.message).toMatch(/had been written/);
    return "refused mid-write";
  } finally {
    clearTimeout(timer);
  }
  expect(Buffer.compare(readFileSync(target), expectedDisk(image, before))).toBe(0);
  return "restored";
}

async function copyOfGood(name: string): Promise<string> {
  const path = join(dir, `${name}.dsc`);
  await $`cp ${good} ${path}`;
  return path;
}

function flip(path: string, r: Rng): void {
  const bytes = readFileSync(path);
  const at = r.below(bytes.length);
  bytes[at] = bytes[at]! ^ (1 + r.below(255));
  writeFileSync(path, bytes);
}

describe("damaged images: a clear refusal or a correct restore", () => {
  test("the undamaged image restores to what it says", async () => {
    expect(await restoreAndCheck(good)).toBe("restored");
  });

  test("flipped bytes, truncation, appended garbage, swapped chunks (not re-sealed): refused before writing", async () => {
    const r = rng(4242);
    const size = Bun.file(good).size;
    for (let i = 0; i < 40; i++) {
      const image = await copyOfGood(`raw-${i}`);
      const kind = i % 4;
      if (kind === 0) flip(image, r);
      else if (kind === 1) truncateSync(image, r.below(size));
      else if (kind === 2) appendFileSync(image, r.bytes(1 + r.below(70_000)));
      else swapChunks(image, r);
      const outcome = await restoreAndCheck(image);
      // A flip in a manifest part's zero padding changes nothing the image says: the one way to pass.
      expect(outcome === "refused" || (kind === 0 && outcome === "restored")).toBe(true);
    }
  }, 300_000);

  test("header edits re-sealed with every digest recomputed: refused before writing, or restored as the edit says", async () => {
    const r = rng(777);
    const outcomes: Outcome[] = [];
    for (let i = 0; i < 40; i++) {
      const image = await copyOfGood(`header-${i}`);
      resealImage(image, (index, c, m) => (index === i % m.dataChunkCount ? withHeader(c, m.chunkBytes, (h) => editHeader(h, r)) : null));
      outcomes.push(await restoreAndCheck(image));
    }
    expect(outcomes).not.toContain("refused mid-write");
    expect(outcomes.filter((o) => o === "refused").length).toBeGreaterThan(30);
  }, 300_000);

  test("payload edits re-sealed: restored as the edit says, or stopped with what had been written", async () => {
    const r = rng(31337);
    for (let i = 0; i < 12; i++) {
      const image = await copyOfGood(`payload-${i}`);
      resealImage(image, (index, c, m) => {
        if (index !== (i * 7) % m.dataChunkCount) return null;
        const h = decodeChunkHeader(c, m.chunkBytes);
        const at = chunkHeaderBytes(h.regions.length) + r.below(h.payloadBytes);
        const out = c.slice();
        out[at] = out[at]! ^ (1 + r.below(255));
        return out;
      });
      const o = await restoreAndCheck(image);
      // A damaged first chunk may be refused before the other worker wrote anything: "refused".
      expect(["restored", "refused", "refused mid-write"]).toContain(o);
    }
  }, 300_000);
});

function swapChunks(path: string, r: Rng): void {
  const img = openImage(path);
  const n = img.manifest.dataChunkCount;
  const C = img.manifest.chunkBytes;
  closeImage(img);
  const bytes = readFileSync(path);
  const a = r.below(n);
  const b = (a + 1 + r.below(n - 1)) % n;
  const chunkA = Buffer.from(bytes.subarray(a * C, (a + 1) * C));
  bytes.copy(bytes, a * C, b * C, (b + 1) * C);
  chunkA.copy(bytes, b * C);
  writeFileSync(path, bytes);
}

type Header = Parameters<Parameters<typeof withHeader>[2]>[0];

/** One plausible-looking edit of one header field, as a hand or a bug would make it. */
function editHeader(h: Header, r: Rng): Header {
  const d = 1 + r.below(64);
  const g = h.regions[r.below(h.regions.length)]!;
  switch (r.below(9)) {
    case 0: return { ...h, firstSector: Math.max(0, h.firstSector - d) };
    case 1: return { ...h, firstSector: 0 };
    case 2: return { ...h, endSector: h.endSector + d };
    case 3: g.start += d; return { ...h, endSector: Math.max(h.endSector, g.start + g.length) };
    case 4: g.start = Math.max(h.firstSector, g.start - d); return h;
    case 5: return { ...h, chunkIndex: h.chunkIndex + d };
    case 6: return { ...h, sectorBytes: 4096 };
    case 7: return { ...h, imageId: r.bytes(16) };
    default: return { ...h, firstSector: h.firstSector + d, endSector: h.endSector + d, regions: h.regions.map((x) => ({ start: x.start + d, length: x.length })) };
  }
}
