// Partition tables made by sfdisk, read back and compared with sfdisk's own view; corrupt copies;
// crafted EBR chains; superfloppies; and GPT relocation checked with sgdisk and sfdisk.
import { expect, test } from "bun:test";
import { $ } from "bun";
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fdReader, memoryReader } from "../../src/fs/reader.ts";
import { crc32, decodeGptHeader, entryArraySectors } from "../../src/part/gpt.ts";
import { decodeEntries } from "../../src/part/mbr.ts";
import { relocateGpt } from "../../src/part/relocate.ts";
import { readPartitionTable } from "../../src/part/table.ts";
import { type PartitionTable, PartitionTableError } from "../../src/part/types.ts";
import { AssertionError } from "../../src/util/assert.ts";
import { type Range, rangeEnd, totalLength } from "../../src/util/ranges.ts";
import { cachedFixture, fixtureDir } from "../fixtures/common.ts";
import { buildDisk, type DiskImage, gptDisk, mbrDisk, nodeIndex, sfdiskJson, type SfdiskTable, withPartitionDevices } from "../fixtures/disk.ts";

const mib = 1024 * 1024;
const gptHeaderCrcOffset = 16;

function readFileTable(path: string, sectorBytes: number): PartitionTable | null {
  const fd = openSync(path, "r");
  try {
    return readPartitionTable(fdReader(fd, 0, Bun.file(path).size), sectorBytes);
  } finally {
    closeSync(fd);
  }
}

async function loadImage(path: string): Promise<Uint8Array> {
  return new Uint8Array(await Bun.file(path).arrayBuffer());
}

function covers(ranges: readonly Range[], start: number, length: number): boolean {
  return ranges.some((r) => r.start <= start && start + length <= rangeEnd(r));
}

/** Every data partition sfdisk lists, in our terms (the MBR extended container left out). */
function expectedFromSfdisk(json: SfdiskTable): { index: number; startBytes: number; sizeBytes: number; type: string; name: string | null; uuid: string | null }[] {
  const extendedTypes = new Set(["5", "f", "85"]);
  return json.partitions
    .filter((p) => json.label === "gpt" || !extendedTypes.has(p.type))
    .map((p) => ({
      index: nodeIndex(p.node),
      startBytes: p.start * json.sectorsize,
      sizeBytes: p.size * json.sectorsize,
      type: json.label === "gpt" ? p.type.toLowerCase() : `0x${p.type.padStart(2, "0")}`,
      name: json.label === "gpt" ? (p.name ?? "") : null,
      uuid: json.label === "gpt" ? p.uuid!.toLowerCase() : null,
    }));
}

function expectGptMatches(table: PartitionTable, json: SfdiskTable, disk: DiskImage): void {
  expect(table.kind).toBe("gpt");
  expect(table.sectorBytes).toBe(json.sectorsize);
  expect(table.partitions).toEqual(expectedFromSfdisk(json));
  expect(table.gpt!.diskGuid).toBe(json.id.toLowerCase());
  expect(table.gpt!.firstUsableLba).toBe(json.firstlba!);
  expect(table.gpt!.lastUsableLba).toBe(json.lastlba!);
  // And what the fixture asked sfdisk for, so a mistake shared by sfdisk's view and ours still shows.
  const planned = disk.layout.map((p) => ({ index: p.index, startBytes: p.startSector * disk.sectorBytes, sizeBytes: p.sectors * disk.sectorBytes, type: p.type.toLowerCase(), name: p.name }));
  expect(table.partitions.map((p) => ({ index: p.index, startBytes: p.startBytes, sizeBytes: p.sizeBytes, type: p.type, name: p.name }))).toEqual(planned);
}

test("Bun.hash.crc32 is the IEEE CRC-32 that GPT uses", () => {
  expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  expect(crc32(new Uint8Array(0))).toBe(0);
});

test("GPT made by sfdisk: every partition, the header fields and the keep ranges match", async () => {
  const disk = await gptDisk();
  const json = await sfdiskJson(disk.path);
  const table = readFileTable(disk.path, 512)!;
  expectGptMatches(table, json, disk);
  expect(table.partitions.map((p) => p.name)).toEqual(["EFI system partition", "root", "swap", "données"]);
  expect(table.diskBytes).toBe(128 * mib);
  const diskSectors = table.diskBytes / 512;
  expect(table.gpt).toMatchObject({
    primaryValid: true,
    backupValid: true,
    entryCount: 128,
    entryBytes: 128,
    entryArrayLba: 2,
    alternateLba: diskSectors - 1,
    backupEntryArrayLba: diskSectors - 33,
  });
  // LBA 0 up to the first partition (1 MiB), and the backup entries and header: nothing of the partitions.
  const firstStart = table.partitions[0]!.startBytes;
  expect(table.keep).toEqual([
    { start: 0, length: firstStart },
    { start: (json.lastlba! + 1) * 512, length: table.diskBytes - (json.lastlba! + 1) * 512 },
  ]);
  expect(covers(table.keep, (diskSectors - 33) * 512, 33 * 512)).toBe(true);
  expect(totalLength(table.keep)).toBeLessThan(firstStart + 64 * 512);
});

test("4Kn GPT (4096-byte sectors) matches sfdisk; read with 512-byte sectors it is refused with a hint", async () => {
  const disk = await gptDisk(4096);
  const json = await sfdiskJson(disk.path, 4096);
  expect(json.sectorsize).toBe(4096);
  const table = readFileTable(disk.path, 4096)!;
  expectGptMatches(table, json, disk);
  expect(table.gpt!.backupValid).toBe(true);
  expect(table.gpt!.backupEntryArrayLba).toBe(table.diskBytes / 4096 - 1 - 4); // 16 KiB of entries = 4 sectors
  expect(() => readFileTable(disk.path, 512)).toThrow(/sector size 4096/);
});

test("GPT with a corrupt primary falls back to the backup; corrupt backup is reported; both corrupt is an error", async () => {
  const disk = await gptDisk();
  const good = readFileTable(disk.path, 512)!;
  const image = await loadImage(disk.path);
  const lastLba = image.length / 512 - 1;

  const badPrimaryHeader = image.slice();
  badPrimaryHeader[512 + gptHeaderCrcOffset]! ^= 0xff;
  const fromBackup = readPartitionTable(memoryReader(badPrimaryHeader), 512)!;
  expect(fromBackup.partitions).toEqual(good.partitions);
  expect(fromBackup.gpt).toEqual({ ...good.gpt!, primaryValid: false, backupValid: true });
  expect(fromBackup.keep).toEqual(good.keep);

  const badPrimaryEntries = image.slice();
  badPrimaryEntries[2 * 512 + 56]! ^= 0x01; // a byte of the first entry's name
  const fromBackup2 = readPartitionTable(memoryReader(badPrimaryEntries), 512)!;
  expect(fromBackup2.gpt!.primaryValid).toBe(false);
  expect(fromBackup2.partitions).toEqual(good.partitions);

  const badBackup = image.slice();
  badBackup[lastLba * 512 + gptHeaderCrcOffset]! ^= 0xff;
  const backupBad = readPartitionTable(memoryReader(badBackup), 512)!;
  expect(backupBad.gpt).toEqual({ ...good.gpt!, primaryValid: true, backupValid: false });
  expect(backupBad.partitions).toEqual(good.partitions);
  expect(backupBad.keep).toEqual(good.keep); // the backup's place is still kept

  const bothBad = badPrimaryHeader.slice();
  bothBad[lastLba * 512 + gptHeaderCrcOffset]! ^= 0xff;
  expect(() => readPartitionTable(memoryReader(bothBad), 512)).toThrow(PartitionTableError);
  expect(() => readPartitionTable(memoryReader(bothBad), 512)).toThrow(/neither GPT copy is valid.*CRC32/);
});

test("GPT entries that overlap or leave the usable area are refused, with CRCs made right", async () => {
  const disk = await gptDisk();
  const image = await loadImage(disk.path);
  const header = decodeGptHeader(image.subarray(512, 1024), 512, image.length / 512);
  const rewrite = (mutate: (entries: DataView) => void): Uint8Array => {
    const copy = image.slice();
    const entries = copy.subarray(header.entryArrayLba * 512, header.entryArrayLba * 512 + header.entryCount * header.entryBytes);
    mutate(new DataView(entries.buffer, entries.byteOffset, entries.byteLength));
    const headerView = new DataView(copy.buffer, 512, 512);
    headerView.setUint32(88, crc32(entries), true);
    headerView.setUint32(gptHeaderCrcOffset, 0, true);
    headerView.setUint32(gptHeaderCrcOffset, crc32(copy.subarray(512, 512 + header.headerBytes)), true);
    copy.fill(0, copy.length - 512); // no backup to fall back on
    return copy;
  };
  // Entry 2's first LBA moved into entry 1.
  const overlap = rewrite((v) => v.setUint32(128 + 32, 2048 + 100, true));
  expect(() => readPartitionTable(memoryReader(overlap), 512)).toThrow(/overlap/);
  // Entry 4's last LBA past the last usable LBA.
  const pastEnd = rewrite((v) => v.setUint32(3 * 128 + 40, header.lastUsableLba + 1, true));
  expect(() => readPartitionTable(memoryReader(pastEnd), 512)).toThrow(/outside the usable area/);
});

test("MBR with an extended partition made by sfdisk matches sfdisk, and the kernel agrees", async () => {
  const disk = await mbrDisk();
  const json = await sfdiskJson(disk.path);
  const table = readFileTable(disk.path, 512)!;
  expect(table.kind).toBe("mbr");
  expect(table.gpt).toBeUndefined();
  expect(table.partitions).toEqual(expectedFromSfdisk(json));
  expect(table.partitions.map((p) => p.index)).toEqual([1, 2, 5, 6, 7]);
  expect(table.partitions.map((p) => p.type)).toEqual(["0x83", "0x07", "0x83", "0x82", "0x0c"]);
  const planned = disk.layout.filter((p) => !p.extended).map((p) => ({ index: p.index, startBytes: p.startSector * 512, sizeBytes: p.sectors * 512 }));
  expect(table.partitions.map((p) => ({ index: p.index, startBytes: p.startBytes, sizeBytes: p.sizeBytes }))).toEqual(planned);

  // Keep: sector 0 up to the first partition, plus one EBR sector per logical partition, all outside partitions.
  const extended = disk.layout.find((p) => p.extended)!;
  expect(table.keep[0]).toEqual({ start: 0, length: table.partitions[0]!.startBytes });
  const ebrs = table.keep.slice(1);
  expect(ebrs.length).toBe(3);
  expect(ebrs[0]!.start).toBe(extended.startSector * 512);
  for (const ebr of ebrs) {
    expect(ebr.length).toBe(512);
    expect(ebr.start).toBeGreaterThanOrEqual(extended.startSector * 512);
    expect(ebr.start).toBeLessThan((extended.startSector + extended.sectors) * 512);
    for (const p of table.partitions) expect(ebr.start >= p.startBytes && ebr.start < p.startBytes + p.sizeBytes).toBe(false);
  }

  // The kernel's own reading of the same table, through partx on a loop device.
  const kernel = await withPartitionDevices(disk.path, async (_loop, parts) => {
    const out: { index: number; startBytes: number; sizeBytes: number }[] = [];
    for (const [index, dev] of parts) {
      const name = dev.replace("/dev/", "");
      const start = Number((await Bun.file(`/sys/class/block/${name}/start`).text()).trim());
      const size = Number((await Bun.file(`/sys/class/block/${name}/size`).text()).trim());
      if (index !== extended.index) out.push({ index, startBytes: start * 512, sizeBytes: size * 512 });
    }
    return out.sort((a, b) => a.index - b.index);
  });
  expect(kernel).toEqual(table.partitions.map((p) => ({ index: p.index, startBytes: p.startBytes, sizeBytes: p.sizeBytes })));
});

// A tiny MBR disk in memory: each entry is [bootFlag, type, startLba, sectorCount].
type Entry = [number, number, number, number];
const craftedSectors = 16384; // 8 MiB

function writeTableSector(image: Uint8Array, lba: number, entries: Entry[]): void {
  const view = new DataView(image.buffer, lba * 512, 512);
  entries.forEach(([flag, type, start, count], slot) => {
    const at = 446 + slot * 16;
    view.setUint8(at, flag);
    view.setUint8(at + 4, type);
    view.setUint32(at + 8, start, true);
    view.setUint32(at + 12, count, true);
  });
  view.setUint16(510, 0xaa55, true);
}

/** Primary 1 at 2048 (1024 sectors), extended at 4096 (8192 sectors) with EBRs given relative to it. */
function craftedMbr(ebrs: { at: number; data: Entry | null; link: number | null }[]): Uint8Array {
  const image = new Uint8Array(craftedSectors * 512);
  writeTableSector(image, 0, [[0x80, 0x83, 2048, 1024], [0, 0x05, 4096, 8192]]);
  for (const ebr of ebrs) {
    const entries: Entry[] = [ebr.data ?? [0, 0, 0, 0]];
    if (ebr.link !== null) entries.push([0, 0x05, ebr.link, 16]);
    writeTableSector(image, 4096 + ebr.at, entries);
  }
  return image;
}

test("crafted EBR chains: a good one parses, loops and overlaps are refused", () => {
  const good = readPartitionTable(memoryReader(craftedMbr([
    { at: 0, data: [0, 0x83, 16, 1000], link: 2048 },
    { at: 2048, data: [0, 0x82, 16, 500], link: null },
  ])), 512)!;
  expect(good.partitions.map((p) => [p.index, p.startBytes / 512, p.sizeBytes / 512, p.type])).toEqual([
    [1, 2048, 1024, "0x83"],
    [5, 4096 + 16, 1000, "0x83"],
    [6, 4096 + 2048 + 16, 500, "0x82"],
  ]);
  expect(good.keep).toEqual([{ start: 0, length: 2048 * 512 }, { start: 4096 * 512, length: 512 }, { start: 6144 * 512, length: 512 }]);

  const selfLoop = craftedMbr([{ at: 0, data: [0, 0x83, 16, 1000], link: 0 }]);
  expect(() => readPartitionTable(memoryReader(selfLoop), 512)).toThrow(/loops back/);
  const twoLoop = craftedMbr([
    { at: 0, data: [0, 0x83, 16, 1000], link: 2048 },
    { at: 2048, data: [0, 0x83, 16, 1000], link: 0 },
  ]);
  expect(() => readPartitionTable(memoryReader(twoLoop), 512)).toThrow(PartitionTableError);
  // A logical partition that covers the next EBR.
  const overEbr = craftedMbr([
    { at: 0, data: [0, 0x83, 16, 4000], link: 2048 },
    { at: 2048, data: [0, 0x83, 16, 1000], link: null },
  ]);
  expect(() => readPartitionTable(memoryReader(overEbr), 512)).toThrow(/overlap/);
  // A logical partition running out of the extended one.
  const outside = craftedMbr([{ at: 0, data: [0, 0x83, 16, 9000], link: null }]);
  expect(() => readPartitionTable(memoryReader(outside), 512)).toThrow(/outside its allowed area/);
  // An EBR without its signature.
  const unsigned = craftedMbr([{ at: 0, data: [0, 0x83, 16, 1000], link: 2048 }]);
  expect(() => readPartitionTable(memoryReader(unsigned), 512)).toThrow(/0x55AA/);
  // A chain longer than 128 links, each EBR 16 sectors after the previous one.
  const links = Array.from({ length: 200 }, (_, i) => ({ at: i * 16, data: [0, 0x83, 1, 8] as Entry, link: (i + 1) * 16 }));
  expect(() => readPartitionTable(memoryReader(craftedMbr(links)), 512)).toThrow(/longer than 128/);
});

test("crafted primary tables: overlaps, past the end, two extended partitions are refused", () => {
  const table = (entries: Entry[]): Uint8Array => {
    const image = new Uint8Array(craftedSectors * 512);
    writeTableSector(image, 0, entries);
    return image;
  };
  expect(() => readPartitionTable(memoryReader(table([[0, 0x83, 2048, 4096], [0, 0x83, 4096, 100]])), 512)).toThrow(/overlap/);
  expect(() => readPartitionTable(memoryReader(table([[0, 0x83, 2048, craftedSectors]])), 512)).toThrow(/outside/);
  expect(() => readPartitionTable(memoryReader(table([[0, 0x83, 0, 100]])), 512)).toThrow(PartitionTableError);
  expect(() => readPartitionTable(memoryReader(table([[0, 0x83, 2048, 0]])), 512)).toThrow(PartitionTableError);
  expect(() => readPartitionTable(memoryReader(table([[0, 0x05, 2048, 100], [0, 0x0f, 4096, 100]])), 512)).toThrow(/more than one extended/);
  // Not MBRs at all: no signature, a boot flag that is neither 0x00 nor 0x80, no entries.
  const unsigned = table([[0, 0x83, 2048, 100]]);
  unsigned[510] = 0;
  expect(readPartitionTable(memoryReader(unsigned), 512)).toBeNull();
  expect(readPartitionTable(memoryReader(table([[0x12, 0x83, 2048, 100]])), 512)).toBeNull();
  expect(readPartitionTable(memoryReader(table([])), 512)).toBeNull();
  // A protective MBR without any GPT behind it.
  expect(() => readPartitionTable(memoryReader(table([[0, 0xee, 1, craftedSectors - 1]])), 512)).toThrow(/neither GPT copy/);
});

test("superfloppies and whole-disk filesystems are not partition tables", async () => {
  const fat = await cachedFixture("superfloppy-fat16.img", async (tmp) => {
    await $`truncate -s 32M ${tmp} && mkfs.fat -F 16 -n FLOPPY ${tmp}`.quiet();
  });
  const ntfs = await cachedFixture("superfloppy-ntfs.img", async (tmp) => {
    await $`truncate -s 32M ${tmp} && mkntfs -F -Q -q ${tmp}`.quiet();
  });
  const ext4 = await cachedFixture("wholedisk-ext4.img", async (tmp) => {
    await $`truncate -s 32M ${tmp} && mkfs.ext4 -q -F ${tmp}`.quiet();
  });
  const emptyMbr = await buildDisk({ label: "dos", diskMiB: 8, partitions: [] });
  for (const path of [fat, ntfs, ext4, emptyMbr.path]) expect(readFileTable(path, 512)).toBeNull();
  // A FAT boot sector whose table area happens to hold plausible entries: ambiguous, so refused whole.
  const image = await loadImage(fat);
  expect(decodeEntries(image).every((e) => e.type === 0 && e.sectorCount === 0)).toBe(true);
  writeTableSector(image, 0, [[0, 0x83, 2048, 1024]]);
  expect(() => readPartitionTable(memoryReader(image), 512)).toThrow(/both a filesystem boot sector and an MBR/);
  // The same boot sector with an implausible entry is still just a FAT volume.
  writeTableSector(image, 0, [[0, 0x83, 0, 1024]]);
  expect(readPartitionTable(memoryReader(image), 512)).toBeNull();
});

/** Copies `disk` into a file `growBytes` larger and writes relocateGpt's output where it belongs. */
async function growGptImage(disk: DiskImage, growBytes: number, name: string): Promise<{ path: string; newBytes: number }> {
  const sectorBytes = disk.sectorBytes;
  const image = await loadImage(disk.path);
  const primary = image.slice(sectorBytes, 2 * sectorBytes);
  const header = decodeGptHeader(primary, sectorBytes, image.length / sectorBytes);
  const entryBytes = entryArraySectors(header, sectorBytes) * sectorBytes;
  const entries = image.slice(header.entryArrayLba * sectorBytes, header.entryArrayLba * sectorBytes + entryBytes);
  const newBytes = image.length + growBytes;
  const moved = relocateGpt(primary, entries, image.slice(0, 512), sectorBytes, newBytes);
  const path = join(fixtureDir, `${name}.${process.pid}.img`);
  await $`cp --sparse=always ${disk.path} ${path} && truncate -s ${newBytes} ${path}`;
  const fd = openSync(path, "r+");
  try {
    const put = (bytes: Uint8Array, at: number): void => {
      expect(writeSync(fd, bytes, 0, bytes.length, at)).toBe(bytes.length);
    };
    put(moved.protectiveMbr, 0);
    put(moved.primaryHeader, sectorBytes);
    put(moved.entries, moved.backupEntriesLba * sectorBytes);
    put(moved.backupHeader, moved.backupHeaderLba * sectorBytes);
  } finally {
    closeSync(fd);
  }
  return { path, newBytes };
}

test("relocateGpt: a GPT disk grown by 100 MiB verifies clean with sgdisk and sfdisk, partitions unchanged", async () => {
  const disk = await gptDisk();
  const before = await sfdiskJson(disk.path);
  const { path, newBytes } = await growGptImage(disk, 100 * mib, "grown-gpt");
  try {
    const newSectors = newBytes / 512;
    // sgdisk exits 0 even when it finds problems: its words are what counts.
    const sgdisk = await $`sgdisk -v ${path}`.quiet().nothrow();
    expect(sgdisk.exitCode).toBe(0);
    expect(sgdisk.stdout.toString()).toContain("No problems found");
    expect(sgdisk.stdout.toString()).not.toContain("Problem:");
    const verify = await $`sfdisk --verify ${path}`.quiet().nothrow();
    expect(verify.exitCode).toBe(0);
    expect(verify.stdout.toString()).toContain("No errors detected.");
    const fdisk = await $`fdisk -l ${path}`.quiet().nothrow();
    expect(fdisk.exitCode).toBe(0);
    expect(fdisk.stderr.toString() + fdisk.stdout.toString()).not.toMatch(/mismatch|not on the end|error detected/);

    const after = await sfdiskJson(path);
    expect(after.lastlba).toBe(newSectors - 34);
    expect(after.firstlba).toBe(before.firstlba!);
    expect(after.id).toBe(before.id);
    expect(after.partitions.map(({ node: _, ...p }) => p)).toEqual(before.partitions.map(({ node: _, ...p }) => p));

    const table = readFileTable(path, 512)!;
    expect(table.gpt).toMatchObject({ primaryValid: true, backupValid: true, alternateLba: newSectors - 1, backupEntryArrayLba: newSectors - 33, lastUsableLba: newSectors - 34 });
    expect(table.partitions).toEqual(readFileTable(disk.path, 512)!.partitions);
    const protective = decodeEntries((await loadImage(path)).subarray(0, 512)).find((e) => e.type === 0xee)!;
    expect([protective.startLba, protective.sectorCount]).toEqual([1, newSectors - 1]);
  } finally {
    await $`rm -f ${path}`.quiet();
  }
});

test("the same checks catch a GPT disk grown without relocation", async () => {
  const disk = await gptDisk();
  const path = join(fixtureDir, `grown-raw.${process.pid}.img`);
  await $`cp --sparse=always ${disk.path} ${path} && truncate -s ${disk.diskBytes + 100 * mib} ${path}`;
  try {
    expect((await $`sgdisk -v ${path}`.quiet().nothrow()).stdout.toString()).toContain("Problem:");
    const verify = await $`sfdisk --verify ${path}`.quiet().nothrow();
    expect(verify.stdout.toString() + verify.stderr.toString()).toContain("error detected.");
    expect((await $`fdisk -l ${path}`.quiet().nothrow()).stderr.toString()).toMatch(/PMBR size mismatch/);
    // Our reader still finds both copies: the backup sits at the old end, where AlternateLBA says.
    const table = readFileTable(path, 512)!;
    expect(table.gpt).toMatchObject({ primaryValid: true, backupValid: true, alternateLba: disk.diskBytes / 512 - 1 });
  } finally {
    await $`rm -f ${path}`.quiet();
  }
});

test("relocateGpt on a 4Kn disk: sfdisk sees the new end, our reader finds both copies valid", async () => {
  const disk = await gptDisk(4096);
  const before = await sfdiskJson(disk.path, 4096);
  const { path, newBytes } = await growGptImage(disk, 64 * mib, "grown-gpt-4k");
  try {
    const newSectors = newBytes / 4096;
    const after = await sfdiskJson(path, 4096);
    expect(after.lastlba).toBe(newSectors - 6); // header + 4 entry sectors at the end
    expect(after.partitions.map(({ node: _, ...p }) => p)).toEqual(before.partitions.map(({ node: _, ...p }) => p));
    const table = readFileTable(path, 4096)!;
    expect(table.gpt).toMatchObject({ primaryValid: true, backupValid: true, alternateLba: newSectors - 1 });
  } finally {
    await $`rm -f ${path}`.quiet();
  }
});

test("relocateGpt is pure and checks its inputs: 0xFFFFFFFF cap, no shrinking, whole sectors", async () => {
  const disk = await gptDisk();
  const image = await loadImage(disk.path);
  const primary = image.slice(512, 1024);
  const entries = image.slice(1024, 1024 + 32 * 512);
  const mbr = image.slice(0, 512);
  const primaryCopy = primary.slice();
  const threeTiB = 3 * 1024 * 1024 * mib;
  const moved = relocateGpt(primary, entries, mbr, 512, threeTiB);
  expect(primary).toEqual(primaryCopy); // inputs untouched
  const newSectors = threeTiB / 512;
  expect(moved.backupHeaderLba).toBe(newSectors - 1);
  expect(moved.backupEntriesLba).toBe(newSectors - 33);
  expect(moved.entries).toEqual(entries);
  const protective = decodeEntries(moved.protectiveMbr).find((e) => e.type === 0xee)!;
  expect(protective.sectorCount).toBe(0xffffffff);
  const newPrimary = decodeGptHeader(moved.primaryHeader, 512, newSectors);
  const newBackup = decodeGptHeader(moved.backupHeader, 512, newSectors);
  expect(newPrimary).toMatchObject({ myLba: 1, alternateLba: newSectors - 1, lastUsableLba: newSectors - 34, entryArrayLba: 2 });
  expect(newBackup).toMatchObject({ myLba: newSectors - 1, alternateLba: 1, lastUsableLba: newSectors - 34, entryArrayLba: newSectors - 33 });
  expect(newBackup.diskGuid).toBe(newPrimary.diskGuid);
  expect(newBackup.entryArrayCrc).toBe(crc32(entries.subarray(0, 128 * 128)));

  // A smaller disk is the image's or the target's doing, not a bug: a clear PartitionTableError.
  expect(() => relocateGpt(primary, entries, mbr, 512, image.length - 512)).toThrow(/backup header \(LBA \d+\) lies past the end/);
  expect(() => relocateGpt(primary, entries, mbr, 512, image.length + 100)).toThrow(AssertionError);
  const badEntries = entries.slice();
  badEntries[0]! ^= 1;
  expect(() => relocateGpt(primary, badEntries, mbr, 512, image.length + mib)).toThrow(PartitionTableError);
  // Same size: a no-op apart from nothing at all.
  const same = relocateGpt(primary, entries, mbr, 512, image.length);
  expect(same.primaryHeader).toEqual(primary);
  expect(same.protectiveMbr).toEqual(mbr);
  expect(same.backupHeader).toEqual(image.slice(image.length - 512));
});
