// Image manifest v1: what the image holds, per-chunk digests, optional signature. Layout in docs/FORMAT.md.
// It is plain data (not tied to the file trailer) so the multicast protocol can ship it in parts.
import { assert } from "../util/assert.ts";
import { equalBytes, fromUtf8, getAscii, isPowerOfTwo, putAscii, setU64, tryGetU64, utf8, view } from "../util/bytes.ts";
import { Layout } from "../util/layout.ts";
import { SchemaError } from "../util/schema.ts";
import { imageInfo, type ImageInfo } from "./info.ts";
import { Codec, DIGEST_BYTES, FORMAT_VERSION, IMAGE_ID_BYTES, MANIFEST_MAGIC, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, SIGNATURE_MAGIC } from "./constants.ts";

export interface ManifestSignature {
  publicKey: Uint8Array; // raw Ed25519 public key, 32 bytes
  signature: Uint8Array; // 64 bytes
}

export interface Manifest {
  imageId: Uint8Array;
  sectorBytes: number;
  chunkBytes: number;
  sourceBytes: number;
  dataChunkCount: number;
  codec: Codec;
  /** Sectors of data captured (sum of all regions). */
  dataSectors: number;
  info: ImageInfo;
  /** dataChunkCount entries of 64 bytes: SHA-256 of the chunk container, then of its uncompressed data. */
  digests: Uint8Array;
  signature: ManifestSignature | null;
}

export const DIGEST_ENTRY_BYTES = 2 * DIGEST_BYTES;
const FIXED_BYTES = 128;
const SIGNATURE_BLOCK_BYTES = 116;
const ED25519_PUBLIC_KEY_BYTES = 32;
const ED25519_SIGNATURE_BYTES = 64;
/** The signature block after the manifest body (docs/FORMAT.md), defined once for both directions. */
const SIGNATURE_BLOCK = new Layout("signature block", SIGNATURE_BLOCK_BYTES, [
  { name: "magic", kind: "bytes", width: SIGNATURE_MAGIC.length },
  { name: "algorithm", kind: "u16" },
  { name: "reserved", kind: "reserved", width: 2 },
  { name: "publicKeyBytes", kind: "u32" },
  { name: "publicKey", kind: "bytes", width: ED25519_PUBLIC_KEY_BYTES },
  { name: "signatureBytes", kind: "u32" },
  { name: "signature", kind: "bytes", width: ED25519_SIGNATURE_BYTES },
] as const);
const SIGNATURE_MAGIC_BYTES = utf8(SIGNATURE_MAGIC);
const FLAG_SIGNED = 1;
/** Bound on the info JSON: it is a summary, never per-block data. */
export const MAX_INFO_BYTES = 1 << 20;
/** Bound on chunks per image (16 TiB of 1 MiB chunks); bounds the manifest at ~1 GiB. */
export const MAX_DATA_CHUNKS = 1 << 24;
export const ALG_ED25519 = 1;

/** The longest manifest an image of this many chunks can have: bounds a reader's allocation. */
export function maxManifestBytes(dataChunkCount: number): number {
  return pad8(FIXED_BYTES + MAX_INFO_BYTES) + dataChunkCount * DIGEST_ENTRY_BYTES + SIGNATURE_BLOCK_BYTES;
}

const OFF_VERSION = 8;
const OFF_FLAGS = 10;
const OFF_FIXED_BYTES = 12;
const OFF_IMAGE_ID = 16;
const OFF_SECTOR_BYTES = 32;
const OFF_CHUNK_BYTES = 36;
const OFF_SOURCE_BYTES = 40;
const OFF_DATA_CHUNKS = 48;
const OFF_CODEC = 52;
const OFF_DATA_SECTORS = 56;
const OFF_INFO_BYTES = 64;
const OFF_DIGEST_ENTRY_BYTES = 68;

export function chunkDigest(m: Pick<Manifest, "digests">, index: number): Uint8Array {
  return m.digests.subarray(index * DIGEST_ENTRY_BYTES, index * DIGEST_ENTRY_BYTES + DIGEST_BYTES);
}

export function rawDigest(m: Pick<Manifest, "digests">, index: number): Uint8Array {
  const off = index * DIGEST_ENTRY_BYTES + DIGEST_BYTES;
  return m.digests.subarray(off, off + DIGEST_BYTES);
}

function pad8(n: number): number {
  return (n + 7) & ~7;
}

/** The bytes a signature covers: the whole manifest without its signature block, flag set as it will be. */
export function encodeManifestBody(m: Manifest, signed: boolean): Uint8Array {
  assert(m.imageId.length === IMAGE_ID_BYTES, "image id is 16 bytes");
  assert(m.digests.length === m.dataChunkCount * DIGEST_ENTRY_BYTES, "one digest entry per chunk");
  assert(m.dataChunkCount <= MAX_DATA_CHUNKS, "chunk count within bound");
  const info = utf8(JSON.stringify(m.info));
  assert(info.length <= MAX_INFO_BYTES, "info JSON within bound");
  const digestsOffset = pad8(FIXED_BYTES + info.length);
  const bytes = new Uint8Array(digestsOffset + m.digests.length);
  const dv = view(bytes);
  putAscii(bytes, 0, MANIFEST_MAGIC);
  dv.setUint16(OFF_VERSION, FORMAT_VERSION, true);
  dv.setUint16(OFF_FLAGS, signed ? FLAG_SIGNED : 0, true);
  dv.setUint32(OFF_FIXED_BYTES, FIXED_BYTES, true);
  bytes.set(m.imageId, OFF_IMAGE_ID);
  dv.setUint32(OFF_SECTOR_BYTES, m.sectorBytes, true);
  dv.setUint32(OFF_CHUNK_BYTES, m.chunkBytes, true);
  setU64(dv, OFF_SOURCE_BYTES, m.sourceBytes);
  dv.setUint32(OFF_DATA_CHUNKS, m.dataChunkCount, true);
  dv.setUint8(OFF_CODEC, m.codec);
  setU64(dv, OFF_DATA_SECTORS, m.dataSectors);
  dv.setUint32(OFF_INFO_BYTES, info.length, true);
  dv.setUint32(OFF_DIGEST_ENTRY_BYTES, DIGEST_ENTRY_BYTES, true);
  bytes.set(info, FIXED_BYTES);
  bytes.set(m.digests, digestsOffset);
  return bytes;
}

export function encodeManifest(m: Manifest): Uint8Array {
  const body = encodeManifestBody(m, m.signature !== null);
  if (m.signature === null) return body;
  const out = new Uint8Array(body.length + SIGNATURE_BLOCK_BYTES);
  out.set(body, 0);
  SIGNATURE_BLOCK.write(out, body.length, {
    magic: SIGNATURE_MAGIC_BYTES,
    algorithm: ALG_ED25519,
    publicKeyBytes: ED25519_PUBLIC_KEY_BYTES,
    publicKey: m.signature.publicKey,
    signatureBytes: ED25519_SIGNATURE_BYTES,
    signature: m.signature.signature,
  });
  return out;
}

export class ManifestError extends Error {
  override name = "ManifestError";
}

export interface DecodedManifest {
  manifest: Manifest;
  /** The signed bytes (manifest without its signature block). */
  body: Uint8Array;
}

/** Sector size, chunk size, source and data sizes: each within the format's bounds and consistent. */
function decodeGeometry(dv: DataView): Pick<Manifest, "sectorBytes" | "chunkBytes" | "sourceBytes" | "dataSectors"> {
  const sectorBytes = dv.getUint32(OFF_SECTOR_BYTES, true);
  const chunkBytes = dv.getUint32(OFF_CHUNK_BYTES, true);
  const sourceBytes = tryGetU64(dv, OFF_SOURCE_BYTES);
  const dataSectors = tryGetU64(dv, OFF_DATA_SECTORS);
  if (sectorBytes < 512 || sectorBytes > 65536 || !isPowerOfTwo(sectorBytes)) throw new ManifestError(`sector size ${sectorBytes} is not a power of two in 512..65536`);
  if (chunkBytes < MIN_CHUNK_BYTES || chunkBytes > MAX_CHUNK_BYTES || chunkBytes % 512 !== 0) throw new ManifestError(`chunk size ${chunkBytes} is outside the format's bounds`);
  if (sourceBytes === null || sourceBytes === 0 || sourceBytes % sectorBytes !== 0) throw new ManifestError("source size is not a whole number of sectors below 2^53 bytes");
  if (dataSectors === null || dataSectors * sectorBytes > sourceBytes) throw new ManifestError("more data sectors than the source holds");
  return { sectorBytes, chunkBytes, sourceBytes, dataSectors };
}

/** The info JSON, parsed and checked field by field (image/info.ts). */
function decodeInfo(bytes: Uint8Array): ImageInfo {
  let json: unknown;
  try {
    json = JSON.parse(fromUtf8(bytes));
  } catch {
    throw new ManifestError("manifest info is not valid JSON");
  }
  try {
    return imageInfo(json, "");
  } catch (e) {
    if (e instanceof SchemaError) throw new ManifestError(`manifest info: ${e.message}`);
    throw e;
  }
}

/** The signature block at `offset`: magic, a known algorithm, Ed25519 sizes, reserved bytes zero. */
function decodeSignatureBlock(bytes: Uint8Array, offset: number): ManifestSignature {
  const r = SIGNATURE_BLOCK.read(bytes, offset);
  if (!r.ok) throw new ManifestError(r.why);
  const v = r.values;
  if (!equalBytes(v.magic, SIGNATURE_MAGIC_BYTES)) throw new ManifestError("signature block missing");
  if (v.algorithm !== ALG_ED25519) throw new ManifestError("unknown signature algorithm");
  if (v.publicKeyBytes !== ED25519_PUBLIC_KEY_BYTES || v.signatureBytes !== ED25519_SIGNATURE_BYTES) throw new ManifestError("bad signature sizes");
  return { publicKey: v.publicKey.slice(), signature: v.signature.slice() };
}

export function decodeManifest(bytes: Uint8Array): DecodedManifest {
  if (bytes.length < FIXED_BYTES || getAscii(bytes, 0, 8) !== MANIFEST_MAGIC) throw new ManifestError("not a discus manifest");
  const dv = view(bytes);
  const version = dv.getUint16(OFF_VERSION, true);
  if (version !== FORMAT_VERSION) throw new ManifestError(`manifest version ${version}, this discus reads ${FORMAT_VERSION}`);
  const flags = dv.getUint16(OFF_FLAGS, true);
  if ((flags & ~FLAG_SIGNED) !== 0) throw new ManifestError("unknown manifest flags");
  if (dv.getUint32(OFF_FIXED_BYTES, true) !== FIXED_BYTES) throw new ManifestError("unexpected fixed-part length");
  if (dv.getUint32(OFF_DIGEST_ENTRY_BYTES, true) !== DIGEST_ENTRY_BYTES) throw new ManifestError("unexpected digest entry size");
  const infoBytes = dv.getUint32(OFF_INFO_BYTES, true);
  const dataChunkCount = dv.getUint32(OFF_DATA_CHUNKS, true);
  if (infoBytes > MAX_INFO_BYTES || dataChunkCount > MAX_DATA_CHUNKS) throw new ManifestError("manifest sizes above bounds");
  const digestsOffset = pad8(FIXED_BYTES + infoBytes);
  const bodyBytes = digestsOffset + dataChunkCount * DIGEST_ENTRY_BYTES;
  const signed = (flags & FLAG_SIGNED) !== 0;
  const expected = bodyBytes + (signed ? SIGNATURE_BLOCK_BYTES : 0);
  if (bytes.length !== expected) throw new ManifestError(`manifest is ${bytes.length} bytes, its header says ${expected}`);
  const codec = dv.getUint8(OFF_CODEC);
  if (codec !== Codec.zlib && codec !== Codec.zstd) throw new ManifestError(`unknown codec ${codec}`);
  const info = decodeInfo(bytes.subarray(FIXED_BYTES, FIXED_BYTES + infoBytes));
  const signature = signed ? decodeSignatureBlock(bytes, bodyBytes) : null;
  const manifest: Manifest = {
    imageId: bytes.slice(OFF_IMAGE_ID, OFF_IMAGE_ID + IMAGE_ID_BYTES),
    ...decodeGeometry(dv),
    dataChunkCount,
    codec,
    info,
    digests: bytes.slice(digestsOffset, bodyBytes),
    signature,
  };
  return { manifest, body: bytes.subarray(0, bodyBytes) };
}
