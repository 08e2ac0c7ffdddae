// Format-wide constants and limits of the discus image format v1 (docs/FORMAT.md).

export const FORMAT_VERSION = 1;

/** Container size of every chunk; chunk c lives at byte c * chunkBytes of the image file. */
export const DEFAULT_CHUNK_BYTES = 1 << 20;
export const MIN_CHUNK_BYTES = 64 << 10;
export const MAX_CHUNK_BYTES = 64 << 20;

/** Sector size used for all sector numbers in an image. */
export const SECTOR_BYTES = 512;

/** Bound on one chunk's uncompressed data: bounds a decompressor's output buffer. */
export const MAX_CHUNK_RAW_BYTES = 32 << 20;

/** Bound on regions listed in one chunk header (16 bytes each): at most 64 KiB of header. */
export const MAX_REGIONS_PER_CHUNK = 4096;

export const CHUNK_MAGIC = "DSCSCHNK";
export const MANIFEST_MAGIC = "DSCSMNFT";
export const TRAILER_MAGIC = "DSCSTRLR";
export const SIGNATURE_MAGIC = "DSCSSIGN";

export const CHUNK_FIXED_HEADER_BYTES = 96;
export const REGION_ENTRY_BYTES = 16;
export const TRAILER_BYTES = 512;
export const IMAGE_ID_BYTES = 16;
export const DIGEST_BYTES = 32;

export enum Codec {
  zlib = 1,
  zstd = 2,
}

export function codecName(codec: Codec): string {
  return Codec[codec] ?? `unknown(${codec})`;
}

export function parseCodec(name: string): Codec {
  if (name === "zlib") return Codec.zlib;
  if (name === "zstd") return Codec.zstd;
  throw new Error(`unknown codec "${name}"`);
}
