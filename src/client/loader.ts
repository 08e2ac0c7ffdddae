// The multicast loader as an engine: joins an image's group through an injected transport, fetches
// and checks the manifest, then fetches chunks in its own random order and hands complete ones to
// a ChunkSink (the real one writes the target). Time comes from an injected Clock and every random
// choice from the seed, so the same code runs on the wall clock or in the simulator (scripts/sim).
// All the state worth keeping lives here, in the client, so a restarted server loses nothing.
import type { KeyObject } from "node:crypto";
import type { Manifest } from "../image/manifest.ts";
import type { GroupTransport, OpenTransport, Peer } from "../net/transport.ts";
import {
  blocksPerChunk,
  decodePacket,
  encodeQuery,
  encodeReport,
  encodeRequest,
  PacketType,
  ReportState,
  type AnnouncePacket,
  type BlockPacket,
  type RepairPacket,
  type RequestPacket,
} from "../net/wire.ts";
import { FEC_MAX_REPAIR_BLOCKS } from "../net/fec.ts";
import { fecGroupCount } from "../net/fec-groups.ts";
import type { ApplyResult } from "../target/apply.ts";
import { checkSignature } from "../image/signing.ts";
import { chunkOrder, idFromSeed, mulberry32 } from "../util/shuffle.ts";
import { assert } from "../util/assert.ts";
import { equalBytes, hex } from "../util/bytes.ts";
import { every, type Clock, type TimerHandle } from "../util/clock.ts";
import { DiscusError, withProgress } from "../util/errors.ts";
import { formatBytes } from "../util/units.ts";
import { peakRssBytes } from "../util/memory.ts";
import { LossMeter } from "./loss-meter.ts";
import { ManifestParts } from "./manifest-parts.ts";
import { DEFAULT_SINK_IN_FLIGHT, type ChunkSink } from "./sink.ts";
import { emptyLoadStats, type LoadStats } from "./stats.ts";
import { Candidates, sameLayout, type Candidate } from "./servers.ts";
import { blockLength, BufferPool, covers, decodeGroup, newSlot, requestBitmap, storeBlock, storeRepair, type Geometry, type Slot } from "./assembly.ts";

export interface LoaderOptions {
  /** The group and port, for messages (the transport is already bound to them). */
  group: string;
  port: number;
  publicKey: KeyObject | null;
  keyPath: string | null;
  /** Accept only this image (hex id); null: whatever the group serves. */
  imageId: Uint8Array | null;
  /** Give up after this long without progress (a block or chunk this client needed). */
  giveUpMs: number;
  /** Memory for chunks being received and applied (the client's main budget). */
  bufferBytes: number;
  /** Chunks this client has asked for and not yet received, at most. */
  requestWindowChunks: number;
  /** Every random choice (sender id, chunk order) comes from it, so a simulation is reproducible. */
  seed: number;
}

export interface LoaderDeps {
  clock: Clock;
  openTransport: OpenTransport;
  sink: ChunkSink;
}

export type LoadEvent =
  | { kind: "server"; atMs: number; server: string; imageId: string }
  | { kind: "progress"; atMs: number; chunksDone: number; chunksTotal: number; bytesWritten: number }
  | { kind: "done"; atMs: number; stats: LoadStats }
  | { kind: "failed"; atMs: number; error: DiscusError };

/** How often the client looks at its requests, timers and reports. */
const TICK_MS = 10;
const QUERY_FIRST_WAIT_MS = 200;
const QUERY_MAX_WAIT_MS = 2000;
/** First wait for blocks after asking for a chunk; doubles while nothing comes, up to the max. */
const REQUEST_WAIT_MS = 200;
/**
 * First wait after asking for the holes of a chunk under way: the server sends such small requests
 * ahead of whole chunks (its urgent lane), so an answer is due within a few turns' time.
 */
const REPAIR_WAIT_MS = 80;
const REQUEST_MAX_WAIT_MS = 2000;
/** Blocks of one chunk go out back to back: a gap this long means the rest were lost. */
const BLOCK_GAP_MS = 40;
const REPORT_INTERVAL_MS = 1000;
/**
 * Request slotting, as SRM does: a chunk that went quiet with holes waits a random extra time
 * before asking, up to this much per doubling of the clients heard, so that one client's request
 * (which the others overhear, and which the server answers with repairs for all) goes out first.
 */
const SLOT_MS_PER_DOUBLING = 4;
const MAX_SLOT_MS = 40;
/** Distinct clients counted for slotting, at most (the count only sets the slot's width). */
const MAX_HEARD_CLIENTS = 4096;
/** A second server announcing the same image is adopted only after the first fell silent this long. */
const SERVER_SWITCH_MS = 5000;
/**
 * A server not yet proven (its manifest not yet matched) that has delivered no manifest block for
 * this long is dropped for another that announced. An idle server answers within a round trip;
 * this allows a busy one a dozen 1 MiB chunks ahead of ours at 100 Mbit/s.
 */
const MANIFEST_STALL_MS = 1500;
/** Our unproven server sent no manifest block this long while another host sends ours: switch. */
const MANIFEST_EVIDENCE_MS = 300;
/** Announcing servers remembered, and how long one that failed is set aside (doubling, bounded). */
const MAX_CANDIDATES = 16;
const MAX_CANDIDATES_PER_HOST = 2;
const MAX_FAILED_HOSTS = 64;
const FIRST_SET_ASIDE_MS = 1000;
const MAX_SET_ASIDE_MS = 30_000;
/** Request packets sent per tick at most (a burst after a long silence stays small). */
const MAX_REQUESTS_PER_TICK = 64;
/** Refused manifests remembered (by digest) so as not to fetch them again; older ones may be. */
const MAX_REFUSED_MANIFESTS = 16;
/** Manifests beyond this are refused: they would not fit the client's memory bound. */
const MAX_MANIFEST_BYTES = 64 << 20;
/** The final report goes out twice (best effort), this far apart; the load resolves just after. */
const FINAL_REPORT_REPEAT_MS = 50;
const FINAL_SETTLE_MS = 60;
assert(FINAL_SETTLE_MS > FINAL_REPORT_REPEAT_MS, "the load resolves after its last report");

const enum ChunkState {
  missing = 0,
  filling = 1,
  complete = 2,
  done = 3,
}

interface Server {
  candidate: Candidate;
  /** Where blocks must come from: the candidate's address, or a successor once it fell silent. */
  address: string;
  epoch: number;
  announce: AnnouncePacket;
  /** Last valid block from it (it is alive), and last manifest block stored (it is useful). */
  lastBlockMs: number;
  lastManifestBlockMs: number;
}

export class Loader {
  private readonly listeners: ((e: LoadEvent) => void)[] = [];
  private readonly clock: Clock;
  private readonly sink: ChunkSink;
  private readonly me: number;
  private readonly startedMs: number;
  private transport: GroupTransport | null = null;
  private server: Server | null = null;
  private readonly candidates = new Candidates({ maxCandidates: MAX_CANDIDATES, maxPerHost: MAX_CANDIDATES_PER_HOST, maxHosts: MAX_FAILED_HOSTS, firstSetAsideMs: FIRST_SET_ASIDE_MS, maxSetAsideMs: MAX_SET_ASIDE_MS });
  /** Why the last server was dropped or refused, for the give-up message. */
  private lastRefusal: string | null = null;
  /** The last image a server offered that this client refused for the image's own fault. */
  private refusedWith: DiscusError | null = null;
  /** The image of the server adopted last, for a failure report after it was dropped. */
  private lastImageId: Uint8Array | null = null;
  /** Digests of manifests refused for their own fault, newest last: never fetched again. */
  private readonly refusedManifests: string[] = [];
  /** Only progress resets the give-up timer: never an announcement, which anyone can send. */
  private lastProgressMs: number;
  private geometry: Geometry | null = null;
  private dataChunks = 0;
  private totalChunks = 0;
  private state = new Uint8Array(0);
  private readonly slots = new Map<number, Slot>();
  private buffers: BufferPool | null = null;
  private readonly readyData: { chunk: number; buffer: Uint8Array }[] = [];
  private manifestParts: ManifestParts | null = null;
  private manifest: Manifest | null = null;
  /** The sink is open (the manifest proven and the target ready): chunks may go to it. */
  private sinkOpen = false;
  private applying = 0;
  private chunksDone = 0;
  private order = new Uint32Array(0);
  private orderCursor = 0;
  private nextQueryMs = 0;
  private queryWaitMs = QUERY_FIRST_WAIT_MS;
  private nextReportMs = 0;
  private readonly loss = new LossMeter();
  private ticker: TimerHandle | null = null;
  private settle: { resolve: (s: LoadStats) => void; reject: (e: Error) => void } | null = null;
  private readonly stats = emptyLoadStats();
  /** Other clients heard asking (bounded): how wide the request slot is. */
  private readonly heardClients = new Set<number>();
  private readonly random: () => number;

  constructor(
    private readonly o: LoaderOptions,
    private readonly deps: LoaderDeps,
  ) {
    assert(o.requestWindowChunks >= 1, "request window holds at least one chunk");
    this.clock = deps.clock;
    this.sink = deps.sink;
    this.me = idFromSeed(o.seed, 0xc1);
    this.random = mulberry32(idFromSeed(o.seed, 0x51));
    this.startedMs = this.lastProgressMs = this.clock.nowMs();
  }

  on(listener: (e: LoadEvent) => void): void {
    this.listeners.push(listener);
  }

  /** Resolves when every chunk is written; rejects with the error that ended the load. */
  async run(): Promise<LoadStats> {
    assert(this.settle === null && this.transport === null, "a loader runs once");
    const done = new Promise<LoadStats>((resolve, reject) => (this.settle = { resolve, reject }));
    let failed = true;
    try {
      const transport = await this.deps.openTransport((bytes, from) => this.guard(() => this.onMessage(bytes, from))).catch((e: unknown) => {
        this.fail(e instanceof Error ? e : new Error(String(e)));
        return null;
      });
      if (transport !== null && this.settle === null) transport.close(); // stopped while it opened
      else if (transport !== null) {
        this.transport = transport;
        this.ticker = every(this.clock, TICK_MS, () => this.guard(() => this.tick()));
      }
      const stats = await done;
      failed = false;
      return stats;
    } finally {
      this.cleanUp(failed);
    }
  }

  /** Ends the load now: run() rejects, the sink closes as after a failure. */
  stop(): void {
    this.fail(new DiscusError("network", `${this.o.group}:${this.o.port}`, "the load was stopped", "Run `discus load` again"));
  }

  private emit(e: LoadEvent): void {
    for (const l of this.listeners) l(e);
  }

  /** Runs a step; any error ends the load with that error (after telling the server). */
  private guard(step: () => void): void {
    if (this.settle === null) return;
    try {
      step();
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    }
  }

  private fail(error: Error): void {
    if (this.settle === null) return;
    // Only a disk error: an image refused before or while loading is fetched again, never written.
    const e = !(error instanceof DiscusError) || error.kind !== "io" ? error : (withProgress(error, `${formatBytes(this.stats.writtenBytes)} from ${this.chunksDone} of ${this.dataChunks} chunks had been written`) as Error);
    const settle = this.settle;
    this.settle = null;
    this.report(ReportState.failed, e.message);
    // The event carries a DiscusError; anything else is a bug, and run() rejects with it as it is.
    const told = e instanceof DiscusError ? e : new DiscusError("io", "discus load", `unexpected error: ${e.message}`, "Report this as a bug, with the command line");
    this.emit({ kind: "failed", atMs: this.clock.nowMs(), error: told });
    settle.reject(e);
  }

  /** After a failure, a target file this load created is removed (closeTarget). */
  private cleanUp(failed: boolean): void {
    this.ticker?.cancel();
    this.ticker = null;
    this.transport?.close();
    this.transport = null;
    this.sink.close(failed);
  }

  // ---- network input -------------------------------------------------------------------------

  private onMessage(bytes: Uint8Array, from: Peer): void {
    const decoded = decodePacket(bytes);
    if (!decoded.ok) {
      this.stats.packetsDropped[decoded.reason]++;
      return;
    }
    const p = decoded.packet;
    switch (p.type) {
      case PacketType.announce:
        return this.onAnnounce(p, from);
      case PacketType.block:
        return this.onBlock(p, from);
      case PacketType.repair:
        return this.onRepair(p, from);
      case PacketType.request:
        if (p.sender !== this.me) this.onOverheard(p);
        return;
      default:
        return; // queries and reports are for the server
    }
  }

  private onAnnounce(p: AnnouncePacket, from: Peer): void {
    const nowMs = this.clock.nowMs();
    if (this.o.imageId !== null && !equalBytes(p.imageId, this.o.imageId)) {
      this.stats.packetsDropped.otherImage++;
      return;
    }
    const c = this.candidates.heard(p, from.address, from.port, nowMs);
    const s = this.server;
    if (s === null) return this.adoptNext(nowMs);
    if (c.key === s.candidate.key) {
      this.noteEpoch(p.sender);
      s.announce.rateBitsPerSecond = p.rateBitsPerSecond;
      return;
    }
    // Committed to a manifest: only the same image served the same way may take over, and only
    // once ours has fell silent (a server moved). Before that, tick() decides on switching.
    if (this.manifest !== null && sameLayout(p, s.announce) && nowMs - s.lastBlockMs >= SERVER_SWITCH_MS) {
      s.candidate = c;
      s.address = from.address;
      s.lastBlockMs = nowMs;
      this.noteEpoch(p.sender);
      this.emit({ kind: "server", atMs: nowMs, server: from.address, imageId: hex(p.imageId) });
      return;
    }
    this.stats.packetsDropped.foreignSource++;
  }

  /** Adopts the best candidate not set aside, if any; refuses those this client cannot take. */
  private adoptNext(nowMs: number): void {
    for (let c = this.candidates.pick(nowMs, null); c !== null; c = this.candidates.pick(nowMs, null)) {
      const a = c.announce;
      const refusedBefore = this.refusedManifests.includes(hex(a.manifestSha256));
      if (a.manifestBytes <= MAX_MANIFEST_BYTES && !refusedBefore) return this.adopt(c, nowMs);
      // A manifest already refused is not fetched again: fetching it would look like progress
      // and keep --give-up from ever ending a load that no server can satisfy.
      if (!refusedBefore) this.lastRefusal = `${c.address} announced image ${hex(a.imageId)} with a ${formatBytes(a.manifestBytes)} manifest, more than this client's ${formatBytes(MAX_MANIFEST_BYTES)} bound (capture it with larger chunks)`;
      this.candidates.failed(c.host, nowMs);
    }
  }

  private adopt(c: Candidate, nowMs: number): void {
    const a = c.announce;
    // Refuse a target in use now, before anything is fetched. Its size is checked against the
    // proven manifest, not this announce: a forged announce must not make a client give up.
    this.sink.check?.();
    this.server = { candidate: c, address: c.address, epoch: a.sender, announce: { ...a }, lastBlockMs: nowMs, lastManifestBlockMs: nowMs };
    this.lastImageId = a.imageId;
    this.loss.reset();
    this.stats.imageId = hex(a.imageId);
    this.stats.server = c.address;
    const blockCount = blocksPerChunk(a.chunkBytes, a.blockBytes);
    const g: Geometry = { chunkBytes: a.chunkBytes, blockBytes: a.blockBytes, blockCount, groups: fecGroupCount(blockCount) };
    this.geometry = g;
    this.dataChunks = a.dataChunkCount;
    this.totalChunks = a.dataChunkCount + a.manifestPartCount;
    this.state = new Uint8Array(this.totalChunks);
    this.manifestParts = new ManifestParts(a);
    const bufferCount = Math.max(4, Math.floor(this.o.bufferBytes / a.chunkBytes));
    if (this.buffers?.bufferBytes !== a.chunkBytes) this.buffers = new BufferPool(a.chunkBytes, bufferCount);
    this.order = Uint32Array.from(firstChunkFirst(chunkOrder(a.dataChunkCount, "random", this.o.seed)));
    this.orderCursor = 0;
    this.stats.chunks = a.dataChunkCount;
  }

  /**
   * A server's manifest is not one this client may use (forged, damaged, unreadable, or signed by
   * another key): not this server, for now. If no other server delivers before --give-up, the
   * load fails with this refusal's own kind (a wrong key still ends with exit 5).
   */
  private refuse(e: DiscusError): void {
    this.stats.manifestRejected++;
    if (e.kind !== "network") {
      this.refusedWith = e;
      // Its digest proved these bytes: the same announce will bring the same refusal.
      this.refusedManifests.push(hex(this.server!.announce.manifestSha256));
      if (this.refusedManifests.length > MAX_REFUSED_MANIFESTS) this.refusedManifests.shift();
    }
    this.drop(e.why, this.clock.nowMs());
  }

  /**
   * Drops a server whose manifest is not proven (it did not match its digest, or did not come):
   * sets it aside, frees what was fetched from it, and tries the next candidate or asks again.
   */
  private drop(why: string, nowMs: number): void {
    const s = this.server;
    assert(s !== null && this.manifest === null && !this.sinkOpen, "only an unproven server is dropped");
    this.candidates.failed(s.candidate.host, nowMs);
    this.stats.serversDropped++;
    this.lastRefusal = `${s.address} ${why}`;
    for (const slot of this.slots.values()) this.buffers!.give(slot.buffer);
    for (const ready of this.readyData) this.buffers!.give(ready.buffer);
    this.slots.clear();
    this.readyData.length = 0;
    this.server = null;
    this.geometry = null;
    this.manifestParts = null;
    this.queryWaitMs = QUERY_FIRST_WAIT_MS;
    this.nextQueryMs = nowMs;
    this.adoptNext(nowMs);
  }

  /** A new epoch is a restarted server: sequence numbers start again. */
  private noteEpoch(epoch: number): void {
    const s = this.server;
    if (s === null || s.epoch === epoch) return;
    s.epoch = epoch;
    this.stats.serverRestarts++;
    this.loss.reset();
  }

  /**
   * Checks a block or repair comes from our server for our image and notes it as traffic (alive,
   * sequence for loss); false when it is dropped. Counts it as received either way it passes.
   */
  private fromOurServer(p: BlockPacket | RepairPacket, from: Peer, fits: (g: Geometry) => boolean): boolean {
    const s = this.server;
    const g = this.geometry;
    if (s === null || g === null) return false; // not yet listening for any image
    // An unproven server is known only by its announcement: its blocks carry the epoch it announced.
    if (from.address !== s.address || from.port !== this.o.port || (this.manifest === null && p.sender !== s.epoch)) {
      this.stats.packetsDropped.foreignSource++;
      if (this.manifest === null && p.chunk >= this.dataChunks && p.chunk < this.totalChunks) this.manifestElsewhere(from);
      return false;
    }
    if (!equalBytes(p.imageId, s.announce.imageId)) {
      this.stats.packetsDropped.otherImage++;
      return false;
    }
    if (p.chunk >= this.totalChunks || !fits(g)) {
      this.stats.packetsDropped.badBlock++;
      return false;
    }
    this.noteEpoch(p.sender);
    s.lastBlockMs = this.clock.nowMs();
    // Loss is measured on a proven server only: an unproven one may be a forger with any numbers.
    if (this.manifest !== null) this.loss.count(p.seq);
    this.stats.blocksReceived++;
    return true;
  }

  private onBlock(p: BlockPacket, from: Peer): void {
    if (!this.fromOurServer(p, from, (g) => p.block < g.blockCount && p.data.length === blockLength(g, p.block))) return;
    const g = this.geometry!;
    const nowMs = this.clock.nowMs();
    const state = this.state[p.chunk]!;
    if (state >= ChunkState.complete) {
      this.stats.duplicateBlocks++;
      return;
    }
    let slot = this.slots.get(p.chunk);
    if (slot === undefined) {
      // Overheard data for a chunk we need: keep it if a buffer is spare beyond the request window.
      const buffers = this.buffers!;
      if (buffers.freeCount <= this.reservedBuffers()) {
        this.stats.blocksWithoutBuffer++;
        return;
      }
      slot = newSlot(p.chunk, buffers.take()!, g, nowMs, BLOCK_GAP_MS);
      this.slots.set(p.chunk, slot);
      this.state[p.chunk] = ChunkState.filling;
    }
    if (!storeBlock(slot, g, p.block, p.data)) {
      this.stats.duplicateBlocks++;
      return;
    }
    this.stats.blocksRecovered += decodeGroup(slot, g, p.block % g.groups);
    this.filled(slot, p.chunk, nowMs);
  }

  /** A repair (FEC): useful to a chunk under way that lacks blocks of its group; decoded once enough. */
  private onRepair(p: RepairPacket, from: Peer): void {
    if (!this.fromOurServer(p, from, (g) => p.group < g.groups && p.index < FEC_MAX_REPAIR_BLOCKS && p.data.length === g.blockBytes)) return;
    const g = this.geometry!;
    const slot = this.slots.get(p.chunk);
    // Without the chunk's other blocks a repair is no use: it is not kept.
    if (slot === undefined || !storeRepair(slot, g, p.group, p.index, p.data)) {
      this.stats.duplicateBlocks++;
      return;
    }
    this.stats.repairsUsed++;
    this.stats.blocksRecovered += decodeGroup(slot, g, p.group);
    this.filled(slot, p.chunk, this.clock.nowMs());
  }

  /** A chunk got a block or a repair: that is progress, and it may be whole now. */
  private filled(slot: Slot, chunk: number, nowMs: number): void {
    // Progress: a manifest block, or data once the manifest vouches for it.
    if (chunk >= this.dataChunks) this.server!.lastManifestBlockMs = nowMs;
    if (chunk >= this.dataChunks || this.manifest !== null) this.lastProgressMs = nowMs;
    slot.lastActivityMs = nowMs;
    slot.waitMs = BLOCK_GAP_MS + this.slotMs();
    if (slot.gotBlocks === this.geometry!.blockCount) this.completed(slot);
  }

  /**
   * Another host sends blocks of our manifest while our unproven server sends none: it serves what
   * we asked for, ours (perhaps a forger that answered our query first) does not. Switch, unless
   * that host failed more often than ours (then it may be the forger).
   */
  private manifestElsewhere(from: Peer): void {
    const s = this.server!;
    const nowMs = this.clock.nowMs();
    if (nowMs - s.lastManifestBlockMs < MANIFEST_EVIDENCE_MS) return;
    const host = `${from.address}:${from.port}`;
    if (!this.candidates.announced(host, nowMs) || this.candidates.failuresOf(host) > this.candidates.failuresOf(s.candidate.host)) return;
    this.drop(`sent no manifest block while ${from.address} did`, nowMs);
  }

  /** Another client asked for blocks: if its request covers what we lack, do not ask ourselves. */
  private onOverheard(p: RequestPacket): void {
    const s = this.server;
    const g = this.geometry;
    if (s === null || g === null || !equalBytes(p.imageId, s.announce.imageId) || p.blockCount !== g.blockCount) return;
    if (this.heardClients.size < MAX_HEARD_CLIENTS) this.heardClients.add(p.sender);
    const slot = this.slots.get(p.chunk);
    if (slot === undefined || !covers(p.bitmap, slot, g)) return;
    this.stats.requestsOverheard++;
    slot.lastActivityMs = this.clock.nowMs();
  }

  /** A random wait in [0, width), the width growing with the log of the clients heard. */
  private slotMs(): number {
    const widthMs = Math.min(MAX_SLOT_MS, SLOT_MS_PER_DOUBLING * Math.log2(1 + this.heardClients.size));
    return this.random() * widthMs;
  }

  /** Buffers kept back from overheard traffic so this client can always ask for its own chunks. */
  private reservedBuffers(): number {
    return Math.min(this.o.requestWindowChunks, this.buffers!.bufferCount >> 2);
  }

  // ---- complete chunks -----------------------------------------------------------------------

  private completed(slot: Slot): void {
    this.slots.delete(slot.chunk);
    this.state[slot.chunk] = ChunkState.complete;
    if (slot.chunk >= this.dataChunks) return this.manifestPart(slot);
    this.readyData.push({ chunk: slot.chunk, buffer: slot.buffer });
    this.pump();
  }

  private manifestPart(slot: Slot): void {
    const parts = this.manifestParts!;
    parts.store(slot.chunk - this.dataChunks, slot.buffer);
    this.buffers!.give(slot.buffer);
    this.state[slot.chunk] = ChunkState.done;
    if (parts.complete) this.manifestComplete(parts);
  }

  private manifestComplete(parts: ManifestParts): void {
    const s = this.server!;
    const where = `image ${hex(s.announce.imageId)} from ${s.address}`;
    const decoded = parts.verify(where);
    if (decoded instanceof DiscusError) return this.refuse(decoded);
    const { manifest: m, body } = decoded;
    try {
      this.stats.signature = checkSignature(m, body, where, this.o.publicKey, this.o.keyPath);
    } catch (e) {
      if (e instanceof DiscusError && e.kind === "signature") return this.refuse(e);
      throw e;
    }
    this.candidates.proven(s.candidate.host);
    const nowMs = this.clock.nowMs();
    this.lastProgressMs = nowMs;
    this.manifest = m;
    this.manifestParts = null;
    this.emit({ kind: "server", atMs: nowMs, server: s.address, imageId: this.stats.imageId });
    const opening = this.sink.open(m);
    if (opening instanceof Promise) opening.then(() => this.guard(() => this.sinkOpened()), (e: Error) => this.fail(e));
    else this.sinkOpened();
  }

  private sinkOpened(): void {
    this.sinkOpen = true;
    this.stats.targetBytes = this.sink.targetBytes ?? 0;
    this.emit({ kind: "progress", atMs: this.clock.nowMs(), chunksDone: this.chunksDone, chunksTotal: this.dataChunks, bytesWritten: this.stats.writtenBytes });
    this.pump();
  }

  /** Hands complete chunks to the sink, as many as it may hold. */
  private pump(): void {
    if (!this.sinkOpen) return;
    const limit = Math.max(1, this.sink.maxInFlight ?? DEFAULT_SINK_IN_FLIGHT);
    while (this.readyData.length > 0 && this.applying < limit) {
      const { chunk, buffer } = this.readyData.shift()!;
      // The sink checks the chunk's digests before anything reaches the disk.
      this.applying++;
      this.sink.apply(chunk, buffer).then(
        (r) => this.guard(() => this.applied(chunk, r)),
        (e: Error) => this.fail(e),
      );
    }
  }

  private applied(chunk: number, r: { result: ApplyResult | null; rejected: string | null; container: Uint8Array; deferred?: boolean }): void {
    this.applying--;
    this.buffers!.give(r.container);
    if (r.rejected !== null || r.result === null) {
      // Damaged in transit or forged, or held back by the sink: it never reached the disk. Ask again.
      if (r.deferred !== true) this.stats.chunksRejected++;
      this.state[chunk] = ChunkState.missing;
      this.pump();
      return;
    }
    this.state[chunk] = ChunkState.done;
    this.chunksDone++;
    const nowMs = this.clock.nowMs();
    this.lastProgressMs = nowMs;
    this.stats.writtenBytes += r.result.writtenBytes;
    this.stats.freeBytes += r.result.freeBytes;
    this.stats.zeroedBytes += r.result.zeroedBytes;
    this.stats.discardedBytes += r.result.discardedBytes;
    this.emit({ kind: "progress", atMs: nowMs, chunksDone: this.chunksDone, chunksTotal: this.dataChunks, bytesWritten: this.stats.writtenBytes });
    if (this.chunksDone === this.dataChunks) return this.finish();
    this.pump();
  }

  private finish(): void {
    assert(this.manifest !== null && this.sinkOpen, "finishing an opened sink");
    const finishing = this.sink.finish();
    if (finishing instanceof Promise) finishing.then((r) => this.guard(() => this.finished(r.gptMoved)), (e: Error) => this.fail(e));
    else this.finished(finishing.gptMoved);
  }

  private finished(gptMoved: boolean): void {
    this.stats.gptMoved = gptMoved;
    this.stats.seconds = (this.clock.nowMs() - this.startedMs) / 1000;
    this.stats.megabytesPerSecond = this.stats.writtenBytes / 1e6 / Math.max(this.stats.seconds, 0.001);
    this.stats.peakRssBytes = peakRssBytes();
    // Best effort, twice: the summary helps the operator but nothing depends on it.
    this.report(ReportState.done, "");
    this.clock.setTimer(FINAL_REPORT_REPEAT_MS, () => this.report(ReportState.done, ""));
    const settle = this.settle!;
    this.settle = null;
    this.clock.setTimer(FINAL_SETTLE_MS, () => {
      this.emit({ kind: "done", atMs: this.clock.nowMs(), stats: this.stats });
      settle.resolve(this.stats);
    });
  }

  // ---- timers: queries, requests, reports, give-up ---------------------------------------------

  private tick(): void {
    const nowMs = this.clock.nowMs();
    const s = this.server;
    // With no chunk asked for or filling (all buffers wait on the disk), silence is expected.
    if (s !== null && this.manifest !== null && this.slots.size === 0) this.lastProgressMs = nowMs;
    if (nowMs - this.lastProgressMs > this.o.giveUpMs) throw this.giveUp();
    // An unproven server whose manifest stalled gives way to another that announced and has not
    // failed more often (a forger that failed before cannot take over from a busy real server).
    if (s !== null && this.manifest === null && nowMs - s.lastManifestBlockMs > MANIFEST_STALL_MS) {
      const next = this.candidates.pick(nowMs, s.candidate.host);
      if (next !== null && this.candidates.failuresOf(next.host) <= this.candidates.failuresOf(s.candidate.host)) {
        this.drop(`delivered no manifest block for ${MANIFEST_STALL_MS} ms`, nowMs);
      }
    }
    // Until a manifest is proven, keep asking who serves: a real server may answer after a forger.
    if (this.manifest === null && nowMs >= this.nextQueryMs) {
      this.send(encodeQuery({ imageId: this.o.imageId ?? new Uint8Array(16), sender: this.me }));
      this.nextQueryMs = nowMs + this.queryWaitMs;
      this.queryWaitMs = Math.min(QUERY_MAX_WAIT_MS, this.queryWaitMs * 2);
    }
    if (this.server === null) return;
    this.request(nowMs);
    if (nowMs >= this.nextReportMs) {
      this.report(ReportState.progress, "");
      this.nextReportMs = nowMs + REPORT_INTERVAL_MS;
    }
  }

  private giveUp(): DiscusError {
    const s = this.server;
    const seconds = (this.o.giveUpMs / 1000).toFixed(0);
    if (s === null && this.lastRefusal === null) {
      return new DiscusError("network", `${this.o.group}:${this.o.port}`, `no discus server answered within ${seconds} s`, "Start `discus serve` for this group and port, and check --iface names the interface on that network");
    }
    const r = this.refusedWith;
    if ((s === null || this.manifest === null) && r !== null) {
      return new DiscusError(r.kind, r.thing, `${r.why}, and no other server offered a usable image within ${seconds} s`, r.action);
    }
    if (s === null || this.manifest === null) {
      const why = this.lastRefusal === null ? "" : ` (last: ${this.lastRefusal})`;
      return new DiscusError("network", `${this.o.group}:${this.o.port}`, `no server delivered a manifest matching its announcement within ${seconds} s${why}`, "Check that only one `discus serve` serves this group, and pass --image-id and --key where the network is not trusted");
    }
    return new DiscusError("network", `server ${s.address}`, `no progress for ${seconds} s with ${this.chunksDone}/${this.dataChunks} chunks written`, "Restart `discus serve` with the same image (clients waiting within --give-up carry on); then run `discus load` again here");
  }

  private request(nowMs: number): void {
    const g = this.geometry!;
    const buffers = this.buffers!;
    let budget = MAX_REQUESTS_PER_TICK;
    let ours = 0;
    // Chunks under way: ask for what is missing once they have gone quiet.
    for (const slot of this.slots.values()) {
      if (slot.requestedByUs) ours++;
      if (budget === 0 || nowMs - slot.lastActivityMs < slot.waitMs) continue;
      this.askFor(slot, g, nowMs);
      budget--;
    }
    // Start new chunks: the manifest first, then data in this client's own random order.
    while (budget > 0 && ours < this.o.requestWindowChunks && buffers.freeCount > 0) {
      const chunk = this.nextWanted();
      if (chunk < 0) break;
      const slot = newSlot(chunk, buffers.take()!, g, nowMs, this.firstWaitMs());
      slot.requestedByUs = true;
      this.slots.set(chunk, slot);
      this.state[chunk] = ChunkState.filling;
      this.askFor(slot, g, nowMs);
      budget--;
      ours++;
    }
  }

  /**
   * How long a new request may sit in the server's queue behind this client's own window before
   * asking again is worth a packet: the window's chunks at the announced rate, 200 ms at least.
   */
  private firstWaitMs(): number {
    const a = this.server!.announce;
    const chunkMs = (a.chunkBytes * 8 * 1000) / Math.max(1, a.rateBitsPerSecond);
    return Math.min(REQUEST_MAX_WAIT_MS, Math.max(REQUEST_WAIT_MS, (this.o.requestWindowChunks + 1) * chunkMs));
  }

  private askFor(slot: Slot, g: Geometry, nowMs: number): void {
    if (slot.requests > 0 || slot.gotBlocks > 0) this.stats.rerequests++;
    // Asking again with nothing received since: back off (the server may be busy or restarting).
    if (slot.requests > 0) slot.waitMs = Math.min(REQUEST_MAX_WAIT_MS, slot.waitMs * 2);
    // After asking, give the server time to reach the request in its queue.
    slot.waitMs = Math.max(slot.gotBlocks > 0 ? REPAIR_WAIT_MS : REQUEST_WAIT_MS, slot.waitMs);
    slot.requests++;
    this.stats.requestsSent++;
    this.send(encodeRequest({ imageId: this.server!.announce.imageId, sender: this.me }, slot.chunk, g.blockCount, requestBitmap(slot, g)));
    slot.lastActivityMs = nowMs;
  }

  /** The next chunk to ask for, or -1 when every wanted chunk is under way or done. */
  private nextWanted(): number {
    for (let c = this.dataChunks; c < this.totalChunks; c++) if (this.state[c] === ChunkState.missing) return c;
    if (this.manifest === null) {
      // Data may be fetched while the manifest is under way, but not ahead of it by much.
      if (this.readyData.length >= this.reservedBuffers()) return -1;
    }
    const n = this.order.length;
    for (let k = 0; k < n; k++) {
      const c = this.order[this.orderCursor]!;
      this.orderCursor = this.orderCursor + 1 === n ? 0 : this.orderCursor + 1;
      if (this.state[c] === ChunkState.missing) return c;
    }
    return -1;
  }

  private report(state: ReportState, message: string): void {
    // A failure after every server was dropped (a refused image) is still told to the last one.
    const imageId = this.server?.announce.imageId ?? (state === ReportState.failed ? this.lastImageId : null);
    if (imageId === null || this.transport === null) return;
    const interval = this.loss.take();
    this.send(
      encodeReport(
        { imageId, sender: this.me },
        {
          state,
          elapsedMs: Math.round(this.clock.nowMs() - this.startedMs),
          chunksDone: this.chunksDone,
          chunksTotal: this.dataChunks,
          bytesWritten: this.stats.writtenBytes,
          blocksReceived: this.stats.blocksReceived,
          duplicateBlocks: this.stats.duplicateBlocks,
          requestsSent: this.stats.requestsSent,
          rerequests: this.stats.rerequests,
          chunksRejected: this.stats.chunksRejected,
          intervalReceived: interval.received,
          intervalSeqSpan: interval.span,
          message,
        },
      ),
    );
  }

  private send(bytes: Uint8Array): void {
    this.transport?.send(bytes);
  }
}

/**
 * Chunk 0 first, the rest in the client's own order: it holds the partition table, which a sink
 * growing a GPT onto a larger disk must see before it writes anything (target/gpt-gate.ts).
 */
function firstChunkFirst(order: number[]): number[] {
  const at = order.indexOf(0);
  if (at > 0) [order[0], order[at]] = [order[at]!, order[0]!];
  return order;
}
