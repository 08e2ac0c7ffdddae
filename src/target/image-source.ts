// Bytes of an image's source read back from its chunks, before anything is written: what restore
// needs to plan the GPT growth it will do at the end (target/gpt-grow.ts). Free space reads as zeros.
import { assert } from "../util/assert.ts";
import { chunkPayload, ChunkFormatError, decodeChunkHeader } from "../image/chunk.ts";
import { decompressPayload, PayloadError } from "../image/codec.ts";
import { readChunk, type OpenImage } from "../image/reader.ts";
import { DiscusError } from "../util/errors.ts";

/** Bound on one read: a GPT's header sectors and its largest entry array (part/gpt.ts) fit well inside. */
export const MAX_SOURCE_READ_BYTES = 8 << 20;

/**
 * Source bytes [offsetBytes, offsetBytes + lengthBytes), from the chunks that cover them. Chunks tile
 * the source in order (image/tiling.ts, checked before this is called), so the walk stops at the
 * first chunk past the range: reading a table at the start of a disk costs its first few chunks.
 */
export function readImageSource(image: OpenImage, offsetBytes: number, lengthBytes: number): Uint8Array {
  assert(lengthBytes > 0 && lengthBytes <= MAX_SOURCE_READ_BYTES, `a source read of ${lengthBytes} bytes is within its bound`);
  const m = image.manifest;
  const sb = m.sectorBytes;
  const endBytes = offsetBytes + lengthBytes;
  const out = new Uint8Array(lengthBytes);
  for (let index = 0; index < m.dataChunkCount; index++) {
    const container = readChunk(image, index);
    let header;
    let raw: Uint8Array;
    try {
      header = decodeChunkHeader(container, m.chunkBytes);
      if (header.firstSector * sb >= endBytes) break;
      if (header.endSector * sb <= offsetBytes) continue;
      raw = decompressPayload(header.codec, chunkPayload(container, header), header.rawBytes);
    } catch (e) {
      if (!(e instanceof ChunkFormatError || e instanceof PayloadError)) throw e;
      throw new DiscusError("input", `${image.path}, chunk ${index}`, e.message, "The image is damaged: copy it again from its source; `discus verify` lists every bad chunk. Nothing was written");
    }
    let rawOffset = 0;
    for (const r of header.regions) {
      copyOverlap(raw.subarray(rawOffset, rawOffset + r.length * sb), r.start * sb, out, offsetBytes);
      rawOffset += r.length * sb;
    }
  }
  return out;
}

/** Copies the part of `data` (which starts at source byte `dataStart`) that falls inside `out`. */
export function copyOverlap(data: Uint8Array, dataStart: number, out: Uint8Array, outStart: number): void {
  const from = Math.max(dataStart, outStart);
  const to = Math.min(dataStart + data.length, outStart + out.length);
  if (to > from) out.set(data.subarray(from - dataStart, to - dataStart), from - outStart);
}
