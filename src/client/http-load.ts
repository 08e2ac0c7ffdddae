// `discus load http://HOST/PATH/image.dsc TARGET`: the HTTP fallback of the multicast load. It
// reads the image's trailer and manifest with Range requests and checks them as a local restore
// does (trailer CRC, the manifest's digest, its agreement with the trailer, --image-id, --key),
// then fetches the data chunks, a few ranges at a time, and hands each to the same sink as
// multicast (TargetSink: both digests checked in the worker before a byte is written). A chunk
// failing its digests is fetched again, a bounded number of times, and never written.
import { TRAILER_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from "../image/constants.ts";
import { decodeManifest, ManifestError, maxManifestBytes, type DecodedManifest } from "../image/manifest.ts";
import { checkSignature } from "../image/signing.ts";
import { decodeTrailer, imageFileBytes, TrailerError, type Trailer } from "../image/trailer.ts";
import type { FreeMode } from "../target/apply.ts";
import { assert } from "../util/assert.ts";
import { equalBytes, hex, sha256 } from "../util/bytes.ts";
import { DiscusError, withProgress } from "../util/errors.ts";
import { peakRssBytes } from "../util/memory.ts";
import { progressBar, type Progress } from "../util/progress.ts";
import { formatBytes } from "../util/units.ts";
import type { KeyObject } from "node:crypto";
import { HttpSource } from "./http-source.ts";
import type { LoadEvent } from "./load-state.ts";
import { TargetSink, type ChunkSink } from "./sink.ts";
import { emptyLoadStats, type LoadStats } from "./stats.ts";

/** Range requests in flight at most: enough to cover a LAN's round trip, few enough for a small server. */
export const MAX_HTTP_REQUESTS_IN_FLIGHT = 4;
/** Fetches of one chunk whose digests do not match before the load fails (the served file is damaged). */
export const MAX_CHUNK_FETCHES = 3;
/** A manifest beyond this is refused: it would not fit the client's memory bound (as multicast). */
const MAX_HTTP_MANIFEST_BYTES = 64 << 20;
assert(MAX_HTTP_REQUESTS_IN_FLIGHT >= 1 && MAX_CHUNK_FETCHES >= 2, "at least one request, and one refetch");

export interface HttpLoadOptions {
  url: string;
  /** Sent with every request (the daemon's image route wants the agent's job token). */
  headers?: Record<string, string>;
  target: string;
  freeMode: FreeMode;
  workers: number;
  publicKey: KeyObject | null;
  keyPath: string | null;
  imageId: Uint8Array | null;
  /** Memory for chunks being fetched and applied: bounds the requests in flight with MAX_HTTP_REQUESTS_IN_FLIGHT. */
  bufferBytes: number;
  showProgress: boolean;
  onEvent?: (e: LoadEvent) => void;
  /** For tests and the simulator: another sink than the target writer. */
  sink?: ChunkSink;
}

/** Ranges in flight for this chunk size and memory budget: at least one, at most MAX_HTTP_REQUESTS_IN_FLIGHT. Pure. */
export function httpParallelism(chunkBytes: number, bufferBytes: number): number {
  return Math.max(1, Math.min(MAX_HTTP_REQUESTS_IN_FLIGHT, Math.floor(bufferBytes / chunkBytes)));
}

export async function httpLoadImage(o: HttpLoadOptions): Promise<LoadStats> {
  const startMs = performance.now();
  const stats = emptyLoadStats();
  stats.server = o.url;
  const sink = o.sink ?? new TargetSink({ target: o.target, freeMode: o.freeMode, workers: Math.max(1, o.workers) });
  const emit = (e: LoadEvent) => o.onEvent?.(e);
  const source = new HttpSource({ url: o.url, headers: o.headers });
  let failed = true;
  let done = 0;
  try {
    // A target in use is refused before anything is fetched; its size once the manifest is known.
    sink.check?.();
    const { manifest: m, body } = await fetchManifest(source, o);
    stats.signature = checkSignature(m, body, o.url, o.publicKey, o.keyPath);
    stats.imageId = hex(m.imageId);
    stats.chunks = m.dataChunkCount;
    emit({ kind: "server", atMs: performance.now(), server: o.url, imageId: stats.imageId });
    await sink.open(m);
    stats.targetBytes = sink.targetBytes ?? 0;
    let bar: Progress | null = null;
    const progress = () => {
      bar ??= progressBar("load", m.dataChunkCount, "chunks", o.showProgress);
      bar.update(done);
      emit({ kind: "progress", atMs: performance.now(), chunksDone: done, chunksTotal: m.dataChunkCount, bytesWritten: stats.writtenBytes });
    };
    progress();
    await fetchChunks(source, sink, m, stats, httpParallelism(m.chunkBytes, o.bufferBytes), () => {
      done++;
      progress();
    });
    stats.gptMoved = (await sink.finish()).gptMoved;
    (bar as Progress | null)?.finish();
    failed = false;
  } catch (e) {
    const err = e instanceof DiscusError && e.kind === "io" ? withProgress(e, `${formatBytes(stats.writtenBytes)} from ${done} of ${stats.chunks} chunks had been written`) : e;
    if (err instanceof DiscusError) emit({ kind: "failed", atMs: performance.now(), error: err });
    throw err;
  } finally {
    sink.close(failed);
  }
  stats.seconds = (performance.now() - startMs) / 1000;
  stats.megabytesPerSecond = stats.writtenBytes / 1e6 / Math.max(stats.seconds, 0.001);
  stats.requestsSent = source.requests;
  stats.rerequests = source.retries;
  stats.peakRssBytes = peakRssBytes();
  emit({ kind: "done", atMs: performance.now(), stats });
  return stats;
}

const damaged = "Check the served file with `discus verify` on the server, or serve a good copy";

/** The trailer (which gives the file's size), then the manifest, checked as image/reader.ts checks a local file. */
async function fetchManifest(source: HttpSource, o: HttpLoadOptions): Promise<DecodedManifest> {
  let t: Trailer;
  try {
    t = decodeTrailer(await source.tail(TRAILER_BYTES));
  } catch (e) {
    if (!(e instanceof TrailerError)) throw e;
    throw new DiscusError("input", o.url, `${e.message} (is this a discus image, and whole?)`, damaged);
  }
  if (t.chunkBytes < MIN_CHUNK_BYTES || t.chunkBytes > MAX_CHUNK_BYTES || (t.chunkBytes & 511) !== 0) {
    throw new DiscusError("input", o.url, `chunk size ${t.chunkBytes} is outside the format's bounds`, damaged);
  }
  if (source.fileBytes !== imageFileBytes(t)) throw new DiscusError("input", o.url, `is ${source.fileBytes} bytes but its trailer describes ${imageFileBytes(t)}`, damaged);
  if (t.manifestBytes === 0 || t.manifestBytes > t.manifestPartCount * t.chunkBytes || t.manifestBytes > maxManifestBytes(t.dataChunkCount)) {
    throw new DiscusError("input", o.url, "manifest length exceeds its parts or the format's bound", damaged);
  }
  if (t.manifestBytes > MAX_HTTP_MANIFEST_BYTES) throw new DiscusError("input", o.url, `its ${formatBytes(t.manifestBytes)} manifest is more than this client's ${formatBytes(MAX_HTTP_MANIFEST_BYTES)} bound`, "Capture the image with larger chunks");
  if (o.imageId !== null && !equalBytes(t.imageId, o.imageId)) {
    throw new DiscusError("input", o.url, `is image ${hex(t.imageId)}, not ${hex(o.imageId)} as --image-id asks`, "Check the URL, or drop --image-id");
  }
  const bytes = await source.range(t.dataChunkCount * t.chunkBytes, t.manifestBytes);
  if (!equalBytes(sha256(bytes), t.manifestSha256)) throw new DiscusError("input", o.url, "manifest digest does not match the trailer", damaged);
  let decoded: DecodedManifest;
  try {
    decoded = decodeManifest(bytes);
  } catch (e) {
    if (!(e instanceof ManifestError)) throw e;
    throw new DiscusError("input", o.url, e.message, damaged);
  }
  const m = decoded.manifest;
  if (!equalBytes(m.imageId, t.imageId) || m.dataChunkCount !== t.dataChunkCount || m.chunkBytes !== t.chunkBytes) {
    throw new DiscusError("input", o.url, "manifest and trailer disagree", damaged);
  }
  return decoded;
}

/**
 * Fetches every data chunk in order with `parallel` fetchers, each holding one chunk at a time
 * (so at most `parallel` chunks are in memory), and applies it through the sink. A chunk the sink
 * defers (GPT growth not planned yet) goes to the back of the queue; one it rejects is fetched again.
 */
async function fetchChunks(source: HttpSource, sink: ChunkSink, m: DecodedManifest["manifest"], stats: LoadStats, parallel: number, written: () => void): Promise<void> {
  const queue: number[] = Array.from({ length: m.dataChunkCount }, (_, i) => i);
  const fetches = new Uint8Array(m.dataChunkCount);
  let busy = 0;
  let waiting: (() => void)[] = [];
  let stop: Error | null = null;
  const fetcher = async (): Promise<void> => {
    while (stop === null) {
      const index = queue.shift();
      if (index === undefined) {
        if (busy === 0) return; // nothing queued and nothing that could come back
        await new Promise<void>((r) => waiting.push(r));
        continue;
      }
      busy++;
      try {
        await fetchOne(source, sink, m, stats, index, fetches, queue, written);
      } catch (e) {
        stop ??= e as Error;
      } finally {
        busy--;
        // Whatever happened (written, queued again, failed), idle fetchers look again.
        const woken = waiting;
        waiting = [];
        for (const w of woken) w();
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, () => fetcher()));
  if (stop !== null) throw stop;
}

async function fetchOne(source: HttpSource, sink: ChunkSink, m: DecodedManifest["manifest"], stats: LoadStats, index: number, fetches: Uint8Array, queue: number[], written: () => void): Promise<void> {
  fetches[index]!++;
  const container = await source.range(index * m.chunkBytes, m.chunkBytes);
  stats.blocksReceived++;
  // The sink checks the container's and the data's digests before anything reaches the disk.
  const r = await sink.apply(index, container);
  if (r.deferred === true) {
    fetches[index]!--;
    queue.push(index);
    return;
  }
  if (r.rejected !== null || r.result === null) {
    stats.chunksRejected++;
    if (fetches[index]! >= MAX_CHUNK_FETCHES) {
      throw new DiscusError("input", `chunk ${index} of image ${hex(m.imageId)}`, `failed its digests ${MAX_CHUNK_FETCHES} times from ${source.url} (${r.rejected ?? "rejected"}); it was never written`, damaged);
    }
    queue.unshift(index);
    return;
  }
  stats.writtenBytes += r.result.writtenBytes;
  stats.freeBytes += r.result.freeBytes;
  stats.zeroedBytes += r.result.zeroedBytes;
  stats.discardedBytes += r.result.discardedBytes;
  written();
}
