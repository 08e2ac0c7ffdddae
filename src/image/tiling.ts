// The chunks of an image tile its source (docs/FORMAT.md): chunk 0 starts at sector 0, each next
// chunk starts where the one before it ends, the last ends at the source's end, and the data of
// all chunks adds up to the manifest's count. A header that breaks this would write over another
// chunk's sectors even with every digest right, so it is refused before anything is written.
import { equalBytes, hex } from "../util/bytes.ts";
import { ChunkFormatError, type ChunkHeader } from "./chunk.ts";
import { codecName } from "./constants.ts";
import type { Manifest } from "./manifest.ts";

export type TilingManifest = Pick<Manifest, "imageId" | "sectorBytes" | "sourceBytes" | "dataChunkCount" | "dataSectors" | "codec">;

/**
 * What one header must agree on with its manifest whatever the other chunks say: its index, the
 * image, the sector size, the codec, and a range inside the source. The multicast loader, which
 * sees chunks one at a time in any order, checks this much of every chunk before writing it.
 */
export function checkChunkAgainstManifest(h: ChunkHeader, index: number, m: Pick<Manifest, "imageId" | "sectorBytes" | "sourceBytes" | "codec">): void {
  if (h.chunkIndex !== index) throw new ChunkFormatError(`header says chunk ${h.chunkIndex}`);
  if (!equalBytes(h.imageId, m.imageId)) throw new ChunkFormatError(`chunk belongs to image ${hex(h.imageId)}`);
  if (h.sectorBytes !== m.sectorBytes) throw new ChunkFormatError(`sector size ${h.sectorBytes}, the manifest says ${m.sectorBytes}`);
  if (h.codec !== m.codec) throw new ChunkFormatError(`codec ${codecName(h.codec)}, the manifest says ${codecName(m.codec)}`);
  const sourceSectors = m.sourceBytes / m.sectorBytes;
  if (h.endSector > sourceSectors) throw new ChunkFormatError(`range ends at sector ${h.endSector}, past the source's ${sourceSectors}`);
}

/** Fed every header in index order; throws ChunkFormatError at the first that breaks the tiling. */
export class TilingCheck {
  private nextIndex = 0;
  private nextSector = 0;
  private dataSectors = 0;

  constructor(private readonly m: TilingManifest) {}

  add(index: number, h: ChunkHeader): void {
    if (index !== this.nextIndex) throw new ChunkFormatError(`chunks checked out of order: ${index} after ${this.nextIndex - 1}`);
    checkChunkAgainstManifest(h, index, this.m);
    if (h.firstSector !== this.nextSector) {
      throw new ChunkFormatError(`range starts at sector ${h.firstSector}, but the chunk before it ends at ${this.nextSector}`);
    }
    const isLast = index === this.m.dataChunkCount - 1;
    const lastRegion = h.regions[h.regions.length - 1]!;
    // Only the last chunk may end in free space: the others end where their data ends.
    if (!isLast && lastRegion.start + lastRegion.length !== h.endSector) throw new ChunkFormatError("range ends past its data but is not the last chunk");
    if (isLast && h.endSector !== this.m.sourceBytes / this.m.sectorBytes) throw new ChunkFormatError(`last chunk ends at sector ${h.endSector}, not at the source's end`);
    for (const r of h.regions) this.dataSectors += r.length;
    this.nextSector = h.endSector;
    this.nextIndex++;
  }

  /** After the last chunk: every chunk seen and the data adds up to the manifest's count. */
  finish(): void {
    if (this.nextIndex !== this.m.dataChunkCount) throw new ChunkFormatError(`only ${this.nextIndex} of ${this.m.dataChunkCount} chunks checked`);
    if (this.dataSectors !== this.m.dataSectors) throw new ChunkFormatError(`chunks hold ${this.dataSectors} data sectors, the manifest says ${this.m.dataSectors}`);
  }
}
