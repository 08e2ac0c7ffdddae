// Chunk payload codecs (pure). A zlib payload is one RFC 1950 stream built from raw-deflate pieces;
// a zstd payload is one or more RFC 8878 frames. See docs/FORMAT.md "Payload".
import zlib from "node:zlib";
import { assert } from "../util/assert.ts";
import { Codec } from "./constants.ts";
import { zstdDecompressInto } from "./zstd-native.ts";

/** Bytes a codec adds around its pieces: zlib header (2) + final empty block (2) + Adler-32 (4). */
export function framingBytes(codec: Codec): number {
  return codec === Codec.zlib ? 8 : 0;
}

/**
 * Closes a zstd frame whose blocks were all ended by ZSTD_e_flush: an empty raw block with the
 * last-block bit set (RFC 8878 3.1.1.2: bit 0 last, bits 1-2 type raw, bits 3-23 size 0). The
 * frames discus writes carry no checksum, so nothing follows it.
 */
export const ZSTD_LAST_BLOCK: Uint8Array = Uint8Array.of(0x01, 0x00, 0x00);

/** Joins one chunk's flushed zstd output into its payload: a single frame. */
export function closeZstdFrame(parts: readonly Uint8Array[]): Uint8Array {
  let total = ZSTD_LAST_BLOCK.length;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  out.set(ZSTD_LAST_BLOCK, off);
  return out;
}

/** Deflate's window: a piece may refer this far back into earlier pieces of the same chunk. */
export const ZLIB_WINDOW_BYTES = 32 << 10;

export const DEFAULT_LEVEL: Record<Codec, number> = { [Codec.zlib]: 6, [Codec.zstd]: 3 };

export function levelBounds(codec: Codec): [number, number] {
  return codec === Codec.zlib ? [1, 9] : [1, 19];
}

/**
 * Compresses one piece of a chunk. For zlib the piece is raw deflate ending in a sync flush
 * (byte-aligned, not final) so pieces concatenate; `dictionary` is the chunk's data just before
 * the piece (at most 32 KiB, never from before the chunk start), which keeps the ratio of one stream.
 * For zstd each piece is an independent frame; `dictionary` must be empty.
 */
export function compressPiece(codec: Codec, level: number, data: Uint8Array, dictionary: Uint8Array | null): Uint8Array {
  assert(data.length > 0, "piece is not empty");
  if (codec === Codec.zlib) {
    assert(dictionary === null || dictionary.length <= ZLIB_WINDOW_BYTES, "dictionary within the deflate window");
    const options: zlib.ZlibOptions = { level, finishFlush: zlib.constants.Z_SYNC_FLUSH };
    if (dictionary !== null && dictionary.length > 0) options.dictionary = dictionary;
    return new Uint8Array(zlib.deflateRawSync(data, options));
  }
  assert(dictionary === null || dictionary.length === 0, "zstd pieces take no dictionary");
  return new Uint8Array(Bun.zstdCompressSync(data, { level }));
}

/** Joins pieces into a payload. `adler32` is of the chunk's whole uncompressed data (zlib only). */
export function assemblePayload(codec: Codec, pieces: readonly Uint8Array[], adler32: number): Uint8Array {
  let total = framingBytes(codec);
  for (const p of pieces) total += p.length;
  const out = new Uint8Array(total);
  let off = 0;
  if (codec === Codec.zlib) {
    out[0] = 0x78; // deflate, 32 KiB window
    out[1] = 0x9c; // default level; (0x78 << 8 | 0x9c) % 31 === 0 as RFC 1950 requires
    off = 2;
  }
  for (const p of pieces) {
    out.set(p, off);
    off += p.length;
  }
  if (codec === Codec.zlib) {
    out[off++] = 0x03; // final block, fixed Huffman, immediately end-of-block
    out[off++] = 0x00;
    new DataView(out.buffer).setUint32(off, adler32 >>> 0, false); // RFC 1950: big-endian
    off += 4;
  }
  assert(off === total, "payload assembled exactly");
  return out;
}

export class PayloadError extends Error {
  override name = "PayloadError";
}

/**
 * Decompresses a payload that must yield exactly `rawBytes` (never more: the output is bounded). zstd payloads are always decoded by the same decoder
 * (the system's libzstd), so every path (load, restore, verify, the GPT growth's reads) accepts or
 * refuses the same payloads. With `scratch` (at least rawBytes) the data is decoded into it and the
 * result is a view of it, valid until the scratch is used again; else into a buffer of its own.
 */
export function decompressPayload(codec: Codec, payload: Uint8Array, rawBytes: number, scratch?: Uint8Array): Uint8Array {
  if (codec === Codec.zstd) return zstdIntoScratch(payload, rawBytes, scratch ?? new Uint8Array(Math.max(rawBytes, 1)));
  assert(codec === Codec.zlib, "a known codec");
  let out: Uint8Array;
  try {
    out = zlib.inflateSync(payload, { maxOutputLength: Math.max(rawBytes, 1) });
  } catch (e) {
    throw new PayloadError(`payload does not decompress: ${(e as Error).message}`);
  }
  if (out.length !== rawBytes) throw new PayloadError(`payload decompresses to ${out.length} bytes, header says ${rawBytes}`);
  return out;
}

function zstdIntoScratch(payload: Uint8Array, rawBytes: number, scratch: Uint8Array): Uint8Array {
  assert(scratch.length >= rawBytes, "the scratch buffer holds the chunk's data");
  // Exactly rawBytes of room: a payload that would make more fails as too large, not later.
  const r = zstdDecompressInto(payload, scratch.subarray(0, Math.max(rawBytes, 1)));
  if ("error" in r) throw new PayloadError(`payload does not decompress: ${r.error}`);
  if (r.bytes !== rawBytes) throw new PayloadError(`payload decompresses to ${r.bytes} bytes, header says ${rawBytes}`);
  return scratch.subarray(0, rawBytes);
}

export function adler32(data: Uint8Array): number {
  return Number(Bun.hash.adler32(data)) >>> 0;
}
