// ext2/3/4 parser against real mke2fs images: exact agreement with dumpe2fs, and a garbage-filled
// copy (everything outside `allocated` overwritten) that e2fsck accepts and whose files read back intact.
import { $ } from "bun";
import { expect, test } from "bun:test";
import { closeSync, fstatSync, openSync, readFileSync, rmSync } from "node:fs";
import { extParser } from "../../src/fs/ext.ts";
import { fdReader, memoryReader } from "../../src/fs/reader.ts";
import type { FsAllocation } from "../../src/fs/types.ts";
import { FsUnsupportedError } from "../../src/util/errors.ts";
import { invertRanges, normalizeRanges, rangeEnd, totalLength, type Range } from "../../src/util/ranges.ts";
import { cachedFixture, garbageFilledCopy, withLoop } from "../fixtures/common.ts";
import {
  dumpe2fs,
  expectedExtDigests,
  extImage,
  extImageDigests,
  type ExtImageOptions,
  type ExtKind,
} from "../fixtures/ext.ts";

const timeoutMs = 60_000;
const fixedUuid = "5a1e0c2b-7d3f-4e10-9b8a-0f1e2d3c4b5a";

// Fixtures the refusal tests below patch as well.
const ext2Opts: ExtImageOptions = { imageMiB: 128, contentMiB: 48 };
const ext4Opts: ExtImageOptions = { imageMiB: 256, contentMiB: 48, blockBytes: 1024 };
const crc16Opts: ExtImageOptions = { imageMiB: 128, contentMiB: 48, blockBytes: 2048, blocksPerGroup: 4096, features: "^metadata_csum,uninit_bg" };

interface Case {
  name: string;
  kind: ExtKind;
  opts: ExtImageOptions;
  /** The fixture must really contain BLOCK_UNINIT groups (checked with dumpe2fs). */
  wantBlockUninit?: boolean;
  /** mke2fs itself does not reproduce the content exactly; compare the copy with the original image only. */
  mkfsAltersContent?: boolean;
}

const cases: Case[] = [
  // mke2fs's "small" profile gives 1 KiB blocks below 512 MiB: 16 groups, no flex_bg.
  { name: "ext2, 1 KiB blocks", kind: "ext2", opts: ext2Opts },
  // The image is longer than the filesystem: the tail must not be needed.
  {
    name: "ext3, 2 KiB blocks, filesystem shorter than the image",
    kind: "ext3",
    opts: { imageMiB: 136, fsMiB: 128, contentMiB: 48, blockBytes: 2048, label: "discus-ext3" },
  },
  // Default ext4 features (metadata_csum, flex_bg, 64bit), files deleted after mounting to leave holes.
  {
    name: "ext4, 4 KiB blocks, default features, holes from deleted files",
    kind: "ext4",
    opts: { imageMiB: 256, contentMiB: 48, blockBytes: 4096, label: "discus-ext4", deleteEveryNth: 3 },
  },
  {
    name: "ext4, 1 KiB blocks, default features, BLOCK_UNINIT groups",
    kind: "ext4",
    opts: ext4Opts,
    wantBlockUninit: true,
  },
  {
    name: "ext4, 1 KiB blocks, no flex_bg, 32-byte descriptors, BLOCK_UNINIT groups",
    kind: "ext4",
    opts: { imageMiB: 128, contentMiB: 48, blockBytes: 1024, features: "^flex_bg,^64bit" },
    wantBlockUninit: true,
  },
  // uninit_bg instead of metadata_csum: crc16 descriptor checksums (over 64-byte descriptors), no bitmap checksums.
  {
    name: "ext4, 2 KiB blocks, uninit_bg (crc16) instead of metadata_csum, BLOCK_UNINIT groups",
    kind: "ext4",
    opts: crc16Opts,
    wantBlockUninit: true,
  },
  // Grown offline from 64 to 128 MiB: the reserved GDT blocks get used and new groups appear.
  {
    name: "ext4, 1 KiB blocks, grown with resize2fs",
    kind: "ext4",
    opts: { imageMiB: 128, fsMiB: 64, growToMiB: 128, contentMiB: 48, blockBytes: 1024, blocksPerGroup: 1024, extended: "resize=80000" },
    wantBlockUninit: true,
  },
  // 64 groups of 2 MiB: four meta groups of 16 descriptors, backups only in groups 1 and 63.
  {
    name: "ext4, meta_bg + sparse_super2, small groups",
    kind: "ext4",
    opts: { imageMiB: 128, contentMiB: 48, blockBytes: 1024, blocksPerGroup: 2048, features: "meta_bg,^resize_inode,sparse_super2" },
    wantBlockUninit: true,
  },
  // Features that must not disturb the maps; the UUID change makes metadata_csum_seed matter.
  // (No casefold: this kernel lacks CONFIG_UNICODE and could not mount the copy. MMP is added by
  // tune2fs because changing the UUID of an MMP filesystem waits out the MMP interval.)
  {
    name: "ext4, 2 KiB blocks, inline_data/encrypt/mmp/orphan_file/verity/csum_seed and a new UUID",
    kind: "ext4",
    opts: {
      imageMiB: 128,
      contentMiB: 48,
      blockBytes: 2048,
      features: "inline_data,project,encrypt,orphan_file,large_dir,ea_inode,metadata_csum_seed,verity",
      tune: ["-U", fixedUuid, "-O", "mmp"],
    },
    // mke2fs 1.47.0 -d with inline_data drops the last byte of some files (a 436225-byte
    // changelog.gz comes out 436224 bytes long), so the original image is the reference here.
    mkfsAltersContent: true,
  },
];

function allocationOf(image: string): FsAllocation {
  const fd = openSync(image, "r");
  try {
    const reader = fdReader(fd, 0, fstatSync(fd).size);
    expect(extParser.detect(reader)).toBe(true);
    return extParser.allocation(reader);
  } finally {
    closeSync(fd);
  }
}

/** True when every range of normalized `inner` lies inside normalized `outer`. */
function covered(inner: readonly Range[], outer: readonly Range[]): boolean {
  let j = 0;
  for (const r of inner) {
    while (j < outer.length && rangeEnd(outer[j]!) <= r.start) j++;
    const o = outer[j];
    if (o === undefined || o.start > r.start || rangeEnd(o) < rangeEnd(r)) return false;
  }
  return true;
}

for (const c of cases) {
  test(
    c.name,
    async () => {
      const image = await extImage(c.kind, c.opts);
      const alloc = allocationOf(image);
      const info = await dumpe2fs(image);
      const blockBytes = Number(info.header.get("Block size"));
      const blockCount = Number(info.header.get("Block count"));
      const fsUsedBlocks = blockCount - Number(info.header.get("Free blocks"));

      expect(alloc.kind).toBe(c.kind);
      expect(alloc.blockBytes).toBe(blockBytes);
      expect(alloc.fsBytes).toBe(blockCount * blockBytes);
      expect(alloc.uuid).toBe(info.header.get("Filesystem UUID")!);
      const volumeName = info.header.get("Filesystem volume name")!;
      expect(alloc.label).toBe(volumeName === "<none>" ? null : volumeName);
      if (c.opts.label !== undefined) expect(alloc.label).toBe(c.opts.label);
      if (c.opts.tune !== undefined) expect(alloc.uuid).toBe(fixedUuid);
      const fsMiB = c.opts.growToMiB ?? c.opts.fsMiB;
      if (fsMiB !== undefined) expect(alloc.fsBytes).toBe(fsMiB * 1024 * 1024);
      if (c.wantBlockUninit === true) expect(info.blockUninitGroups).toBeGreaterThan(0);
      expect(info.groupCount).toBeGreaterThan(0);

      // Never free where the filesystem says used: our free blocks all appear in dumpe2fs's free lists.
      expect(normalizeRanges(alloc.allocated)).toEqual(alloc.allocated);
      const allocatedBlocks = alloc.allocated.map((r) => ({ start: r.start / blockBytes, length: r.length / blockBytes }));
      const ourFree = invertRanges(allocatedBlocks, blockCount);
      expect(covered(ourFree, normalizeRanges(info.freeBlocks))).toBe(true);
      // And we are not much more conservative than the filesystem's own count.
      const ourUsedBlocks = totalLength(alloc.allocated) / blockBytes;
      expect(ourUsedBlocks).toBeGreaterThanOrEqual(fsUsedBlocks);
      expect(ourUsedBlocks - fsUsedBlocks).toBeLessThanOrEqual(8);
      // Free space really is skipped.
      expect(ourUsedBlocks).toBeLessThan(0.7 * blockCount);

      const copy = `${image}.garbage-${process.pid}`;
      try {
        garbageFilledCopy(image, copy, alloc.allocated);
        const fsck = await $`e2fsck -fn ${copy}`.quiet().nothrow();
        if (fsck.exitCode !== 0) console.error(fsck.stdout.toString(), fsck.stderr.toString());
        expect(fsck.exitCode).toBe(0);
        const digests = await extImageDigests(copy);
        expect(digests.split("\n").length).toBeGreaterThan(1000);
        expect(digests).toBe(await extImageDigests(image));
        if (c.mkfsAltersContent !== true) expect(digests).toBe(await expectedExtDigests(c.opts));
      } finally {
        rmSync(copy, { force: true });
      }
    },
    timeoutMs,
  );
}

// ---- Refusals: patched copies of real images in memory ----

const superblockAt = 1024;

function patched(image: string, patch: (bytes: Uint8Array, view: DataView) => void): Uint8Array {
  const bytes = new Uint8Array(readFileSync(image));
  patch(bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return bytes;
}

function flip(bytes: Uint8Array, offset: number, mask: number): void {
  bytes[offset] = bytes[offset]! ^ mask;
}

function expectUnsupported(bytes: Uint8Array, reason: RegExp): void {
  const reader = memoryReader(bytes);
  expect(extParser.detect(reader)).toBe(true);
  let error: unknown = null;
  try {
    extParser.allocation(reader);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(FsUnsupportedError);
  expect((error as Error).message).toMatch(reason);
}

test("unknown incompat and ro_compat feature bits are refused", async () => {
  const image = await extImage("ext2", ext2Opts);
  // The unpatched image parses, so the refusals below come from the patched bits alone.
  expect(extParser.allocation(memoryReader(new Uint8Array(readFileSync(image)))).kind).toBe("ext2");
  const incompatAt = superblockAt + 0x60;
  const roCompatAt = superblockAt + 0x64;
  expectUnsupported(patched(image, (_, v) => v.setUint32(incompatAt, v.getUint32(incompatAt, true) | 0x800000, true)), /unknown incompat/);
  expectUnsupported(patched(image, (_, v) => v.setUint32(roCompatAt, v.getUint32(roCompatAt, true) | 0x100000, true)), /unknown ro_compat/);
  // Known but refused: needs_recovery (journal not replayed), compression, bigalloc.
  expectUnsupported(patched(image, (_, v) => v.setUint32(incompatAt, v.getUint32(incompatAt, true) | 0x4, true)), /needs recovery/);
  expectUnsupported(patched(image, (_, v) => v.setUint32(incompatAt, v.getUint32(incompatAt, true) | 0x1, true)), /compression/);
  // Not cleanly unmounted, or errors recorded.
  expectUnsupported(patched(image, (_, v) => v.setUint16(superblockAt + 0x3a, 0, true)), /not cleanly unmounted/);
  expectUnsupported(patched(image, (_, v) => v.setUint16(superblockAt + 0x3a, 3, true)), /recorded errors/);
  // Without flex_bg a group's bitmap must mark the group's own inode table (1 KiB blocks: descriptors at block 2).
  const view = new DataView(readFileSync(image).buffer);
  const bitmapBlock = view.getUint32(2 * 1024, true);
  const inodeTableBit = view.getUint32(2 * 1024 + 8, true) - 1; // group 0 starts at block 1
  expectUnsupported(
    patched(image, (b) => flip(b, bitmapBlock * 1024 + (inodeTableBit >>> 3), 1 << (inodeTableBit & 7))),
    /does not mark the group's own metadata/,
  );
}, timeoutMs);

test("checksum damage is refused: superblock, group descriptor (crc32c and crc16), block bitmap", async () => {
  const image = await extImage("ext4", ext4Opts);
  // Any superblock change without a new checksum (here: the volume name).
  expectUnsupported(patched(image, (b) => flip(b, superblockAt + 0x78, 0x20)), /superblock checksum/);
  // Group descriptor 1 (1 KiB blocks: the descriptor table starts at block 2, 64-byte descriptors).
  const descAt = 2 * 1024 + 64;
  expectUnsupported(patched(image, (b) => flip(b, descAt + 0x0c, 0x01)), /group 1 descriptor checksum/);
  // One bit in group 0's block bitmap.
  const bitmapBlock = new DataView(readFileSync(image).buffer).getUint32(2 * 1024, true);
  expectUnsupported(patched(image, (b) => flip(b, bitmapBlock * 1024 + 1000, 0x10)), /group 0 block bitmap checksum/);
  // uninit_bg's crc16 (2 KiB blocks: descriptors at block 1).
  const crc16Image = await extImage("ext4", crc16Opts);
  expectUnsupported(patched(crc16Image, (b) => flip(b, 2048 + 2 * 64 + 0x0c, 0x01)), /group 2 descriptor checksum/);
}, timeoutMs);

test("bigalloc, a journal device and an external journal are refused", async () => {
  const bigalloc = await cachedFixture("ext-bigalloc-v1.img", async (tmp) => {
    await $`truncate -s 64M ${tmp}`;
    await $`mke2fs -q -F -t ext4 -O bigalloc -C 16384 ${tmp}`.quiet();
  });
  expectUnsupported(new Uint8Array(readFileSync(bigalloc)), /bigalloc/);

  const journalDev = await cachedFixture("ext-journal-dev-v1.img", async (tmp) => {
    await $`truncate -s 16M ${tmp}`;
    await $`mke2fs -q -F -O journal_dev -b 4096 ${tmp}`.quiet();
  });
  expectUnsupported(new Uint8Array(readFileSync(journalDev)), /external journal device/);

  // mke2fs only attaches an external journal that is a block device.
  const external = await cachedFixture("ext-external-journal-v1.img", async (tmp) => {
    await $`truncate -s 64M ${tmp}`;
    const journal = `${tmp}.journal`;
    await $`cp ${journalDev} ${journal}`;
    try {
      await withLoop(journal, (dev) => $`mke2fs -q -F -t ext4 -b 4096 -J device=${dev} ${tmp}`.quiet());
    } finally {
      rmSync(journal, { force: true });
    }
  });
  expectUnsupported(new Uint8Array(readFileSync(external)), /journal is on an external device/);
}, timeoutMs);

test("detect rejects images without the ext magic", async () => {
  expect(extParser.detect(memoryReader(new Uint8Array(64 * 1024)))).toBe(false);
  expect(extParser.detect(memoryReader(new Uint8Array(1500)))).toBe(false);
  const bytes = patched(await extImage("ext2", ext2Opts), (_, v) => v.setUint16(superblockAt + 0x38, 0xef54, true));
  expect(extParser.detect(memoryReader(bytes))).toBe(false);
});
