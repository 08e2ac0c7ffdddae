// The multicast loader's answer to "plan GPT growth before the first write": chunks arrive in any
// order, so the target is held closed to writes until the chunks that hold the table (the
// protective MBR, the primary header and its entry array) have come and the growth is planned.
// Those chunks are checked like any other (both digests) before their bytes are trusted; a chunk
// that arrives before the plan is done is handed back to be fetched again, never written.
import type { ChunkHeader } from "../image/chunk.ts";
import type { Manifest } from "../image/manifest.ts";
import { PartitionTableError } from "../part/types.ts";
import { assert } from "../util/assert.ts";
import { DiscusError } from "../util/errors.ts";
import { checkedChunk, chunkCheckFor } from "./apply.ts";
import { copyOverlap, MAX_SOURCE_READ_BYTES } from "./image-source.ts";
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

  /** The chunk's header and data if it covers wanted bytes and passes every check; null otherwise. */
  private checkedRaw(index: number, container: Uint8Array): { header: ChunkHeader; bytes: Uint8Array } | null {
    const w = this.wanted!;
    const sb = this.m.sectorBytes;
    try {
      const { header, raw } = checkedChunk(chunkCheckFor(this.m, index, container, this.imageName));
      if (header.endSector * sb <= w.offsetBytes || header.firstSector * sb >= w.offsetBytes + w.lengthBytes) return null;
      return { header, bytes: raw };
    } catch (e) {
      // A damaged chunk is handed back like any other early one; the sink's apply rejects it later.
      if (e instanceof DiscusError && e.kind === "input") return null;
      throw e;
    }
  }

  /** Keeps source bytes from the wanted offset on, as much of the chunk as the bound allows. */
  private keep(h: ChunkHeader, raw: Uint8Array): void {
    const sb = this.m.sectorBytes;
    // The plan's next read (the entry array after the header) is usually in the same chunk, which
    // then comes only once.
    const start = Math.max(h.firstSector * sb, this.wanted!.offsetBytes);
    const end = Math.min(h.endSector * sb, start + (MAX_KEPT_BYTES - this.keptBytes));
    if (end <= start) return;
    const out = new Uint8Array(end - start); // free space in the range reads as zeros
    let rawOffset = 0;
    for (const r of h.regions) {
      copyOverlap(raw.subarray(rawOffset, rawOffset + r.length * sb), r.start * sb, out, start);
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
