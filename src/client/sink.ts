// Where a loader's complete chunks go. The loader only fetches and assembles; a sink checks each
// chunk's digests and writes it. The real sink (TargetSink) writes a disk or file through a pool of
// worker threads (target/apply.ts, the same code as a local restore), or on the calling thread
// with workers = 0 (in-process tests and simulations, where thousands of loaders share a process).
import type { Manifest } from "../image/manifest.ts";
import type { CodecJob } from "../target/worker.ts";
import { WORKER_URL } from "../target/worker-url.ts";
import { applyChunk, applyJobFor, type ApplyResult, type ApplyReturn, type FreeMode } from "../target/apply.ts";
import { finishTarget } from "../target/restore.ts";
import { checkTarget, closeTarget, openTarget, type Target } from "../target/target.ts";
import { assert } from "../util/assert.ts";
import { hex } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";
import { WorkerPool } from "../util/pool.ts";
import { GptGate } from "../target/gpt-gate.ts";

export interface ChunkSink {
  /** Optional: refuse at once a target that cannot be used (in use, a directory), before anything is fetched. */
  check?(): void;
  /** The manifest is proven: get ready to write. Throws a DiscusError to refuse (a target too small). */
  open(m: Manifest): Promise<void> | void;
  /**
   * Checks and writes a chunk; a chunk failing its digests comes back `rejected`, never written.
   * `deferred`: the chunk is fine but cannot be written yet (see target/gpt-gate.ts); fetch it again.
   */
  apply(index: number, container: Uint8Array): Promise<{ result: ApplyResult | null; rejected: string | null; container: Uint8Array; deferred?: boolean }>;
  finish(): Promise<{ gptMoved: boolean }> | { gptMoved: boolean };
  close(failed: boolean): void;
  /** Chunks the loader may have in apply() at once (read after open); default DEFAULT_SINK_IN_FLIGHT. */
  readonly maxInFlight?: number;
  /** The target's size once open, for the statistics. */
  readonly targetBytes?: number;
}

export const DEFAULT_SINK_IN_FLIGHT = 2;
/** Chunks handed to one worker at most. */
const MAX_CHUNKS_PER_WORKER = 2;

export interface TargetSinkOptions {
  target: string;
  freeMode: FreeMode;
  /** Worker threads; 0 applies chunks on the calling thread. */
  workers: number;
}

export class TargetSink implements ChunkSink {
  maxInFlight = DEFAULT_SINK_IN_FLIGHT;
  targetBytes = 0;
  private target: Target | null = null;
  private manifest: Manifest | null = null;
  private pool: WorkerPool<CodecJob, ApplyReturn> | null = null;
  /** Until GPT growth onto this larger target is planned, nothing is written. */
  private gate: GptGate | null = null;

  constructor(private readonly o: TargetSinkOptions) {
    assert(o.workers >= 0, "a worker count");
  }

  check(): void {
    checkTarget(this.o.target, 0);
  }

  open(m: Manifest): void {
    const target = openTarget(this.o.target, m.sourceBytes);
    this.target = target;
    this.manifest = m;
    this.targetBytes = target.sizeBytes;
    if (m.info.partitionTable.kind === "gpt" && target.sizeBytes > m.sourceBytes) this.gate = new GptGate(m, target.sizeBytes, `image ${hex(m.imageId)}`);
    if (this.o.workers > 0) {
      this.pool = new WorkerPool<CodecJob, ApplyReturn>(WORKER_URL, { workerCount: this.o.workers, maxJobsPerWorker: MAX_CHUNKS_PER_WORKER });
      this.maxInFlight = this.pool.workerCount * MAX_CHUNKS_PER_WORKER;
    }
  }

  apply(index: number, container: Uint8Array): Promise<ApplyReturn & { deferred?: boolean }> {
    const m = this.manifest;
    const target = this.target;
    assert(m !== null && target !== null, "apply after open");
    if (this.gate !== null) {
      let admitted: boolean;
      try {
        admitted = this.gate.admit(index, container);
      } catch (e) {
        return Promise.reject(e as Error); // the table cannot grow: the load ends, nothing written
      }
      if (!admitted) return Promise.resolve({ result: null, rejected: "held back until the GPT's growth is planned", container, deferred: true });
      if (this.gate.open) this.gate = null;
    }
    // A fresh sparse file already reads as zeros: zeroing it again would only fill it.
    const freeMode: FreeMode = target.freshFile ? "skip" : this.o.freeMode;
    const where = { fd: target.fd, isBlockDevice: target.isBlockDevice, freeMode, dryRun: false };
    // The apply checks the chunk's digests before anything reaches the disk.
    const job = { ...applyJobFor(m, index, container, `image ${hex(m.imageId)}`, where), returnContainer: true };
    if (this.pool !== null) return this.pool.submit(job, [container.buffer as ArrayBuffer]);
    try {
      return Promise.resolve({ result: applyChunk(job), rejected: null, container });
    } catch (e) {
      if (e instanceof DiscusError && e.kind === "input") return Promise.resolve({ result: null, rejected: e.why, container });
      return Promise.reject(e as Error);
    }
  }

  finish(): { gptMoved: boolean } {
    assert(this.target !== null && this.manifest !== null, "finishing an opened target");
    return { gptMoved: finishTarget(this.target, this.manifest) };
  }

  /** After a failure, a target file this load created is removed (closeTarget). */
  close(failed: boolean): void {
    this.pool?.terminate();
    this.pool = null;
    if (this.target !== null) closeTarget(this.target, failed);
    this.target = null;
  }
}
