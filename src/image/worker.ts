// The one worker entry point: compresses pieces for capture and applies chunks for restore.
import { errorFields, type WorkerReply } from "../util/pool.ts";
import { compressPiece } from "./codec.ts";
import type { Codec } from "./constants.ts";
import { applyChunk, type ApplyJob } from "../restore/apply.ts";

export interface CompressJob {
  kind: "compress";
  codec: Codec;
  level: number;
  data: Uint8Array;
  dictionary: Uint8Array | null;
}

export type CodecJob = (CompressJob | ApplyJob) & { id?: number };

declare const self: Worker;

self.onmessage = (event: MessageEvent) => {
  const job = event.data as CodecJob & { id: number };
  let message: WorkerReply<unknown>;
  const transfer: ArrayBuffer[] = [];
  try {
    if (job.kind === "compress") {
      const out = compressPiece(job.codec, job.level, job.data, job.dictionary);
      transfer.push(out.buffer as ArrayBuffer);
      message = { id: job.id, reply: out };
    } else {
      message = { id: job.id, reply: applyChunk(job) };
    }
  } catch (e) {
    message = { id: job.id, error: errorFields(e) };
  }
  self.postMessage(message, transfer);
};
