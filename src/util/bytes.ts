// Little-endian field access and small byte helpers (pure).
import { assert } from "./assert.ts";

const MAX_SAFE_U64 = BigInt(Number.MAX_SAFE_INTEGER);

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Reads a u64 that must fit a JavaScript number exactly. */
export function getU64(dv: DataView, offset: number): number {
  const value = dv.getBigUint64(offset, true);
  assert(value <= MAX_SAFE_U64, `u64 at ${offset} exceeds 2^53`);
  return Number(value);
}

/**
 * A u64 from untrusted bytes (little-endian unless told): null when above 2^53 - 1, so a decoder
 * can refuse it in its own words.
 */
export function tryGetU64(dv: DataView, offset: number, littleEndian = true): number | null {
  const value = dv.getBigUint64(offset, littleEndian);
  return value <= MAX_SAFE_U64 ? Number(value) : null;
}

/** A u64 stored as two u32 halves (ext4's lo/hi fields): null when above 2^53 - 1. */
export function u64FromHalves(low: number, high: number): number | null {
  const value = high * 2 ** 32 + low;
  return Number.isSafeInteger(value) ? value : null;
}

/** A positive whole power of two, exact up to 2^53 (the `n & (n - 1)` trick only holds below 2^31). */
export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** Bit `index` of a bitmap, least significant bit first in each byte (ext, NTFS, the wire's requests). */
export function bitSet(bitmap: Uint8Array, index: number): boolean {
  return ((bitmap[index >>> 3]! >>> (index & 7)) & 1) === 1;
}

export function setU64(dv: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, `u64 value ${value} is a safe non-negative integer`);
  dv.setBigUint64(offset, BigInt(value), true);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function putAscii(bytes: Uint8Array, offset: number, text: string): void {
  bytes.set(encoder.encode(text), offset);
}

export function getAscii(bytes: Uint8Array, offset: number, length: number): string {
  return decoder.decode(bytes.subarray(offset, offset + length));
}

export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

export function fromHex(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "hex"));
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function sha256(bytes: Uint8Array): Uint8Array {
  const hasher = new Bun.CryptoHasher("sha256");
  hasher.update(bytes);
  return new Uint8Array(hasher.digest().buffer);
}

/** CRC-32 (IEEE, as zlib) — Bun's native implementation. */
export function crc32(bytes: Uint8Array): number {
  return Number(Bun.hash.crc32(bytes)) >>> 0;
}
