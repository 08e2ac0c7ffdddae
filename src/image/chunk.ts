// Chunk header v1: encode and decode (pure). Layout in docs/FORMAT.md.
import { assert } from "../util/assert.ts";
import { crc32, getAscii, isPowerOfTwo, putAscii, setU64, tryGetU64, view } from "../util/bytes.ts";
import type { Range } from "../util/ranges.ts";
import {
  CHUNK_FIXED_HEADER_BYTES,
  CHUNK_MAGIC,
  Codec,
  FORMAT_VERSION,
  IMAGE_ID_BYTES,
  MAX_CHUNK_RAW_BYTES,
  MAX_REGIONS_PER_CHUNK,
  REGION_ENTRY_BYTES,
} from "./constants.ts";

export interface ChunkHeader {
  imageId: Uint8Array;
  chunkIndex: number;
  codec: Codec;
  sectorBytes: number;
  /** The sector range this chunk is responsible for: [firstSector, endSector). */
  firstSector: number;
  endSector: number;
  /** Sector regions the uncompressed data fills, in order; the rest of the range is free. */
  regions: Range[];
  payloadBytes: number;
  rawBytes: number;
}

// Field offsets of the fixed header.
const OFF_MAGIC = 0;
const OFF_VERSION = 8;
const OFF_CODEC = 10;
const OFF_FLAGS = 11;
const OFF_HEADER_BYTES = 12;
const OFF_IMAGE_ID = 16;
const OFF_CHUNK_INDEX = 32;
const OFF_SECTOR_BYTES = 36;
const OFF_FIRST_SECTOR = 40;
const OFF_END_SECTOR = 48;
const OFF_REGION_COUNT = 56;
const OFF_PAYLOAD_BYTES = 60;
const OFF_RAW_BYTES = 64;
const OFF_HEADER_CRC = 68;
const OFF_RESERVED = 72;

export function chunkHeaderBytes(regionCount: number): number {
  return CHUNK_FIXED_HEADER_BYTES + regionCount * REGION_ENTRY_BYTES;
}

export function encodeChunkHeader(h: ChunkHeader): Uint8Array {
  assert(h.imageId.length === IMAGE_ID_BYTES, "image id is 16 bytes");
  assert(h.regions.length > 0 && h.regions.length <= MAX_REGIONS_PER_CHUNK, "region count within bounds");
  assert(h.rawBytes <= MAX_CHUNK_RAW_BYTES, "raw bytes within bound");
  const bytes = new Uint8Array(chunkHeaderBytes(h.regions.length));
  const dv = view(bytes);
  putAscii(bytes, OFF_MAGIC, CHUNK_MAGIC);
  dv.setUint16(OFF_VERSION, FORMAT_VERSION, true);
  dv.setUint8(OFF_CODEC, h.codec);
  dv.setUint8(OFF_FLAGS, 0);
  dv.setUint32(OFF_HEADER_BYTES, bytes.length, true);
  bytes.set(h.imageId, OFF_IMAGE_ID);
  dv.setUint32(OFF_CHUNK_INDEX, h.chunkIndex, true);
  dv.setUint32(OFF_SECTOR_BYTES, h.sectorBytes, true);
  setU64(dv, OFF_FIRST_SECTOR, h.firstSector);
  setU64(dv, OFF_END_SECTOR, h.endSector);
  dv.setUint32(OFF_REGION_COUNT, h.regions.length, true);
  dv.setUint32(OFF_PAYLOAD_BYTES, h.payloadBytes, true);
  dv.setUint32(OFF_RAW_BYTES, h.rawBytes, true);
  let off = CHUNK_FIXED_HEADER_BYTES;
  for (const r of h.regions) {
    setU64(dv, off, r.start);
    setU64(dv, off + 8, r.length);
    off += REGION_ENTRY_BYTES;
  }
  dv.setUint32(OFF_HEADER_CRC, crc32(bytes), true);
  return bytes;
}

/** Rewrites the image id of an encoded header in place and refreshes its CRC. */
export function patchChunkImageId(header: Uint8Array, imageId: Uint8Array): void {
  const dv = view(header);
  header.set(imageId, OFF_IMAGE_ID);
  dv.setUint32(OFF_HEADER_CRC, 0, true);
  dv.setUint32(OFF_HEADER_CRC, crc32(header), true);
}

export class ChunkFormatError extends Error {
  override name = "ChunkFormatError";
}

/** Reads the header-length field so a caller knows how many bytes the whole header spans. */
export function peekChunkHeaderBytes(prefix: Uint8Array): number {
  if (prefix.length < CHUNK_FIXED_HEADER_BYTES) throw new ChunkFormatError("chunk shorter than its fixed header");
  return view(prefix).getUint32(OFF_HEADER_BYTES, true);
}

/**
 * Decodes and validates a chunk header from the start of `bytes` (a whole chunk container).
 * Every field is bounds-checked so a forged or corrupt header can never index outside the chunk.
 */
export function decodeChunkHeader(bytes: Uint8Array, chunkBytes: number): ChunkHeader {
  if (bytes.length < CHUNK_FIXED_HEADER_BYTES) throw new ChunkFormatError("chunk shorter than its fixed header");
  if (getAscii(bytes, OFF_MAGIC, 8) !== CHUNK_MAGIC) throw new ChunkFormatError("bad chunk magic");
  const dv = view(bytes);
  const version = dv.getUint16(OFF_VERSION, true);
  if (version !== FORMAT_VERSION) throw new ChunkFormatError(`chunk format version ${version}, expected ${FORMAT_VERSION}`);
  const codec = dv.getUint8(OFF_CODEC);
  if (codec !== Codec.zlib && codec !== Codec.zstd) throw new ChunkFormatError(`unknown codec ${codec}`);
  if (dv.getUint8(OFF_FLAGS) !== 0) throw new ChunkFormatError("unknown chunk flags");
  if (bytes.subarray(OFF_RESERVED, CHUNK_FIXED_HEADER_BYTES).some((b) => b !== 0)) throw new ChunkFormatError("reserved header bytes are not zero");
  const headerBytes = dv.getUint32(OFF_HEADER_BYTES, true);
  const regionCount = dv.getUint32(OFF_REGION_COUNT, true);
  if (regionCount < 1 || regionCount > MAX_REGIONS_PER_CHUNK) throw new ChunkFormatError(`region count ${regionCount} out of bounds`);
  if (headerBytes !== chunkHeaderBytes(regionCount)) throw new ChunkFormatError("header length disagrees with region count");
  if (headerBytes > bytes.length || headerBytes > chunkBytes) throw new ChunkFormatError("header longer than the chunk");
  const header = bytes.slice(0, headerBytes);
  const storedCrc = view(header).getUint32(OFF_HEADER_CRC, true);
  view(header).setUint32(OFF_HEADER_CRC, 0, true);
  if (crc32(header) !== storedCrc) throw new ChunkFormatError("chunk header CRC mismatch");

  const payloadBytes = dv.getUint32(OFF_PAYLOAD_BYTES, true);
  const rawBytes = dv.getUint32(OFF_RAW_BYTES, true);
  const sectorBytes = dv.getUint32(OFF_SECTOR_BYTES, true);
  if (payloadBytes < 1 || headerBytes + payloadBytes > chunkBytes) throw new ChunkFormatError("payload does not fit the chunk");
  if (rawBytes > MAX_CHUNK_RAW_BYTES) throw new ChunkFormatError("raw size above the format's bound");
  if (sectorBytes < 512 || sectorBytes > 65536 || !isPowerOfTwo(sectorBytes)) throw new ChunkFormatError("bad sector size");
  const firstSector = sectorField(dv, OFF_FIRST_SECTOR, sectorBytes, "first sector");
  const endSector = sectorField(dv, OFF_END_SECTOR, sectorBytes, "end sector");
  if (endSector <= firstSector) throw new ChunkFormatError("empty responsibility range");

  const regions: Range[] = [];
  let cursor = firstSector;
  let rawSectors = 0;
  for (let i = 0; i < regionCount; i++) {
    const off = CHUNK_FIXED_HEADER_BYTES + i * REGION_ENTRY_BYTES;
    const start = sectorField(dv, off, sectorBytes, `region ${i} start`);
    const length = sectorField(dv, off + 8, sectorBytes, `region ${i} length`);
    // Regions are sorted, disjoint, non-empty and inside the responsibility range.
    if (length < 1 || start < cursor || start + length > endSector) throw new ChunkFormatError(`region ${i} out of order or range`);
    cursor = start + length;
    rawSectors += length;
    regions.push({ start, length });
  }
  if (rawSectors * sectorBytes !== rawBytes) throw new ChunkFormatError("regions disagree with raw size");
  return {
    imageId: bytes.slice(OFF_IMAGE_ID, OFF_IMAGE_ID + IMAGE_ID_BYTES),
    chunkIndex: dv.getUint32(OFF_CHUNK_INDEX, true),
    codec,
    sectorBytes,
    firstSector,
    endSector,
    regions,
    payloadBytes,
    rawBytes,
  };
}

/** A sector field, refused when its byte offset would pass 2^53 (8 PiB, beyond any disk). */
function sectorField(dv: DataView, offset: number, sectorBytes: number, name: string): number {
  const value = tryGetU64(dv, offset);
  if (value === null || value > Math.floor(Number.MAX_SAFE_INTEGER / sectorBytes)) throw new ChunkFormatError(`${name} beyond any disk`);
  return value;
}

/** Free sector ranges of a chunk: its responsibility range minus its regions. */
export function chunkFreeRanges(h: Pick<ChunkHeader, "firstSector" | "endSector" | "regions">): Range[] {
  const free: Range[] = [];
  let cursor = h.firstSector;
  for (const r of h.regions) {
    if (r.start > cursor) free.push({ start: cursor, length: r.start - cursor });
    cursor = r.start + r.length;
  }
  if (h.endSector > cursor) free.push({ start: cursor, length: h.endSector - cursor });
  return free;
}

/** The compressed payload of a decoded chunk container. */
export function chunkPayload(container: Uint8Array, h: Pick<ChunkHeader, "regions" | "payloadBytes">): Uint8Array {
  const start = chunkHeaderBytes(h.regions.length);
  return container.subarray(start, start + h.payloadBytes);
}
