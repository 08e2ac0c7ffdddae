// Helpers for end-to-end tests: run the real CLI, inspect disks with the real tools.
import { $ } from "bun";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decodeChunkHeader } from "../src/image/chunk.ts";
import { closeImage, openImage, readChunk, type OpenImage } from "../src/image/reader.ts";
import { readFully } from "../src/util/io.ts";
import type { Range } from "../src/util/ranges.ts";
import { repoRoot, treeDigests, withMount } from "./fixtures/common.ts";
import type { CompositePartition, FsName } from "./fixtures/composite.ts";

export const cli = join(repoRoot, "src", "cli.ts");

/** Building real filesystems with content takes a while on 2 cores; hooks get this long. */
export const FIXTURE_TIMEOUT_MS = 600_000;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `discus ARGS` as a user would, from the checkout. */
export async function discus(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  const proc = Bun.spawn(["bun", cli, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

export async function discusOk(args: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await discus(args, env);
  if (r.code !== 0) throw new Error(`discus ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Every directory tmpDir made in this process: test/preload.ts removes them once every test has run. */
const madeDirs: string[] = [];

/** Removes the directories tmpDir made (a mount a failed test left behind keeps its directory). */
export function removeTmpDirs(): void {
  for (const dir of madeDirs.splice(0)) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Busy: leave it rather than fail the run.
    }
  }
}

/**
 * A fresh directory under /tmp for one test file. Many files never removed theirs: 285 of them,
 * 66 GB, had filled the disk by the time a benchmark found it full. Now they go at the end.
 */
export async function tmpDir(): Promise<string> {
  const dir = (await $`mktemp -d /tmp/discus-test-XXXXXX`.text()).trim();
  madeDirs.push(dir);
  return dir;
}

export async function sha256File(path: string): Promise<string> {
  return (await $`sha256sum ${path}`.text()).split(" ")[0]!;
}

/** Every data region the image's chunk headers list, in sectors. */
export function imageRegions(imagePath: string): { sectorBytes: number; regions: Range[] } {
  const image = openImage(imagePath);
  try {
    const regions: Range[] = [];
    for (let i = 0; i < image.manifest.dataChunkCount; i++) {
      regions.push(...decodeChunkHeader(readChunk(image, i), image.manifest.chunkBytes).regions);
    }
    return { sectorBytes: image.manifest.sectorBytes, regions };
  } finally {
    closeImage(image);
  }
}

/** Byte ranges where two files differ inside `ranges` (byte units); empty when identical there. */
export function differingRanges(a: string, b: string, ranges: readonly Range[], maxReport = 5): Range[] {
  const fa = openSync(a, "r");
  const fb = openSync(b, "r");
  const bufBytes = 4 << 20;
  const ba = new Uint8Array(bufBytes);
  const bb = new Uint8Array(bufBytes);
  const out: Range[] = [];
  try {
    for (const r of ranges) {
      for (let off = 0; off < r.length && out.length < maxReport; off += bufBytes) {
        const n = Math.min(bufBytes, r.length - off);
        readSync(fa, ba, 0, n, r.start + off);
        readSync(fb, bb, 0, n, r.start + off);
        if (!Buffer.from(ba.buffer, 0, n).equals(Buffer.from(bb.buffer, 0, n))) out.push({ start: r.start + off, length: n });
      }
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
  return out;
}

/** Attaches one partition of a disk image read-only at its offset, runs fn, detaches. */
export async function withPartition<T>(disk: string, p: CompositePartition, fn: (dev: string) => Promise<T>): Promise<T> {
  const dev = (await $`losetup --find --show --read-only --offset ${p.startBytes} --sizelimit ${p.sizeBytes} ${disk}`.text()).trim();
  try {
    return await fn(dev);
  } finally {
    await $`losetup -d ${dev}`.quiet().nothrow();
  }
}

export interface PartitionCheck {
  /** Exit code of the filesystem's own checker (0 = clean). */
  checkerCode: number;
  checkerOutput: string;
  /** What the filesystem holds: file digests, or a digest of the raw bytes. */
  content: string;
}

/** Runs the filesystem's own checker on a partition and reads all its files. */
export async function checkPartition(disk: string, p: CompositePartition): Promise<PartitionCheck> {
  return withPartition(disk, p, async (dev) => {
    const fs: FsName = p.fs;
    let checker;
    let content: string;
    switch (fs) {
      case "ext2":
      case "ext3":
      case "ext4":
        checker = await $`e2fsck -fn ${dev}`.quiet().nothrow();
        // The ext4 driver mounts ext2 and ext3 too; noload keeps it from replaying a journal on a copy.
        content = await withMount(dev, "ext4", (dir) => treeDigests(dir), "ro,noload");
        break;
      case "xfs":
        checker = await $`xfs_repair -n ${dev}`.quiet().nothrow();
        content = await withMount(dev, "xfs", (dir) => treeDigests(dir), "ro,norecovery");
        break;
      case "fat16":
      case "fat32": {
        checker = await $`fsck.fat -n ${dev}`.quiet().nothrow();
        const out = await tmpDir();
        await $`mcopy -s -n -i ${dev} ::/ ${out}/`.env({ ...process.env, MTOOLS_SKIP_CHECK: "1" }).quiet();
        content = await treeDigests(out);
        await $`rm -rf ${out}`;
        break;
      }
      case "ntfs":
        checker = await $`ntfsfix -n ${dev}`.quiet().nothrow();
        content = await withMount(dev, "ntfs-3g", (dir) => treeDigests(dir), "ro");
        break;
      case "swap":
        checker = await $`blkid -p -o export ${dev}`.quiet().nothrow();
        content = checker.stdout.toString().split("\n").filter((l) => /^(TYPE|LABEL|UUID)=/.test(l)).sort().join("\n");
        break;
      case "raw":
        checker = await $`true`.quiet();
        content = (await $`sha256sum ${dev}`.text()).split(" ")[0]!;
        break;
    }
    return { checkerCode: checker.exitCode, checkerOutput: checker.stdout.toString() + checker.stderr.toString(), content };
  });
}

/**
 * A raw-disk image for transfer tests, in `dir`: `sourceMiB` MiB where each MiB starts with
 * `randomKiB` KiB of random data and ends in zeros (compressible, but not to nothing), captured
 * with `createArgs`; and the sha256 of what a local restore writes, the reference every load is
 * held to.
 */
export async function rawImageFixture(dir: string, sourceMiB: number, randomKiB: number, createArgs: string[] = []): Promise<{ image: string; referenceSha: string }> {
  const source = new Uint8Array(sourceMiB << 20);
  for (let off = 0; off < source.length; off += 1 << 20) source.set(randomBytes(randomKiB << 10), off);
  writeFileSync(join(dir, "source.img"), source);
  const image = join(dir, "disk.dsc");
  await discusOk(["create", join(dir, "source.img"), image, "--raw", "--quiet", ...createArgs]);
  await discusOk(["restore", image, join(dir, "reference.img"), "--quiet"]);
  return { image, referenceSha: await sha256File(join(dir, "reference.img")) };
}

/** An open image's chunks read straight from its file, as an asynchronous chunk source. */
export function fileChunks(image: OpenImage): (index: number) => Promise<Uint8Array> {
  return (index) => {
    const bytes = new Uint8Array(image.trailer.chunkBytes);
    readFully(image.fd, bytes, index * image.trailer.chunkBytes);
    return Promise.resolve(bytes);
  };
}
