// Restores onto real block devices (loop devices over files filled with garbage first), with each
// --free mode, and images whose manifest spans several parts.
import { beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { closeSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { decodeChunkHeader, chunkFreeRanges } from "../../src/image/chunk.ts";
import { closeImage, openImage, readChunk } from "../../src/image/reader.ts";
import type { Range } from "../../src/util/ranges.ts";
import { withLoop } from "../fixtures/common.ts";
import { extImage } from "../fixtures/ext.ts";
import { differingRanges, discusOk, FIXTURE_TIMEOUT_MS, imageRegions, sha256File, tmpDir } from "../helpers.ts";

const MiB = 1 << 20;
const GARBAGE = 0xa5;

function freeByteRanges(imagePath: string): Range[] {
  const image = openImage(imagePath);
  try {
    const out: Range[] = [];
    const sb = image.manifest.sectorBytes;
    for (let i = 0; i < image.manifest.dataChunkCount; i++) {
      for (const f of chunkFreeRanges(decodeChunkHeader(readChunk(image, i), image.manifest.chunkBytes))) {
        out.push({ start: f.start * sb, length: f.length * sb });
      }
    }
    return out;
  } finally {
    closeImage(image);
  }
}

/** Counts bytes in `ranges` of `path` that are not equal to `value`. */
function bytesNotEqual(path: string, ranges: readonly Range[], value: number): number {
  const fd = openSync(path, "r");
  const buf = new Uint8Array(4 * MiB);
  let count = 0;
  try {
    for (const r of ranges) {
      for (let off = 0; off < r.length; off += buf.length) {
        const n = Math.min(buf.length, r.length - off);
        readSync(fd, buf, 0, n, r.start + off);
        for (let i = 0; i < n; i++) if (buf[i] !== value) count++;
      }
    }
  } finally {
    closeSync(fd);
  }
  return count;
}

async function garbageDisk(path: string, bytes: number): Promise<void> {
  await Bun.write(path, new Uint8Array(bytes).fill(GARBAGE));
}

describe("block device targets and --free modes", () => {
  let dir: string;
  let source: string;
  let image: string;
  let data: Range[];
  let free: Range[];
  beforeAll(async () => {
    dir = await tmpDir();
    source = await extImage("ext4", { imageMiB: 96, contentMiB: 24, deleteEveryNth: 4, label: "blockdev" });
    image = join(dir, "src.dsc");
    await discusOk(["create", "--quiet", source, image]);
    const { sectorBytes, regions } = imageRegions(image);
    data = regions.map((r) => ({ start: r.start * sectorBytes, length: r.length * sectorBytes }));
    free = freeByteRanges(image);
    expect(free.length).toBeGreaterThan(0);
  }, FIXTURE_TIMEOUT_MS);

  for (const mode of ["skip", "zero", "discard"] as const) {
    test(`--free ${mode} on a loop device full of garbage`, async () => {
      const backing = join(dir, `disk-${mode}.img`);
      await garbageDisk(backing, 96 * MiB);
      await withLoop(backing, async (dev) => {
        const out = JSON.parse(await discusOk(["restore", "--json", "--free", mode, image, dev]));
        expect(out.targetBytes).toBe(96 * MiB);
        if (mode === "skip") expect(out.zeroedBytes + out.discardedBytes).toBe(0);
        else expect(out.zeroedBytes + out.discardedBytes).toBe(out.freeBytes);
      });
      expect(differingRanges(source, backing, data)).toEqual([]);
      // skip leaves the old contents; zero and discard (a loop device punches holes) leave zeros.
      const expected = mode === "skip" ? GARBAGE : 0;
      expect(bytesNotEqual(backing, free, expected)).toBe(0);
      const fsck = await $`e2fsck -fn ${backing}`.quiet().nothrow();
      expect(fsck.exitCode).toBe(0);
    });
  }

  test("a manifest larger than one chunk: many small chunks of incompressible data", async () => {
    const noise = join(dir, "noise.img");
    await $`head -c ${80 * MiB} /dev/urandom > ${noise}`;
    const img = join(dir, "noise.dsc");
    await discusOk(["create", "--quiet", "--raw", "--chunk-size", "64K", noise, img]);
    const info = JSON.parse(await discusOk(["info", "--json", img]));
    // One 64 KiB part holds 1024 digest entries of 64 bytes.
    expect(info.chunks).toBeGreaterThan(1024);
    expect(info.manifestParts).toBeGreaterThan(1);
    const out = join(dir, "noise-restored.img");
    await discusOk(["restore", "--quiet", img, out]);
    expect(await sha256File(out)).toBe(await sha256File(noise));
  });
});
