// The server's datagrams: how an image's chunks split into blocks for an MTU (refused when the
// protocol cannot carry them), the announcement, each block or repair packet, and what one costs
// on the wire. Pure: no clock, no network.
import type { OpenImage } from "../image/reader.ts";
import { encodeRepair } from "../net/fec.ts";
import { fecGroupCount, groupSymbols } from "../net/fec-groups.ts";
import {
  BLOCK_PREFIX_BYTES,
  blockBytesForMtu,
  blocksPerChunk,
  encodeBlock,
  type BlockWriter,
  encodeRepairPacket,
  HEADER_BYTES,
  MAX_BLOCKS_PER_CHUNK,
  MIN_BLOCK_BYTES,
  wireBytes,
  type AnnounceBody,
} from "../net/wire.ts";
import { DiscusError } from "../util/errors.ts";
import type { Send } from "./queue.ts";

export interface BlockLayout {
  chunkBytes: number;
  blockBytes: number;
  /** Blocks per chunk. */
  blockCount: number;
}

/** The sender's id on the wire: the image and this session's epoch. */
export type Self = { imageId: Uint8Array; sender: number };

/** Blocks of chunkBytes-byte chunks at this MTU; a usage error when the protocol cannot carry them. */
export function blockLayout(mtuBytes: number, chunkBytes: number, imageName: string): BlockLayout {
  const blockBytes = blockBytesForMtu(mtuBytes);
  if (blockBytes < MIN_BLOCK_BYTES) {
    throw new DiscusError("usage", `MTU ${mtuBytes}`, `it leaves ${blockBytes}-byte blocks, below the protocol's ${MIN_BLOCK_BYTES}`, "Use the link's MTU, 1500 unless jumbo frames are on");
  }
  const blockCount = blocksPerChunk(chunkBytes, blockBytes);
  if (blockCount > MAX_BLOCKS_PER_CHUNK) {
    throw new DiscusError("usage", imageName, `its ${chunkBytes}-byte chunks need ${blockCount} blocks of ${blockBytes} bytes; the protocol allows ${MAX_BLOCKS_PER_CHUNK}`, "Use a larger --mtu (jumbo frames) or an image made with smaller chunks");
  }
  return { chunkBytes, blockBytes, blockCount };
}

export function announceBody(image: OpenImage, blockBytes: number, rateBitsPerSecond: number): AnnounceBody {
  const t = image.trailer;
  return {
    chunkBytes: t.chunkBytes,
    blockBytes,
    dataChunkCount: t.dataChunkCount,
    manifestPartCount: t.manifestPartCount,
    manifestBytes: t.manifestBytes,
    sourceBytes: image.manifest.sourceBytes,
    rateBitsPerSecond,
    manifestSha256: t.manifestSha256,
  };
}

/** The datagram for one send: a block of the chunk, or a repair coded over one of its groups. */
export function packetFor(self: Self, seq: number, next: Send, data: Uint8Array, layout: BlockLayout): { bytes: Uint8Array; dataBytes: number } {
  const { chunkBytes, blockBytes, blockCount } = layout;
  if (next.kind === "block") {
    const start = next.block * blockBytes;
    const block = data.subarray(start, Math.min(chunkBytes, start + blockBytes));
    return { bytes: encodeBlock(self, next.chunk, seq, next.block, block), dataBytes: block.length };
  }
  const symbols = groupSymbols(data.subarray(0, chunkBytes), blockBytes, blockCount, fecGroupCount(blockCount), next.group);
  const repair = encodeRepair(symbols, next.index, blockBytes);
  return { bytes: encodeRepairPacket(self, next.chunk, seq, next.group, next.index, repair), dataBytes: repair.length };
}

/**
 * The same datagram as packetFor, a block written into `out` at `at` (a burst's buffer, viewed by
 * `dv`) through the sender's BlockWriter; a repair, rarer and coded anyway, in its own buffer.
 */
export function packetInto(w: BlockWriter, out: Uint8Array, dv: DataView, at: number, self: Self, seq: number, next: Send, data: Uint8Array, layout: BlockLayout): { bytes: Uint8Array; dataBytes: number } {
  if (next.kind !== "block") return packetFor(self, seq, next, data, layout);
  const start = next.block * layout.blockBytes;
  const block = data.subarray(start, Math.min(layout.chunkBytes, start + layout.blockBytes));
  const length = w.write(out, dv, at, next.chunk, seq, next.block, block);
  return { bytes: out.subarray(at, at + length), dataBytes: block.length };
}

/** What a block packet of this many data bytes costs on the wire. */
export function packetWireBytes(dataBytes: number): number {
  return wireBytes(HEADER_BYTES + BLOCK_PREFIX_BYTES + dataBytes);
}
