// Image trailer v1: the last 512 bytes of an image file; it locates and authenticates the manifest.
import { crc32, getAscii, putAscii, setU64, tryGetU64, view } from "../util/bytes.ts";
import { DIGEST_BYTES, FORMAT_VERSION, IMAGE_ID_BYTES, TRAILER_BYTES, TRAILER_MAGIC } from "./constants.ts";

export interface Trailer {
  chunkBytes: number;
  imageId: Uint8Array;
  dataChunkCount: number;
  manifestPartCount: number;
  manifestBytes: number;
  manifestSha256: Uint8Array;
}

const OFF_VERSION = 8;
const OFF_CHUNK_BYTES = 12;
const OFF_IMAGE_ID = 16;
const OFF_DATA_CHUNKS = 32;
const OFF_MANIFEST_PARTS = 36;
const OFF_MANIFEST_BYTES = 40;
const OFF_MANIFEST_SHA = 48;
const OFF_CRC = 80;

export function encodeTrailer(t: Trailer): Uint8Array {
  const bytes = new Uint8Array(TRAILER_BYTES);
  const dv = view(bytes);
  putAscii(bytes, 0, TRAILER_MAGIC);
  dv.setUint16(OFF_VERSION, FORMAT_VERSION, true);
  dv.setUint32(OFF_CHUNK_BYTES, t.chunkBytes, true);
  bytes.set(t.imageId, OFF_IMAGE_ID);
  dv.setUint32(OFF_DATA_CHUNKS, t.dataChunkCount, true);
  dv.setUint32(OFF_MANIFEST_PARTS, t.manifestPartCount, true);
  setU64(dv, OFF_MANIFEST_BYTES, t.manifestBytes);
  bytes.set(t.manifestSha256, OFF_MANIFEST_SHA);
  dv.setUint32(OFF_CRC, crc32(bytes.subarray(0, OFF_CRC)), true);
  return bytes;
}

export class TrailerError extends Error {
  override name = "TrailerError";
}

export function decodeTrailer(bytes: Uint8Array): Trailer {
  if (bytes.length !== TRAILER_BYTES) throw new TrailerError("trailer has the wrong length");
  if (getAscii(bytes, 0, 8) !== TRAILER_MAGIC) throw new TrailerError("no discus trailer at the end of the file");
  const dv = view(bytes);
  if (dv.getUint32(OFF_CRC, true) !== crc32(bytes.subarray(0, OFF_CRC))) throw new TrailerError("trailer CRC mismatch");
  const version = dv.getUint16(OFF_VERSION, true);
  if (version !== FORMAT_VERSION) throw new TrailerError(`format version ${version}, this discus reads ${FORMAT_VERSION}`);
  const manifestBytes = tryGetU64(dv, OFF_MANIFEST_BYTES);
  if (manifestBytes === null) throw new TrailerError("manifest length beyond any image");
  return {
    chunkBytes: dv.getUint32(OFF_CHUNK_BYTES, true),
    imageId: bytes.slice(OFF_IMAGE_ID, OFF_IMAGE_ID + IMAGE_ID_BYTES),
    dataChunkCount: dv.getUint32(OFF_DATA_CHUNKS, true),
    manifestPartCount: dv.getUint32(OFF_MANIFEST_PARTS, true),
    manifestBytes,
    manifestSha256: bytes.slice(OFF_MANIFEST_SHA, OFF_MANIFEST_SHA + DIGEST_BYTES),
  };
}

/** Size of an image file with these counts: data chunks, manifest parts, trailer. */
export function imageFileBytes(t: Pick<Trailer, "chunkBytes" | "dataChunkCount" | "manifestPartCount">): number {
  return (t.dataChunkCount + t.manifestPartCount) * t.chunkBytes + TRAILER_BYTES;
}
