// `discus verify`: every chunk against the manifest (container digest, header, decompression,
// data digest), and the signature when a key is given. Reports every bad chunk, not just the first.
import type { KeyObject } from "node:crypto";
import { WORKER_URL } from "./worker-url.ts";
import { applyJobFor, type ApplyResult } from "./apply.ts";
import { InFlight } from "../util/in-flight.ts";
import { checkSignature } from "../image/signing.ts";
import { WorkerPool } from "../util/pool.ts";
import { DiscusError } from "../util/errors.ts";
import { closeImage, openImage, readChunk } from "../image/reader.ts";
import type { CodecJob } from "./worker.ts";
import { scanChunks, type ChunkProblem } from "../image/scan.ts";

export interface VerifyReport {
  image: string;
  imageId: string;
  chunks: number;
  /** index null: a problem of the image as a whole (its chunks do not add up to the manifest). */
  badChunks: ChunkProblem[];
  signature: "verified" | "unsigned" | "not checked";
  seconds: number;
}

/** Bad chunks listed at most; past this the image is beyond repair anyway. */
const MAX_REPORTED_BAD_CHUNKS = 100;

export async function verifyImage(path: string, publicKey: KeyObject | null, keyPath: string | null, workers: number): Promise<VerifyReport> {
  const startedMs = performance.now();
  const image = openImage(path);
  const pool = new WorkerPool<CodecJob, ApplyResult>(WORKER_URL, { workerCount: Math.max(1, workers), maxJobsPerWorker: 2 });
  try {
    const signature = checkSignature(image.manifest, image.manifestBody, image.path, publicKey, keyPath);
    const m = image.manifest;
    // Headers and their tiling first (cheap), then every chunk's digests and data in the workers.
    const scanned = scanChunks(image, { digests: false, maxProblems: MAX_REPORTED_BAD_CHUNKS });
    const bad: ChunkProblem[] = [];
    const inFlight = new InFlight(pool.workerCount * 2);
    const where = { fd: -1, isBlockDevice: false, freeMode: "skip" as const, dryRun: true };
    for (let i = 0; i < m.dataChunkCount && bad.length + scanned.length < MAX_REPORTED_BAD_CHUNKS; i++) {
      const container = readChunk(image, i);
      const job = pool.submit(applyJobFor(m, i, container, path, where), [container.buffer as ArrayBuffer]).then(
        () => {},
        (e: Error) => {
          bad.push({ index: i, why: e instanceof DiscusError ? e.why : e.message });
        },
      );
      await inFlight.add(job);
    }
    await inFlight.drain();
    return {
      image: path,
      imageId: Buffer.from(m.imageId).toString("hex"),
      chunks: m.dataChunkCount,
      badChunks: oneProblemPerChunk([...bad, ...scanned]),
      signature,
      seconds: (performance.now() - startedMs) / 1000,
    };
  } finally {
    pool.terminate();
    closeImage(image);
  }
}

/** A chunk found bad by both passes is listed once, the workers' reason first; image-wide ones last. */
function oneProblemPerChunk(problems: ChunkProblem[]): ChunkProblem[] {
  const seen = new Set<number | null>();
  const out = problems.filter((p) => !seen.has(p.index) && seen.add(p.index));
  return out.sort((a, b) => (a.index ?? Infinity) - (b.index ?? Infinity));
}
