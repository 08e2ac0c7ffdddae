// Whole-disk round trips: real partitioned disks with real filesystems, captured with `discus create`,
// restored with `discus restore`, checked with each filesystem's own checker and by reading every file.
import { beforeAll, describe, expect, test } from "bun:test";
import { FIXTURE_TIMEOUT_MS } from "../helpers.ts";
import { $ } from "bun";
import { join } from "node:path";
import * as pako from "pako";
import { decodeChunkHeader, chunkPayload } from "../../src/image/chunk.ts";
import { closeImage, openImage, readChunk } from "../../src/image/reader.ts";
import { gptComposite, mbrComposite, type CompositeDisk } from "../fixtures/composite.ts";
import { checkPartition, differingRanges, discusOk, imageRegions, sha256File, tmpDir } from "../helpers.ts";

async function expectSameDisk(source: CompositeDisk, restored: string, image: string): Promise<void> {
  // Every sector the image captured is byte-identical on the restored disk.
  const { sectorBytes, regions } = imageRegions(image);
  const bytes = regions.map((r) => ({ start: r.start * sectorBytes, length: r.length * sectorBytes }));
  expect(differingRanges(source.path, restored, bytes)).toEqual([]);
  // Each filesystem passes its own checker and holds exactly the same files.
  for (const p of source.partitions) {
    const [before, after] = [await checkPartition(source.path, p), await checkPartition(restored, p)];
    expect({ partition: p.index, fs: p.fs, code: after.checkerCode }).toEqual({ partition: p.index, fs: p.fs, code: 0 });
    expect(after.content.length).toBeGreaterThan(0);
    expect(after.content).toBe(before.content);
  }
}

describe("GPT disk: FAT32 ESP, ext4, swap, XFS, raw", () => {
  let disk: CompositeDisk;
  let dir: string;
  let image: string;
  beforeAll(async () => {
    disk = await gptComposite();
    dir = await tmpDir();
    image = join(dir, "gpt.dsc");
    await discusOk(["create", "--quiet", disk.path, image]);
  }, FIXTURE_TIMEOUT_MS);

  test("the restored disk passes every checker and holds the same files", async () => {
    const restored = join(dir, "restored.img");
    await discusOk(["restore", "--quiet", image, restored]);
    await expectSameDisk(disk, restored, image);
    // sfdisk sees the same table.
    expect(await $`sfdisk --dump ${restored}`.text()).toBe((await $`sfdisk --dump ${disk.path}`.text()).replaceAll(disk.path, restored));
  });

  test("free space is skipped: the image holds the filesystems' data, not the disk", async () => {
    const info = JSON.parse(await discusOk(["info", "--json", image]));
    expect(info.partitionTable.kind).toBe("gpt");
    const kinds = info.areas.map((a: { fs: string | null; captured: string }) => a.fs ?? a.captured);
    expect(kinds).toEqual(["table", "fat32", "ext4", "swap", "xfs", "raw"]);
    expect(info.dataBytes).toBeLessThan(disk.diskBytes * 0.45);
    expect(info.imageBytes).toBeLessThan(info.dataBytes);
    // swap keeps its header page only
    const swap = info.areas.find((a: { fs: string | null }) => a.fs === "swap");
    expect(swap.capturedBytes).toBe(4096);
  });

  test("chunks restored in random order give the same disk", async () => {
    const a = join(dir, "seq.img");
    const b = join(dir, "rnd.img");
    await discusOk(["restore", "--quiet", image, a]);
    await discusOk(["restore", "--quiet", "--order", "random", "--seed", "7", image, b]);
    expect(await sha256File(b)).toBe(await sha256File(a));
  });

  test("a larger target keeps a valid GPT: backup header and entries move to the new end", async () => {
    const big = join(dir, "big.img");
    await $`truncate -s ${disk.diskBytes + 96 * 1024 * 1024} ${big}`;
    const out = JSON.parse(await discusOk(["restore", "--json", image, big]));
    expect(out.gptMoved).toBe(true);
    const verify = await $`sgdisk -v ${big}`.nothrow().text();
    expect(verify).toContain("No problems found");
    const table = JSON.parse(await $`sfdisk --json ${big}`.text()).partitiontable;
    expect(table.lastlba).toBe((disk.diskBytes + 96 * 1024 * 1024) / 512 - 34);
    const original = JSON.parse(await $`sfdisk --json ${disk.path}`.text()).partitiontable;
    const strip = (ps: { start: number; size: number; type: string; uuid: string }[]) => ps.map(({ start, size, type, uuid }) => ({ start, size, type, uuid }));
    expect(strip(table.partitions)).toEqual(strip(original.partitions));
  });
});

describe("MBR disk: ext3, FAT16, logical ext2, NTFS and ext4 (zlib codec)", () => {
  let disk: CompositeDisk;
  let dir: string;
  let image: string;
  beforeAll(async () => {
    disk = await mbrComposite();
    dir = await tmpDir();
    image = join(dir, "mbr.dsc");
    await discusOk(["create", "--quiet", "--codec", "zlib", disk.path, image]);
  }, FIXTURE_TIMEOUT_MS);

  test("the restored disk passes every checker and holds the same files", async () => {
    const restored = join(dir, "restored.img");
    await discusOk(["restore", "--quiet", image, restored]);
    await expectSameDisk(disk, restored, image);
    const info = JSON.parse(await discusOk(["info", "--json", image]));
    expect(info.areas.map((a: { fs: string | null; captured: string }) => a.fs ?? a.captured)).toEqual(["table", "ext3", "fat16", "ext2", "ntfs", "ext4"]);
  });

  test("zlib chunks are standard zlib streams that pako decodes", () => {
    const img = openImage(image);
    try {
      for (const i of [0, Math.floor(img.manifest.dataChunkCount / 2), img.manifest.dataChunkCount - 1]) {
        const container = readChunk(img, i);
        const h = decodeChunkHeader(container, img.manifest.chunkBytes);
        const raw = pako.inflate(chunkPayload(container, h));
        expect(raw.length).toBe(h.rawBytes);
        const digest = new Bun.CryptoHasher("sha256").update(raw).digest("hex");
        expect(digest).toBe(Buffer.from(img.manifest.digests.subarray(i * 64 + 32, i * 64 + 64)).toString("hex"));
      }
    } finally {
      closeImage(img);
    }
  });

  test("capturing twice gives the same image, whatever the number of workers", async () => {
    const env = { SOURCE_DATE_EPOCH: "1700000000" };
    const a = join(dir, "w0.dsc");
    const b = join(dir, "w2.dsc");
    const c = join(dir, "w1-zstd.dsc");
    const d = join(dir, "w2-zstd.dsc");
    await discusOk(["create", "--quiet", "--codec", "zlib", "--workers", "0", disk.path, a], env);
    await discusOk(["create", "--quiet", "--codec", "zlib", "--workers", "2", disk.path, b], env);
    expect(await sha256File(b)).toBe(await sha256File(a));
    await discusOk(["create", "--quiet", "--workers", "1", disk.path, c], env);
    await discusOk(["create", "--quiet", "--workers", "2", disk.path, d], env);
    expect(await sha256File(d)).toBe(await sha256File(c));
    expect(await sha256File(c)).not.toBe(await sha256File(a));
  });
});
