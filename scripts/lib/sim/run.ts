// One simulated multicast load: the real ServeSession and N real Loaders, on virtual time
// (scheduler.ts) over an in-memory LAN (lan.ts), each loader writing to a simulated disk (sink.ts).
// Everything random comes from the seed, so the same config gives the same result.
import { ServeSession, type ServeStats } from "../../../src/server/session.ts";
import { Loader } from "../../../src/client/loader.ts";
import type { LoadStats } from "../../../src/client/stats.ts";
import type { OpenImage } from "../../../src/image/reader.ts";
import { blockBytesForMtu } from "../../../src/net/wire.ts";
import { mulberry32 } from "../../../src/util/shuffle.ts";
import { assert } from "../../../src/util/assert.ts";
import { Scheduler } from "./scheduler.ts";
import { CorePool, hostClock, Lan, SIM_PORT, type Host, type HostCpu, type LinkSpec } from "./lan.ts";
import { SimDisk, SimSink, type SimChunks } from "./sink.ts";
import { HostileHost } from "./hostile.ts";
import type { CpuModel } from "./cpu.ts";

export type Skew = "simultaneous" | "clustered" | "uniform";

export interface SimConfig {
  seed: number;
  clients: number;
  linkBitsPerSecond: number;
  mtuBytes: number;
  /** Random loss toward each client (0..1), independent per client and packet. */
  lossProbability: number;
  /** One-way propagation latency of every link, plus a per-client extra drawn in [0, spread]. */
  latencyMs: number;
  latencySpreadMs: number;
  /** Client 0's downlink rate, when it is the slow one. */
  slowClientBitsPerSecond: number | null;
  skew: Skew;
  /** Skewed starts spread over this window (Frisbee: the image's transfer time). */
  skewWindowMs: number;
  /** Stop the server at this time and start a new one downMs later; null: no restart. */
  restart: { atMs: number; downMs: number } | null;
  hostile: boolean;
  diskBytesPerSecond: number;
  /** Page-cache write-back threshold of a client's disk (Linux dirty_background): beyond it writes go out at once. */
  dirtyBackgroundBytes: number;
  clientCores: number;
  cpu: CpuModel;
  /** All hosts on one machine with this many cores (the namespace run's model); null: a machine each. */
  sharedCores: number | null;
  /** Per-packet main-thread costs on a shared machine (ms), measured from real processes. */
  hostReceiveMs: number;
  hostSendMs: number;
  /** Each loader's chunk buffers and request window (the CLI's --memory and --window). */
  bufferBytes: number;
  windowChunks: number;
  giveUpMs: number;
  /** Virtual time after which the run is abandoned (a stuck protocol shows as unfinished clients). */
  limitMs: number;
}

export interface ClientOutcome {
  startMs: number;
  endMs: number | null;
  stats: LoadStats | null;
  error: string | null;
  sink: SimSink;
}

export interface SimRun {
  config: SimConfig;
  clients: ClientOutcome[];
  serverStats: ServeStats[];
  /** Datagrams the server host sent and heard. */
  serverPacketsSent: number;
  serverPacketsHeard: number;
  serverBlockBytes: number;
  hostileSent: Record<string, number> | null;
  endMs: number;
  events: number;
  downQueueDrops: number;
  /** Wire bytes the clients and the server put on their uplinks (each reaches every downlink). */
  clientUplinkBytes: number;
  serverUplinkBytes: number;
}

/** Extra latencies are drawn from this many values, so downlinks fall into few classes. */
const LATENCY_CLASSES = 8;
/** Link FIFOs hold this much beyond a 64 KiB burst: 100 ms at the link's rate, as tbf in netlab. */
const QUEUE_MS = 100;
const BURST_BYTES = 64 << 10;
const SERVER_ADDRESS = "198.18.0.1";
const HOSTILE_ADDRESS = "198.18.0.2";
/** Client i is 198.18.x.y from 198.18.1.0 on: up to 65024 clients in 198.18.0.0/15. */
const MAX_CLIENTS = 65024;

function clientAddress(i: number): string {
  const n = 256 + i;
  return `198.${18 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
}

function link(rateBitsPerSecond: number, latencyMs: number): LinkSpec {
  return { rateBitsPerSecond, latencyMs, queueBytes: BURST_BYTES + Math.ceil((rateBitsPerSecond / 8) * (QUEUE_MS / 1000)) };
}

/** When each client starts, in ms (Frisbee's table 2: simultaneous, two clusters, uniform). */
export function startTimes(c: Pick<SimConfig, "clients" | "skew" | "skewWindowMs">): number[] {
  return Array.from({ length: c.clients }, (_, i) => {
    if (c.skew === "clustered") return i < c.clients / 2 ? 0 : c.skewWindowMs / 2;
    if (c.skew === "uniform") return (i * c.skewWindowMs) / c.clients;
    return 0;
  });
}

export async function simulate(config: SimConfig, image: OpenImage, chunks: SimChunks, allChunks: Uint8Array[]): Promise<SimRun> {
  assert(config.clients >= 1 && config.clients <= MAX_CLIENTS, "client count within the address plan");
  const clock = new Scheduler();
  const lan = new Lan(clock);
  const next = mulberry32(config.seed);
  const pool = config.sharedCores === null ? null : new CorePool(config.sharedCores);
  const hostCpu: HostCpu | null = pool === null ? null : { pool, receiveMs: config.hostReceiveMs, sendMs: config.hostSendMs };
  const base = link(config.linkBitsPerSecond, config.latencyMs);
  const server = lan.addHost({ address: SERVER_ADDRESS, cpu: hostCpu, up: base, down: base, lossProbability: 0, seed: config.seed ^ 0x5e });
  // On a shared machine a host's timers wait for its busy thread; on its own machine they never do.
  const timeOf = (h: Host) => (pool === null ? clock : hostClock(clock, h));
  const starts = startTimes(config);
  // Hosts on one machine share its disk; otherwise each client has its own.
  const sharedDisk = pool === null ? null : new SimDisk(config.diskBytesPerSecond, config.dirtyBackgroundBytes);
  const outcomes: ClientOutcome[] = [];
  const loaders: Loader[] = [];
  let settled = 0;
  for (let i = 0; i < config.clients; i++) {
    const extra = (Math.floor(next() * LATENCY_CLASSES) * config.latencySpreadMs) / Math.max(1, LATENCY_CLASSES - 1);
    const rate = i === 0 && config.slowClientBitsPerSecond !== null ? config.slowClientBitsPerSecond : config.linkBitsPerSecond;
    const host = lan.addHost({ address: clientAddress(i), cpu: hostCpu, up: link(config.linkBitsPerSecond, config.latencyMs + extra), down: link(rate, config.latencyMs + extra), lossProbability: config.lossProbability, seed: (config.seed * 7919 + i) >>> 0 });
    const disk = sharedDisk ?? new SimDisk(config.diskBytesPerSecond, config.dirtyBackgroundBytes);
    const sink = new SimSink(clock, chunks, config.cpu, { cores: config.clientCores, pool }, disk);
    const outcome: ClientOutcome = { startMs: starts[i]!, endMs: null, stats: null, error: null, sink };
    outcomes.push(outcome);
    clock.at(outcome.startMs, () => {
      const loader = new Loader(
        { group: "239.77.0.1", port: SIM_PORT, publicKey: null, keyPath: null, imageId: null, giveUpMs: config.giveUpMs, bufferBytes: config.bufferBytes, requestWindowChunks: config.windowChunks, seed: (config.seed * 1_000_003 + i + 1) >>> 0 },
        { clock: timeOf(host), openTransport: lan.transport(host), sink },
      );
      loaders.push(loader);
      loader.run().then(
        (stats) => {
          outcome.stats = stats;
          outcome.endMs = outcome.startMs + stats.seconds * 1000;
          settled++;
        },
        (e: Error) => {
          outcome.error = e.message;
          outcome.endMs = clock.nowMs();
          settled++;
        },
      );
    });
  }

  const readChunk = (index: number) => clock.after(0, allChunks[index]!);
  const sessionOptions = (k: number) => ({ imageName: image.path, group: "239.77.0.1", port: SIM_PORT, rateBitsPerSecond: config.linkBitsPerSecond, adaptiveRate: true, mtuBytes: config.mtuBytes, idleMs: null, seed: (config.seed * 31 + k) >>> 0 });
  const sessions = [new ServeSession(image, sessionOptions(0), { clock: timeOf(server), openTransport: lan.transport(server), readChunk })];
  await sessions[0]!.start();
  const serverStats: ServeStats[] = [];
  if (config.restart !== null) {
    const r = config.restart;
    clock.at(r.atMs, () => {
      void sessions[0]!.stop().then((s) => serverStats.push(s));
      clock.setTimer(r.downMs, () => {
        const again = new ServeSession(image, sessionOptions(1), { clock: timeOf(server), openTransport: lan.transport(server), readChunk });
        sessions.push(again);
        void again.start();
      });
    });
  }
  let hostile: HostileHost | null = null;
  if (config.hostile) {
    const t = image.trailer;
    const h = lan.addHost({ address: HOSTILE_ADDRESS, cpu: null, up: base, down: base, lossProbability: 0, seed: config.seed ^ 0xbad });
    const real = { chunkBytes: t.chunkBytes, blockBytes: blockBytesForMtu(config.mtuBytes), dataChunkCount: t.dataChunkCount, manifestPartCount: t.manifestPartCount, manifestBytes: t.manifestBytes, sourceBytes: image.manifest.sourceBytes, rateBitsPerSecond: config.linkBitsPerSecond, manifestSha256: t.manifestSha256 };
    hostile = new HostileHost(clock, real, image.manifest.imageId, config.seed ^ 0xf0f0, undefined);
    await hostile.start(lan.transport(h));
  }

  await clock.run(() => settled === config.clients, config.limitMs);
  const endMs = clock.nowMs();
  // Loaders still running at the limit are stopped (they end as failures, and say where they were).
  for (const l of loaders) l.stop();
  await clock.run(() => settled === loaders.length, endMs);
  hostile?.stop();
  const last = sessions[sessions.length - 1]!;
  serverStats.push(await last.stop());
  const counters = lan.counters();
  const blockBytes = sessions.reduce((a, s) => a + s.snapshot().bytesSent, 0);
  return {
    config,
    clients: outcomes,
    serverStats,
    serverPacketsSent: server.sent,
    serverPacketsHeard: server.received,
    serverBlockBytes: blockBytes,
    hostileSent: hostile?.sent ?? null,
    endMs,
    events: clock.eventsRun,
    downQueueDrops: counters.downQueueDrops,
    clientUplinkBytes: Object.entries(counters.up).reduce((a, [address, c]) => (address === SERVER_ADDRESS || address === HOSTILE_ADDRESS ? a : a + c.bytes), 0),
    serverUplinkBytes: counters.up[SERVER_ADDRESS]!.bytes,
  };
}
