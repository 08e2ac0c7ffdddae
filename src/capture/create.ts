// `discus create`: plan what to capture, compress it in parallel into chunks, write the image.
import { closeSync } from "node:fs";
import { hostname } from "node:os";
import type { KeyObject } from "node:crypto";
import { openSource } from "../device/source.ts";
import { compressPiece } from "../image/codec.ts";
import { Codec, codecName, SECTOR_BYTES } from "../image/constants.ts";
import type { Manifest } from "../image/manifest.ts";
import type { ImageInfo } from "../image/info.ts";
import { ImageWriter, type PackedChunk } from "../image/writer.ts";
import type { CodecJob } from "../target/worker.ts";
import { WorkerPool } from "../util/pool.ts";
import { withProgress } from "../util/errors.ts";
import { progressBar } from "../util/progress.ts";
import { totalLength } from "../util/ranges.ts";
import { defaultPackParams, packStream, type Compressor } from "./pack.ts";
import { defaultStreamPackParams, packStreamed } from "./stream-pack.ts";
import { zstdChunkEncoder } from "./zstd-stream.ts";
import { planCapture, type CapturePlan } from "./layout.ts";
import { CaptureStream } from "./stream.ts";
import { VERSION } from "../version.ts";
import { WORKER_URL } from "../target/worker-url.ts";

export interface CreateOptions {
  source: string;
  image: string;
  codec: Codec;
  level: number;
  chunkBytes: number;
  raw: boolean;
  minFreeBytes: number;
  /** 0 compresses on the main thread (useful to show the image does not depend on it). */
  workers: number;
  signingKey: KeyObject | null;
  showProgress: boolean;
}

export interface CreateResult {
  manifest: Manifest;
  plan: CapturePlan;
  seconds: number;
  imageBytes: number;
}

export async function createImage(opts: CreateOptions): Promise<CreateResult> {
  const startedMs = performance.now();
  const source = openSource(opts.source, SECTOR_BYTES);
  // zlib pieces spread over the workers. A zstd chunk is one stream, compressed on this thread:
  // in a worker it was no faster (the steps wait on each other either way).
  const pool = opts.workers > 0 && opts.codec === Codec.zlib ? new WorkerPool<CodecJob, Uint8Array>(WORKER_URL, { workerCount: opts.workers, maxJobsPerWorker: 8 }) : null;
  let writer: ImageWriter | null = null;
  try {
    // The image file is created first, so a bad destination fails before any capture work.
    writer = new ImageWriter({ path: opts.image, chunkBytes: opts.chunkBytes, codec: opts.codec, level: opts.level, sourceBytes: source.sizeBytes });
    const plan = planCapture(source.fd, source.sizeBytes, { raw: opts.raw, minFreeBytes: opts.minFreeBytes, sectorBytes: SECTOR_BYTES });
    for (const w of plan.warnings) process.stderr.write(`warning: ${w}\n`);
    const stream = new CaptureStream(source.fd, plan.regions, SECTOR_BYTES);
    const totalBytes = totalLength(plan.regions) * SECTOR_BYTES;
    const progress = progressBar("capture", totalBytes, "bytes", opts.showProgress);
    let doneBytes = 0;
    const w = writer;
    const emit = async (chunk: PackedChunk): Promise<void> => {
      w.writeChunk(chunk);
      collectNowAndThen(chunk.rawBytes);
      doneBytes += chunk.rawBytes;
      progress.update(doneBytes);
    };
    const diskSectors = source.sizeBytes / SECTOR_BYTES;
    if (opts.codec === Codec.zstd) {
      await packStreamed(stream, diskSectors, defaultStreamPackParams(opts.chunkBytes, SECTOR_BYTES), () => zstdChunkEncoder(opts.level), emit);
    } else {
      await packStream(stream, diskSectors, defaultPackParams(opts.codec, opts.chunkBytes, SECTOR_BYTES), pieceCompressor(opts, pool), emit);
    }
    progress.finish();
    const info: ImageInfo = {
      created: {
        tool: "discus",
        version: VERSION,
        at: creationTime(),
        host: hostname(),
        source: opts.source,
      },
      codec: codecName(opts.codec),
      level: opts.level,
      partitionTable: plan.table,
      areas: plan.areas,
      minFreeBytes: opts.minFreeBytes,
    };
    const manifest = writer.finish(info, opts.signingKey);
    writer = null;
    const imageBytes = Bun.file(opts.image).size;
    return { manifest, plan, seconds: (performance.now() - startedMs) / 1000, imageBytes };
  } catch (e) {
    throw writer === null ? e : withProgress(e, `${writer.chunksWritten} chunks had been written; the partial image was removed`);
  } finally {
    writer?.abort();
    pool?.terminate();
    closeSync(source.fd);
  }
}

/**
 * Steps, pieces and pages leave short-lived buffers behind faster than the collector returns them
 * on a busy machine (peak RSS 240-300 MiB on the paper image); collecting after every so much data
 * keeps capture near its named bounds (~190 MiB).
 */
export const COLLECT_EVERY_RAW_BYTES = 64 << 20;
let rawSinceCollect = 0;

function collectNowAndThen(rawBytes: number): void {
  rawSinceCollect += rawBytes;
  if (rawSinceCollect < COLLECT_EVERY_RAW_BYTES) return;
  rawSinceCollect = 0;
  Bun.gc(true);
}

/** zlib pieces: compressed in the worker pool when there is one, else on this thread. */
function pieceCompressor(opts: CreateOptions, pool: WorkerPool<CodecJob, Uint8Array> | null): Compressor {
  if (!pool) return async (data, dictionary) => compressPiece(opts.codec, opts.level, data, dictionary);
  return (data, dictionary) => {
    // Copy out of the stream's page so only the piece, not the whole page, crosses threads.
    const piece = data.slice();
    const dict = dictionary?.slice() ?? null;
    const transfer = [piece.buffer as ArrayBuffer, ...(dict ? [dict.buffer as ArrayBuffer] : [])];
    return pool.submit({ kind: "compress", codec: opts.codec, level: opts.level, data: piece, dictionary: dict }, transfer);
  };
}

/** Reproducible builds' convention: SOURCE_DATE_EPOCH pins the recorded time, else now. */
function creationTime(): string {
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch !== undefined && /^\d+$/.test(epoch)) return new Date(Number(epoch) * 1000).toISOString();
  return new Date().toISOString();
}
