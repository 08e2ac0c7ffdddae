// The one worker entry point: compresses pieces for capture and applies chunks for restore.
import { errorFields, type WorkerReply } from "../util/pool.ts";
import { compressPiece } from "../image/codec.ts";
import type { Codec } from "../image/constants.ts";
import { applyChunk, type ApplyJob, type ApplyReturn } from "./apply.ts";
import { DiscusError } from "../util/errors.ts";

export interface CompressJob {
  kind: "compress";
  codec: Codec;
  level: number;
  data: Uint8Array;
  dictionary: Uint8Array | null;
}

export type CodecJob = (CompressJob | ApplyJob) & { id?: number };

declare const self: Worker;

/**
 * Decompressed chunks are large, short-lived buffers (up to 32 MiB each) that the collector may
 * leave for a long while on a busy machine; collecting after every so many bytes keeps a
 * process's memory bounded by its buffers rather than by when the collector feels like running.
 */
const COLLECT_EVERY_BYTES = 64 << 20;
let bytesSinceCollect = 0;

function collectNowAndThen(bytes: number): void {
  bytesSinceCollect += bytes;
  if (bytesSinceCollect < COLLECT_EVERY_BYTES) return;
  bytesSinceCollect = 0;
  Bun.gc(true);
}

self.onmessage = (event: MessageEvent) => {
  const job = event.data as CodecJob & { id: number };
  let message: WorkerReply<unknown>;
  const transfer: ArrayBuffer[] = [];
  try {
    if (job.kind === "compress") {
      const out = compressPiece(job.codec, job.level, job.data, job.dictionary);
      transfer.push(out.buffer as ArrayBuffer);
      message = { id: job.id, reply: out };
    } else if (job.returnContainer) {
      transfer.push(job.container.buffer as ArrayBuffer);
      const reply = applyReturning(job);
      collectNowAndThen(reply.result?.writtenBytes ?? job.chunkBytes);
      message = { id: job.id, reply };
    } else {
      const reply = applyChunk(job);
      collectNowAndThen(reply.writtenBytes);
      message = { id: job.id, reply };
    }
  } catch (e) {
    message = { id: job.id, error: errorFields(e) };
  }
  self.postMessage(message, transfer);
};

/** Applies a chunk, turning "this chunk is damaged" into a rejection that returns the buffer. */
function applyReturning(job: ApplyJob): ApplyReturn {
  try {
    return { result: applyChunk(job), rejected: null, container: job.container };
  } catch (e) {
    if (e instanceof DiscusError && e.kind === "input") return { result: null, rejected: e.why, container: job.container };
    throw e;
  }
}
