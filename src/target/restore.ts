// The restore engine: check everything, then write chunks (in any order) through a worker pool.
// `discus restore` (cli.ts) and the agent's stick restore are its faces; they draw its events.
import { fdatasyncSync } from "node:fs";
import type { KeyObject } from "node:crypto";
import { rereadPartitions } from "../device/blockdev.ts";
import type { Manifest } from "../image/manifest.ts";
import { refuseDamagedImage } from "../image/scan.ts";
import { closeImage, openImage, readChunk, type OpenImage } from "../image/reader.ts";
import { checkSignature, type SignatureCheck } from "../image/signing.ts";
import type { CodecJob } from "./worker.ts";
import { ioError, withProgress } from "../util/errors.ts";
import { formatBytes } from "../util/units.ts";
import { WorkerPool } from "../util/pool.ts";
import { applyJobFor, type ApplyResult, type FreeMode } from "./apply.ts";
import { InFlight } from "../util/in-flight.ts";
import { checkGptGrowth, growGpt } from "./gpt-grow.ts";
import { closeTarget, openTarget, type Target } from "./target.ts";
import { WORKER_URL } from "./worker-url.ts";
import { chunkOrder, type ChunkOrder } from "../util/shuffle.ts";

export interface RestoreOptions {
  image: string;
  target: string;
  freeMode: FreeMode;
  workers: number;
  order: ChunkOrder;
  seed: number;
  publicKey: KeyObject | null;
  keyPath: string | null;
}

/** What a restore tells its face as it goes; the command line draws a bar from it. */
export interface RestoreEvents {
  /** After each chunk is written: chunks done of the image's total. */
  progress?(chunksDone: number, chunksTotal: number): void;
}

/** What writing an image to a target did: shared by `restore` and `load`. */
export interface RestoreStats {
  seconds: number;
  chunks: number;
  writtenBytes: number;
  freeBytes: number;
  zeroedBytes: number;
  discardedBytes: number;
  targetBytes: number;
  gptMoved: boolean;
  signature: SignatureCheck;
}

/** What a target that failed mid-restore holds, for the error's action. */
const PARTIAL_TARGET = "The target holds part of this image: do not boot it; write a good image over it";

/** Chunks handed to one worker at most: bounds memory at workers x 2 x (chunk + its raw data). */
const MAX_CHUNKS_PER_WORKER = 2;

/**
 * Checks every chunk against the manifest before anything is written, so a damaged image leaves
 * the target untouched: container digests, headers, and the headers' tiling of the source (a
 * header that claims another chunk's sectors would overwrite them with every digest right).
 * Workers check each container again as they apply it: the file may have changed in between,
 * and that second hash is cheap beside decompression.
 */
export function checkBeforeWriting(image: OpenImage): void {
  refuseDamagedImage(image, true, "The image is damaged: copy it again from its source; `discus verify` lists every bad chunk. Nothing was written");
}


/**
 * Completes a written target: moves the backup GPT to the end of a larger disk, flushes, and has
 * the kernel re-read the partition table. Returns whether the GPT moved.
 */
export function finishTarget(target: Target, m: Manifest): boolean {
  const grow = m.info.partitionTable.kind === "gpt" && target.sizeBytes > m.sourceBytes;
  if (grow) growGpt(target.fd, m.sectorBytes, m.sourceBytes, target.sizeBytes);
  try {
    fdatasyncSync(target.fd);
  } catch (e) {
    // Writes to a device land in the page cache; a failing disk often says so only here.
    const dataBytes = m.dataSectors * m.sectorBytes;
    throw withProgress(ioError(e, target.path, "flushing the written data to the device (fdatasync)"), `all ${m.dataChunkCount} chunks (${formatBytes(dataBytes)}) had been written to its cache, so part of that is not on the disk`);
  }
  if (target.isBlockDevice) rereadPartitions(target.fd);
  return grow;
}

export async function restoreImage(opts: RestoreOptions, events: RestoreEvents = {}): Promise<RestoreStats> {
  const startedMs = performance.now();
  const image = openImage(opts.image);
  try {
    const m = image.manifest;
    const signature = checkSignature(m, image.manifestBody, image.path, opts.publicKey, opts.keyPath);
    checkBeforeWriting(image);
    const target = openTarget(opts.target, m.sourceBytes);
    try {
      checkGptGrowth(image, target.sizeBytes); // growth at the end must not fail after every chunk is written
    } catch (e) {
      closeTarget(target, true);
      throw e;
    }
    const pool = new WorkerPool<CodecJob, ApplyResult>(WORKER_URL, { workerCount: Math.max(1, opts.workers), maxJobsPerWorker: MAX_CHUNKS_PER_WORKER });
    const stats: RestoreStats = {
      seconds: 0,
      chunks: m.dataChunkCount,
      writtenBytes: 0,
      freeBytes: 0,
      zeroedBytes: 0,
      discardedBytes: 0,
      targetBytes: target.sizeBytes,
      gptMoved: false,
      signature,
    };
    // A fresh sparse file already reads as zeros: zeroing it again would only fill it.
    const freeMode: FreeMode = target.freshFile ? "skip" : opts.freeMode;
    let done = 0;
    let writing = true;
    let failed = false;
    try {
      const inFlight = new InFlight(pool.workerCount * MAX_CHUNKS_PER_WORKER);
      const where = { fd: target.fd, isBlockDevice: target.isBlockDevice, freeMode, dryRun: false };
      for (const index of chunkOrder(m.dataChunkCount, opts.order, opts.seed)) {
        const container = readChunk(image, index);
        const job = pool.submit(applyJobFor(m, index, container, opts.image, where), [container.buffer as ArrayBuffer]).then((r) => {
          stats.writtenBytes += r.writtenBytes;
          stats.freeBytes += r.freeBytes;
          stats.zeroedBytes += r.zeroedBytes;
          stats.discardedBytes += r.discardedBytes;
          events.progress?.(++done, m.dataChunkCount);
        });
        await inFlight.add(job);
      }
      await inFlight.drain();
      writing = false;
      stats.gptMoved = finishTarget(target, m);
    } catch (e) {
      failed = true;
      // finishTarget says itself how far it got; a failed chunk write is told how far the others got.
      throw writing ? withProgress(e, `${formatBytes(stats.writtenBytes)} from ${done} of ${m.dataChunkCount} chunks had been written`, PARTIAL_TARGET) : e;
    } finally {
      pool.terminate();
      closeTarget(target, failed);
    }
    stats.seconds = (performance.now() - startedMs) / 1000;
    return stats;
  } finally {
    closeImage(image);
  }
}
