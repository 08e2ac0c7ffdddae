// Packs the capture stream into fixed-size chunks, each filled with as much compressed data as fits.
//
// Determinism: the stream is cut into pieces on a fixed grid (gridSectors). A chunk starts with an
// unprimed piece, continues with grid pieces primed with up to 32 KiB of the chunk's own preceding
// data (zlib), and ends with a prefix of the next piece shrunk to fill the remaining space. Every
// choice depends only on the data, never on which worker finished first, so the image is
// byte-identical whatever the number of workers. Grid pieces are compressed ahead speculatively in
// the worker pool; a speculated piece is used only if its range and dictionary are exactly the ones
// the packer needs.
import { assert } from "../util/assert.ts";
import type { Range } from "../util/ranges.ts";
import { chunkHeaderBytes } from "../image/chunk.ts";
import { adler32, assemblePayload, framingBytes, ZLIB_WINDOW_BYTES } from "../image/codec.ts";
import { Codec, MAX_CHUNK_RAW_BYTES, MAX_REGIONS_PER_CHUNK } from "../image/constants.ts";
import { sha256 } from "../util/bytes.ts";
import type { CaptureStream } from "./stream.ts";
import type { PackedChunk } from "../image/writer.ts";

export interface PackParams {
  chunkBytes: number;
  codec: Codec;
  /** Grid piece size in sectors: zlib 128 KiB (priming keeps the ratio), zstd 1 MiB (frames are independent; bigger keeps the ratio). */
  gridSectors: number;
  /** How far back a piece may be primed, in sectors (zlib: 32 KiB; zstd: 0). */
  dictSectors: number;
  /** Grid pieces compressed ahead of the packer at most. */
  lookaheadPieces: number;
}

export type Compressor = (data: Uint8Array, dictionary: Uint8Array | null) => Promise<Uint8Array>;

/** Attempts at shrinking the last piece of a chunk until it fits. */
const MAX_TAIL_TRIES = 4;
/** Below this much free space a chunk is closed rather than squeezing in another piece. */
const MIN_TAIL_BYTES = 256;

export function defaultPackParams(codec: Codec, chunkBytes: number, sectorBytes: number): PackParams {
  const gridBytes = Math.min(codec === Codec.zlib ? 128 << 10 : 1 << 20, chunkBytes / 4);
  return {
    chunkBytes,
    codec,
    gridSectors: Math.max(1, Math.floor(gridBytes / sectorBytes)),
    dictSectors: codec === Codec.zlib ? Math.floor(ZLIB_WINDOW_BYTES / sectorBytes) : 0,
    // Pieces compressed ahead: enough to keep two workers busy across a chunk's tail stall.
    lookaheadPieces: 32,
  };
}

export async function packStream(
  stream: CaptureStream,
  diskSectors: number,
  params: PackParams,
  compress: Compressor,
  emit: (chunk: PackedChunk) => Promise<void>,
): Promise<number> {
  const { gridSectors, dictSectors, chunkBytes, codec } = params;
  const total = stream.streamSectors;
  assert(total > 0, "there is data to pack");
  const sectorBytes = stream.sectorBytes;
  const maxRawSectors = Math.floor(MAX_CHUNK_RAW_BYTES / sectorBytes);
  const speculated = new Map<number, Promise<Uint8Array>>();

  const defaultDictStart = (g: number): number => Math.max(0, g * gridSectors - dictSectors);
  const speculate = (fromGrid: number): void => {
    const lastGrid = Math.ceil(total / gridSectors) - 1;
    for (let g = fromGrid; g <= Math.min(lastGrid, fromGrid + params.lookaheadPieces - 1); g++) {
      if (speculated.has(g)) continue;
      const start = g * gridSectors;
      const end = Math.min(total, start + gridSectors);
      const dictStart = defaultDictStart(g);
      const job = compressRange(start, end, dictStart);
      job.catch(() => {}); // a dropped speculation must not become an unhandled rejection
      speculated.set(g, job);
    }
    for (const g of speculated.keys()) if (g < fromGrid) speculated.delete(g);
  };
  function compressRange(start: number, end: number, dictStart: number): Promise<Uint8Array> {
    const data = stream.read(start, end);
    const dictionary = dictStart < start ? stream.read(dictStart, start) : null;
    return compress(data, dictionary);
  }

  let chunkIndex = 0;
  let chunkStart = 0;
  let prevDiskEnd = 0;
  while (chunkStart < total) {
    const pieces: Uint8Array[] = [];
    let payloadBytes = framingBytes(codec);
    let pos = chunkStart;
    const rawLimit = Math.min(total, chunkStart + maxRawSectors);
    const firstRegion = stream.regionAt(chunkStart);
    for (;;) {
      if (pos >= rawLimit) break;
      const grid = Math.floor(pos / gridSectors);
      speculate(grid);
      let end = Math.min(rawLimit, (grid + 1) * gridSectors);
      // Keep the region count within the header's bound: stop at the end of the last allowed region.
      if (stream.regionAt(end - 1) - firstRegion + 1 > MAX_REGIONS_PER_CHUNK) {
        end = stream.regionStartStream(firstRegion + MAX_REGIONS_PER_CHUNK);
        if (end <= pos) break;
      }
      const dictStart = Math.max(chunkStart, pos - dictSectors);
      const isSpeculated = pos === grid * gridSectors && end === Math.min(total, pos + gridSectors) && dictStart === defaultDictStart(grid);
      const out = isSpeculated ? await speculated.get(grid)! : await compressRange(pos, end, dictStart);
      const headerBytes = chunkHeaderBytes(stream.regionCount(chunkStart, end));
      if (headerBytes + payloadBytes + out.length <= chunkBytes) {
        pieces.push(out);
        payloadBytes += out.length;
        pos = end;
        continue;
      }
      // The whole piece does not fit: fill the rest of the chunk with a prefix of it.
      const accepted = await fillTail(pos, end, dictStart, out.length, chunkBytes - headerBytes - payloadBytes);
      if (accepted) {
        pieces.push(accepted.out);
        payloadBytes += accepted.out.length;
        pos = accepted.end;
      }
      break;
    }
    assert(pos > chunkStart, "every chunk holds at least one sector");
    const raw = stream.read(chunkStart, pos);
    const regions = stream.diskRegions(chunkStart, pos);
    const last = pos === total;
    const dataEnd = stream.diskEnd(pos);
    const chunk: PackedChunk = {
      index: chunkIndex,
      firstSector: prevDiskEnd,
      endSector: last ? diskSectors : dataEnd,
      regions,
      payload: assemblePayload(codec, pieces, codec === Codec.zlib ? adler32(raw) : 0),
      rawBytes: raw.length,
      rawSha256: sha256(raw),
    };
    assert(chunkHeaderBytes(regions.length) + chunk.payload.length <= chunkBytes, "chunk fits its container");
    await emit(chunk);
    chunkIndex++;
    prevDiskEnd = dataEnd;
    chunkStart = pos;
    stream.releaseBefore(Math.max(0, chunkStart - dictSectors));
  }
  return chunkIndex;

  /**
   * The longest prefix of [pos, end) found in MAX_TAIL_TRIES compressions whose output fits
   * `availBytes`: shrink while too big, grow towards the space left once one fits.
   */
  async function fillTail(
    pos: number,
    end: number,
    dictStart: number,
    fullOutBytes: number,
    availBytes: number,
  ): Promise<{ out: Uint8Array; end: number } | null> {
    if (availBytes < MIN_TAIL_BYTES) return null;
    let best: { out: Uint8Array; end: number } | null = null;
    let tooBig = end - pos; // smallest prefix known not to fit
    let sectors = Math.floor(((end - pos) * availBytes) / fullOutBytes * 0.97);
    for (let attempt = 0; attempt < MAX_TAIL_TRIES && sectors >= 1 && sectors < tooBig; attempt++) {
      const out = await compressRange(pos, pos + sectors, dictStart);
      // A prefix touches no more regions than the whole piece, so the header estimate stays safe.
      if (out.length <= availBytes) {
        best = { out, end: pos + sectors };
        if (availBytes - out.length < MIN_TAIL_BYTES) break;
        sectors = Math.min(tooBig - 1, Math.floor(sectors * (availBytes / out.length) * 0.995));
        if (sectors <= best.end - pos) break;
      } else {
        tooBig = sectors;
        const floor = best ? best.end - pos : 0;
        sectors = Math.floor(sectors * (availBytes / out.length) * 0.97);
        if (sectors <= floor) break;
      }
    }
    return best;
  }
}
