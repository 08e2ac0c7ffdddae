// Packs the capture stream into zstd chunks, each one frame compressed as a stream with a flush
// after every step, so later data matches earlier data anywhere in the chunk.
//
// A chunk takes full steps while the next one's estimated output fits well in the room left, then
// tail steps aimed at 60 % of the room, so a chunk ends nearly full. A step whose output does not
// fit is undone by replaying the accepted steps into a fresh encoder (a fresh zstd context gives
// the same bytes again; a reset one does not, and compresses 9 % worse in Bun), at most
// MAX_REWINDS times. Every choice depends only on the data and the compressed sizes, so the image
// is byte-identical however the work is scheduled. The next chunk starts compressing while this
// one is written, and each step's data is hashed while the following step compresses.
import { assert } from "../util/assert.ts";
import { chunkHeaderBytes } from "../image/chunk.ts";
import { closeZstdFrame, ZSTD_LAST_BLOCK } from "../image/codec.ts";
import { MAX_CHUNK_RAW_BYTES, MAX_REGIONS_PER_CHUNK } from "../image/constants.ts";
import type { PackedChunk } from "../image/writer.ts";
import type { CaptureStream } from "./stream.ts";
import type { ChunkEncoder } from "./zstd-stream.ts";

/**
 * Bytes per full step: a multiple of zstd's largest block (128 KiB), so a flush adds no block of
 * its own, and large enough that the per-step round trip to the thread pool stays small.
 */
export const STREAM_STEP_BYTES = 1 << 20;
/** Tail steps per chunk at most; each aims at most of the room left, so few bytes stay unused. */
export const MAX_TAIL_STEPS = 12;
/** A chunk with less room than this is closed. */
export const MIN_TAIL_BYTES = 256;
/** Times a chunk may be replayed after a step that did not fit. */
export const MAX_REWINDS = 2;
/** A full step is taken while its estimate is at most this share of the room left. */
const FULL_STEP_SHARE = 0.75;
/** A tail step aims at this share of the room left, so one that compresses worse still fits. */
const TAIL_AIM_SHARE = 0.6;

export interface StreamPackParams {
  chunkBytes: number;
  stepSectors: number;
}

export function defaultStreamPackParams(chunkBytes: number, sectorBytes: number): StreamPackParams {
  const stepBytes = Math.min(STREAM_STEP_BYTES, chunkBytes / 4);
  return { chunkBytes, stepSectors: Math.max(1, Math.floor(stepBytes / sectorBytes)) };
}

/** Where one chunk's data ends and its payload. */
interface Filled {
  end: number;
  payload: Uint8Array;
  rawSha256: Uint8Array;
}

export async function packStreamed(
  stream: CaptureStream,
  diskSectors: number,
  params: StreamPackParams,
  newEncoder: () => ChunkEncoder,
  emit: (chunk: PackedChunk) => Promise<void>,
): Promise<number> {
  assert(stream.streamSectors > 0, "there is data to pack");
  assert(params.stepSectors * stream.sectorBytes * 4 <= params.chunkBytes, "a step is at most a quarter of a chunk");
  let chunkIndex = 0;
  let chunkStart = 0;
  let prevDiskEnd = 0;
  let next: Promise<Filled> | null = fillChunk(stream, 0, params, newEncoder);
  while (next !== null) {
    const filled: Filled = await next;
    assert(filled.end > chunkStart, "every chunk holds at least one sector");
    // The next chunk compresses on the thread pool while this one is hashed and written.
    next = filled.end < stream.streamSectors ? fillChunk(stream, filled.end, params, newEncoder) : null;
    const chunk = packedChunk(stream, chunkIndex, chunkStart, filled, prevDiskEnd, diskSectors);
    assert(chunkHeaderBytes(chunk.regions.length) + chunk.payload.length <= params.chunkBytes, "chunk fits its container");
    await emit(chunk);
    chunkIndex++;
    prevDiskEnd = stream.diskEnd(filled.end);
    chunkStart = filled.end;
    stream.releaseBefore(chunkStart);
  }
  return chunkIndex;
}

function packedChunk(stream: CaptureStream, index: number, start: number, filled: Filled, firstSector: number, diskSectors: number): PackedChunk {
  return {
    index,
    firstSector,
    endSector: filled.end === stream.streamSectors ? diskSectors : stream.diskEnd(filled.end),
    regions: stream.diskRegions(start, filled.end),
    payload: filled.payload,
    rawBytes: (filled.end - start) * stream.sectorBytes,
    rawSha256: filled.rawSha256,
  };
}

/** Compresses one chunk from `start`, as much as fits its container. */
async function fillChunk(stream: CaptureStream, start: number, params: StreamPackParams, newEncoder: () => ChunkEncoder): Promise<Filled> {
  const limits = stepLimits(stream, start);
  const accepted: number[] = []; // end of every accepted step
  const hasher = new Bun.CryptoHasher("sha256");
  let hashedTo = start; // accepted data is hashed while the next step compresses
  let parts: Uint8Array[] = [];
  let produced = 0;
  let pos = start;
  let tailSteps = 0;
  let rewinds = 0;
  let worstPerSector = 0; // from a step that did not fit: size the next one by it
  let lastPerSector = 0; // of the last accepted step: data changes locally
  let encoder = newEncoder();
  try {
    for (;;) {
      let end = limits.clip(pos, pos + params.stepSectors);
      if (end <= pos) break;
      const room = params.chunkBytes - chunkHeaderBytes(stream.regionCount(start, end)) - ZSTD_LAST_BLOCK.length - produced;
      if (room < MIN_TAIL_BYTES) break;
      const perSector = Math.max(worstPerSector, lastPerSector, pos > start ? produced / (pos - start) : stream.sectorBytes);
      if ((end - pos) * perSector > room * FULL_STEP_SHARE) {
        if (tailSteps >= MAX_TAIL_STEPS && pos > start) break;
        tailSteps++;
        end = Math.min(end, pos + Math.floor((room * TAIL_AIM_SHARE) / perSector));
        if (end <= pos) break;
      }
      const pending = encoder.step(stream.read(pos, end));
      stream.prefetch(end, end + params.stepSectors); // read on while the step compresses
      if (hashedTo < pos) stream.forEachView(hashedTo, pos, (v) => hasher.update(v));
      hashedTo = pos;
      const out = await pending;
      if (chunkHeaderBytes(stream.regionCount(start, end)) + produced + out.length + ZSTD_LAST_BLOCK.length <= params.chunkBytes) {
        parts.push(out);
        produced += out.length;
        lastPerSector = out.length / (end - pos);
        accepted.push(end);
        pos = end;
        continue;
      }
      // It did not fit: start over without it, sized by what this step really made.
      if (rewinds >= MAX_REWINDS && pos > start) break;
      rewinds++;
      worstPerSector = Math.max(worstPerSector, out.length / (end - pos));
      encoder.dispose();
      encoder = newEncoder();
      parts = await replay(stream, encoder, start, accepted);
      assert(parts.reduce((n, p) => n + p.length, 0) === produced, "a replay gives the same bytes");
    }
  } finally {
    encoder.dispose();
  }
  if (hashedTo < pos) stream.forEachView(hashedTo, pos, (v) => hasher.update(v));
  return { end: pos, payload: closeZstdFrame(parts), rawSha256: new Uint8Array(hasher.digest()) };
}

/** Feeds the accepted steps again into a fresh encoder; zstd gives the same bytes. */
async function replay(stream: CaptureStream, encoder: ChunkEncoder, start: number, ends: readonly number[]): Promise<Uint8Array[]> {
  const parts: Uint8Array[] = [];
  let pos = start;
  for (const end of ends) {
    parts.push(await encoder.step(stream.read(pos, end)));
    pos = end;
  }
  return parts;
}

/** The end of a step: inside the raw-size bound, the stream, and the header's region bound. */
function stepLimits(stream: CaptureStream, start: number): { clip: (pos: number, end: number) => number } {
  const rawLimit = Math.min(stream.streamSectors, start + Math.floor(MAX_CHUNK_RAW_BYTES / stream.sectorBytes));
  const firstRegion = stream.regionAt(start);
  const lastRegion = firstRegion + MAX_REGIONS_PER_CHUNK - 1;
  const regionLimit = lastRegion + 1 < stream.regions.length ? stream.regionStartStream(lastRegion + 1) : stream.streamSectors;
  return { clip: (pos, end) => Math.max(pos, Math.min(end, rawLimit, regionLimit)) };
}
