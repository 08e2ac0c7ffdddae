// Reads every chunk of an open image in order, before anything is written: each container's
// digest against the manifest (when asked), each header decoded, and the headers' tiling
// (image/tiling.ts). A restore refuses on the first problem; `verify` lists them.
import { equalBytes, sha256 } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";
import { readFully } from "../util/io.ts";
import { CHUNK_FIXED_HEADER_BYTES } from "./constants.ts";
import { ChunkFormatError, decodeChunkHeader, peekChunkHeaderBytes } from "./chunk.ts";
import { chunkDigest } from "./manifest.ts";
import type { OpenImage } from "./reader.ts";
import { TilingCheck } from "./tiling.ts";

export interface ChunkProblem {
  /** The chunk at fault, or null for the image as a whole (its chunks do not add up). */
  index: number | null;
  why: string;
}

export interface ScanOptions {
  /** Hash whole containers too (restore); false reads headers only (verify hashes in workers). */
  digests: boolean;
  /** Stop after this many problems: past a few, the image is beyond repair anyway. */
  maxProblems: number;
}

/** Every problem found, in chunk order; empty when the image is sound as far as a scan can tell. */
export function scanChunks(image: OpenImage, opts: ScanOptions): ChunkProblem[] {
  const m = image.manifest;
  const problems: ChunkProblem[] = [];
  const tiling = new TilingCheck(m);
  const container = new Uint8Array(opts.digests ? m.chunkBytes : 0);
  // Once one header is bad the tiling of the ones after it cannot be judged: only digests are.
  let tilingBroken = false;
  for (let i = 0; i < m.dataChunkCount && problems.length < opts.maxProblems; i++) {
    const bytes = opts.digests ? readChunkInto(image, i, container) : readHeader(image, i);
    if (opts.digests && !equalBytes(sha256(bytes), chunkDigest(m, i))) {
      problems.push({ index: i, why: "chunk digest does not match the manifest" });
      tilingBroken = true;
      continue;
    }
    if (tilingBroken) continue;
    try {
      tiling.add(i, decodeChunkHeader(bytes, m.chunkBytes));
    } catch (e) {
      if (!(e instanceof ChunkFormatError)) throw e;
      problems.push({ index: i, why: e.message });
      tilingBroken = true;
    }
  }
  if (!tilingBroken && problems.length === 0) {
    try {
      tiling.finish();
    } catch (e) {
      if (!(e instanceof ChunkFormatError)) throw e;
      problems.push({ index: null, why: e.message });
    }
  }
  return problems;
}

/**
 * Throws an input DiscusError for the first problem a scan finds, naming the chunk (or the image
 * as a whole), with `action` as what to do; returns when there is none.
 */
export function refuseDamagedImage(image: OpenImage, digests: boolean, action: string): void {
  const [problem] = scanChunks(image, { digests, maxProblems: 1 });
  if (problem === undefined) return;
  const where = problem.index === null ? image.path : `${image.path}, chunk ${problem.index}`;
  throw new DiscusError("input", where, problem.why, action);
}

function readChunkInto(image: OpenImage, index: number, into: Uint8Array): Uint8Array {
  readFully(image.fd, into, index * image.trailer.chunkBytes);
  return into;
}

/** The fixed header, then as many region entries as it says (bounded by the chunk size). */
function readHeader(image: OpenImage, index: number): Uint8Array {
  const at = index * image.trailer.chunkBytes;
  const fixed = new Uint8Array(CHUNK_FIXED_HEADER_BYTES);
  readFully(image.fd, fixed, at);
  const headerBytes = peekChunkHeaderBytes(fixed);
  if (headerBytes <= CHUNK_FIXED_HEADER_BYTES || headerBytes > image.trailer.chunkBytes) return fixed;
  const whole = new Uint8Array(headerBytes);
  readFully(image.fd, whole, at);
  return whole;
}
