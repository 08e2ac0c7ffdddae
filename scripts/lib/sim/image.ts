// The simulator's image: a synthetic disk made once from a seed (incompressible runs, repetitive
// text-like runs and zero runs, so zstd has real work and the image is smaller than the disk) and
// captured by the real `discus create`. Kept in .cache/sim, keyed by its parameters.
import { $ } from "bun";
import { existsSync, mkdirSync, openSync, writeSync, closeSync, renameSync, rmSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { mulberry32 } from "../../../src/util/shuffle.ts";
import { assert } from "../../../src/util/assert.ts";
import { cli } from "../../../test/helpers.ts";
import { openImage, type OpenImage } from "../../../src/image/reader.ts";
import { decodeChunkHeader, chunkFreeRanges } from "../../../src/image/chunk.ts";
import type { SimChunks } from "./sink.ts";
import { repoRoot } from "../../../test/fixtures/common.ts";

export const simDir = join(repoRoot, ".cache", "sim");
/** Disk content is laid out in runs of this size, each random, text-like or zero. */
const RUN_BYTES = 64 << 10;
const RANDOM_FRACTION = 0.55;
const ZERO_FRACTION = 0.2;
assert(RANDOM_FRACTION + ZERO_FRACTION < 1, "some runs are text-like");
const WORDS = ["block", "chunk", "multicast", "frisbee", "sector", "inode", "extent", "journal", "bitmap", "superblock", "\n", " ", "0x1f", "/usr/lib"];

export interface SimImageSpec {
  diskMiB: number;
  chunkKiB: number;
  seed: number;
}

export interface SimImage {
  spec: SimImageSpec;
  diskPath: string;
  imagePath: string;
}

function fillRun(buf: Uint8Array, next: () => number): void {
  const r = next();
  if (r < ZERO_FRACTION) return buf.fill(0) as unknown as void;
  if (r < ZERO_FRACTION + RANDOM_FRACTION) {
    for (let i = 0; i < buf.length; i += 4) {
      const v = Math.floor(next() * 4294967296);
      buf[i] = v & 255;
      buf[i + 1] = (v >>> 8) & 255;
      buf[i + 2] = (v >>> 16) & 255;
      buf[i + 3] = v >>> 24;
    }
    return;
  }
  let at = 0;
  const enc = new TextEncoder();
  while (at < buf.length) {
    const w = enc.encode(WORDS[Math.floor(next() * WORDS.length)]!);
    buf.set(w.subarray(0, buf.length - at), at);
    at += w.length;
  }
}

function writeDisk(path: string, spec: SimImageSpec): void {
  const next = mulberry32(spec.seed);
  const fd = openSync(`${path}.tmp`, "w");
  const buf = new Uint8Array(RUN_BYTES);
  try {
    for (let off = 0; off < spec.diskMiB << 20; off += RUN_BYTES) {
      fillRun(buf, next);
      writeSync(fd, buf, 0, buf.length, off);
    }
  } finally {
    closeSync(fd);
  }
  renameSync(`${path}.tmp`, path);
}

/** Makes (or reuses) the disk and its image for `spec`. */
export async function simImage(spec: SimImageSpec): Promise<SimImage> {
  mkdirSync(simDir, { recursive: true });
  const base = join(simDir, `disk-${spec.diskMiB}M-${spec.chunkKiB}K-s${spec.seed}`);
  const diskPath = `${base}.img`;
  const imagePath = `${base}.dsc`;
  if (!existsSync(diskPath)) writeDisk(diskPath, spec);
  if (!existsSync(imagePath)) {
    rmSync(`${imagePath}.tmp`, { force: true });
    await $`bun ${cli} create --quiet --raw --chunk-size ${spec.chunkKiB}K ${diskPath} ${imagePath}.tmp`.quiet();
    renameSync(`${imagePath}.tmp`, imagePath);
  }
  return { spec, diskPath, imagePath };
}

/** Loads the image's data chunks into memory, with what each writes (from its real header). */
export function loadChunks(imagePath: string): { image: OpenImage; chunks: SimChunks; allChunks: Uint8Array[] } {
  const image = openImage(imagePath);
  const t = image.trailer;
  const all = readFileSync(imagePath);
  const allChunks = Array.from({ length: t.dataChunkCount + t.manifestPartCount }, (_, i) => new Uint8Array(all.buffer, all.byteOffset + i * t.chunkBytes, t.chunkBytes));
  const containers = allChunks.slice(0, t.dataChunkCount);
  const chunks: SimChunks = { containers, rawBytes: [], writtenBytes: [], freeBytes: [] };
  for (const c of containers) {
    const h = decodeChunkHeader(c, t.chunkBytes);
    const sb = h.sectorBytes;
    chunks.rawBytes.push(h.rawBytes);
    chunks.writtenBytes.push(h.regions.reduce((a, r) => a + r.length * sb, 0));
    chunks.freeBytes.push(chunkFreeRanges(h).reduce((a, r) => a + r.length * sb, 0));
  }
  return { image, chunks, allChunks };
}
