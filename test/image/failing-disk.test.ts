// Failing disks, for real: a loop device over a sparse file on a tmpfs too small to hold it fails
// its writes with EIO (at write or at fdatasync); a file on that tmpfs fails with ENOSPC; a
// read-only loop device refuses writing. Under `restore` and under `load` (multicast between
// network namespaces) each ends with exit 6 and a message naming the device, the cause and how
// much was written; no stack trace, and no partial file left behind when discus created the file.
import { beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { exitCodeByKind } from "../../src/util/errors.ts";
import { destroyStaleLabs, withLab } from "../../scripts/lib/netlab.ts";
import { runClient, startServer } from "../../scripts/lib/mcast.ts";
import { extImage } from "../fixtures/ext.ts";
import { discus, discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";

const MiB = 1 << 20;
/** Small enough that the ~30 MiB of data of the 64 MiB image cannot fit. */
const TMPFS_MIB = 8;
const IMAGE_MIB = 64;
const CONTENT_MIB = 30;
const TEST_TIMEOUT_MS = 240_000;
const io = exitCodeByKind.io;
/** What every failure message must not contain: a stack or the fallback for bugs. */
const NO_STACK = /internal error|\n\s+at /;
/** "… 12.0 MiB from 12 of 31 chunks had been written" or "all 31 chunks (30.0 MiB) had been written to its cache" */
const HOW_MUCH = /(\d+(\.\d+)? (B|KiB|MiB) from \d+ of \d+ chunks had been written|all \d+ chunks \(\d+\.\d MiB\) had been written to its cache)/;

/** Mounts a tmpfs of `mib` MiB, runs fn in it, and always unmounts. */
async function withTmpfs<T>(mib: number, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = (await $`mktemp -d /tmp/discus-tmpfs-XXXXXX`.text()).trim();
  await $`mount -t tmpfs -o size=${mib}m tmpfs ${dir}`;
  try {
    return await fn(dir);
  } finally {
    await $`umount ${dir}`.quiet().nothrow();
    await $`rmdir ${dir}`.quiet().nothrow();
  }
}

/** Attaches `file` to a loop device (read-only with `readOnly`), runs fn, and always detaches. */
async function withLoopDevice<T>(file: string, readOnly: boolean, fn: (dev: string) => Promise<T>): Promise<T> {
  const ro = readOnly ? ["--read-only"] : [];
  const dev = (await $`losetup --find --show ${ro} ${file}`.text()).trim();
  try {
    return await fn(dev);
  } finally {
    await $`losetup -d ${dev}`.quiet().nothrow();
  }
}

/** A loop device over a sparse file bigger than the tiny tmpfs it lives on: a disk that fails mid-write. */
async function withFailingDisk<T>(fn: (dev: string) => Promise<T>): Promise<T> {
  return withTmpfs(TMPFS_MIB, async (dir) => {
    const backing = join(dir, "backing.img");
    await $`truncate -s ${IMAGE_MIB}M ${backing}`;
    return withLoopDevice(backing, false, fn);
  });
}

function expectIoFailure(r: { code?: number; exitCode?: number; stderr: string }, thing: string, cause: RegExp): void {
  expect({ code: r.code ?? r.exitCode, stack: NO_STACK.test(r.stderr) }).toEqual({ code: io, stack: false });
  expect(r.stderr).toContain(`discus: ${thing}: `);
  expect(r.stderr).toMatch(cause);
  // How far it got is told once, by the layer that knew.
  expect((r.stderr.match(/had been written/g) ?? []).length).toBeLessThanOrEqual(1);
}

describe("failing disks", () => {
  let dir = "";
  let image = "";
  beforeAll(async () => {
    await destroyStaleLabs();
    dir = await tmpDir();
    const source = await extImage("ext4", { imageMiB: IMAGE_MIB, contentMiB: CONTENT_MIB, label: "failing" });
    image = join(dir, "disk.dsc");
    await discusOk(["create", "--quiet", source, image]);
    // The set-up is only a failing disk if the data cannot fit in the tmpfs.
    const info = JSON.parse(await discusOk(["info", "--json", image])) as { dataBytes: number };
    expect(info.dataBytes).toBeGreaterThan(2 * TMPFS_MIB * MiB);
  }, FIXTURE_TIMEOUT_MS);

  test("restore onto a disk that fails mid-write (EIO): exit 6 naming the device, the cause and how much was written", async () => {
    await withFailingDisk(async (dev) => {
      const r = await discus(["restore", "--quiet", image, dev]);
      expectIoFailure(r, dev, /input\/output error.* \(EIO\)/);
      expect(r.stderr).toMatch(HOW_MUCH);
    });
  }, TEST_TIMEOUT_MS);

  test("restore into a new file on a full filesystem (ENOSPC): exit 6, and the partial file is removed", async () => {
    await withTmpfs(TMPFS_MIB, async (fs) => {
      const target = join(fs, "new.img");
      const r = await discus(["restore", "--quiet", image, target]);
      expectIoFailure(r, target, /writing .* at byte \d+ failed: no space left on the device \(ENOSPC\)/);
      expect(r.stderr).toMatch(HOW_MUCH);
      expect(existsSync(target)).toBe(false);
    });
  }, TEST_TIMEOUT_MS);

  test("restore into an existing file on a full filesystem (ENOSPC): exit 6, and the file is kept", async () => {
    await withTmpfs(TMPFS_MIB, async (fs) => {
      const target = join(fs, "existing.img");
      await $`truncate -s ${IMAGE_MIB}M ${target}`;
      const r = await discus(["restore", "--quiet", image, target]);
      expectIoFailure(r, target, /no space left on the device \(ENOSPC\)/);
      expect(statSync(target).size).toBe(IMAGE_MIB * MiB);
    });
  }, TEST_TIMEOUT_MS);

  test("create onto a full filesystem (ENOSPC): exit 6 naming the image, and no partial image is left", async () => {
    const source = await extImage("ext4", { imageMiB: IMAGE_MIB, contentMiB: CONTENT_MIB, label: "failing" });
    await withTmpfs(TMPFS_MIB, async (fs) => {
      const out = join(fs, "disk.dsc");
      const r = await discus(["create", "--quiet", source, out]);
      expectIoFailure(r, `${out}.partial`, /no space left on the device \(ENOSPC\); \d+ chunks had been written; the partial image was removed/);
      expect(existsSync(out) || existsSync(`${out}.partial`)).toBe(false);
    });
  }, TEST_TIMEOUT_MS);

  test("restore onto a read-only disk: exit 6 naming the device, nothing written", async () => {
    const backing = join(dir, "readonly.img");
    await $`truncate -s ${IMAGE_MIB}M ${backing}`;
    const before = await sha256File(backing);
    await withLoopDevice(backing, true, async (dev) => {
      const r = await discus(["restore", "--quiet", image, dev]);
      expectIoFailure(r, dev, /is a read-only device \(EROFS\); nothing was written/);
    });
    expect(await sha256File(backing)).toBe(before);
  }, TEST_TIMEOUT_MS);

  test("a directory as image or as destination, and a missing directory: exit 6 at once", async () => {
    const folder = join(dir, "folder");
    mkdirSync(folder, { recursive: true });
    expectIoFailure(await discus(["restore", "--quiet", folder, join(dir, "x.img")]), folder, /is a directory \(EISDIR\)/);
    expectIoFailure(await discus(["info", folder]), folder, /is a directory \(EISDIR\)/);
    // The destination of create is checked before the capture, and nothing is left behind.
    const source = await extImage("ext4", { imageMiB: IMAGE_MIB, contentMiB: CONTENT_MIB, label: "failing" });
    const made = await discus(["create", "--quiet", "--force", source, folder]);
    expectIoFailure(made, folder, /is a directory \(EISDIR\)/);
    expect(existsSync(`${folder}.partial`)).toBe(false);
    const missing = join(dir, "no-such-dir");
    expectIoFailure(await discus(["create", "--quiet", source, join(missing, "x.dsc")]), join(missing, "x.dsc.partial"), /no such file or directory \(ENOENT\)/);
    expectIoFailure(await discus(["restore", "--quiet", image, join(missing, "x.img")]), join(missing, "x.img"), /no such file or directory \(ENOENT\)/);
  }, TEST_TIMEOUT_MS);

  test("a new file larger than its filesystem allows (EFBIG): exit 6, and no file is left", async () => {
    // A 20 GiB disk with one small partition: the image is small, the disk beyond the ~16 GiB
    // file limit of ext2 with 1 KiB blocks.
    const big = join(dir, "big.img");
    await $`truncate -s 20G ${big}`;
    await $`echo 'start=2048, size=2048, type=83' | sfdisk -q ${big}`.quiet();
    const bigImage = join(dir, "big.dsc");
    await discusOk(["create", "--quiet", big, bigImage]);
    const small = join(dir, "ext2.img");
    await $`truncate -s 64M ${small} && mke2fs -q -F -t ext2 -b 1024 ${small}`.quiet();
    await withLoopDevice(small, false, async (dev) => {
      const mnt = join(dir, "ext2");
      mkdirSync(mnt, { recursive: true });
      await $`mount -t ext2 ${dev} ${mnt}`;
      try {
        const target = join(mnt, "disk.img");
        const r = await discus(["restore", "--quiet", bigImage, target]);
        expectIoFailure(r, target, /sizing the new file to 20\.0 GiB failed: the file would be larger than its filesystem allows \(EFBIG\)/);
        expect(existsSync(target)).toBe(false);
      } finally {
        await $`umount ${mnt}`.quiet().nothrow();
      }
    });
  }, TEST_TIMEOUT_MS);

  test("load over multicast onto a failing disk (EIO) and into a file on a full filesystem (ENOSPC): exit 6 each", async () => {
    await withFailingDisk((dev) =>
      withTmpfs(TMPFS_MIB, (fs) =>
        withLab({ clients: 2 }, async (lab) => {
          const group = lab.group(0);
          const server = startServer(lab, image, group);
          try {
            const file = join(fs, "new.img");
            const [onDisk, onFile] = await Promise.all([
              runClient(lab, lab.clients[0]!, group, dev, ["--give-up", "30s"]),
              runClient(lab, lab.clients[1]!, group, file, ["--give-up", "30s"]),
            ]);
            expectIoFailure(onDisk, dev, /input\/output error.* \(EIO\)/);
            expect(onDisk.stderr).toMatch(HOW_MUCH);
            expectIoFailure(onFile, file, /no space left on the device \(ENOSPC\)/);
            expect(onFile.stderr).toMatch(HOW_MUCH);
            expect(existsSync(file)).toBe(false);
          } finally {
            await server.stop();
          }
        }),
      ),
    );
  }, TEST_TIMEOUT_MS);
});
