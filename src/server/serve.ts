// `discus serve`: answers requests for blocks of one image on one multicast group.
// Stateless toward clients: the queue holds what was asked for, not who asked. It sends nothing
// unless asked, so a restarted server picks up where clients left off.
import type { RemoteInfo } from "node:dgram";
import { closeImage, openImage, type OpenImage } from "../image/reader.ts";
import { assert } from "../util/assert.ts";
import { countBits } from "../util/bitmap.ts";
import { equalBytes, hex } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";
import { openGroupSocket, type GroupSocket } from "../net/socket.ts";
import {
  blockBytesForMtu,
  blocksPerChunk,
  decodePacket,
  peekType,
  encodeAnnounce,
  encodeBlock,
  HEADER_BYTES,
  BLOCK_PREFIX_BYTES,
  MAX_BLOCKS_PER_CHUNK,
  MIN_BLOCK_BYTES,
  PacketType,
  ReportState,
  wireBytes,
  type AnnounceBody,
  type DropReason,
  type ReportPacket,
  type RequestPacket,
} from "../net/wire.ts";
import { ChunkCache } from "./chunk-cache.ts";
import { LossReports } from "./loss-reports.ts";
import { DEFAULT_RATE_LAW, nextRate, TokenBucket, type RateLaw } from "./pacer.ts";
import { SendQueue } from "./queue.ts";

export interface ServeOptions {
  image: string;
  group: string;
  port: number;
  iface: string;
  ttl: number;
  rateBitsPerSecond: number;
  /** Turn off to send at exactly rateBitsPerSecond whatever clients report. */
  adaptiveRate: boolean;
  mtuBytes: number;
  /** Exit after this long with no request; null: serve until killed. */
  idleExitMs: number | null;
  log: (line: string) => void;
  signal?: AbortSignal;
}

export interface SessionSummary {
  seconds: number;
  clients: number;
  clientsDone: number;
  clientsFailed: number;
  blocksSent: number;
  bytesSent: number;
  megabitsPerSecond: number;
  requests: number;
  requestedBlocks: number;
  mergedBlocks: number;
  requestsDropped: number;
  finalRateMegabits: number;
}

export interface ServeStats {
  sessions: SessionSummary[];
  dropped: Record<DropReason | "otherImage" | "badChunk", number>;
}

/** Chunks with blocks still to send, at most: beyond this requests are dropped and asked again. */
const MAX_QUEUED_CHUNKS = 4096;
const CACHE_CHUNKS = 16;
const READ_AHEAD_CHUNKS = 4;
/** Pacing granularity: the sender wakes at most this often, and sends at most a burst each time. */
const MIN_TICK_MS = 1;
const BURST_PACKETS = 32;
/** Announcements answer queries at most this often (many clients booting at once ask together). */
const ANNOUNCE_MIN_INTERVAL_MS = 100;
const CONTROL_INTERVAL_MS = 500;
/** A session ends after this long with no request and nothing left to send. */
const SESSION_IDLE_MS = 3000;
/** Clients remembered for the session summary (distinct senders); beyond it they are not counted. */
const MAX_TRACKED_CLIENTS = 65536;
const SOCKET_BUFFER_BYTES = 8 << 20;
/** A host's loss reports count while it asked for blocks this recently (a few report intervals). */
const RECENT_REQUEST_MS = 5000;
/** A host that reported this recently is waited for (clients report once a second). */
const REPORT_MEMORY_MS = 3000;
/** Lowest rate the control law may choose: a tenth of the configured one, at least 1 Mbit/s. */
const MIN_RATE_FRACTION = 0.1;

interface Session {
  startedMs: number;
  lastRequestMs: number;
  lastSendMs: number;
  clients: Set<number>;
  done: Set<number>;
  failed: Set<number>;
  blocksSent: number;
  bytesSent: number;
  requests: number;
  requestedBlocks: number;
  mergedBlocks: number;
  requestsDropped: number;
}

export async function serveImage(o: ServeOptions): Promise<ServeStats> {
  const image = openImage(o.image);
  try {
    return await serveOpenImage(image, o);
  } finally {
    closeImage(image);
  }
}

async function serveOpenImage(image: OpenImage, o: ServeOptions): Promise<ServeStats> {
  const t = image.trailer;
  const blockBytes = blockBytesForMtu(o.mtuBytes);
  if (blockBytes < MIN_BLOCK_BYTES) {
    throw new DiscusError("usage", `MTU ${o.mtuBytes}`, `it leaves ${blockBytes}-byte blocks, below the protocol's ${MIN_BLOCK_BYTES}`, "Use the link's MTU, 1500 unless jumbo frames are on");
  }
  const blockCount = blocksPerChunk(t.chunkBytes, blockBytes);
  if (blockCount > MAX_BLOCKS_PER_CHUNK) {
    throw new DiscusError("usage", o.image, `its ${t.chunkBytes}-byte chunks need ${blockCount} blocks of ${blockBytes} bytes; the protocol allows ${MAX_BLOCKS_PER_CHUNK}`, "Use a larger --mtu (jumbo frames) or an image made with smaller chunks");
  }
  const totalChunks = t.dataChunkCount + t.manifestPartCount;
  const epoch = (crypto.getRandomValues(new Uint32Array(1))[0]! | 1) >>> 0;
  const self = { imageId: image.manifest.imageId, sender: epoch };
  const law: RateLaw = { ...DEFAULT_RATE_LAW, maxBitsPerSecond: o.rateBitsPerSecond, minBitsPerSecond: Math.max(1e6, o.rateBitsPerSecond * MIN_RATE_FRACTION) };
  let rate = o.rateBitsPerSecond;
  const packetWireBytes = (dataBytes: number) => wireBytes(HEADER_BYTES + BLOCK_PREFIX_BYTES + dataBytes);
  const fullPacketWireBytes = packetWireBytes(blockBytes);
  // A burst is BURST_PACKETS full packets, or 2 ms at the configured rate if that is more.
  const burstPackets = Math.max(BURST_PACKETS, Math.ceil(((rate / 8) * 0.002) / fullPacketWireBytes));
  const bucket = new TokenBucket(rate, burstPackets * fullPacketWireBytes);
  const announceBody = (): AnnounceBody => ({
    chunkBytes: t.chunkBytes,
    blockBytes,
    dataChunkCount: t.dataChunkCount,
    manifestPartCount: t.manifestPartCount,
    manifestBytes: t.manifestBytes,
    sourceBytes: image.manifest.sourceBytes,
    rateBitsPerSecond: rate,
    manifestSha256: t.manifestSha256,
  });
  const queue = new SendQueue(MAX_QUEUED_CHUNKS);
  const cache = new ChunkCache(image.fd, t.chunkBytes, CACHE_CHUNKS);
  const stats: ServeStats = { sessions: [], dropped: { short: 0, magic: 0, version: 0, type: 0, crc: 0, length: 0, field: 0, otherImage: 0, badChunk: 0 } };
  let session: Session | null = null;
  const lossReports = new LossReports({ recentRequestMs: RECENT_REQUEST_MS, reportMemoryMs: REPORT_MEMORY_MS, maxHosts: MAX_TRACKED_CLIENTS });
  let seq = 0;
  let lastAnnounceMs = -Infinity;
  let announceTimer: ReturnType<typeof setTimeout> | null = null;
  let sendTimer: ReturnType<typeof setTimeout> | null = null;
  let lastActivityMs = performance.now();
  let sock: GroupSocket | null = null;

  const mbit = (bitsPerSecond: number) => (bitsPerSecond / 1e6).toFixed(1);
  const clientName = (sender: number, from: RemoteInfo) => `${from.address} (${sender.toString(16).padStart(8, "0")})`;

  const announce = () => {
    announceTimer = null;
    lastAnnounceMs = performance.now();
    sock?.send(encodeAnnounce(self, announceBody()));
  };
  const scheduleAnnounce = () => {
    if (announceTimer !== null) return;
    const waitMs = Math.max(0, lastAnnounceMs + ANNOUNCE_MIN_INTERVAL_MS - performance.now());
    announceTimer = setTimeout(announce, waitMs);
  };

  const openSession = (nowMs: number): Session => {
    if (session === null) {
      session = { startedMs: nowMs, lastRequestMs: nowMs, lastSendMs: nowMs, clients: new Set(), done: new Set(), failed: new Set(), blocksSent: 0, bytesSent: 0, requests: 0, requestedBlocks: 0, mergedBlocks: 0, requestsDropped: 0 };
      o.log(`session started: image ${hex(image.manifest.imageId)} on ${o.group}:${o.port}, ${mbit(rate)} Mbit/s`);
    }
    return session;
  };
  const trackClient = (s: Session, sender: number) => {
    if (s.clients.size < MAX_TRACKED_CLIENTS) s.clients.add(sender);
  };

  const closeSession = () => {
    const s = session;
    if (s === null) return;
    session = null;
    // The session lasted until its last request or block, whichever came later.
    const seconds = Math.max(1, Math.max(s.lastRequestMs, s.lastSendMs) - s.startedMs) / 1000;
    const summary: SessionSummary = {
      seconds,
      clients: s.clients.size,
      clientsDone: s.done.size,
      clientsFailed: s.failed.size,
      blocksSent: s.blocksSent,
      bytesSent: s.bytesSent,
      megabitsPerSecond: (s.bytesSent * 8) / 1e6 / seconds,
      requests: s.requests,
      requestedBlocks: s.requestedBlocks,
      mergedBlocks: s.mergedBlocks,
      requestsDropped: s.requestsDropped,
      finalRateMegabits: rate / 1e6,
    };
    stats.sessions.push(summary);
    o.log(
      `session ended: ${summary.clients} clients (${summary.clientsDone} done, ${summary.clientsFailed} failed), ${(summary.bytesSent / 1e6).toFixed(1)} MB in ${summary.blocksSent} blocks over ${seconds.toFixed(1)} s ` +
        `(${summary.megabitsPerSecond.toFixed(1)} Mbit/s), ${summary.requests} requests, ${summary.mergedBlocks} of ${summary.requestedBlocks} requested blocks merged, ${summary.requestsDropped} dropped (queue full), rate now ${mbit(rate)} Mbit/s`,
    );
  };

  const onRequest = (p: RequestPacket, from: RemoteInfo, nowMs: number) => {
    if (p.chunk >= totalChunks || p.blockCount !== blockCount) {
      stats.dropped.badChunk++;
      return;
    }
    lossReports.requested(from.address, nowMs);
    const s = openSession(nowMs);
    s.lastRequestMs = nowMs;
    s.requests++;
    trackClient(s, p.sender);
    const wanted = countBits(p.bitmap, p.blockCount);
    const r = queue.merge(p.chunk, blockCount, p.bitmap);
    s.requestedBlocks += wanted;
    if (!r.accepted) {
      s.requestsDropped++;
      return;
    }
    s.mergedBlocks += wanted - r.addedBlocks;
    if (r.addedBlocks > 0) {
      cache.readAhead(queue.upcoming(READ_AHEAD_CHUNKS));
      scheduleSend(0);
    }
  };

  const onReport = (p: ReportPacket, from: RemoteInfo, nowMs: number) => {
    lossReports.reported(from.address, { receivedBlocks: p.intervalReceived, seqSpan: p.intervalSeqSpan }, nowMs);
    if (p.state === ReportState.progress) return;
    const s = openSession(nowMs);
    trackClient(s, p.sender);
    const set = p.state === ReportState.done ? s.done : s.failed;
    if (set.has(p.sender) || set.size >= MAX_TRACKED_CLIENTS) return; // clients send their final report more than once
    set.add(p.sender);
    const seconds = p.elapsedMs / 1000;
    const dupPercent = p.blocksReceived > 0 ? (100 * p.duplicateBlocks) / p.blocksReceived : 0;
    o.log(
      p.state === ReportState.done
        ? `client ${clientName(p.sender, from)} done: ${(p.bytesWritten / 1e6).toFixed(1)} MB written, ${p.chunksDone} chunks in ${seconds.toFixed(1)} s (${(p.bytesWritten / 1e6 / Math.max(seconds, 0.001)).toFixed(1)} MB/s), ${p.requestsSent} requests (${p.rerequests} repeats), ${dupPercent.toFixed(1)}% duplicate blocks, ${p.chunksRejected} chunks rejected`
        : `client ${clientName(p.sender, from)} failed after ${seconds.toFixed(1)} s at ${p.chunksDone}/${p.chunksTotal} chunks: ${p.message}`,
    );
  };

  const onMessage = (bytes: Uint8Array, from: RemoteInfo) => {
    // Our own blocks loop back (so a client on this host hears them): skip a server's traffic,
    // ours or another's, before paying for its CRC.
    const type = peekType(bytes);
    if (type === PacketType.block || type === PacketType.announce) return;
    const decoded = decodePacket(bytes);
    if (!decoded.ok) {
      stats.dropped[decoded.reason]++;
      return;
    }
    const p = decoded.packet;
    if (p.type === PacketType.block || p.type === PacketType.announce) return; // skipped above; narrows the type
    const nowMs = performance.now();
    if (p.type === PacketType.query) {
      lastActivityMs = nowMs;
      if (isZero(p.imageId) || equalBytes(p.imageId, self.imageId)) scheduleAnnounce();
      else stats.dropped.otherImage++;
      return;
    }
    if (!equalBytes(p.imageId, self.imageId)) {
      stats.dropped.otherImage++;
      return;
    }
    lastActivityMs = nowMs;
    if (p.type === PacketType.request) onRequest(p, from, nowMs);
    else onReport(p, from, nowMs);
  };

  const sendSome = () => {
    sendTimer = null;
    const nowMs = performance.now();
    let tokens = bucket.refill(nowMs);
    let sent = 0;
    while (!queue.empty) {
      if (tokens < fullPacketWireBytes) break;
      const next = queue.take();
      assert(next !== null, "a non-empty queue yields a block");
      const chunkBytes = cache.get(next.chunk);
      const start = next.block * blockBytes;
      const data = chunkBytes.subarray(start, Math.min(t.chunkBytes, start + blockBytes));
      sock?.send(encodeBlock(self, next.chunk, seq, next.block, data));
      seq = (seq + 1) >>> 0;
      const cost = packetWireBytes(data.length);
      bucket.spend(cost);
      tokens -= cost;
      sent++;
      const s = session;
      if (s !== null) {
        s.lastSendMs = nowMs;
        s.blocksSent++;
        s.bytesSent += data.length;
      }
    }
    if (sent > 0) cache.readAhead(queue.upcoming(READ_AHEAD_CHUNKS));
    if (!queue.empty) scheduleSend(Math.max(MIN_TICK_MS, bucket.waitMs(fullPacketWireBytes)));
  };
  const scheduleSend = (waitMs: number) => {
    if (sendTimer !== null) return;
    sendTimer = setTimeout(sendSome, waitMs);
  };

  sock = await openGroupSocket({ group: o.group, port: o.port, iface: o.iface, ttl: o.ttl, receiveBufferBytes: SOCKET_BUFFER_BYTES, sendBufferBytes: SOCKET_BUFFER_BYTES }, onMessage);
  o.log(
    `serving ${o.image} (image ${hex(image.manifest.imageId)}, ${t.dataChunkCount} chunks + ${t.manifestPartCount} manifest part(s) of ${t.chunkBytes} bytes) on ${o.group}:${o.port} via ${o.iface}, ` +
      `${blockBytes}-byte blocks, up to ${mbit(o.rateBitsPerSecond)} Mbit/s${o.adaptiveRate ? " (adaptive)" : ""}`,
  );

  // The control loop: adapt the rate to the loss clients report, and end idle sessions.
  await new Promise<void>((resolve) => {
    const control = setInterval(() => {
      const nowMs = performance.now();
      const samples = lossReports.take(nowMs);
      if (o.adaptiveRate) {
        const step = nextRate(law, rate, samples);
        if (Math.abs(step.rate - rate) / rate > 0.001) {
          o.log(`rate ${mbit(rate)} -> ${mbit(step.rate)} Mbit/s (median client loss ${((step.medianLoss ?? 0) * 100).toFixed(1)}% over ${samples.length} reports)`);
          rate = step.rate;
          bucket.setRate(rate);
        }
      }
      if (session !== null && queue.empty && nowMs - session.lastRequestMs > SESSION_IDLE_MS) closeSession();
      const idle = o.idleExitMs !== null && session === null && nowMs - lastActivityMs > o.idleExitMs;
      if (idle || o.signal?.aborted) finish();
    }, CONTROL_INTERVAL_MS);
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearInterval(control);
      if (sendTimer !== null) clearTimeout(sendTimer);
      if (announceTimer !== null) clearTimeout(announceTimer);
      closeSession();
      sock?.close();
      resolve();
    };
    o.signal?.addEventListener("abort", finish, { once: true });
  });
  return stats;
}

function isZero(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}
