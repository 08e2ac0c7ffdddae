// XFS parser against real mkfs.xfs images: free space skipped, xfs_repair and file contents
// intact after every unallocated byte is overwritten with garbage.
import { afterAll, expect, test } from "bun:test";
import { $ } from "bun";
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fdReader, memoryReader } from "../../src/fs/reader.ts";
import type { FsAllocation } from "../../src/fs/types.ts";
import { xfsParser } from "../../src/fs/xfs.ts";
import { FsUnsupportedError } from "../../src/util/errors.ts";
import { clipRanges, totalLength, type Range } from "../../src/util/ranges.ts";
import { garbageFilledCopy, treeDigests, withLoop, withMount } from "../fixtures/common.ts";
import { sortDigestLines, xfsDbDigests, xfsImage, xfsImageDigests, type XfsImageOptions } from "../fixtures/xfs.ts";

const MiB = 1024 * 1024;
const TEST_TIMEOUT_MS = 240_000;

const scratch = mkdtempSync("/tmp/discus-xfs-test-");
afterAll(async () => {
  await $`rm -rf ${scratch}`.quiet().nothrow();
});

const V5_SMALL: XfsImageOptions = { fileMiB: 301, fsMiB: 300, contentMiB: 64, deleteEvery: 3, smallFiles: 2400, label: "discus-v5" };
const V5_AGS: XfsImageOptions = { fileMiB: 1024, agCount: 8, rmapbt: true, contentMiB: 100, deleteEvery: 4, label: "discus-ag8" };
const V5_WRAPPED_LOG: XfsImageOptions = { fileMiB: 300, contentMiB: 4, fsyncChurn: 12000, label: "discus-wrap" };
const V4: XfsImageOptions = { fileMiB: 301, fsMiB: 300, crc: false, contentMiB: 24, label: "discus-v4" };

function allocationOf(path: string): FsAllocation {
  const fd = openSync(path, "r");
  try {
    const reader = fdReader(fd, 0, fstatSync(fd).size);
    expect(xfsParser.detect(reader)).toBe(true);
    return xfsParser.allocation(reader);
  } finally {
    closeSync(fd);
  }
}

interface DbCounts {
  dblocks: number;
  fdblocks: number;
  agFreeBlocks: number;
  agflBlocks: number;
  agBtreeBlocks: number;
  freespBlocks: number;
}

function field(text: string, name: string): number {
  const m = new RegExp(`^${name} = (\\d+)$`, "m").exec(text);
  if (m === null) throw new Error(`xfs_db printed no ${name}`);
  return Number(m[1]);
}

/** What xfs_db says about free space: superblock counters, AGF counters and a bnobt scan. */
async function dbCounts(image: string, extra: string[] = []): Promise<DbCounts> {
  const sb = await $`xfs_db -r ${extra} -c ${"sb 0"} -c ${"print dblocks fdblocks agcount"} ${image}`.quiet().text();
  const agCount = field(sb, "agcount");
  const agfArgs = Array.from({ length: agCount }, (_, ag) => ["-c", `agf ${ag}`, "-c", "print freeblks flcount btreeblks"]).flat();
  const agf = await $`xfs_db -r ${extra} ${agfArgs} ${image}`.quiet().text();
  const sum = (name: string) => [...agf.matchAll(new RegExp(`^${name} = (\\d+)$`, "gm"))].reduce((s, m) => s + Number(m[1]), 0);
  const freesp = await $`xfs_db -r ${extra} -c ${"freesp -s"} ${image}`.quiet().text();
  return {
    dblocks: field(sb, "dblocks"),
    fdblocks: field(sb, "fdblocks"),
    agFreeBlocks: sum("freeblks"),
    agflBlocks: sum("flcount"),
    agBtreeBlocks: sum("btreeblks"),
    freespBlocks: Number(/total free blocks (\d+)/.exec(freesp)![1]),
  };
}

/** Free-space accounting of `allocation` against xfs_db, exactly. */
async function expectFreeMatchesXfsDb(image: string, allocation: FsAllocation, extra: string[] = []): Promise<void> {
  const db = await dbCounts(image, extra);
  const allocatedBytes = totalLength(allocation.allocated);
  const freeBlocks = (allocation.fsBytes - allocatedBytes) / allocation.blockBytes;
  expect(allocation.fsBytes).toBe(db.dblocks * allocation.blockBytes);
  // Our free space is exactly the free-space btrees' extents...
  expect(freeBlocks).toBe(db.agFreeBlocks);
  // ...which xfs_db's own scan counts too, plus the AGFL's reserve blocks it lists as free.
  expect(freeBlocks).toBe(db.freespBlocks - db.agflBlocks);
  // The superblock's free count also treats AGFL and free-space btree blocks as free: we
  // capture those few blocks, so we may only be larger than "used" by exactly that much.
  const usedBlocks = db.dblocks - db.fdblocks;
  expect(allocatedBytes / allocation.blockBytes - usedBlocks).toBe(db.agflBlocks + db.agBtreeBlocks);
}

async function blkidValue(image: string, tag: string): Promise<string> {
  return (await $`blkid -p -o value -s ${tag} ${image}`.quiet().nothrow().text()).trim();
}

/** Builds the garbage copy and returns its path after xfs_repair -n accepts it. */
async function garbageCopyPassesRepair(image: string, allocation: FsAllocation, name: string): Promise<string> {
  const copy = join(scratch, name);
  // Bytes past the filesystem's end become garbage too.
  garbageFilledCopy(image, copy, clipRanges(allocation.allocated, allocation.fsBytes));
  const repair = await $`xfs_repair -n ${copy}`.quiet().nothrow();
  if (repair.exitCode !== 0) console.error(repair.stdout.toString(), repair.stderr.toString());
  expect(repair.exitCode).toBe(0);
  return copy;
}

async function checkMountableImage(opts: XfsImageOptions, name: string, minFiles = 100): Promise<FsAllocation> {
  const image = await xfsImage(opts);
  const allocation = allocationOf(image);
  expect(allocation.kind).toBe("xfs");
  expect(allocation.label).toBe(opts.label ?? null);
  expect(allocation.uuid).toBe(await blkidValue(image, "UUID"));
  expect(allocation.blockBytes).toBe(4096);
  expect(allocation.fsBytes).toBe((opts.fsMiB ?? opts.fileMiB) * MiB);
  expect(totalLength(allocation.allocated)).toBeLessThan(allocation.fsBytes * 0.6);
  await expectFreeMatchesXfsDb(image, allocation);

  const copy = await garbageCopyPassesRepair(image, allocation, name);
  const digests = await withLoop(copy, (dev) => withMount(dev, "xfs", (dir) => treeDigests(dir), "ro,norecovery"));
  const expected = await xfsImageDigests(image);
  expect(expected.split("\n").length).toBeGreaterThan(minFiles);
  expect(sortDigestLines(digests.split("\n"))).toBe(expected);
  await $`rm -f ${copy}`.quiet();
  return allocation;
}

test("v5 300 MiB with holes: garbage outside the allocation leaves xfs_repair and every file intact", async () => {
  await checkMountableImage(V5_SMALL, "v5-small.img");
  // The holes make at least one AG's free-space btrees two levels deep: node blocks were walked.
  const agf = await $`xfs_db -r -c ${"agf 0"} -c ${"print bnolevel"} -c ${"agf 1"} -c ${"print bnolevel"} -c ${"agf 2"} -c ${"print bnolevel"} -c ${"agf 3"} -c ${"print bnolevel"} ${await xfsImage(V5_SMALL)}`.quiet().text();
  expect(Math.max(...[...agf.matchAll(/bnolevel = (\d+)/g)].map((m) => Number(m[1])))).toBeGreaterThanOrEqual(2);
}, TEST_TIMEOUT_MS);

test("v5 1 GiB in 8 AGs with rmapbt: every AG's free space is skipped and the copy stays intact", async () => {
  const allocation = await checkMountableImage(V5_AGS, "v5-ags.img");
  // Content lands in several AGs: each AG (128 MiB) has some allocated bytes beyond its headers.
  const agBytes = allocation.fsBytes / 8;
  const busyAgs = new Set<number>();
  for (const r of allocation.allocated) {
    for (let ag = Math.floor(r.start / agBytes); ag * agBytes < r.start + r.length; ag++) {
      const within = Math.min(r.start + r.length, (ag + 1) * agBytes) - Math.max(r.start, ag * agBytes + 64 * 1024);
      if (within > 1 * MiB) busyAgs.add(ag);
    }
  }
  expect(busyAgs.size).toBeGreaterThanOrEqual(4);
}, TEST_TIMEOUT_MS);

test("a log that has wrapped (head in cycle 2) is recognized as cleanly unmounted", async () => {
  const image = await xfsImage(V5_WRAPPED_LOG);
  const logprint = await $`xfs_logprint -t ${image}`.quiet().text();
  expect(logprint).toContain("<CLEAN>");
  // Every log BB starts with its write cycle (record headers keep it at byte 4): the log's
  // first BB carrying cycle 2 proves writes went past the log's end and wrapped.
  const logDaddr = Number(/daddr: (\d+)/.exec(logprint)![1]);
  const firstBb = new DataView(readFileSync(image).buffer, logDaddr * 512, 512);
  const cycle = firstBb.getUint32(0, false) === 0xfeedbabe ? firstBb.getUint32(4, false) : firstBb.getUint32(0, false);
  expect(cycle).toBe(2);
  await checkMountableImage(V5_WRAPPED_LOG, "v5-wrapped.img", 10);
}, TEST_TIMEOUT_MS);

test("v4 (crc=0) filesystem: short btree headers, xfs_repair and file contents survive garbage", async () => {
  const image = await xfsImage(V4);
  const allocation = allocationOf(image);
  expect(allocation.label).toBe("discus-v4");
  expect(allocation.uuid).toBe(await blkidValue(image, "UUID"));
  expect(totalLength(allocation.allocated)).toBeLessThan(allocation.fsBytes * 0.6);
  await expectFreeMatchesXfsDb(image, allocation);

  const copy = await garbageCopyPassesRepair(image, allocation, "v4.img");
  // This kernel cannot mount v4, so files are read back through xfs_db's block maps.
  const expected = await xfsImageDigests(image);
  const files = expected.split("\n").map((line) => line.slice(line.indexOf("  ./") + 4));
  expect(files.length).toBeGreaterThan(100);
  expect(await xfsDbDigests(copy, files)).toBe(expected);
  await $`rm -f ${copy}`.quiet();
}, TEST_TIMEOUT_MS);

/** The image in memory with AG 0's bnobt root block's magic number overwritten. */
function withBrokenBnobtMagic(image: string): Uint8Array {
  const bytes = new Uint8Array(readFileSync(image));
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blockBytes = dv.getUint32(4, false);
  const sectorBytes = dv.getUint16(102, false);
  const bnoRoot = dv.getUint32(sectorBytes + 16, false); // AGF agf_roots[0]
  dv.setUint32(bnoRoot * blockBytes, 0x41424344, false);
  return bytes;
}

test("a corrupted bnobt magic number throws FsUnsupportedError (v4 and v5)", async () => {
  for (const opts of [V4, V5_SMALL]) {
    const bytes = withBrokenBnobtMagic(await xfsImage(opts));
    const reader = memoryReader(bytes);
    expect(xfsParser.detect(reader)).toBe(true);
    expect(() => xfsParser.allocation(reader)).toThrow(FsUnsupportedError);
    expect(() => xfsParser.allocation(reader)).toThrow(/bnobt block \d+ has a bad magic number/);
  }
}, TEST_TIMEOUT_MS);

test("other corruption throws: AGF CRC, AGF free count (v4), truncated device, bad geometry", async () => {
  const v5 = new Uint8Array(readFileSync(await xfsImage(V5_SMALL)));
  const agfFlip = v5.slice();
  agfFlip[512 + 52 + 3]! ^= 1; // agf_freeblks low bit: the CRC no longer matches
  expect(() => xfsParser.allocation(memoryReader(agfFlip))).toThrow(/AGF fails its CRC check/);

  const v4 = new Uint8Array(readFileSync(await xfsImage(V4)));
  const v4Count = v4.slice();
  const agf = new DataView(v4Count.buffer, 512, 512);
  agf.setUint32(52, agf.getUint32(52, false) + 1, false); // agf_freeblks; no CRC on v4: caught by the extent sum
  expect(() => xfsParser.allocation(memoryReader(v4Count))).toThrow(/free extents sum to/);

  expect(() => xfsParser.allocation(memoryReader(v5.subarray(0, 64 * MiB)))).toThrow(FsUnsupportedError);

  const badGeometry = v5.slice(0, 64 * 1024);
  new DataView(badGeometry.buffer).setUint32(88, 1, false); // sb_agcount 1: dblocks no longer fit
  expect(xfsParser.detect(memoryReader(badGeometry))).toBe(false);
  const v4Geometry = v4.slice();
  const sb = new DataView(v4Geometry.buffer);
  sb.setUint32(84, sb.getUint32(84, false) + 1, false); // sb_agblocks + 1: plausible, but the AGs move
  expect(xfsParser.detect(memoryReader(v4Geometry))).toBe(true);
  expect(() => xfsParser.allocation(memoryReader(v4Geometry))).toThrow(FsUnsupportedError);
  expect(xfsParser.detect(memoryReader(new Uint8Array(64 * 1024)))).toBe(false);
}, TEST_TIMEOUT_MS);

test("a dirty log (shut down without unmount) throws FsUnsupportedError", async () => {
  const copy = join(scratch, "dirty.img");
  await $`cp --sparse=always ${await xfsImage(V5_SMALL)} ${copy}`.quiet();
  await withLoop(copy, (dev) =>
    withMount(dev, "xfs", async (dir) => {
      await $`cp -a /usr/share/doc/bash ${dir}/dirty-extra`.quiet();
      await $`xfs_io -x -c ${"shutdown -f"} ${dir}`.quiet();
    }),
  );
  // xfs_repair agrees that the log needs replaying.
  expect((await $`xfs_repair -n ${copy}`.quiet().nothrow()).exitCode).not.toBe(0);
  expect(() => allocationOf(copy)).toThrow(/log is dirty/);
  await $`rm -f ${copy}`.quiet();
}, TEST_TIMEOUT_MS);

test("realtime section throws; an external log is accepted", async () => {
  const data = join(scratch, "rt-data.img");
  const rt = join(scratch, "rt.img");
  await $`truncate -s 300m ${data} && truncate -s 64m ${rt}`.quiet();
  await $`mkfs.xfs -q -f -r rtdev=${rt} ${data}`.quiet();
  expect(() => allocationOf(data)).toThrow(/realtime/);

  const logDev = join(scratch, "log.img");
  await $`truncate -s 300m ${data} && truncate -s 64m ${logDev}`.quiet();
  await $`mkfs.xfs -q -f -l logdev=${logDev} ${data}`.quiet();
  const allocation = allocationOf(data);
  // No internal log: almost the whole data device is free right after mkfs.
  expect(totalLength(allocation.allocated)).toBeLessThan(allocation.fsBytes * 0.05);
  await expectFreeMatchesXfsDb(data, allocation, ["-l", logDev]);
  await $`rm -f ${data} ${rt} ${logDev}`.quiet();
}, TEST_TIMEOUT_MS);

test("other geometries right after mkfs: 4 KiB sectors, 1 KiB blocks, 64 KiB blocks", async () => {
  const cases: Array<{ name: string; args: string[]; blockBytes: number }> = [
    { name: "sect4k", args: ["-s", "size=4096"], blockBytes: 4096 },
    { name: "block1k", args: ["-b", "size=1024"], blockBytes: 1024 },
    { name: "block64k", args: ["-b", "size=65536"], blockBytes: 65536 },
  ];
  for (const c of cases) {
    const image = join(scratch, `${c.name}.img`);
    await $`truncate -s 320m ${image}`.quiet();
    await $`mkfs.xfs -q -f ${c.args} ${image}`.quiet();
    const allocation = allocationOf(image);
    expect(allocation.blockBytes).toBe(c.blockBytes);
    await expectFreeMatchesXfsDb(image, allocation);
    const copy = await garbageCopyPassesRepair(image, allocation, `${c.name}-garbage.img`);
    await $`rm -f ${image} ${copy}`.quiet();
  }
}, TEST_TIMEOUT_MS);
