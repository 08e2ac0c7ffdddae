// One image served on one group, as an engine: ServeSession answers requests for blocks, paces
// them and adapts the rate, and tells its face what happens through events. Time and the network
// are injected (a Clock, an OpenTransport), so the same code runs on the wall clock over UDP
// multicast (serve.ts) or on virtual time over an in-memory LAN (scripts/sim). Stateless toward
// clients: the queue holds what was asked for, not who asked; the client table is for display.
// This module coordinates (lifecycle, dispatch, announcing, sending); rate-control.ts paces and
// adapts the rate, transfers.ts keeps the books.
import type { OpenImage } from "../image/reader.ts";
import { assert } from "../util/assert.ts";
import { countBits } from "../util/bitmap.ts";
import { equalBytes, hex, view } from "../util/bytes.ts";
import { every, type Clock, type TimerHandle } from "../util/clock.ts";
import { idFromSeed } from "../util/shuffle.ts";
import { sendBurst, type GroupTransport, type OpenTransport, type Peer } from "../net/transport.ts";
import { ReplayWindow, type SessionKey } from "../net/auth.ts";
import { BlockWriter, decodePacket, peekType, encodeAnnounce, PacketType, ReportState, type QueryPacket, type ReportPacket, type RequestPacket } from "../net/wire.ts";
import { ChunkCache, fileChunkReader, type ChunkReader } from "./chunk-cache.ts";
import { ClientTable } from "./clients.ts";
import { announceBody, blockLayout, packetInto, packetWireBytes, type BlockLayout } from "./datagrams.ts";
import type { AuthDrops, ServeEvent, ServeSnapshot } from "./events.ts";
import { LossReports } from "./loss-reports.ts";
import { SendQueue } from "./queue.ts";
import { RateControl } from "./rate-control.ts";
import { MAX_BURST_BYTES } from "./pacer.ts";
import { MAX_TRACKED_CLIENTS, noteClient, Transfers, type ServeStats, type Transfer } from "./transfers.ts";

export { MAX_SESSION_SUMMARIES } from "./transfers.ts";
export type { ServeStats, SessionSummary } from "./transfers.ts";
export type { AuthDrops, ClientFigures, ServeEvent, ServeSnapshot } from "./events.ts";

export interface ServeSessionOptions {
  /** For messages: the image's path or name. */
  imageName: string;
  group: string;
  port: number;
  rateBitsPerSecond: number;
  /** Turn off to send at exactly rateBitsPerSecond whatever clients report. */
  adaptiveRate: boolean;
  mtuBytes: number;
  /** An "idle" event after this long with no query or request and no transfer open; null: never. */
  idleMs: number | null;
  /** Every random choice (the sender id) comes from it, so a simulation is reproducible. */
  seed: number;
  /**
   * With a key, queries, requests and reports must carry its tag (docs/PROTOCOL.md,
   * "Authentication"); others are dropped and counted before they touch anything. Null: open.
   */
  authKey?: SessionKey | null;
}

export interface ServeSessionDeps {
  /** Every reading of the time and every timer of the session goes through it. */
  clock: Clock;
  openTransport: OpenTransport;
  /** A chunk source; default: the image file, through the cache and its read-ahead. */
  readChunk?: (index: number) => Promise<Uint8Array>;
  /**
   * On the wall clock: a precise synchronous sleep shorter than a timer (Atomics.wait) and a way to
   * run next after pending I/O (setImmediate), so bursts at high rates stay small and evenly spaced.
   */
  shortWait?: { pause(ms: number): void; soon(fn: () => void): TimerHandle };
}

/** Chunks with blocks still to send, at most: beyond this requests are dropped and asked again. */
const MAX_QUEUED_CHUNKS = 4096;
const CACHE_CHUNKS = 16;
const READ_AHEAD_CHUNKS = 4;
/** The shortest wall-clock timer worth setting; shorter waits are slept out (ServeSessionDeps.shortWait). */
const MIN_TICK_MS = 1;
/** Wall-clock timers fire up to about a millisecond late: set them this much before the bucket is full. */
const TIMER_EARLY_MS = 1.5;
/** A precise sleep lasts at most this long (the event loop waits meanwhile). */
const MAX_PAUSE_MS = MIN_TICK_MS + TIMER_EARLY_MS;
/** After the network refused part of a burst (socket buffer full), the rest is offered again this soon. */
const SEND_RETRY_MS = 1;
/** Announcements answer queries at most this often (many clients booting at once ask together). */
const ANNOUNCE_MIN_INTERVAL_MS = 100;
const CONTROL_INTERVAL_MS = 500;
/** A transfer ends after this long with no request and nothing left to send. */
const SESSION_IDLE_MS = 3000;
/** Clients shown by snapshot(): the most recently heard. */
export const MAX_CLIENT_ROWS = 1024;
/** A host's loss reports count while it asked for blocks this recently (a few report intervals). */
const RECENT_REQUEST_MS = 5000;
/** A host that reported this recently is waited for (clients report once a second). */
const REPORT_MEMORY_MS = 3000;
/** Dropped unauthenticated packets are told (an "auth-dropped" event) at most this often. */
const AUTH_EVENT_INTERVAL_MS = 5000;
assert(SESSION_IDLE_MS > CONTROL_INTERVAL_MS && REPORT_MEMORY_MS < RECENT_REQUEST_MS, "control runs within a transfer's idle time; reports expire before requesters");
assert(MAX_CLIENT_ROWS <= MAX_TRACKED_CLIENTS && READ_AHEAD_CHUNKS < CACHE_CHUNKS, "tables and caches nest");
assert(AUTH_EVENT_INTERVAL_MS >= CONTROL_INTERVAL_MS, "auth drops are told from the control step");

type AuthDropReason = keyof AuthDrops["packets"];

function noAuthDrops(): AuthDrops["packets"] {
  return { unauthenticated: 0, badTag: 0, staleEpoch: 0, replayed: 0 };
}

export class ServeSession {
  private readonly listeners: ((e: ServeEvent) => void)[] = [];
  private readonly clock: Clock;
  private readonly layout: BlockLayout;
  private readonly totalChunks: number;
  private readonly self: { imageId: Uint8Array; sender: number };
  private readonly writer: BlockWriter;
  private readonly fullPacketWireBytes: number;
  private readonly pace: RateControl;
  private readonly queue: SendQueue;
  private readonly cache: ChunkCache;
  private readonly books = new Transfers();
  private readonly stats: ServeStats = this.books.stats;
  private readonly lossReports = new LossReports({ recentRequestMs: RECENT_REQUEST_MS, reportMemoryMs: REPORT_MEMORY_MS, maxHosts: MAX_TRACKED_CLIENTS });
  private readonly clients = new ClientTable(MAX_CLIENT_ROWS);
  private readonly authKey: SessionKey | null;
  private readonly replay = new ReplayWindow();
  /** Drops since the last "auth-dropped" event, and who sent the last one. */
  private authDrops = noAuthDrops();
  private authDropFrom = "";
  private lastAuthEventMs = -Infinity;
  private seq = 0;
  /** Packets made (their sequence numbers taken) that the network has not taken yet: sent first, in order. */
  private unsent: Outgoing[] = [];
  private burstBuffer = new Uint8Array(MAX_BURST_BYTES);
  private lastAnnounceMs = -Infinity;
  private announceTimer: TimerHandle | null = null;
  private sendTimer: TimerHandle | null = null;
  private control: TimerHandle | null = null;
  private lastActivityMs = 0;
  private idleSignalled = false;
  private transport: GroupTransport | null = null;
  private phase: "new" | "starting" | "running" | "stopped" = "new";
  private readonly deps: ServeSessionDeps;

  constructor(
    private readonly image: OpenImage,
    private readonly o: ServeSessionOptions,
    deps: ServeSessionDeps,
  ) {
    const t = image.trailer;
    this.layout = blockLayout(o.mtuBytes, t.chunkBytes, o.imageName);
    this.clock = deps.clock;
    this.totalChunks = t.dataChunkCount + t.manifestPartCount;
    this.queue = new SendQueue(MAX_QUEUED_CHUNKS, t.dataChunkCount);
    this.self = { imageId: image.manifest.imageId, sender: idFromSeed(o.seed, 0x5e) };
    this.writer = new BlockWriter(this.self);
    this.authKey = o.authKey ?? null;
    this.fullPacketWireBytes = packetWireBytes(this.layout.blockBytes);
    this.pace = new RateControl(o.rateBitsPerSecond, this.fullPacketWireBytes);
    const read = deps.readChunk;
    const reader: ChunkReader = read === undefined ? fileChunkReader(image.fd, t.chunkBytes, CACHE_CHUNKS) : { readAsync: read, readNow: null };
    this.cache = new ChunkCache(reader, CACHE_CHUNKS);
    this.cache.onLoaded = () => {
      if (this.phase === "running" && !this.queue.empty) this.scheduleSend(0);
    };
    this.deps = deps;
  }

  on(listener: (e: ServeEvent) => void): void {
    this.listeners.push(listener);
  }

  /** Joins the group and starts answering; resolves once it listens. */
  async start(): Promise<void> {
    assert(this.phase === "new", "a session starts once");
    this.phase = "starting";
    const transport = await this.deps.openTransport((bytes, from) => this.onMessage(bytes, from));
    if (this.phase !== "starting") {
      transport.close(); // stopped while the transport opened
      return;
    }
    this.transport = transport;
    this.phase = "running";
    this.lastActivityMs = this.clock.nowMs();
    this.control = every(this.clock, CONTROL_INTERVAL_MS, () => this.controlStep());
    const t = this.image.trailer;
    this.emit({
      kind: "started",
      atMs: this.lastActivityMs,
      imageId: hex(this.self.imageId),
      group: this.o.group,
      port: this.o.port,
      rateBitsPerSecond: this.pace.rateBitsPerSecond,
      adaptiveRate: this.o.adaptiveRate,
      blockBytes: this.layout.blockBytes,
      chunkBytes: t.chunkBytes,
      dataChunkCount: t.dataChunkCount,
      manifestPartCount: t.manifestPartCount,
      authenticated: this.authKey !== null,
    });
  }

  /** Stops answering, ends the open transfer, leaves the group; the statistics of the whole run. */
  async stop(): Promise<ServeStats> {
    if (this.phase === "stopped") return this.stats;
    const wasRunning = this.phase === "running";
    this.phase = "stopped";
    for (const timer of [this.control, this.sendTimer, this.announceTimer]) timer?.cancel();
    this.control = this.sendTimer = this.announceTimer = null;
    if (wasRunning) this.tellAuthDrops(Infinity); // the last ones too
    this.closeTransfer();
    this.transport?.close();
    this.transport = null;
    if (wasRunning) this.emit({ kind: "ended", atMs: this.clock.nowMs(), stats: this.stats });
    return this.stats;
  }

  snapshot(): ServeSnapshot {
    return {
      atMs: this.clock.nowMs(),
      imageId: hex(this.self.imageId),
      group: this.o.group,
      rateBitsPerSecond: this.pace.rateBitsPerSecond,
      queuedChunks: this.queue.queuedChunks,
      blocksSent: this.books.blocksSent,
      bytesSent: this.books.bytesSent,
      transferOpen: this.books.current !== null,
      clients: this.clients.rows(),
    };
  }

  private emit(e: ServeEvent): void {
    for (const l of this.listeners) l(e);
  }

  // ---- network input -------------------------------------------------------------------------

  private onMessage(bytes: Uint8Array, from: Peer): void {
    if (this.phase !== "running") return;
    // Our own blocks loop back (so a client on this host hears them): skip a server's traffic,
    // ours or another's, before paying for its CRC.
    const type = peekType(bytes);
    if (type === PacketType.block || type === PacketType.repair || type === PacketType.announce) return;
    const decoded = decodePacket(bytes);
    if (!decoded.ok) {
      this.stats.dropped[decoded.reason]++;
      return;
    }
    const p = decoded.packet;
    if (p.type === PacketType.block || p.type === PacketType.repair || p.type === PacketType.announce) return; // skipped above; narrows the type
    // With a key, a packet without its tag costs no pacing, no queue entry, no client row.
    if (this.authKey !== null && !this.admit(this.authKey, p, bytes, from)) return;
    const nowMs = this.clock.nowMs();
    this.pace.charge(bytes.length, nowMs);
    if (p.type === PacketType.query) {
      this.active(nowMs);
      if (isZero(p.imageId) || equalBytes(p.imageId, this.self.imageId)) this.scheduleAnnounce();
      else this.stats.dropped.otherImage++;
      return;
    }
    if (!equalBytes(p.imageId, this.self.imageId)) {
      this.stats.dropped.otherImage++;
      return;
    }
    this.active(nowMs);
    if (p.type === PacketType.request) this.onRequest(p, from, nowMs);
    else this.onReport(p, from, nowMs);
  }

  /** Whether a client's packet carries a valid tag, of our epoch, not seen before; else counted. */
  private admit(key: SessionKey, p: QueryPacket | RequestPacket | ReportPacket, bytes: Uint8Array, from: Peer): boolean {
    const t = p.auth ?? null;
    let reason: AuthDropReason | null = null;
    if (t === null) reason = "unauthenticated";
    else if (key.verify(bytes, t) !== "ok") reason = "badTag";
    // A query may come before its client knows us; anything else names the epoch it follows.
    else if (p.type !== PacketType.query && t.epoch !== this.self.sender) reason = "staleEpoch";
    else if (!this.replay.admit(p.sender, t.counter)) reason = "replayed";
    if (reason === null) return true;
    this.stats.dropped[reason]++;
    this.authDrops[reason]++;
    this.authDropFrom = from.address;
    // A client that followed our predecessor (we restarted) learns our epoch from the announce, and
    // one that asks without our key learns from its key id why it gets nothing (at most 10 a second).
    if (reason === "staleEpoch" || p.type === PacketType.query) this.scheduleAnnounce();
    return false;
  }

  /** Tells the drops since the last time, at most every AUTH_EVENT_INTERVAL_MS (Infinity: now). */
  private tellAuthDrops(nowMs: number): void {
    const d = this.authDrops;
    if (d.unauthenticated + d.badTag + d.staleEpoch + d.replayed === 0 || nowMs - this.lastAuthEventMs < AUTH_EVENT_INTERVAL_MS) return;
    const atMs = this.clock.nowMs();
    this.lastAuthEventMs = atMs;
    this.emit({ kind: "auth-dropped", atMs, packets: d, lastFrom: this.authDropFrom });
    this.authDrops = noAuthDrops();
  }

  private active(nowMs: number): void {
    this.lastActivityMs = nowMs;
    this.idleSignalled = false;
  }

  private onRequest(p: RequestPacket, from: Peer, nowMs: number): void {
    if (p.chunk >= this.totalChunks || p.blockCount !== this.layout.blockCount) {
      this.stats.dropped.badChunk++;
      return;
    }
    this.lossReports.requested(from.address, nowMs);
    this.clients.heard(from.address, p.sender, nowMs);
    const s = this.openTransfer(nowMs);
    s.lastRequestMs = nowMs;
    s.requests++;
    noteClient(s, p.sender);
    // One receiver gains nothing from repairs over its own blocks, and they cost coding time.
    this.queue.useRepairs = s.clients.size >= 2;
    const wanted = countBits(p.bitmap, p.blockCount);
    const r = this.queue.merge(p.chunk, this.layout.blockCount, p.bitmap);
    s.requestedBlocks += wanted;
    if (!r.accepted) {
      s.requestsDropped++;
      return;
    }
    s.mergedBlocks += wanted - r.addedBlocks;
    if (r.addedBlocks > 0) {
      this.cache.readAhead(this.queue.upcoming(READ_AHEAD_CHUNKS));
      this.scheduleSend(0);
    }
  }

  private onReport(p: ReportPacket, from: Peer, nowMs: number): void {
    this.lossReports.reported(from.address, { receivedBlocks: p.intervalReceived, seqSpan: p.intervalSeqSpan }, nowMs);
    const lossFraction = p.intervalSeqSpan > 0 ? Math.min(1, Math.max(0, 1 - p.intervalReceived / p.intervalSeqSpan)) : 0;
    const row = this.clients.heard(from.address, p.sender, nowMs);
    const state = p.state === ReportState.done ? "done" : p.state === ReportState.failed ? "failed" : "loading";
    Object.assign(row, { state, chunksDone: p.chunksDone, chunksTotal: p.chunksTotal, bytesWritten: p.bytesWritten, lossFraction });
    const client = row.client;
    if (p.state === ReportState.progress) {
      this.emit({ kind: "client-progress", atMs: nowMs, client, chunksDone: p.chunksDone, chunksTotal: p.chunksTotal, bytesWritten: p.bytesWritten, lossFraction });
      return;
    }
    const s = this.openTransfer(nowMs);
    noteClient(s, p.sender);
    const set = p.state === ReportState.done ? s.done : s.failed;
    if (set.has(p.sender) || set.size >= MAX_TRACKED_CLIENTS) return; // clients send their final report more than once
    set.add(p.sender);
    const seconds = p.elapsedMs / 1000;
    if (p.state === ReportState.failed) {
      this.emit({ kind: "client-failed", atMs: nowMs, client, message: p.message, seconds, chunksDone: p.chunksDone, chunksTotal: p.chunksTotal });
      return;
    }
    const { chunksDone, chunksTotal, bytesWritten, blocksReceived, duplicateBlocks, requestsSent, rerequests, chunksRejected } = p;
    this.emit({ kind: "client-done", atMs: nowMs, client, seconds, chunksDone, chunksTotal, bytesWritten, blocksReceived, duplicateBlocks, requestsSent, rerequests, chunksRejected });
  }

  // ---- transfers -----------------------------------------------------------------------------

  private openTransfer(nowMs: number): Transfer {
    const { transfer, opened } = this.books.open(nowMs);
    if (opened) this.emit({ kind: "transfer-started", atMs: nowMs, rateBitsPerSecond: this.pace.rateBitsPerSecond });
    return transfer;
  }

  private closeTransfer(): void {
    const summary = this.books.close(this.pace.rateBitsPerSecond);
    if (summary !== null) this.emit({ kind: "transfer-ended", atMs: this.clock.nowMs(), summary });
  }

  /** Every CONTROL_INTERVAL_MS: adapt the rate to the loss clients report, end quiet transfers, note idleness. */
  private controlStep(): void {
    const nowMs = this.clock.nowMs();
    const samples = this.lossReports.take(nowMs);
    const change = this.o.adaptiveRate ? this.pace.adapt(samples) : null;
    if (change !== null) this.emit({ kind: "rate-changed", atMs: nowMs, ...change });
    this.tellAuthDrops(nowMs);
    const s = this.books.current;
    if (s !== null && this.queue.empty && nowMs - s.lastRequestMs > SESSION_IDLE_MS) this.closeTransfer();
    const idleMs = this.o.idleMs;
    if (idleMs !== null && !this.idleSignalled && this.books.current === null && nowMs - this.lastActivityMs > idleMs) {
      this.idleSignalled = true;
      this.emit({ kind: "idle", atMs: nowMs });
    }
  }

  // ---- output --------------------------------------------------------------------------------

  private scheduleAnnounce(): void {
    if (this.announceTimer !== null) return;
    const waitMs = Math.max(0, this.lastAnnounceMs + ANNOUNCE_MIN_INTERVAL_MS - this.clock.nowMs());
    this.announceTimer = this.clock.setTimer(waitMs, () => {
      this.announceTimer = null;
      this.lastAnnounceMs = this.clock.nowMs();
      const body = announceBody(this.image, this.layout.blockBytes, this.pace.rateBitsPerSecond);
      this.transport?.send(encodeAnnounce(this.self, body, this.authKey?.keyId ?? null));
    });
  }

  /**
   * Wakes the sender in `waitMs`. Wall-clock timers fire a millisecond or so late, so a long wait
   * wakes TIMER_EARLY_MS early (the bucket then holds a little less than a burst), and a wait too
   * short for a timer is slept out precisely (shortWait) after letting the event loop run once.
   * Virtual clocks have exact timers and no shortWait.
   */
  private scheduleSend(waitMs: number): void {
    if (this.sendTimer !== null || this.phase !== "running") return;
    const quick = this.deps.shortWait;
    if (quick === undefined) {
      this.sendTimer = this.clock.setTimer(waitMs, () => this.sendSome());
    } else if (waitMs - TIMER_EARLY_MS >= MIN_TICK_MS) {
      this.sendTimer = this.clock.setTimer(waitMs - TIMER_EARLY_MS, () => this.sendSome());
    } else {
      const dueMs = this.clock.nowMs() + waitMs;
      this.sendTimer = quick.soon(() => {
        quick.pause(Math.min(MAX_PAUSE_MS, dueMs - this.clock.nowMs()));
        this.sendSome();
      });
    }
  }

  /**
   * Sends what the token bucket allows (one burst at most, MAX_BURST_BYTES) as one batch: first
   * what the network did not take last time, then blocks off the round-robin queue.
   */
  private sendSome(): void {
    this.sendTimer = null;
    const nowMs = this.clock.nowMs();
    let tokens = this.pace.bucket.refill(nowMs);
    const burst: Outgoing[] = [];
    for (const o of this.unsent) {
      if (tokens < o.wireBytes) break;
      burst.push(o);
      tokens -= o.wireBytes;
    }
    const waitingForChunk = this.unsent.length === burst.length && this.fillBurst(burst, tokens);
    const taken = burst.length === 0 ? 0 : this.offer(burst, nowMs);
    this.unsent = [...burst.slice(taken), ...this.unsent.slice(burst.length)];
    if (taken > 0) this.cache.readAhead(this.queue.upcoming(READ_AHEAD_CHUNKS));
    if (this.unsent.length > 0) {
      if (taken < burst.length) this.scheduleSend(SEND_RETRY_MS); // the network is full: try again soon
      else this.scheduleSend(this.pace.bucket.waitMs(this.pace.bucket.burstBoundBytes));
      return;
    }
    if (this.queue.empty || waitingForChunk) return; // onLoaded resumes a wait for a chunk read
    this.scheduleSend(this.pace.bucket.waitMs(this.pace.bucket.burstBoundBytes));
  }

  /** Adds blocks off the queue while tokens last; true when it stopped for a chunk not read yet. */
  private fillBurst(burst: Outgoing[], tokens: number): boolean {
    // A burst's blocks share one buffer (tokens bound their bytes). sendMany copies what it takes,
    // so the buffer is reused unless untaken packets still point into it; `send` may keep it.
    if (this.unsent.length > 0 || this.transport?.sendMany === undefined) this.burstBuffer = new Uint8Array(MAX_BURST_BYTES);
    const out = this.burstBuffer;
    const dv = view(out);
    let at = 0;
    // Consecutive blocks of one chunk look it up once. A lookup of another chunk may evict and
    // reuse this one's buffer, so `data` is only kept while the chunk does not change.
    let dataChunk = -1;
    let data: Uint8Array | null = null;
    while (!this.queue.empty && tokens >= this.fullPacketWireBytes) {
      const chunk = this.queue.nextChunk()!;
      if (chunk !== dataChunk) {
        data = this.cache.get(chunk);
        dataChunk = chunk;
      }
      // A chunk source that reads asynchronously may not have the next chunk yet: onLoaded resumes.
      if (data === null) return true;
      const next = this.queue.take();
      assert(next !== null, "a non-empty queue yields a block");
      const packet = packetInto(this.writer, out, dv, at, this.self, this.seq, next, data, this.layout);
      if (next.kind === "block") at += packet.bytes.length;
      this.seq = (this.seq + 1) >>> 0;
      const wireBytes = packetWireBytes(packet.dataBytes);
      burst.push({ bytes: packet.bytes, dataBytes: packet.dataBytes, wireBytes, repair: next.kind === "repair" });
      tokens -= wireBytes;
    }
    return false;
  }

  /** Hands a burst to the network; spends tokens and counts for what it took, returns how many. */
  private offer(burst: Outgoing[], nowMs: number): number {
    if (this.transport === null) return 0;
    const taken = sendBurst(this.transport, burst.map((o) => o.bytes));
    assert(taken >= 0 && taken <= burst.length, "the network takes a prefix of the burst");
    const sends = this.stats.sends;
    sends.bursts++;
    sends.blocks += taken;
    if (taken < burst.length) sends.deferred++;
    for (let i = 0; i < taken; i++) {
      const o = burst[i]!;
      this.pace.bucket.spend(o.wireBytes);
      this.books.counted(nowMs, o.dataBytes, o.repair);
    }
    return taken;
  }
}

/** A block or repair packet made for the wire, with what it costs and counts for. */
interface Outgoing {
  bytes: Uint8Array;
  dataBytes: number;
  wireBytes: number;
  repair: boolean;
}

function isZero(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}
