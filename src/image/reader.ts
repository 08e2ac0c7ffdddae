// Opens an image file: trailer, manifest (checked against the trailer's digest), chunk reads.
import { closeSync, fstatSync, openSync } from "node:fs";
import { equalBytes, sha256 } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";
import { MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, TRAILER_BYTES } from "./constants.ts";
import { decodeManifest, ManifestError, maxManifestBytes, type Manifest } from "./manifest.ts";
import { decodeTrailer, imageFileBytes, TrailerError, type Trailer } from "./trailer.ts";
import { readFully } from "../util/io.ts";

export interface OpenImage {
  path: string;
  fd: number;
  trailer: Trailer;
  manifest: Manifest;
  /** Encoded manifest as stored (what the network protocol ships in parts). */
  manifestBytes: Uint8Array;
  /** The signed part of the manifest. */
  manifestBody: Uint8Array;
}

const damaged = "Copy the image again from its source; `discus verify` checks a copy";

export function openImage(path: string): OpenImage {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new DiscusError("input", path, `cannot open the image (${(e as NodeJS.ErrnoException).code ?? e})`, "Check the path and permissions");
  }
  try {
    return readImage(path, fd);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

function readImage(path: string, fd: number): OpenImage {
  const fileBytes = fstatSync(fd).size;
  if (fileBytes < TRAILER_BYTES) throw new DiscusError("input", path, "is too short to be a discus image", damaged);
  const trailerBytes = new Uint8Array(TRAILER_BYTES);
  readFully(fd, trailerBytes, fileBytes - TRAILER_BYTES);
  let trailer: Trailer;
  try {
    trailer = decodeTrailer(trailerBytes);
  } catch (e) {
    const why = e instanceof TrailerError ? e.message : String(e);
    throw new DiscusError("input", path, `${why} (a truncated or incomplete image ends elsewhere)`, damaged);
  }
  if (trailer.chunkBytes < MIN_CHUNK_BYTES || trailer.chunkBytes > MAX_CHUNK_BYTES || (trailer.chunkBytes & 511) !== 0) {
    throw new DiscusError("input", path, `chunk size ${trailer.chunkBytes} is outside the format's bounds`, damaged);
  }
  const expectedBytes = imageFileBytes(trailer);
  if (fileBytes !== expectedBytes) {
    throw new DiscusError("input", path, `is ${fileBytes} bytes but its trailer describes ${expectedBytes}`, damaged);
  }
  if (trailer.manifestBytes > trailer.manifestPartCount * trailer.chunkBytes || trailer.manifestBytes > maxManifestBytes(trailer.dataChunkCount)) {
    throw new DiscusError("input", path, "manifest length exceeds its parts or the format's bound", damaged);
  }
  const manifestBytes = new Uint8Array(trailer.manifestBytes);
  readFully(fd, manifestBytes, trailer.dataChunkCount * trailer.chunkBytes);
  if (!equalBytes(sha256(manifestBytes), trailer.manifestSha256)) {
    throw new DiscusError("input", path, "manifest digest does not match the trailer", damaged);
  }
  let decoded;
  try {
    decoded = decodeManifest(manifestBytes);
  } catch (e) {
    throw new DiscusError("input", path, e instanceof ManifestError ? e.message : String(e), damaged);
  }
  const m = decoded.manifest;
  if (!equalBytes(m.imageId, trailer.imageId) || m.dataChunkCount !== trailer.dataChunkCount || m.chunkBytes !== trailer.chunkBytes) {
    throw new DiscusError("input", path, "manifest and trailer disagree", damaged);
  }
  return { path, fd, trailer, manifest: m, manifestBytes, manifestBody: decoded.body };
}

export function readChunk(image: OpenImage, index: number, into?: Uint8Array): Uint8Array {
  const out = into ?? new Uint8Array(image.trailer.chunkBytes);
  readFully(image.fd, out, index * image.trailer.chunkBytes);
  return out;
}

export function closeImage(image: OpenImage): void {
  closeSync(image.fd);
}
