// FAT parser against real mkfs.fat volumes filled with mtools: a copy with every unallocated byte
// overwritten must still pass fsck.fat and give back every file byte for byte.
import { $ } from "bun";
import { expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { allocatedClusterRuns, fatParser, parseFatBootSector, type FatGeometry } from "../../src/fs/fat.ts";
import { ntfsParser } from "../../src/fs/ntfs.ts";
import { fdReader, memoryReader } from "../../src/fs/reader.ts";
import type { FsAllocation } from "../../src/fs/types.ts";
import { FsUnsupportedError } from "../../src/util/errors.ts";
import { totalLength } from "../../src/util/ranges.ts";
import { garbageFilledCopy, treeDigests } from "../fixtures/common.ts";
import { extractFat, fatImage, mtoolsEnv } from "../fixtures/fat.ts";

function allocationOf(image: string): FsAllocation {
  const fd = openSync(image, "r");
  try {
    const reader = fdReader(fd, 0, Bun.file(image).size);
    expect(fatParser.detect(reader)).toBe(true);
    expect(ntfsParser.detect(reader)).toBe(false);
    return fatParser.allocation(reader);
  } finally {
    closeSync(fd);
  }
}

function geometryOf(image: string): FatGeometry {
  const fd = openSync(image, "r");
  try {
    return parseFatBootSector(fdReader(fd, 0, 512).read(0, 512));
  } finally {
    closeSync(fd);
  }
}

async function blkidTags(image: string): Promise<Record<string, string>> {
  const out = await $`blkid -p -o export ${image}`.nothrow().text();
  return Object.fromEntries(out.trim().split("\n").map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]));
}

/** fsck.fat's own count of used clusters ("N files, used/total clusters"). */
async function fsckUsedClusters(image: string): Promise<{ used: number; total: number }> {
  const out = await $`fsck.fat -n -v ${image}`.quiet().text();
  const match = /(\d+) files, (\d+)\/(\d+) clusters/.exec(out);
  expect(match).not.toBeNull();
  return { used: Number(match![2]), total: Number(match![3]) };
}

const cases = [
  { kind: 12, sizeMiB: 8, contentMiB: 4, label: "FLOPPY" },
  { kind: 16, sizeMiB: 64, contentMiB: 24, label: "DATA16" },
  // EFI System Partition shape: mkfs.fat -F 32 on 256 MiB (512-byte clusters).
  { kind: 32, sizeMiB: 256, contentMiB: 48, label: "ESP" },
] as const;

for (const c of cases) {
  test(`fat${c.kind}: garbage outside the allocation leaves a clean volume with every file intact`, async () => {
    const fixture = await fatImage(c.kind, { sizeMiB: c.sizeMiB, contentMiB: c.contentMiB, label: c.label });
    const alloc = allocationOf(fixture.image);
    const fsBytes = c.sizeMiB * 1024 * 1024;

    expect(alloc.kind).toBe(`fat${c.kind}`);
    expect(alloc.fsBytes).toBe(fsBytes);
    const tags = await blkidTags(fixture.image);
    expect(alloc.label).toBe(tags.LABEL ?? null);
    expect(alloc.label).toBe(c.label);
    expect(alloc.uuid).toBe(tags.UUID ?? null);
    expect(alloc.uuid).toBe("2024-ABCD");

    // Our used clusters equal fsck.fat's, and metadata + clusters account for every allocated byte.
    const geo = geometryOf(fixture.image);
    const fd = openSync(fixture.image, "r");
    const runs = allocatedClusterRuns(fdReader(fd, 0, fsBytes), geo);
    // Reading the FATs in small chunks (as big FAT32 volumes are) gives the same runs.
    expect(allocatedClusterRuns(fdReader(fd, 0, fsBytes), geo, 998)).toEqual(runs);
    closeSync(fd);
    const usedClusters = totalLength(runs);
    const fsck = await fsckUsedClusters(fixture.image);
    expect(fsck.total).toBe(geo.clusterCount);
    expect(usedClusters).toBe(fsck.used);
    const allocatedBytes = totalLength(alloc.allocated);
    expect(allocatedBytes).toBe(geo.dataStartSector * geo.sectorBytes + usedClusters * alloc.blockBytes);
    // Deletions and unused space really are skipped.
    const contentBytes = Number((await $`du -sb --apparent-size ${fixture.contentDir}`.text()).split("\t")[0]);
    expect(allocatedBytes).toBeGreaterThan(contentBytes);
    expect(allocatedBytes).toBeLessThan(fsBytes * 0.8);
    expect(alloc.allocated.length).toBeGreaterThan(5); // holes from the deletions show up as gaps

    const work = mkdtempSync("/tmp/discus-fat-");
    try {
      const copy = join(work, "copy.img");
      garbageFilledCopy(fixture.image, copy, alloc.allocated);
      const fsckCopy = await $`fsck.fat -n ${copy}`.nothrow().quiet();
      expect(fsckCopy.exitCode).toBe(0);
      const out = join(work, "out");
      await extractFat(copy, out);
      expect(await treeDigests(out)).toBe(await treeDigests(fixture.contentDir));
    } finally {
      await $`rm -rf ${work}`.quiet();
    }
  });
}

test("fat32: a bare 100 MiB ESP (mkfs.fat -F 32, no label) is FAT32 with only its root directory in use", async () => {
  const work = mkdtempSync("/tmp/discus-fat-");
  try {
    const image = join(work, "esp.img");
    await $`truncate -s 100M ${image} && mkfs.fat -F 32 -i 0000BEEF ${image}`.quiet();
    const alloc = allocationOf(image);
    expect(alloc.kind).toBe("fat32");
    expect(alloc.label).toBeNull();
    expect(alloc.uuid).toBe("0000-BEEF");
    const geo = geometryOf(image);
    expect(totalLength(alloc.allocated)).toBe(geo.dataStartSector * geo.sectorBytes + alloc.blockBytes);
  } finally {
    await $`rm -rf ${work}`.quiet();
  }
});

test("fat16 with 4096-byte sectors: allocation matches fsck.fat and survives the garbage fill", async () => {
  const work = mkdtempSync("/tmp/discus-fat-");
  try {
    const image = join(work, "fat4k.img");
    await $`truncate -s 64M ${image} && mkfs.fat -F 16 -S 4096 -n SECT4K ${image}`.quiet();
    const src = join(work, "src");
    await $`mkdir -p ${src}/a/b && cp /usr/share/common-licenses/GPL-3 ${src}/a/b/gpl && head -c 3000000 /usr/bin/bash > ${src}/a/bash.bin`.quiet();
    await $`mcopy -s -Q -i ${image} ${src}/a ::/`.env(mtoolsEnv).quiet();
    const alloc = allocationOf(image);
    expect(alloc.kind).toBe("fat16");
    expect(alloc.label).toBe("SECT4K");
    const geo = geometryOf(image);
    expect(geo.sectorBytes).toBe(4096);
    const fsck = await fsckUsedClusters(image);
    expect(totalLength(alloc.allocated)).toBe(geo.dataStartSector * 4096 + fsck.used * alloc.blockBytes);
    const copy = join(work, "copy.img");
    garbageFilledCopy(image, copy, alloc.allocated);
    expect((await $`fsck.fat -n ${copy}`.nothrow().quiet()).exitCode).toBe(0);
    await extractFat(copy, join(work, "out"));
    expect(await treeDigests(join(work, "out"))).toBe(await treeDigests(src));
  } finally {
    await $`rm -rf ${work}`.quiet();
  }
});

// The remaining cases edit an in-memory copy of the FAT12 fixture.
async function fat12Bytes(): Promise<Uint8Array> {
  const fixture = await fatImage(12, { sizeMiB: 8, contentMiB: 4, label: "FLOPPY" });
  return new Uint8Array(readFileSync(fixture.image));
}

function expectUnsupported(bytes: Uint8Array, why: RegExp): void {
  const reader = memoryReader(bytes);
  expect(() => fatParser.allocation(reader)).toThrow(FsUnsupportedError);
  expect(() => fatParser.allocation(reader)).toThrow(why);
}

function setFat12Entry(bytes: Uint8Array, fatStart: number, index: number, value: number): void {
  const at = fatStart + index + (index >>> 1);
  const pair = bytes[at]! | (bytes[at + 1]! << 8);
  const next = (index & 1) === 1 ? (pair & 0x000f) | (value << 4) : (pair & 0xf000) | value;
  bytes[at] = next & 0xff;
  bytes[at + 1] = next >>> 8;
}

test("FAT copies that disagree on a free cluster are refused", async () => {
  const bytes = await fat12Bytes();
  const geo = parseFatBootSector(bytes.subarray(0, 512));
  expect(geo.fatCount).toBe(2);
  const secondFat = (geo.reservedSectors + geo.fatSectors) * geo.sectorBytes;
  // The last cluster is free in a volume this empty; mark it used in the second copy only.
  const lastCluster = geo.clusterCount + 1;
  setFat12Entry(bytes, secondFat, lastCluster, 0xfff);
  expectUnsupported(bytes, new RegExp(`disagree on whether cluster ${lastCluster} is free`));
});

test("inconsistent geometry is refused", async () => {
  const pristine = await fat12Bytes();
  const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

  const tinyFat = pristine.slice();
  view(tinyFat).setUint16(0x16, 1, true); // FAT of one sector for ~4000 clusters
  expectUnsupported(tinyFat, /too small/);

  const shortVolume = pristine.slice();
  view(shortVolume).setUint16(0x13, 20, true); // data area would start beyond the volume
  expectUnsupported(shortVolume, /beyond the/);

  // The partition is shorter than the volume the BPB describes.
  expectUnsupported(pristine.slice(0, 4 * 1024 * 1024), /larger than its/);

  const twoCounts = pristine.slice();
  view(twoCounts).setUint32(0x20, 12345, true);
  expectUnsupported(twoCounts, /two different sector counts/);
});

test("FAT32 with mirroring disabled is refused; non-FAT boot sectors are not detected", async () => {
  const work = mkdtempSync("/tmp/discus-fat-");
  try {
    const image = join(work, "esp.img");
    await $`truncate -s 64M ${image} && mkfs.fat -F 32 ${image}`.quiet();
    const bytes = new Uint8Array(readFileSync(image));
    new DataView(bytes.buffer).setUint16(0x28, 0x0081, true); // active FAT 1, no mirroring
    expectUnsupported(bytes, /mirroring disabled/);

    expect(fatParser.detect(memoryReader(new Uint8Array(1 << 20)))).toBe(false);
    const notFat = bytes.slice(0, 1 << 20);
    notFat.set(new TextEncoder().encode("EXFAT   "), 3);
    expect(fatParser.detect(memoryReader(notFat))).toBe(false);
  } finally {
    await $`rm -rf ${work}`.quiet();
  }
});
