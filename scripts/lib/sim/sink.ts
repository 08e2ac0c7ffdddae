// The simulated disk behind each simulated loader: a ChunkSink that checks a chunk by comparing it
// with the image's own bytes (equal bytes ⇔ equal SHA-256, without paying for the hash), and
// charges virtual time for the work a real client does: verify and decompress on the client's
// cores (the CPU model, cpu.ts), write through the page cache, and flush at the end at the disk's
// rate (SimDisk). Nothing real
// happens: time passes on the scheduler, so results do not depend on this machine.
import type { Manifest } from "../../../src/image/manifest.ts";
import type { ApplyResult } from "../../../src/target/apply.ts";
import { equalBytes } from "../../../src/util/bytes.ts";
import { assert } from "../../../src/util/assert.ts";
import type { Scheduler } from "./scheduler.ts";
import type { CpuModel } from "./cpu.ts";
import type { CorePool } from "./lan.ts";

/** The image as the simulator holds it: every data chunk's container and raw size. */
export interface SimChunks {
  containers: Uint8Array[];
  rawBytes: number[];
  /** Bytes each chunk writes to the target (its regions) and leaves free. */
  writtenBytes: number[];
  freeBytes: number[];
}

export interface DiskModel {
  /** Threads verifying and decompressing in parallel (the client's --workers). */
  cores: number;
  /** Cores shared with other hosts on one machine; null: the client's own cores. */
  pool: CorePool | null;
}

/**
 * A disk behind Linux's page cache: writes land in memory (dirty) and cost nothing until the dirty
 * bytes pass the background threshold (then the excess goes out at the disk's rate, in order);
 * the final fdatasync waits for the rest. One SimDisk may serve several sinks (hosts on one
 * machine share its disk), each flushing its own dirty bytes through the disk's one queue.
 */
export class SimDisk {
  private freeAtMs = 0;
  private dirtyBytes = 0;
  constructor(
    readonly writeBytesPerSecond: number,
    readonly backgroundBytes: number,
  ) {
    assert(writeBytesPerSecond > 0 && backgroundBytes >= 0, "a disk has a rate and a write-back threshold");
  }

  /** Bytes written now by one writer; returns how many of them stay dirty (the writer's to flush). */
  write(nowMs: number, bytes: number): number {
    this.dirtyBytes += bytes;
    const excess = Math.max(0, this.dirtyBytes - this.backgroundBytes);
    if (excess === 0) return bytes;
    this.dirtyBytes -= excess;
    this.freeAtMs = Math.max(nowMs, this.freeAtMs) + (excess * 1000) / this.writeBytesPerSecond;
    return Math.max(0, bytes - excess);
  }

  /** Writes `dirty` bytes out now (a writer's fdatasync); returns when they are on the disk. */
  flush(nowMs: number, dirty: number): number {
    this.dirtyBytes = Math.max(0, this.dirtyBytes - dirty);
    this.freeAtMs = Math.max(nowMs, this.freeAtMs) + (dirty * 1000) / this.writeBytesPerSecond;
    return this.freeAtMs;
  }
}

export interface ApplyOutcome {
  result: ApplyResult | null;
  rejected: string | null;
  container: Uint8Array;
}

export class SimSink {
  /** How often each data chunk was applied (accepted); a correct load ends with all ones. */
  applied: Uint16Array;
  rejected = 0;
  opened = false;
  finished = false;
  closedFailed: boolean | null = null;
  private coreFreeAtMs: number[];
  /** This sink's bytes still in the page cache, for its final flush. */
  private dirtyBytes = 0;
  readonly maxInFlight: number;

  constructor(
    private readonly clock: Scheduler,
    private readonly chunks: SimChunks,
    private readonly cpu: CpuModel,
    private readonly model: DiskModel,
    private readonly disk: SimDisk,
  ) {
    assert(model.cores >= 1, "a client has a core");
    this.applied = new Uint16Array(chunks.containers.length);
    this.coreFreeAtMs = Array(model.cores).fill(0);
    // As the real sink: two chunks per worker in flight.
    this.maxInFlight = 2 * model.cores;
  }

  open(m: Manifest): void {
    assert(m.dataChunkCount === this.chunks.containers.length, "the manifest is the simulator's image");
    this.opened = true;
  }

  apply(index: number, container: Uint8Array): Promise<ApplyOutcome> {
    const good = index < this.chunks.containers.length && equalBytes(container, this.chunks.containers[index]!);
    const now = this.clock.nowMs();
    // A chunk is hashed before anything else: a bad one costs its hash, a good one the whole apply.
    const rawMiB = (good ? this.chunks.rawBytes[index]! : 0) / 2 ** 20;
    const cpuMs = (this.cpu.applyMicrosPerChunk + this.cpu.applyMicrosPerRawMiB * rawMiB) / 1000;
    const cpuDoneMs = this.model.pool !== null ? this.model.pool.reserve(now, cpuMs) : this.ownCore(now, cpuMs);
    if (!good) {
      this.rejected++;
      return this.clock.after(cpuDoneMs - now, { result: null, rejected: "chunk digest does not match the manifest", container });
    }
    const written = this.chunks.writtenBytes[index]!;
    this.dirtyBytes += this.disk.write(cpuDoneMs, written);
    this.applied[index]!++;
    const result: ApplyResult = { writtenBytes: written, freeBytes: this.chunks.freeBytes[index]!, zeroedBytes: 0, discardedBytes: 0 };
    return this.clock.after(cpuDoneMs - now, { result, rejected: null, container });
  }

  private ownCore(now: number, cpuMs: number): number {
    const core = this.coreFreeAtMs.indexOf(Math.min(...this.coreFreeAtMs));
    const doneMs = Math.max(now, this.coreFreeAtMs[core]!) + cpuMs;
    this.coreFreeAtMs[core] = doneMs;
    return doneMs;
  }

  /** The loader's fdatasync: done when this sink's dirty bytes are on the disk. */
  finish(): Promise<{ gptMoved: boolean }> {
    const now = this.clock.nowMs();
    const doneMs = this.disk.flush(now, this.dirtyBytes);
    this.dirtyBytes = 0;
    this.finished = true;
    return this.clock.after(doneMs - now, { gptMoved: false });
  }

  close(failed: boolean): void {
    this.closedFailed = failed;
  }

  /** Every chunk applied exactly once. */
  complete(): boolean {
    return this.applied.every((n) => n === 1);
  }
}
