// The simulated disk behind each simulated loader: a ChunkSink that checks a chunk by comparing it
// with the image's own bytes (equal bytes ⇔ equal SHA-256, without paying for the hash), and
// charges virtual time for the work a real client does: verify and decompress on the client's
// cores (the CPU model, cpu.ts), then write at the disk's rate, one chunk at a time. Nothing real
// happens: time passes on the scheduler, so results do not depend on this machine.
import type { Manifest } from "../../../src/image/manifest.ts";
import type { ApplyResult } from "../../../src/target/apply.ts";
import { equalBytes } from "../../../src/util/bytes.ts";
import { assert } from "../../../src/util/assert.ts";
import type { Scheduler } from "./scheduler.ts";
import type { CpuModel } from "./cpu.ts";

/** The image as the simulator holds it: every data chunk's container and raw size. */
export interface SimChunks {
  containers: Uint8Array[];
  rawBytes: number[];
  /** Bytes each chunk writes to the target (its regions) and leaves free. */
  writtenBytes: number[];
  freeBytes: number[];
}

export interface DiskModel {
  writeBytesPerSecond: number;
  /** Threads verifying and decompressing in parallel (the client's --workers). */
  cores: number;
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
  private diskFreeAtMs = 0;

  constructor(
    private readonly clock: Scheduler,
    private readonly chunks: SimChunks,
    private readonly cpu: CpuModel,
    private readonly disk: DiskModel,
  ) {
    assert(disk.cores >= 1 && disk.writeBytesPerSecond > 0, "a client has a core and a disk");
    this.applied = new Uint16Array(chunks.containers.length);
    this.coreFreeAtMs = Array(disk.cores).fill(0);
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
    const core = this.coreFreeAtMs.indexOf(Math.min(...this.coreFreeAtMs));
    const cpuDoneMs = Math.max(now, this.coreFreeAtMs[core]!) + cpuMs;
    this.coreFreeAtMs[core] = cpuDoneMs;
    if (!good) {
      this.rejected++;
      return this.clock.after(cpuDoneMs - now, { result: null, rejected: "chunk digest does not match the manifest", container });
    }
    const written = this.chunks.writtenBytes[index]!;
    const diskDoneMs = Math.max(cpuDoneMs, this.diskFreeAtMs) + (written * 1000) / this.disk.writeBytesPerSecond;
    this.diskFreeAtMs = diskDoneMs;
    this.applied[index]!++;
    const result: ApplyResult = { writtenBytes: written, freeBytes: this.chunks.freeBytes[index]!, zeroedBytes: 0, discardedBytes: 0 };
    return this.clock.after(diskDoneMs - now, { result, rejected: null, container });
  }

  finish(): { gptMoved: boolean } {
    this.finished = true;
    return { gptMoved: false };
  }

  close(failed: boolean): void {
    this.closedFailed = failed;
  }

  /** Every chunk applied exactly once. */
  complete(): boolean {
    return this.applied.every((n) => n === 1);
  }
}
