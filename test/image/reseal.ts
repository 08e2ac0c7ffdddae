// Edits an image the way anyone holding an unsigned image can: change chunk containers, then
// recompute every digest that covers them (container digest, and the raw digest whenever the
// edited payload still decompresses), re-encode the manifest unsigned, and rewrite the trailer.
// The result passes every digest check, so only structural checks can refuse it.
import { closeSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { chunkHeaderBytes, decodeChunkHeader, encodeChunkHeader, type ChunkHeader } from "../../src/image/chunk.ts";
import { decompressPayload } from "../../src/image/codec.ts";
import { DIGEST_ENTRY_BYTES, encodeManifest, type Manifest } from "../../src/image/manifest.ts";
import { closeImage, openImage } from "../../src/image/reader.ts";
import { encodeTrailer } from "../../src/image/trailer.ts";
import { sha256 } from "../../src/util/bytes.ts";

/** Returns the new container bytes for chunk `index`, or null to leave it as it is. */
export type ChunkEdit = (index: number, container: Uint8Array, m: Manifest) => Uint8Array | null;

export function resealImage(path: string, edit: ChunkEdit, editManifest: (m: Manifest) => Manifest = (m) => m): void {
  const image = openImage(path);
  const m: Manifest = editManifest({ ...image.manifest, digests: image.manifest.digests.slice(), signature: null });
  const C = m.chunkBytes;
  closeImage(image);
  const fd = openSync(path, "r+");
  try {
    for (let i = 0; i < m.dataChunkCount; i++) {
      const container = new Uint8Array(C);
      readSync(fd, container, 0, C, i * C);
      const edited = edit(i, container, m);
      if (edited === null) continue;
      if (edited.length !== C) throw new Error("an edited container keeps the chunk size");
      writeSync(fd, edited, 0, C, i * C);
      m.digests.set(sha256(edited), i * DIGEST_ENTRY_BYTES);
      const raw = rawOf(edited, C);
      if (raw !== null) m.digests.set(sha256(raw), i * DIGEST_ENTRY_BYTES + 32);
    }
    writeManifestAndTrailer(fd, m);
  } finally {
    closeSync(fd);
  }
}

function rawOf(container: Uint8Array, chunkBytes: number): Uint8Array | null {
  try {
    const h = decodeChunkHeader(container, chunkBytes);
    const start = chunkHeaderBytes(h.regions.length);
    return decompressPayload(h.codec, container.subarray(start, start + h.payloadBytes), h.rawBytes);
  } catch {
    return null;
  }
}

function writeManifestAndTrailer(fd: number, m: Manifest): void {
  const C = m.chunkBytes;
  const bytes = encodeManifest(m);
  const parts = Math.ceil(bytes.length / C);
  const padded = new Uint8Array(parts * C);
  padded.set(bytes);
  writeSync(fd, padded, 0, padded.length, m.dataChunkCount * C);
  const trailer = encodeTrailer({ chunkBytes: C, imageId: m.imageId, dataChunkCount: m.dataChunkCount, manifestPartCount: parts, manifestBytes: bytes.length, manifestSha256: sha256(bytes) });
  writeSync(fd, trailer, 0, trailer.length, (m.dataChunkCount + parts) * C);
  ftruncateSync(fd, (m.dataChunkCount + parts) * C + trailer.length);
}

/** A container with its header replaced by `change(header)`, payload kept; null if it no longer fits. */
export function withHeader(container: Uint8Array, chunkBytes: number, change: (h: ChunkHeader) => ChunkHeader): Uint8Array | null {
  const h = decodeChunkHeader(container, chunkBytes);
  const payload = container.slice(chunkHeaderBytes(h.regions.length), chunkHeaderBytes(h.regions.length) + h.payloadBytes);
  const next = change({ ...h, regions: h.regions.map((r) => ({ ...r })) });
  let header: Uint8Array;
  try {
    header = encodeChunkHeader(next);
  } catch {
    return null; // the encoder itself refuses this header (its asserts): not a case to test
  }
  if (header.length + payload.length > chunkBytes) return null;
  const out = new Uint8Array(chunkBytes);
  out.set(header);
  out.set(payload, header.length);
  return out;
}
