// What a simulated run measured, as one deterministic JSON-able object (no wall time, no memory:
// those go to stderr, so the same seed prints the same JSON).
import type { SimRun } from "./run.ts";
import { describeCpu } from "./cpu.ts";

export interface SimSummary {
  clients: number;
  clientsDone: number;
  clientsFailed: number;
  /** From the first client's start to the last one's last chunk written. */
  seconds: number;
  /** The slowest client's own time, start to done. */
  clientSecondsMax: number;
  clientSecondsMean: number;
  /** The 90th percentile of the clients' own times: how long the tail is. */
  clientSecondsP90: number;
  /** T(1) under the same settings (filled by the caller). */
  secondsOneClient: number | null;
  /** Block bytes the server sent over the bytes of one copy of the image (data + manifest chunks). */
  sentOverImage: number;
  /** Mean over clients of duplicate blocks / blocks received. */
  duplicateFraction: number;
  requestsPerClient: number;
  rerequestsPerClient: number;
  requestsOverheardPerClient: number;
  chunksRejected: number;
  /** Blocks a client heard for a chunk it needed but had no free buffer for (it must ask again). */
  blocksWithoutBufferPerClient: number;
  /** Share of every downlink's bytes that were clients' requests, reports and queries, not blocks. */
  controlShareOfDownlink: number;
  /** Datagrams the server sent and heard, per second of the transfer. */
  serverPacketsPerSecond: number;
  /** Every client's disk got every chunk exactly once, and nothing else. */
  everyChunkOnce: boolean;
  serverRestarts: number;
  downlinkQueueDrops: number;
  hostileSent: Record<string, number> | null;
  failures: string[];
  model: Record<string, string | number | null>;
}

const round = (x: number, digits = 4) => Number(x.toFixed(digits));

export function summarize(run: SimRun, imageBytes: number): SimSummary {
  const c = run.config;
  const done = run.clients.filter((o) => o.stats !== null);
  const mean = (f: (s: NonNullable<(typeof done)[number]["stats"]>) => number) => (done.length === 0 ? NaN : done.reduce((a, o) => a + f(o.stats!), 0) / done.length);
  const firstStart = Math.min(...run.clients.map((o) => o.startMs));
  const lastEnd = Math.max(...run.clients.map((o) => o.endMs ?? run.endMs));
  const own = done.map((o) => o.stats!.seconds);
  const seconds = (lastEnd - firstStart) / 1000;
  return {
    clients: c.clients,
    clientsDone: done.length,
    clientsFailed: c.clients - done.length,
    seconds: round(seconds),
    clientSecondsMax: round(Math.max(...own)),
    clientSecondsMean: round(own.reduce((a, b) => a + b, 0) / Math.max(1, own.length)),
    clientSecondsP90: round([...own].sort((a, b) => a - b)[Math.floor(own.length * 0.9)] ?? NaN),
    secondsOneClient: null,
    sentOverImage: round(run.serverBlockBytes / imageBytes),
    duplicateFraction: round(mean((s) => s.duplicateBlocks / Math.max(1, s.blocksReceived))),
    requestsPerClient: round(mean((s) => s.requestsSent), 2),
    rerequestsPerClient: round(mean((s) => s.rerequests), 2),
    requestsOverheardPerClient: round(mean((s) => s.requestsOverheard), 2),
    chunksRejected: done.reduce((a, o) => a + o.stats!.chunksRejected, 0),
    blocksWithoutBufferPerClient: round(mean((s) => s.blocksWithoutBuffer), 1),
    controlShareOfDownlink: round(run.clientUplinkBytes / Math.max(1, run.clientUplinkBytes + run.serverUplinkBytes)),
    serverPacketsPerSecond: round((run.serverPacketsSent + run.serverPacketsHeard) / Math.max(seconds, 0.001), 1),
    everyChunkOnce: run.clients.every((o) => o.sink.complete()),
    serverRestarts: run.config.restart === null ? 0 : 1,
    downlinkQueueDrops: run.downQueueDrops,
    hostileSent: run.hostileSent,
    failures: run.clients.filter((o) => o.error !== null).slice(0, 5).map((o) => o.error!),
    model: {
      seed: c.seed,
      linkMbit: c.linkBitsPerSecond / 1e6,
      mtuBytes: c.mtuBytes,
      lossPercent: c.lossProbability * 100,
      latencyMs: c.latencyMs,
      latencySpreadMs: c.latencySpreadMs,
      slowClientMbit: c.slowClientBitsPerSecond === null ? null : c.slowClientBitsPerSecond / 1e6,
      skew: c.skew,
      skewWindowMs: round(c.skewWindowMs, 1),
      restart: c.restart === null ? null : `at ${c.restart.atMs / 1000} s, down ${c.restart.downMs / 1000} s`,
      hostile: c.hostile ? "test/net/forger.ts hostile mode rates" : null,
      diskMBps: c.diskBytesPerSecond / 1e6,
      diskWriteBackMiB: c.dirtyBackgroundBytes / 2 ** 20,
      clientCpu: `${c.clientCores} cores each; ${describeCpu(c.cpu)}`,
      hostCpu: c.sharedCores === null ? "a machine per host; per-packet main-thread cost not charged" : `all hosts share ${c.sharedCores} cores; ${(c.hostReceiveMs * 1000).toFixed(0)} µs per packet heard, ${(c.hostSendMs * 1000).toFixed(0)} µs per packet sent`,
      loaderMemoryKiB: c.bufferBytes >> 10,
      windowChunks: c.windowChunks,
    },
  };
}
