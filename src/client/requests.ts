// When and for what the loader asks its server: new chunks in the client's own order within its
// request window, the holes of chunks that went quiet (with back-off), and SRM-style slotting so
// that one client's request, overheard by the others, spares theirs. Steps over a LoadState.
import { encodeRequest, type RequestPacket } from "../net/wire.ts";
import { equalBytes } from "../util/bytes.ts";
import { covers, newSlot, requestBitmap, type Geometry, type Slot } from "./assembly.ts";
import { ChunkState, type LoadState } from "./load-state.ts";

/** First wait for blocks after asking for a chunk; doubles while nothing comes, up to the max. */
const REQUEST_WAIT_MS = 200;
/**
 * First wait after asking for the holes of a chunk under way: the server sends such small requests
 * ahead of whole chunks (its urgent lane), so an answer is due within a few turns' time.
 */
const REPAIR_WAIT_MS = 80;
const REQUEST_MAX_WAIT_MS = 2000;
/**
 * Request slotting, as SRM does: a chunk that went quiet with holes waits a random extra time
 * before asking, up to this much per doubling of the clients heard, so that one client's request
 * (which the others overhear, and which the server answers with repairs for all) goes out first.
 */
const SLOT_MS_PER_DOUBLING = 4;
const MAX_SLOT_MS = 40;
/** Distinct clients counted for slotting, at most (the count only sets the slot's width). */
const MAX_HEARD_CLIENTS = 4096;
/** Request packets sent per tick at most (a burst after a long silence stays small). */
const MAX_REQUESTS_PER_TICK = 64;

/** Asks for the holes of quiet chunks, then for new chunks while the window and buffers allow. */
export function request(st: LoadState, nowMs: number): void {
  const g = st.geometry!;
  const buffers = st.buffers!;
  let budget = MAX_REQUESTS_PER_TICK;
  let ours = 0;
  // Chunks under way: ask for what is missing once they have gone quiet.
  for (const slot of st.slots.values()) {
    if (slot.requestedByUs) ours++;
    if (budget === 0 || nowMs - slot.lastActivityMs < slot.waitMs) continue;
    askFor(st, slot, g, nowMs);
    budget--;
  }
  // Start new chunks: the manifest first, then data in this client's own random order.
  while (budget > 0 && ours < st.o.requestWindowChunks && buffers.freeCount > 0) {
    const chunk = nextWanted(st);
    if (chunk < 0) break;
    const slot = newSlot(chunk, buffers.take()!, g, nowMs, firstWaitMs(st));
    slot.requestedByUs = true;
    st.slots.set(chunk, slot);
    st.state[chunk] = ChunkState.filling;
    askFor(st, slot, g, nowMs);
    budget--;
    ours++;
  }
}

/**
 * How long a new request may sit in the server's queue behind this client's own window before
 * asking again is worth a packet: the window's chunks at the announced rate, 200 ms at least.
 */
function firstWaitMs(st: LoadState): number {
  const a = st.server!.announce;
  const chunkMs = (a.chunkBytes * 8 * 1000) / Math.max(1, a.rateBitsPerSecond);
  return Math.min(REQUEST_MAX_WAIT_MS, Math.max(REQUEST_WAIT_MS, (st.o.requestWindowChunks + 1) * chunkMs));
}

function askFor(st: LoadState, slot: Slot, g: Geometry, nowMs: number): void {
  if (slot.requests > 0 || slot.gotBlocks > 0) st.stats.rerequests++;
  // Asking again with nothing received since: back off (the server may be busy or restarting).
  if (slot.requests > 0) slot.waitMs = Math.min(REQUEST_MAX_WAIT_MS, slot.waitMs * 2);
  // After asking, give the server time to reach the request in its queue.
  slot.waitMs = Math.max(slot.gotBlocks > 0 ? REPAIR_WAIT_MS : REQUEST_WAIT_MS, slot.waitMs);
  slot.requests++;
  st.stats.requestsSent++;
  st.send(encodeRequest({ imageId: st.server!.announce.imageId, sender: st.me }, slot.chunk, g.blockCount, requestBitmap(slot, g)));
  slot.lastActivityMs = nowMs;
}

/** The next chunk to ask for, or -1 when every wanted chunk is under way or done. */
function nextWanted(st: LoadState): number {
  for (let c = st.dataChunks; c < st.totalChunks; c++) if (st.state[c] === ChunkState.missing) return c;
  if (st.manifest === null) {
    // Data may be fetched while the manifest is under way, but not ahead of it by much.
    if (st.readyData.length >= reservedBuffers(st)) return -1;
  }
  const n = st.order.length;
  for (let k = 0; k < n; k++) {
    const c = st.order[st.orderCursor]!;
    st.orderCursor = st.orderCursor + 1 === n ? 0 : st.orderCursor + 1;
    if (st.state[c] === ChunkState.missing) return c;
  }
  return -1;
}

/** Another client asked for blocks: if its request covers what we lack, do not ask ourselves. */
export function onOverheard(st: LoadState, p: RequestPacket): void {
  const s = st.server;
  const g = st.geometry;
  if (s === null || g === null || !equalBytes(p.imageId, s.announce.imageId) || p.blockCount !== g.blockCount) return;
  if (st.heardClients.size < MAX_HEARD_CLIENTS) st.heardClients.add(p.sender);
  const slot = st.slots.get(p.chunk);
  if (slot === undefined || !covers(p.bitmap, slot, g)) return;
  st.stats.requestsOverheard++;
  slot.lastActivityMs = st.clock.nowMs();
}

/** A random wait in [0, width), the width growing with the log of the clients heard. */
export function slotMs(st: LoadState): number {
  const widthMs = Math.min(MAX_SLOT_MS, SLOT_MS_PER_DOUBLING * Math.log2(1 + st.heardClients.size));
  return st.random() * widthMs;
}

/** Buffers kept back from overheard traffic so this client can always ask for its own chunks. */
export function reservedBuffers(st: LoadState): number {
  return Math.min(st.o.requestWindowChunks, st.buffers!.bufferCount >> 2);
}

/**
 * Chunk 0 first, the rest in the client's own order: it holds the partition table, which a sink
 * growing a GPT onto a larger disk must see before it writes anything (target/gpt-gate.ts).
 */
export function firstChunkFirst(order: number[]): number[] {
  const at = order.indexOf(0);
  if (at > 0) [order[0], order[at]] = [order[at]!, order[0]!];
  return order;
}
