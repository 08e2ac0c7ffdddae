// The server's books: the transfer under way (from a first request until requests stop), what it
// sent and to how many clients, a bounded list of summaries of ended transfers, totals since the
// session started, and counts of dropped packets. Pure bookkeeping: no clock, no network.
import type { DropReason } from "../net/wire.ts";

/** One transfer: from a first request until no request came for the session's idle time. */
export interface SessionSummary {
  seconds: number;
  clients: number;
  clientsDone: number;
  clientsFailed: number;
  blocksSent: number;
  /** Of blocksSent, repair blocks (FEC) rather than the image's own. */
  repairsSent: number;
  bytesSent: number;
  megabitsPerSecond: number;
  requests: number;
  requestedBlocks: number;
  mergedBlocks: number;
  requestsDropped: number;
  finalRateMegabits: number;
}

export interface ServeStats {
  /** The last MAX_SESSION_SUMMARIES transfers, oldest first (a long-running server keeps no more). */
  sessions: SessionSummary[];
  /** Transfers ended in all, including those no longer in `sessions`. */
  sessionsEnded: number;
  /** By reason; the last four only with a session key (docs/PROTOCOL.md, "Authentication"). */
  dropped: Record<DropReason | "otherImage" | "badChunk" | "unauthenticated" | "badTag" | "staleEpoch" | "replayed", number>;
  /** Bursts handed to the network, the blocks in them, and bursts it took only part of (offered again later). */
  sends: { bursts: number; blocks: number; deferred: number };
}

export interface Transfer {
  startedMs: number;
  lastRequestMs: number;
  lastSendMs: number;
  clients: Set<number>;
  done: Set<number>;
  failed: Set<number>;
  blocksSent: number;
  repairsSent: number;
  bytesSent: number;
  requests: number;
  requestedBlocks: number;
  mergedBlocks: number;
  requestsDropped: number;
}

/** Transfers summarised in ServeStats.sessions: a server that runs for months keeps the last few. */
export const MAX_SESSION_SUMMARIES = 64;
/** Clients counted per transfer (distinct senders); beyond it they are not counted. */
export const MAX_TRACKED_CLIENTS = 65536;

export class Transfers {
  readonly stats: ServeStats = { sessions: [], sessionsEnded: 0, dropped: { short: 0, magic: 0, version: 0, type: 0, crc: 0, length: 0, field: 0, otherImage: 0, badChunk: 0, unauthenticated: 0, badTag: 0, staleEpoch: 0, replayed: 0 }, sends: { bursts: 0, blocks: 0, deferred: 0 } };
  /** The transfer under way, if any. */
  current: Transfer | null = null;
  /** Since the session started, over every transfer. */
  blocksSent = 0;
  bytesSent = 0;

  /** The transfer under way, opened now if none was (then `opened` is true). */
  open(nowMs: number): { transfer: Transfer; opened: boolean } {
    if (this.current !== null) return { transfer: this.current, opened: false };
    this.current = { startedMs: nowMs, lastRequestMs: nowMs, lastSendMs: nowMs, clients: new Set(), done: new Set(), failed: new Set(), blocksSent: 0, repairsSent: 0, bytesSent: 0, requests: 0, requestedBlocks: 0, mergedBlocks: 0, requestsDropped: 0 };
    return { transfer: this.current, opened: true };
  }

  /** Ends the transfer under way and keeps its summary; null when none was open. */
  close(rateBitsPerSecond: number): SessionSummary | null {
    const s = this.current;
    if (s === null) return null;
    this.current = null;
    const summary = summarise(s, rateBitsPerSecond);
    this.stats.sessions.push(summary);
    if (this.stats.sessions.length > MAX_SESSION_SUMMARIES) this.stats.sessions.shift();
    this.stats.sessionsEnded++;
    return summary;
  }

  /** A block or repair went out. */
  counted(nowMs: number, bytes: number, repair: boolean): void {
    this.blocksSent++;
    this.bytesSent += bytes;
    const s = this.current;
    if (s === null) return;
    s.lastSendMs = nowMs;
    s.blocksSent++;
    if (repair) s.repairsSent++;
    s.bytesSent += bytes;
  }
}

/** A client heard in this transfer, counted up to the bound. */
export function noteClient(s: Transfer, sender: number): void {
  if (s.clients.size < MAX_TRACKED_CLIENTS) s.clients.add(sender);
}

function summarise(s: Transfer, rateBitsPerSecond: number): SessionSummary {
  // The transfer lasted until its last request or block, whichever came later.
  const seconds = Math.max(1, Math.max(s.lastRequestMs, s.lastSendMs) - s.startedMs) / 1000;
  return {
    seconds,
    clients: s.clients.size,
    clientsDone: s.done.size,
    clientsFailed: s.failed.size,
    blocksSent: s.blocksSent,
    repairsSent: s.repairsSent,
    bytesSent: s.bytesSent,
    megabitsPerSecond: (s.bytesSent * 8) / 1e6 / seconds,
    requests: s.requests,
    requestedBlocks: s.requestedBlocks,
    mergedBlocks: s.mergedBlocks,
    requestsDropped: s.requestsDropped,
    finalRateMegabits: rateBitsPerSecond / 1e6,
  };
}
