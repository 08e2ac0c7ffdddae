// The manifest as it arrives over the network: chunk-sized parts collected into one buffer, then
// checked against the announced digest and the announcement itself before anything trusts it.
import { decodeManifest, ManifestError, type DecodedManifest } from "../image/manifest.ts";
import type { AnnouncePacket } from "../net/wire.ts";
import { equalBytes, sha256 } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";

export class ManifestParts {
  private readonly bytes: Uint8Array;
  private partsDone = 0;

  constructor(private readonly announce: AnnouncePacket) {
    this.bytes = new Uint8Array(announce.manifestBytes);
  }

  get complete(): boolean {
    return this.partsDone === this.announce.manifestPartCount;
  }

  /** Copies part `part` (0-based) out of a chunk buffer; the buffer may be reused at once. */
  store(part: number, chunk: Uint8Array): void {
    const offset = part * this.announce.chunkBytes;
    const length = Math.max(0, Math.min(this.announce.chunkBytes, this.bytes.length - offset));
    this.bytes.set(chunk.subarray(0, length), offset);
    this.partsDone++;
  }

  /**
   * The decoded manifest, or the error that refuses it: the parts do not match the announced
   * digest (damaged or forged blocks: every part must be fetched again), or a manifest matching its
   * digest cannot be read or disagrees with the announcement (the server's image, or a forger's).
   * The caller drops that server either way and waits for another; a forger cannot end the load.
   */
  verify(where: string): DecodedManifest | DiscusError {
    if (!equalBytes(sha256(this.bytes), this.announce.manifestSha256)) {
      this.partsDone = 0;
      return new DiscusError("network", where, "sent a manifest that does not match the digest it announced", "Check that only one `discus serve` serves this group");
    }
    let decoded: DecodedManifest;
    try {
      decoded = decodeManifest(this.bytes);
    } catch (e) {
      if (!(e instanceof ManifestError)) throw e;
      return new DiscusError("input", where, `its manifest cannot be read (${e.message})`, "Check the image on the server with `discus verify`");
    }
    const m = decoded.manifest;
    const a = this.announce;
    if (!equalBytes(m.imageId, a.imageId) || m.dataChunkCount !== a.dataChunkCount || m.chunkBytes !== a.chunkBytes || m.sourceBytes !== a.sourceBytes) {
      return new DiscusError("input", where, "its manifest disagrees with the server's announcement", "Check the image on the server with `discus verify`");
    }
    return decoded;
  }
}
