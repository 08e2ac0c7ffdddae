// NTFS parser against real mkntfs volumes filled through ntfs-3g: a copy with every unallocated byte
// overwritten must pass ntfsfix, mount read-write with ntfs-3g and give back every file byte for byte.
import { $ } from "bun";
import { expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fatParser } from "../../src/fs/fat.ts";
import { ntfsParser, parseNtfsBootSector, systemFileRuns } from "../../src/fs/ntfs.ts";
import { fdReader, memoryReader } from "../../src/fs/reader.ts";
import type { FsAllocation } from "../../src/fs/types.ts";
import { FsUnsupportedError } from "../../src/util/errors.ts";
import { rangeEnd, totalLength } from "../../src/util/ranges.ts";
import { garbageFilledCopy, treeDigests } from "../fixtures/common.ts";
import { ntfsImage, withNtfsMount } from "../fixtures/ntfs.ts";

function allocationOf(image: string): FsAllocation {
  const fd = openSync(image, "r");
  try {
    const reader = fdReader(fd, 0, Bun.file(image).size);
    expect(ntfsParser.detect(reader)).toBe(true);
    expect(fatParser.detect(reader)).toBe(false);
    return ntfsParser.allocation(reader);
  } finally {
    closeSync(fd);
  }
}

async function blkidTags(image: string): Promise<Record<string, string>> {
  const out = await $`blkid -p -o export ${image}`.nothrow().text();
  return Object.fromEntries(out.trim().split("\n").map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]));
}

/** Clusters in use according to ntfsinfo (volume clusters minus its free count). */
async function ntfsinfoUsedClusters(image: string): Promise<number> {
  const out = await $`ntfsinfo -m ${image}`.quiet().text();
  const total = /Volume Size in Clusters: (\d+)/.exec(out);
  const free = /Free Clusters: (\d+)/.exec(out);
  expect(total).not.toBeNull();
  expect(free).not.toBeNull();
  return Number(total![1]) - Number(free![1]);
}

const cases = [
  { sizeMiB: 256, contentMiB: 64, label: "DATA", clusterBytes: undefined, expectedClusterBytes: 4096 },
  // MFT records (1 KiB) spanning two clusters.
  { sizeMiB: 64, contentMiB: 4, label: "SMALL", clusterBytes: 512, expectedClusterBytes: 512 },
  // Many records per cluster.
  { sizeMiB: 128, contentMiB: 24, label: "BIG", clusterBytes: 65536, expectedClusterBytes: 65536 },
] as const;

for (const c of cases) {
  test(`ntfs ${c.sizeMiB} MiB, ${c.expectedClusterBytes}-byte clusters: garbage outside the allocation leaves a clean volume with every file intact`, async () => {
    const fixture = await ntfsImage({ sizeMiB: c.sizeMiB, contentMiB: c.contentMiB, label: c.label, clusterBytes: c.clusterBytes });
    const alloc = allocationOf(fixture.image);
    const imageBytes = c.sizeMiB * 1024 * 1024;

    expect(alloc.kind).toBe("ntfs");
    expect(alloc.blockBytes).toBe(c.expectedClusterBytes);
    const tags = await blkidTags(fixture.image);
    expect(alloc.label).toBe(c.label);
    expect(alloc.label).toBe(tags.LABEL ?? null);
    expect(alloc.uuid).toBe(tags.UUID ?? null);
    // mkntfs leaves the last sector for the backup boot sector, which must be kept.
    expect(alloc.fsBytes).toBe(imageBytes);
    const last = alloc.allocated[alloc.allocated.length - 1]!;
    expect(rangeEnd(last)).toBe(imageBytes);

    // The bitmap count matches ntfsinfo's exactly; the backup boot sector is the only extra.
    const used = await ntfsinfoUsedClusters(fixture.image);
    const allocatedBytes = totalLength(alloc.allocated);
    expect(allocatedBytes).toBe(used * alloc.blockBytes + 512);
    const contentBytes = Number((await $`du -sb --apparent-size ${fixture.contentDir}`.text()).split("\t")[0]);
    expect(allocatedBytes).toBeGreaterThan(contentBytes);
    expect(allocatedBytes).toBeLessThan(imageBytes * 0.8);
    expect(alloc.allocated.length).toBeGreaterThan(3);

    const work = mkdtempSync("/tmp/discus-ntfs-");
    try {
      const copy = join(work, "copy.img");
      garbageFilledCopy(fixture.image, copy, alloc.allocated);
      const fix = await $`ntfsfix -n ${copy}`.nothrow().quiet();
      expect(fix.exitCode).toBe(0);
      // ntfs-3g mounts read-write with norecover only if $LogFile and $Volume say the volume is clean
      // (otherwise it falls back to read-only, which the probe file catches).
      const digests = await withNtfsMount(
        copy,
        async (dir) => {
          await $`touch ${dir}/rw-probe && rm ${dir}/rw-probe`.quiet();
          return treeDigests(dir);
        },
        "norecover",
      );
      expect(digests).toBe(await treeDigests(fixture.contentDir));
    } finally {
      await $`rm -rf ${work}`.quiet();
    }
  });
}

// The remaining cases edit an in-memory copy of the small fixture.
async function smallNtfs(): Promise<{ image: string; bytes: Uint8Array }> {
  const fixture = await ntfsImage({ sizeMiB: 64, contentMiB: 4, label: "SMALL", clusterBytes: 512 });
  return { image: fixture.image, bytes: new Uint8Array(readFileSync(fixture.image)) };
}

function expectUnsupported(bytes: Uint8Array, why: RegExp): void {
  const reader = memoryReader(bytes);
  expect(() => ntfsParser.allocation(reader)).toThrow(FsUnsupportedError);
  expect(() => ntfsParser.allocation(reader)).toThrow(why);
}

/** Disk offset of byte `offset` of a system file's $DATA stream (all within its first run here). */
function streamOffset(bytes: Uint8Array, record: number, offset: number): number {
  const reader = memoryReader(bytes);
  const geo = parseNtfsBootSector(bytes.subarray(0, 512));
  const first = systemFileRuns(reader, record)[0]!;
  expect(offset).toBeLessThan(first.length * geo.clusterBytes);
  return first.lcn! * geo.clusterBytes + offset;
}

test("a torn MFT record (update sequence mismatch) is refused", async () => {
  const { bytes } = await smallNtfs();
  const geo = parseNtfsBootSector(bytes.subarray(0, 512));
  const bitmapRecord = streamOffset(bytes, 0, 6 * geo.recordBytes);
  expect(new TextDecoder().decode(bytes.subarray(bitmapRecord, bitmapRecord + 4))).toBe("FILE");
  bytes[bitmapRecord + 1022] = bytes[bitmapRecord + 1022]! ^ 0xff; // the second sector's check word
  expectUnsupported(bytes, /MFT record 6: torn write/);
});

test("a volume marked dirty is refused", async () => {
  const { image } = await smallNtfs();
  const work = mkdtempSync("/tmp/discus-ntfs-");
  try {
    const copy = join(work, "dirty.img");
    await $`cp ${image} ${copy} && ntfsfix ${copy}`.quiet(); // ntfsfix schedules chkdsk by setting the dirty flag
    expectUnsupported(new Uint8Array(readFileSync(copy)), /marked dirty/);
  } finally {
    await $`rm -rf ${work}`.quiet();
  }
});

/** A minimal restart page (header + restart area) as Windows writes at the start of $LogFile. */
function restartPage(major: number, minor: number, clientsInUse: number, flags: number): Uint8Array {
  const page = new Uint8Array(512);
  const view = new DataView(page.buffer);
  page.set(new TextEncoder().encode("RSTR"), 0);
  view.setUint16(0x04, 0x1e, true); // update sequence array offset
  view.setUint16(0x06, 9, true); // 1 + 4096 / 512 entries
  view.setUint32(0x10, 4096, true); // system page size
  view.setUint32(0x14, 4096, true); // log page size
  view.setUint16(0x18, 0x30, true); // restart area offset
  view.setInt16(0x1a, minor, true);
  view.setInt16(0x1c, major, true);
  view.setBigInt64(0x30, 1000n, true); // current LSN
  view.setUint16(0x38, 1, true); // one log client
  view.setUint16(0x3a, 0xffff, true); // client free list
  view.setUint16(0x3c, clientsInUse, true);
  view.setUint16(0x3e, flags, true);
  return page;
}

test("$LogFile: unclean, Windows-cached (2.0) or unreadable journals are refused; clean ones accepted", async () => {
  const { bytes: pristine } = await smallNtfs();
  const logStart = streamOffset(pristine, 2, 0);
  // ntfs-3g leaves an emptied journal: all 0xFF.
  expect(pristine.subarray(logStart, logStart + 8).every((b) => b === 0xff)).toBe(true);

  const withPage = (page: Uint8Array): Uint8Array => {
    const bytes = pristine.slice();
    bytes.set(page, logStart);
    return bytes;
  };
  expectUnsupported(withPage(restartPage(1, 1, 0, 0)), /unclean shutdown/);
  expectUnsupported(withPage(restartPage(2, 0, 0xffff, 0)), /Fast Startup/);
  expectUnsupported(withPage(new Uint8Array(512).fill(0xa5)), /no valid restart page/);
  const clean = [restartPage(1, 1, 0, 0x0002), restartPage(1, 1, 0xffff, 0)];
  for (const page of clean) {
    expect(totalLength(ntfsParser.allocation(memoryReader(withPage(page))).allocated)).toBeGreaterThan(0);
  }
});

test("a partition shorter than the volume, or a non-NTFS boot sector, is refused", async () => {
  const { bytes } = await smallNtfs();
  expectUnsupported(bytes.slice(0, 32 * 1024 * 1024), /larger than its/);
  // Without room for the backup boot sector the volume still parses; fsBytes stops at the partition.
  const noBackup = ntfsParser.allocation(memoryReader(bytes.slice(0, bytes.length - 512)));
  expect(noBackup.fsBytes).toBe(bytes.length - 512);
  expect(rangeEnd(noBackup.allocated[noBackup.allocated.length - 1]!)).toBeLessThanOrEqual(bytes.length - 512);

  const notNtfs = bytes.slice(0, 1 << 20);
  notNtfs.set(new TextEncoder().encode("MSDOS5.0"), 3);
  expect(ntfsParser.detect(memoryReader(notNtfs))).toBe(false);
  const badFields = bytes.slice();
  badFields[0x10] = 2; // a FAT count on NTFS
  expectUnsupported(badFields, /FAT fields/);
});
