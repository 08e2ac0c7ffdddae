// The multicast loader's answer to "plan GPT growth before the first write": chunks arrive in any
// order, so the target is held closed to writes until the chunks that hold the table (the
// protective MBR, the primary header and its entry array) have come and the growth is planned.
// Those chunks are checked like any other (both digests) before their bytes are trusted; a chunk
// that arrives before the plan is done is handed back to be fetched again, never written.
import { chunkPayload, ChunkFormatError, decodeChunkHeader } from "../image/chunk.ts";
import { decompressPayload, PayloadError } from "../image/codec.ts";
import { chunkDigest, rawDigest, type Manifest } from "../image/manifest.ts";
import { checkChunkAgainstManifest } from "../image/tiling.ts";
import { PartitionTableError } from "../part/types.ts";
import { assert } from "../util/assert.ts";
import { equalBytes, sha256 } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";
import { MAX_SOURCE_READ_BYTES } from "./image-source.ts";
import { planGptGrowth } from "./gpt-grow.ts";

/** Thrown inside a plan's read when the bytes have not arrived yet: the plan is tried again later. */
class NotYet extends Error {
  constructor(readonly offsetBytes: number, readonly lengthBytes: number) {
    super("not yet");
  }
}

/** Source bytes kept for the plan at most: the largest read it makes, plus the MBR and header. */
const MAX_KEPT_BYTES = MAX_SOURCE_READ_BYTES + 2 * 65536;

export class GptGate {
  private readonly kept: { startBytes: number; bytes: Uint8Array }[] = [];
  private keptBytes = 0;
  /** The source bytes the plan waits for; null once it is planned. */
  private wanted: { offsetBytes: number; lengthBytes: number } | null;

  constructor(private readonly m: Manifest, private readonly targetBytes: number, private readonly imageName: string) {
    assert(m.info.partitionTable.kind === "gpt" && targetBytes > m.sourceBytes, "a gate only where the GPT will grow");
    this.wanted = { offsetBytes: 0, lengthBytes: 2 * m.sectorBytes };
  }

  get open(): boolean {
    return this.wanted === null;
  }

  /**
   * Takes a complete chunk before it may be written. True: the growth is planned, write it.
   * False: hand it back to be fetched again. Throws an input DiscusError when the table cannot be
   * moved: the load ends with nothing written.
   */
  admit(index: number, container: Uint8Array): boolean {
    if (this.wanted === null) return true;
    const raw = this.checkedRaw(index, container);
    if (raw === null) return false;
    this.keep(raw.header, raw.bytes);
    this.tryPlan();
    if (this.wanted !== null && this.keptBytes >= MAX_KEPT_BYTES) {
      // A table spread further than any GPT capture accepts: never wait for it forever.
      throw new DiscusError("input", this.imageName, `its GPT reaches beyond the first ${MAX_KEPT_BYTES} bytes the loader holds to plan its growth`, `Load it onto a target of exactly ${this.m.sourceBytes} bytes. Nothing was written`);
    }
    return this.wanted === null;
  }

  /** The chunk's data if it covers wanted bytes and passes its digests; null otherwise. */
  private checkedRaw(index: number, container: Uint8Array) {
    const m = this.m;
    const w = this.wanted!;
    if (!equalBytes(sha256(container), chunkDigest(m, index))) return null;
    try {
      const header = decodeChunkHeader(container, m.chunkBytes);
      checkChunkAgainstManifest(header, index, m);
      const sb = m.sectorBytes;
      if (header.endSector * sb <= w.offsetBytes || header.firstSector * sb >= w.offsetBytes + w.lengthBytes) return null;
      const bytes = decompressPayload(header.codec, chunkPayload(container, header), header.rawBytes);
      if (!equalBytes(sha256(bytes), rawDigest(m, index))) return null;
      return { header, bytes };
    } catch (e) {
      if (e instanceof ChunkFormatError || e instanceof PayloadError) return null;
      throw e;
    }
  }

  /** Keeps the chunk's whole range as source bytes (free space reads as zeros), within the bound. */
  private keep(h: { firstSector: number; endSector: number; regions: { start: number; length: number }[] }, raw: Uint8Array): void {
    const sb = this.m.sectorBytes;
    const w = this.wanted!;
    // From the wanted offset on, as much of the chunk as the bound allows: the plan's next read
    // (the entry array after the header) is usually in the same chunk, which then comes only once.
    const start = Math.max(h.firstSector * sb, w.offsetBytes);
    const end = Math.min(h.endSector * sb, start + (MAX_KEPT_BYTES - this.keptBytes));
    if (end <= start) return;
    const out = new Uint8Array(end - start);
    let rawOffset = 0;
    for (const r of h.regions) {
      const from = Math.max(r.start * sb, start);
      const to = Math.min((r.start + r.length) * sb, end);
      if (to > from) out.set(raw.subarray(rawOffset + (from - r.start * sb), rawOffset + (to - r.start * sb)), from - start);
      rawOffset += r.length * sb;
    }
    this.kept.push({ startBytes: start, bytes: out });
    this.keptBytes += out.length;
  }

  private tryPlan(): void {
    try {
      planGptGrowth((o, l) => this.read(o, l), this.m.sectorBytes, this.m.sourceBytes, this.targetBytes);
      this.wanted = null;
      this.kept.length = 0;
    } catch (e) {
      if (e instanceof NotYet) {
        this.wanted = { offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes };
        return;
      }
      if (!(e instanceof PartitionTableError)) throw e;
      throw new DiscusError("input", this.imageName, `its GPT cannot be moved to the end of a larger target: ${e.message}`, `Load it onto a target of exactly ${this.m.sourceBytes} bytes, or repair the source's GPT (\`sgdisk -v\`, \`sgdisk -e\`) and capture it again. Nothing was written`);
    }
  }

  /** Source bytes [offset, offset + length) from the kept pieces, or NotYet for the first gap. */
  private read(offsetBytes: number, lengthBytes: number): Uint8Array {
    const out = new Uint8Array(lengthBytes);
    let cursor = offsetBytes;
    const end = offsetBytes + lengthBytes;
    while (cursor < end) {
      const piece = this.kept.find((p) => p.startBytes <= cursor && cursor < p.startBytes + p.bytes.length);
      if (piece === undefined) throw new NotYet(cursor, end - cursor);
      const take = Math.min(end, piece.startBytes + piece.bytes.length) - cursor;
      out.set(piece.bytes.subarray(cursor - piece.startBytes, cursor - piece.startBytes + take), cursor - offsetBytes);
      cursor += take;
    }
    return out;
  }
}
