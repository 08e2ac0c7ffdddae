// The multicast loader as an engine: joins an image's group through an injected transport, fetches
// and checks the manifest, then fetches chunks in its own random order and hands complete ones to
// a ChunkSink (the real one writes the target). Time comes from an injected Clock and every random
// choice from the seed, so the same code runs on the wall clock or in the simulator (scripts/sim).
// All the state worth keeping lives in the client (a LoadState), so a restarted server loses
// nothing. This module runs the load (lifecycle, dispatch, ticks, reports); server-choice.ts picks
// the server, requests.ts asks for blocks, intake.ts stores them, completion.ts sees chunks written.
import type { GroupTransport, OpenTransport, Peer } from "../net/transport.ts";
import { ReplayWindow } from "../net/auth.ts";
import { decodePacket, encodeReport, PacketType, ReportState, type RequestPacket } from "../net/wire.ts";
import { idFromSeed, mulberry32 } from "../util/shuffle.ts";
import { assert } from "../util/assert.ts";
import { every, type Clock, type TimerHandle } from "../util/clock.ts";
import { DiscusError, withProgress } from "../util/errors.ts";
import { formatBytes } from "../util/units.ts";
import { peakRssBytes } from "../util/memory.ts";
import type { Slot } from "./assembly.ts";
import { completed, type Runner } from "./completion.ts";
import { onBlock, onRepair } from "./intake.ts";
import type { LoaderOptions, LoadEvent, LoadState } from "./load-state.ts";
import { LossMeter } from "./loss-meter.ts";
import { onOverheard, request } from "./requests.ts";
import { giveUp, newCandidates, onAnnounce, QUERY_FIRST_WAIT_MS, reconsider } from "./server-choice.ts";
import type { ChunkSink } from "./sink.ts";
import { emptyLoadStats, type LoadStats } from "./stats.ts";

export type { LoaderOptions, LoadEvent } from "./load-state.ts";

export interface LoaderDeps {
  clock: Clock;
  openTransport: OpenTransport;
  sink: ChunkSink;
}

/** How often the client looks at its requests, timers and reports. */
const TICK_MS = 10;
const REPORT_INTERVAL_MS = 1000;
/** The final report goes out twice (best effort), this far apart; the load resolves just after. */
const FINAL_REPORT_REPEAT_MS = 50;
const FINAL_SETTLE_MS = 60;
/** Other clients whose request counters are remembered (for overheard requests, with a key). */
const MAX_OVERHEARD_SENDERS = 4096;
assert(FINAL_SETTLE_MS > FINAL_REPORT_REPEAT_MS, "the load resolves after its last report");

export class Loader {
  private readonly listeners: ((e: LoadEvent) => void)[] = [];
  private readonly clock: Clock;
  private readonly sink: ChunkSink;
  private readonly startedMs: number;
  private readonly st: LoadState;
  private readonly stats: LoadStats;
  private transport: GroupTransport | null = null;
  private readonly runner: Runner = { guard: (step) => this.guard(step), fail: (e) => this.fail(e), finished: (gptMoved) => this.finished(gptMoved) };
  private nextReportMs = 0;
  private ticker: TimerHandle | null = null;
  private settle: { resolve: (s: LoadStats) => void; reject: (e: Error) => void } | null = null;
  /** With a key: the counter of the last packet sent, the epoch of the last server followed. */
  private authCounter = 0;
  private authEpoch = 0;
  private readonly overheard = new ReplayWindow(MAX_OVERHEARD_SENDERS);

  constructor(
    private readonly o: LoaderOptions,
    private readonly deps: LoaderDeps,
  ) {
    assert(o.requestWindowChunks >= 1, "request window holds at least one chunk");
    this.clock = deps.clock;
    this.sink = deps.sink;
    this.stats = emptyLoadStats();
    this.startedMs = this.clock.nowMs();
    this.st = {
      o,
      clock: this.clock,
      sink: this.sink,
      me: idFromSeed(o.seed, 0xc1),
      stats: this.stats,
      loss: new LossMeter(),
      candidates: newCandidates(),
      random: mulberry32(idFromSeed(o.seed, 0x51)),
      emit: (e) => this.emit(e),
      send: (bytes) => this.transport?.send(this.signed(bytes)),
      server: null,
      lastRefusal: null,
      authRefusal: null,
      refusedWith: null,
      lastImageId: null,
      refusedManifests: [],
      lastProgressMs: this.startedMs,
      geometry: null,
      dataChunks: 0,
      totalChunks: 0,
      state: new Uint8Array(0),
      slots: new Map(),
      buffers: null,
      readyData: [],
      manifestParts: null,
      manifest: null,
      sinkOpen: false,
      applying: 0,
      chunksDone: 0,
      order: new Uint32Array(0),
      orderCursor: 0,
      nextQueryMs: 0,
      queryWaitMs: QUERY_FIRST_WAIT_MS,
      heardClients: new Set(),
    };
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

  /** Ends the load now (with `why`, or a plain "stopped"): run() rejects, the sink closes as after a failure. */
  stop(why?: DiscusError): void {
    this.fail(why ?? new DiscusError("network", `${this.o.group}:${this.o.port}`, "the load was stopped", "Run `discus load` again"));
  }

  /** A server announcing an image this client may take has been adopted (a fallback waits for this). */
  get announced(): boolean {
    return this.st.lastImageId !== null;
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
    const e = !(error instanceof DiscusError) || error.kind !== "io" ? error : (withProgress(error, `${formatBytes(this.stats.writtenBytes)} from ${this.st.chunksDone} of ${this.st.dataChunks} chunks had been written`) as Error);
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

  private onMessage(bytes: Uint8Array, from: Peer): void {
    const decoded = decodePacket(bytes);
    if (!decoded.ok) {
      this.stats.packetsDropped[decoded.reason]++;
      return;
    }
    const p = decoded.packet;
    switch (p.type) {
      case PacketType.announce:
        return onAnnounce(this.st, p, from);
      case PacketType.block:
        return this.completeIfWhole(onBlock(this.st, p, from));
      case PacketType.repair:
        return this.completeIfWhole(onRepair(this.st, p, from));
      case PacketType.request:
        if (p.sender === this.st.me) return;
        // A forged or replayed request the server ignores must not make us hold back our own.
        if (!this.heedable(p, bytes)) this.stats.packetsDropped.unauthenticated++;
        else onOverheard(this.st, p);
        return;
      default:
        return; // queries and reports are for the server
    }
  }

  /** Our packet as it goes out: with a key, tagged with the epoch of the server we follow. */
  private signed(bytes: Uint8Array): Uint8Array {
    const key = this.o.authKey ?? null;
    if (key === null) return bytes;
    if (this.st.server !== null) this.authEpoch = this.st.server.epoch;
    return key.sign(bytes, this.authEpoch, ++this.authCounter);
  }

  /** Without a key every request counts; with one, only a tagged one for our server, seen once. */
  private heedable(p: RequestPacket, bytes: Uint8Array): boolean {
    const key = this.o.authKey ?? null;
    if (key === null) return true;
    const t = p.auth ?? null;
    const s = this.st.server;
    if (t === null || s === null || t.epoch !== s.epoch || key.verify(bytes, t) !== "ok") return false;
    return this.overheard.admit(p.sender, t.counter);
  }

  private completeIfWhole(slot: Slot | null): void {
    if (slot !== null) completed(this.st, this.runner, slot);
  }

  // ---- the end ------------------------------------------------------------------------------

  /** The sink finished: the final reports go out and the load resolves. */
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

  // ---- timers: give-up, server choice, requests, reports -------------------------------------

  private tick(): void {
    const nowMs = this.clock.nowMs();
    const st = this.st;
    // With no chunk asked for or filling (all buffers wait on the disk), silence is expected.
    if (st.server !== null && st.manifest !== null && st.slots.size === 0) st.lastProgressMs = nowMs;
    if (nowMs - st.lastProgressMs > this.o.giveUpMs) throw giveUp(st);
    reconsider(st, nowMs);
    if (st.server === null) return;
    request(st, nowMs);
    if (nowMs >= this.nextReportMs) {
      this.report(ReportState.progress, "");
      this.nextReportMs = nowMs + REPORT_INTERVAL_MS;
    }
  }

  private report(state: ReportState, message: string): void {
    // A failure after every server was dropped (a refused image) is still told to the last one.
    const imageId = this.st.server?.announce.imageId ?? (state === ReportState.failed ? this.st.lastImageId : null);
    if (imageId === null || this.transport === null) return;
    const interval = this.st.loss.take();
    this.st.send(
      encodeReport(
        { imageId, sender: this.st.me },
        {
          state,
          elapsedMs: Math.round(this.clock.nowMs() - this.startedMs),
          chunksDone: this.st.chunksDone,
          chunksTotal: this.st.dataChunks,
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
}
