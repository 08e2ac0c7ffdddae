// What `discus load` reports when it is done (`--json` prints exactly this).
import type { DropReason } from "../net/wire.ts";
import type { RestoreStats } from "../target/restore.ts";

export interface LoadStats extends RestoreStats {
  imageId: string;
  server: string;
  megabytesPerSecond: number;
  requestsSent: number;
  rerequests: number;
  requestsOverheard: number;
  blocksReceived: number;
  duplicateBlocks: number;
  /** Repair blocks (FEC) kept, and the lost blocks they rebuilt. */
  repairsUsed: number;
  blocksRecovered: number;
  /** Blocks dropped because every chunk buffer was busy (asked for again later). */
  blocksWithoutBuffer: number;
  chunksRejected: number;
  manifestRejected: number;
  /** Unproven servers dropped: their manifest did not match their announcement, or never came. */
  serversDropped: number;
  serverRestarts: number;
  /** `unauthenticated`: with a session key, overheard requests without a valid tag; `otherKey`: announces of another key. */
  packetsDropped: Record<DropReason | "foreignSource" | "otherImage" | "badBlock" | "unauthenticated" | "otherKey", number>;
  peakRssBytes: number;
}

export function emptyLoadStats(): LoadStats {
  return {
    seconds: 0,
    imageId: "",
    server: "",
    chunks: 0,
    writtenBytes: 0,
    freeBytes: 0,
    zeroedBytes: 0,
    discardedBytes: 0,
    targetBytes: 0,
    gptMoved: false,
    signature: "unsigned",
    megabytesPerSecond: 0,
    requestsSent: 0,
    rerequests: 0,
    requestsOverheard: 0,
    blocksReceived: 0,
    duplicateBlocks: 0,
    repairsUsed: 0,
    blocksRecovered: 0,
    blocksWithoutBuffer: 0,
    chunksRejected: 0,
    manifestRejected: 0,
    serversDropped: 0,
    serverRestarts: 0,
    packetsDropped: { short: 0, magic: 0, version: 0, type: 0, crc: 0, length: 0, field: 0, foreignSource: 0, otherImage: 0, badBlock: 0, unauthenticated: 0, otherKey: 0 },
    peakRssBytes: 0,
  };
}
