// Applies one chunk to the target: verify, decompress, write its regions, treat its free ranges.
// Runs inside a worker thread; the target's file descriptor is shared by the whole process.
import { writeFully } from "../util/io.ts";
import { chunkFreeRanges, chunkPayload, ChunkFormatError, decodeChunkHeader, type ChunkHeader } from "../image/chunk.ts";
import { decompressPayload, PayloadError } from "../image/codec.ts";
import { discardRange, punchHole, zeroOutRange } from "../device/blockdev.ts";
import { equalBytes, sha256 } from "../util/bytes.ts";
import { chunkDigest, rawDigest, type Manifest } from "../image/manifest.ts";
import { DiscusError } from "../util/errors.ts";
import { checkChunkAgainstManifest } from "../image/tiling.ts";
import { assert } from "../util/assert.ts";
import { MAX_CHUNK_RAW_BYTES } from "../image/constants.ts";

export type FreeMode = "skip" | "zero" | "discard";

export interface ApplyJob {
  kind: "apply";
  container: Uint8Array;
  chunkIndex: number;
  chunkBytes: number;
  /** What every chunk must agree on with its manifest (image/tiling.ts). */
  image: Pick<Manifest, "imageId" | "sectorBytes" | "sourceBytes" | "codec">;
  chunkSha256: Uint8Array;
  rawSha256: Uint8Array;
  fd: number;
  targetIsBlockDevice: boolean;
  freeMode: FreeMode;
  /** Where the image's sector 0 goes on the target, in bytes (0 for a whole disk). */
  targetOffsetBytes: number;
  /** For messages only. */
  imageName: string;
  /** Verify and decompress only; write nothing (`discus verify`). */
  dryRun: boolean;
  /**
   * Hand the container back with the reply, and report a damaged chunk as a rejection rather
   * than an error (`discus load` reuses its buffers and fetches a rejected chunk again).
   */
  returnContainer: boolean;
}

/** What checking one chunk needs: the container and what its manifest says of it. */
export type ChunkCheck = Pick<ApplyJob, "container" | "chunkIndex" | "chunkBytes" | "image" | "chunkSha256" | "rawSha256" | "imageName">;

export function chunkCheckFor(m: Manifest, index: number, container: Uint8Array, imageName: string): ChunkCheck {
  return {
    container,
    chunkIndex: index,
    chunkBytes: m.chunkBytes,
    image: { imageId: m.imageId, sectorBytes: m.sectorBytes, sourceBytes: m.sourceBytes, codec: m.codec },
    chunkSha256: chunkDigest(m, index).slice(),
    rawSha256: rawDigest(m, index).slice(),
    imageName,
  };
}

/** The job that applies (or, with dryRun, only checks) chunk `index` of an image. */
export function applyJobFor(
  m: Manifest,
  index: number,
  container: Uint8Array,
  imageName: string,
  target: { fd: number; isBlockDevice: boolean; freeMode: FreeMode; dryRun: boolean },
): ApplyJob {
  return {
    kind: "apply",
    ...chunkCheckFor(m, index, container, imageName),
    fd: target.fd,
    targetIsBlockDevice: target.isBlockDevice,
    freeMode: target.freeMode,
    targetOffsetBytes: 0,
    dryRun: target.dryRun,
    returnContainer: false,
  };
}

/** The reply to a job with returnContainer: the result, or why the chunk was rejected. */
export interface ApplyReturn {
  result: ApplyResult | null;
  rejected: string | null;
  container: Uint8Array;
}

export interface ApplyResult {
  writtenBytes: number;
  freeBytes: number;
  zeroedBytes: number;
  discardedBytes: number;
}

/** Largest zero-filled write when zeroing by hand. */
const ZERO_WRITE_BYTES = 1 << 20;
let zeros: Uint8Array | null = null;

/**
 * A chunk's header and uncompressed data, trusted only once both digests match the manifest and
 * the header agrees with it; anything else is an input DiscusError naming the chunk.
 */
export function checkedChunk(c: ChunkCheck, scratch?: Uint8Array): { header: ChunkHeader; raw: Uint8Array } {
  const corrupt = (why: string) =>
    new DiscusError("input", `${c.imageName}, chunk ${c.chunkIndex}`, why, "The image is damaged: copy it again from its source, or run `discus verify` to list every bad chunk");
  // Nothing reaches the disk before the container matches the manifest's digest.
  if (!equalBytes(sha256(c.container), c.chunkSha256)) throw corrupt("chunk digest does not match the manifest");
  let raw: Uint8Array;
  let header: ChunkHeader;
  try {
    header = decodeChunkHeader(c.container, c.chunkBytes);
    checkChunkAgainstManifest(header, c.chunkIndex, c.image);
    raw = decompressPayload(header.codec, chunkPayload(c.container, header), header.rawBytes, scratch);
  } catch (e) {
    if (e instanceof ChunkFormatError || e instanceof PayloadError) throw corrupt(e.message);
    throw e;
  }
  if (!equalBytes(sha256(raw), c.rawSha256)) throw corrupt("uncompressed data digest does not match the manifest");
  return { header, raw };
}

/**
 * This thread's buffer for a chunk's data while it is checked and written: the most a chunk may
 * hold, touched only as far as chunks reach. Nothing keeps a view of it past applyChunk.
 */
let rawScratch: Uint8Array | null = null;

export function applyChunk(job: ApplyJob): ApplyResult {
  const where = `${job.imageName}, chunk ${job.chunkIndex}`;
  rawScratch ??= new Uint8Array(MAX_CHUNK_RAW_BYTES);
  const { header, raw } = checkedChunk(job, rawScratch);
  const sb = header.sectorBytes;
  if (job.dryRun) return { writtenBytes: 0, freeBytes: 0, zeroedBytes: 0, discardedBytes: 0 };
  let rawOffset = 0;
  let writtenBytes = 0;
  for (const r of header.regions) {
    const bytes = r.length * sb;
    assertInsideSource(r.start * sb, bytes, job.image.sourceBytes, where);
    writeFully(job.fd, raw.subarray(rawOffset, rawOffset + bytes), job.targetOffsetBytes + r.start * sb);
    rawOffset += bytes;
    writtenBytes += bytes;
  }
  const result: ApplyResult = { writtenBytes, freeBytes: 0, zeroedBytes: 0, discardedBytes: 0 };
  for (const f of chunkFreeRanges(header)) {
    const start = job.targetOffsetBytes + f.start * sb;
    const length = f.length * sb;
    assertInsideSource(f.start * sb, length, job.image.sourceBytes, where);
    result.freeBytes += length;
    if (job.freeMode === "skip") continue;
    if (job.freeMode === "discard" && job.targetIsBlockDevice && discardRange(job.fd, start, length)) {
      result.discardedBytes += length;
      continue;
    }
    zeroRange(job.fd, start, length, job.targetIsBlockDevice);
    result.zeroedBytes += length;
  }
  return result;
}

/**
 * The last guard before a positional write, zero or discard: the range, in image bytes, lies inside
 * [0, sourceBytes). Headers that break this are refused earlier (image/tiling.ts); reaching this
 * would be a bug that writes past the image's end on the target.
 */
export function assertInsideSource(startBytes: number, lengthBytes: number, sourceBytes: number, where: string): void {
  assert(
    Number.isSafeInteger(startBytes) && startBytes >= 0 && lengthBytes > 0 && startBytes + lengthBytes <= sourceBytes,
    `${where}: bytes ${startBytes}..${startBytes + lengthBytes} lie outside the image's source [0, ${sourceBytes})`,
  );
}

/** Makes a range read as zeros by the cheapest means the target offers. */
function zeroRange(fd: number, start: number, length: number, isBlockDevice: boolean): void {
  if (isBlockDevice ? zeroOutRange(fd, start, length) : punchHole(fd, start, length)) return;
  zeros ??= new Uint8Array(ZERO_WRITE_BYTES);
  for (let off = 0; off < length; off += ZERO_WRITE_BYTES) {
    const n = Math.min(ZERO_WRITE_BYTES, length - off);
    writeFully(fd, zeros.subarray(0, n), start + off);
  }
}
