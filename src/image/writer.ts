// Writes an image file: chunk containers as they are packed, then the image id, digests,
// manifest and trailer. Written under a temporary name and renamed only when complete,
// so a crash never leaves something that looks like a whole image.
import { closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync } from "node:fs";
import type { KeyObject } from "node:crypto";
import { assert } from "../util/assert.ts";
import { sha256, setU64, view } from "../util/bytes.ts";
import { encodeChunkHeader, patchChunkImageId, peekChunkHeaderBytes } from "./chunk.ts";
import { Codec, DIGEST_BYTES, IMAGE_ID_BYTES, SECTOR_BYTES } from "./constants.ts";
import { DIGEST_ENTRY_BYTES, encodeManifest, encodeManifestBody, MAX_DATA_CHUNKS, type Manifest } from "./manifest.ts";
import type { ImageInfo } from "./info.ts";
import type { Range } from "../util/ranges.ts";
import { rawPublicKey, signBytes } from "./signing.ts";
import { encodeTrailer } from "./trailer.ts";
import { readFully, writeFully } from "../util/io.ts";
import { DiscusError, ioError } from "../util/errors.ts";


/** A chunk as the packer hands it over: sectors, regions, compressed payload, raw digest. */
export interface PackedChunk {
  index: number;
  firstSector: number;
  endSector: number;
  regions: Range[];
  payload: Uint8Array;
  rawBytes: number;
  rawSha256: Uint8Array;
}

export interface WriterParams {
  path: string;
  chunkBytes: number;
  codec: Codec;
  level: number;
  sourceBytes: number;
}

export class ImageWriter {
  private readonly tmpPath: string;
  private readonly fd: number;
  private chunkCount = 0;
  private dataSectors = 0;
  /** 64 bytes per chunk; grown by doubling, bounded by MAX_DATA_CHUNKS. */
  private digests = new Uint8Array(64 * DIGEST_ENTRY_BYTES);
  private readonly idHasher = new Bun.CryptoHasher("sha256");
  private readonly zeroId = new Uint8Array(IMAGE_ID_BYTES);

  constructor(private readonly params: WriterParams) {
    this.tmpPath = `${params.path}.partial`;
    // Found now, not by the rename after a whole capture.
    if (isDirectory(params.path)) throw new DiscusError("io", params.path, "is a directory (EISDIR)", "Name the image file to write, e.g. DIR/disk.dsc");
    try {
      this.fd = openSync(this.tmpPath, "w+");
    } catch (e) {
      throw ioError(e, this.tmpPath, "creating the image file");
    }
    // The id commits to everything that shapes the image; it is fixed once all chunks are known.
    const fixed = new Uint8Array(32);
    const dv = view(fixed);
    dv.setUint32(0, params.chunkBytes, true);
    dv.setUint32(4, SECTOR_BYTES, true);
    dv.setUint32(8, params.codec, true);
    dv.setUint32(12, params.level, true);
    setU64(dv, 16, params.sourceBytes);
    this.idHasher.update("discus image id v1");
    this.idHasher.update(fixed);
  }

  writeChunk(c: PackedChunk): void {
    assert(c.index === this.chunkCount, "chunks arrive in order");
    assert(this.chunkCount < MAX_DATA_CHUNKS, "image within the chunk-count bound");
    const header = encodeChunkHeader({
      imageId: this.zeroId,
      chunkIndex: c.index,
      codec: this.params.codec,
      sectorBytes: SECTOR_BYTES,
      firstSector: c.firstSector,
      endSector: c.endSector,
      regions: c.regions,
      payloadBytes: c.payload.length,
      rawBytes: c.rawBytes,
    });
    const container = new Uint8Array(this.params.chunkBytes);
    container.set(header, 0);
    container.set(c.payload, header.length);
    writeFully(this.fd, container, c.index * this.params.chunkBytes);
    this.idHasher.update(header);
    this.idHasher.update(c.rawSha256);
    this.growDigests(c.index + 1);
    this.digests.set(c.rawSha256, c.index * DIGEST_ENTRY_BYTES + DIGEST_BYTES);
    this.dataSectors += c.rawBytes / SECTOR_BYTES;
    this.chunkCount++;
  }

  /** Fixes the image id into every chunk, digests them, writes manifest and trailer, renames. */
  finish(info: ImageInfo, signingKey: KeyObject | null): Manifest {
    const imageId = new Uint8Array(this.idHasher.digest().buffer).slice(0, IMAGE_ID_BYTES);
    const { chunkBytes } = this.params;
    const container = new Uint8Array(chunkBytes);
    for (let i = 0; i < this.chunkCount; i++) {
      readFully(this.fd, container, i * chunkBytes);
      const headerBytes = peekChunkHeaderBytes(container);
      const header = container.subarray(0, headerBytes);
      patchChunkImageId(header, imageId);
      writeFully(this.fd, header, i * chunkBytes);
      this.digests.set(sha256(container), i * DIGEST_ENTRY_BYTES);
    }
    const manifest: Manifest = {
      imageId,
      sectorBytes: SECTOR_BYTES,
      chunkBytes,
      sourceBytes: this.params.sourceBytes,
      dataChunkCount: this.chunkCount,
      codec: this.params.codec,
      dataSectors: this.dataSectors,
      info,
      digests: this.digests.slice(0, this.chunkCount * DIGEST_ENTRY_BYTES),
      signature: null,
    };
    if (signingKey !== null) {
      const body = encodeManifestBody(manifest, true);
      manifest.signature = { publicKey: rawPublicKey(signingKey), signature: signBytes(signingKey, body) };
    }
    const manifestBytes = encodeManifest(manifest);
    const manifestPartCount = Math.ceil(manifestBytes.length / chunkBytes);
    const manifestArea = new Uint8Array(manifestPartCount * chunkBytes);
    manifestArea.set(manifestBytes, 0);
    writeFully(this.fd, manifestArea, this.chunkCount * chunkBytes);
    const trailer = encodeTrailer({
      chunkBytes,
      imageId,
      dataChunkCount: this.chunkCount,
      manifestPartCount,
      manifestBytes: manifestBytes.length,
      manifestSha256: sha256(manifestBytes),
    });
    writeFully(this.fd, trailer, (this.chunkCount + manifestPartCount) * chunkBytes);
    try {
      fsyncSync(this.fd);
      closeSync(this.fd);
      renameSync(this.tmpPath, this.params.path);
    } catch (e) {
      throw ioError(e, this.params.path, "completing the image file (fsync, rename)");
    }
    return manifest;
  }

  abort(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    try {
      unlinkSync(this.tmpPath);
    } catch {
      // never created or already gone
    }
  }

  /** Chunks written so far, for messages about a failed capture. */
  get chunksWritten(): number {
    return this.chunkCount;
  }

  private growDigests(chunks: number): void {
    if (chunks * DIGEST_ENTRY_BYTES <= this.digests.length) return;
    const bigger = new Uint8Array(this.digests.length * 2);
    bigger.set(this.digests, 0);
    this.digests = bigger;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false; // missing is fine: it is about to be created
  }
}
