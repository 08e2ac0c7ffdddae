// ext2/3/4 whose maps the filesystem itself would doubt: damaged copies of real mke2fs images must
// be captured raw (restored byte for byte), while clean images from mkfs.ext2/3/4 stay parsed.
import { $ } from "bun";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { extImage, type ExtImageOptions } from "../fixtures/ext.ts";
import { withLoop, withMount } from "../fixtures/common.ts";
import { FIXTURE_TIMEOUT_MS } from "../helpers.ts";
import { bytesOf, copyOf, expectParsed, expectRawBytes, expectRawRoundTrip, scratchDir, viewOf } from "./doubt-helpers.ts";

// The parser tests' ext2 fixture: 1 KiB blocks, 16 groups of 8192 blocks, no checksums at all.
const ext2Opts: ExtImageOptions = { imageMiB: 128, contentMiB: 48 };
const blockBytes = 1024;
const blocksPerGroup = 8192;
const descTableAt = 2 * blockBytes; // 1 KiB blocks: superblock in block 1, descriptors from block 2
const descBytes = 32;
const superblockAt = 1024;

let dir: string;
let cleanup: () => Promise<void>;
let ext2: string;
beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir());
  ext2 = await extImage("ext2", ext2Opts);
}, FIXTURE_TIMEOUT_MS);
afterAll(() => cleanup());

function descriptorField(bytes: Uint8Array, group: number, offset: number): number {
  return viewOf(bytes).getUint32(descTableAt + group * descBytes + offset, true);
}

/** Clears `count` bits of group `group`'s block bitmap, starting just past its inode table. */
function clearBitmapBits(bytes: Uint8Array, group: number, count: number): void {
  const bitmapBlock = descriptorField(bytes, group, 0x00);
  const inodeTable = descriptorField(bytes, group, 0x08);
  const groupStart = 1 + group * blocksPerGroup;
  const firstBit = inodeTable + 512 - groupStart + 8; // past the 512-block inode table, byte aligned below
  const firstByte = Math.ceil(firstBit / 8);
  for (let i = 0; i < count / 8; i++) {
    expect(bytes[bitmapBlock * blockBytes + firstByte + i]).toBe(0xff); // really in use before
    bytes[bitmapBlock * blockBytes + firstByte + i] = 0;
  }
}

test("the probe's case: ext2 (no metadata_csum) with in-use blocks cleared from group 3's bitmap is captured raw", async () => {
  expectParsed(ext2, "ext2");
  const bytes = bytesOf(ext2);
  clearBitmapBits(bytes, 3, 400);
  const damaged = join(dir, "ext2-bitmap.img");
  await Bun.write(damaged, bytes);
  // e2fsck sees exactly what the probe reported.
  const fsck = await $`e2fsck -fn ${damaged}`.quiet().nothrow();
  expect(fsck.exitCode).toBe(4);
  expect(fsck.stdout.toString()).toContain("Block bitmap differences");
  expect(fsck.stdout.toString()).toContain("Free blocks count wrong for group #3");
  await expectRawRoundTrip(damaged, dir, /group 3 descriptor counts 0 free of 8192 blocks but its block bitmap marks 7792 in use/);
}, FIXTURE_TIMEOUT_MS);

test("ext2: damaged superblock, descriptors, bitmaps and size fields are captured raw", async () => {
  const pristine = bytesOf(ext2);
  const cases: Array<{ name: string; why: RegExp; damage: (b: Uint8Array, v: DataView) => void }> = [
    // Allocation map: a used block marked free, and a free count that lies.
    { name: "bitmap-one-bit", why: /group 5 .* marks/, damage: (b) => clearBitmapBits(b, 5, 8) },
    {
      name: "group-free-count",
      why: /group 7 descriptor counts/,
      damage: (_, v) => v.setUint16(descTableAt + 7 * descBytes + 0x0c, v.getUint16(descTableAt + 7 * descBytes + 0x0c, true) + 1, true),
    },
    // Descriptor: the block bitmap moved onto a data block of its own group.
    {
      name: "bitmap-pointer",
      why: /group 2 /,
      damage: (_, v) => v.setUint32(descTableAt + 2 * descBytes, v.getUint32(descTableAt + 2 * descBytes, true) + 3000, true),
    },
    // Size fields: the block count shrunk by a third (fewer groups) and by a few blocks (same groups).
    {
      name: "blocks-count-third",
      why: /inode count/,
      damage: (_, v) => v.setUint32(superblockAt + 0x04, Math.floor((v.getUint32(superblockAt + 0x04, true) * 2) / 3), true),
    },
    {
      name: "blocks-count-tail",
      why: /group 15 descriptor counts/,
      damage: (_, v) => v.setUint32(superblockAt + 0x04, v.getUint32(superblockAt + 0x04, true) - 100, true),
    },
    { name: "blocks-per-group", why: /ext:/, damage: (_, v) => v.setUint32(superblockAt + 0x20, 4096, true) },
    { name: "block-size", why: /ext:/, damage: (_, v) => v.setUint32(superblockAt + 0x18, 1, true) },
  ];
  for (const c of cases) {
    const bytes = pristine.slice();
    c.damage(bytes, viewOf(bytes));
    expectRawBytes(dir, `ext2-${c.name}.img`, bytes, c.why);
  }
}, FIXTURE_TIMEOUT_MS);

test("clean images from mkfs.ext2/3/4 with their default features, written through a mount, stay parsed", async () => {
  for (const kind of ["ext2", "ext3", "ext4"] as const) {
    const image = join(dir, `clean-${kind}.img`);
    await $`truncate -s 600M ${image} && mkfs.${kind} -q -F ${image}`.quiet();
    // Mounted, filled, partly deleted and cleanly unmounted, so the kernel has rewritten the counts.
    await withLoop(image, (dev) =>
      withMount(dev, "ext4", async (mnt) => {
        const fill = `cp -r /usr/share/doc "$1/doc" && head -c 20000000 /dev/urandom > "$1/big" && rm -rf "$1"/doc/[a-l]* && sync`;
        await $`sh -c ${fill} fill ${mnt}`.quiet();
      }),
    );
    expect((await $`e2fsck -fn ${image}`.quiet().nothrow()).exitCode).toBe(0);
    expectParsed(image, kind);
    await $`rm -f ${image}`.quiet();
  }
  // A stale superblock free total is what e2fsck quietly recomputes: not a reason for doubt.
  const stale = await copyOf(ext2, dir, "ext2-stale-total.img");
  const bytes = bytesOf(stale);
  viewOf(bytes).setUint32(superblockAt + 0x0c, viewOf(bytes).getUint32(superblockAt + 0x0c, true) - 100, true);
  await Bun.write(stale, bytes);
  expect((await $`e2fsck -fn ${stale}`.quiet().nothrow()).exitCode).toBe(0);
  expectParsed(stale, "ext2");
}, FIXTURE_TIMEOUT_MS);
