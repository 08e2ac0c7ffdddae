// Blocks and repairs into the loader's chunks: checks each comes from our server for our image and
// fits the geometry, stores it in its chunk's slot (overheard data too, while buffers are spare),
// decodes FEC groups, and notes progress. Says which chunk became whole; completion.ts takes it on.
import { FEC_MAX_REPAIR_BLOCKS } from "../net/fec.ts";
import type { Peer } from "../net/transport.ts";
import type { BlockPacket, RepairPacket } from "../net/wire.ts";
import { equalBytes } from "../util/bytes.ts";
import { blockLength, decodeGroup, newSlot, storeBlock, storeRepair, type Geometry, type Slot } from "./assembly.ts";
import { ChunkState, type LoadState } from "./load-state.ts";
import { reservedBuffers, slotMs } from "./requests.ts";
import { manifestElsewhere, noteEpoch } from "./server-choice.ts";

/** Blocks of one chunk go out back to back: a gap this long means the rest were lost. */
const BLOCK_GAP_MS = 40;

/**
 * Checks a block or repair comes from our server for our image and notes it as traffic (alive,
 * sequence for loss); false when it is dropped. Counts it as received either way it passes.
 */
function fromOurServer(st: LoadState, p: BlockPacket | RepairPacket, from: Peer, fits: (g: Geometry) => boolean): boolean {
  const s = st.server;
  const g = st.geometry;
  if (s === null || g === null) return false; // not yet listening for any image
  // An unproven server is known only by its announcement: its blocks carry the epoch it announced.
  if (from.address !== s.address || from.port !== st.o.port || (st.manifest === null && p.sender !== s.epoch)) {
    st.stats.packetsDropped.foreignSource++;
    if (st.manifest === null && p.chunk >= st.dataChunks && p.chunk < st.totalChunks) manifestElsewhere(st, from);
    return false;
  }
  if (!equalBytes(p.imageId, s.announce.imageId)) {
    st.stats.packetsDropped.otherImage++;
    return false;
  }
  if (p.chunk >= st.totalChunks || !fits(g)) {
    st.stats.packetsDropped.badBlock++;
    return false;
  }
  noteEpoch(st, p.sender);
  s.lastBlockMs = st.clock.nowMs();
  // Loss is measured on a proven server only: an unproven one may be a forger with any numbers.
  if (st.manifest !== null) st.loss.count(p.seq);
  st.stats.blocksReceived++;
  return true;
}

/** Stores a block; the chunk's slot when that made it whole, else null. */
export function onBlock(st: LoadState, p: BlockPacket, from: Peer): Slot | null {
  if (!fromOurServer(st, p, from, (g) => p.block < g.blockCount && p.data.length === blockLength(g, p.block))) return null;
  const g = st.geometry!;
  const nowMs = st.clock.nowMs();
  const state = st.state[p.chunk]!;
  if (state >= ChunkState.complete) {
    st.stats.duplicateBlocks++;
    return null;
  }
  let slot = st.slots.get(p.chunk);
  if (slot === undefined) {
    // Overheard data for a chunk we need: keep it if a buffer is spare beyond the request window.
    const buffers = st.buffers!;
    if (buffers.freeCount <= reservedBuffers(st)) {
      st.stats.blocksWithoutBuffer++;
      return null;
    }
    slot = newSlot(p.chunk, buffers.take()!, g, nowMs, BLOCK_GAP_MS);
    st.slots.set(p.chunk, slot);
    st.state[p.chunk] = ChunkState.filling;
  }
  if (!storeBlock(slot, g, p.block, p.data)) {
    st.stats.duplicateBlocks++;
    return null;
  }
  st.stats.blocksRecovered += decodeGroup(slot, g, p.block % g.groups);
  return filled(st, slot, p.chunk, nowMs);
}

/**
 * A repair (FEC): useful to a chunk under way that lacks blocks of its group; decoded once enough.
 * The chunk's slot when that made it whole, else null.
 */
export function onRepair(st: LoadState, p: RepairPacket, from: Peer): Slot | null {
  if (!fromOurServer(st, p, from, (g) => p.group < g.groups && p.index < FEC_MAX_REPAIR_BLOCKS && p.data.length === g.blockBytes)) return null;
  const g = st.geometry!;
  const slot = st.slots.get(p.chunk);
  // Without the chunk's other blocks a repair is no use: it is not kept.
  if (slot === undefined || !storeRepair(slot, g, p.group, p.index, p.data)) {
    st.stats.duplicateBlocks++;
    return null;
  }
  st.stats.repairsUsed++;
  st.stats.blocksRecovered += decodeGroup(slot, g, p.group);
  return filled(st, slot, p.chunk, st.clock.nowMs());
}

/** A chunk got a block or a repair: that is progress, and it may be whole now. */
function filled(st: LoadState, slot: Slot, chunk: number, nowMs: number): Slot | null {
  // Progress: a manifest block, or data once the manifest vouches for it.
  if (chunk >= st.dataChunks) st.server!.lastManifestBlockMs = nowMs;
  if (chunk >= st.dataChunks || st.manifest !== null) st.lastProgressMs = nowMs;
  slot.lastActivityMs = nowMs;
  slot.waitMs = BLOCK_GAP_MS + slotMs(st);
  return slot.gotBlocks === st.geometry!.blockCount ? slot : null;
}
