// The simulator's CPU model, and how its figures were measured. A run must not depend on the
// machine it runs on, so the model uses fixed constants; `bash scripts/sim --measure-cpu` times
// the real code on this machine (the worker's apply in dry-run: container SHA-256, header checks,
// zstd decompression, raw SHA-256; and the wire decoder on block packets) so they can be updated.
import { openImage, readChunk, closeImage } from "../../../src/image/reader.ts";
import { applyChunk, applyJobFor } from "../../../src/target/apply.ts";
import { decodePacket, encodeBlock, blockBytesForMtu } from "../../../src/net/wire.ts";
import { decodeChunkHeader } from "../../../src/image/chunk.ts";

export interface CpuModel {
  /** Verifying and decompressing a chunk, per MiB of uncompressed data (one core). */
  applyMicrosPerRawMiB: number;
  /** Fixed cost per chunk applied (worker hand-off, header decode). */
  applyMicrosPerChunk: number;
  /** A client's main thread decoding and storing one block packet. */
  receiveMicrosPerPacket: number;
}

/**
 * Measured on the 2-core development VM, 2026-12-01, by `bash scripts/sim --measure-cpu` on the
 * sim's 64 MiB image (best of 3 passes): the per-chunk part is folded into the per-MiB figure.
 */
export const MEASURED_CPU: CpuModel = {
  applyMicrosPerRawMiB: 1877,
  applyMicrosPerChunk: 0,
  receiveMicrosPerPacket: 0.4,
};

export function describeCpu(m: CpuModel): string {
  return `apply ${m.applyMicrosPerRawMiB.toFixed(0)} µs/MiB raw + ${m.applyMicrosPerChunk.toFixed(0)} µs/chunk (one core), receive ${m.receiveMicrosPerPacket.toFixed(1)} µs/block packet`;
}

const REPEATS = 3;

/** Times the real code on `imagePath` (best of a few passes, to leave out other load). */
export function measureCpu(imagePath: string): CpuModel & { rawMiB: number; chunks: number } {
  const image = openImage(imagePath);
  try {
    const m = image.manifest;
    const n = image.trailer.dataChunkCount;
    const containers = Array.from({ length: n }, (_, i) => readChunk(image, i));
    let rawBytes = 0;
    for (const c of containers) rawBytes += decodeChunkHeader(c, m.chunkBytes).rawBytes;
    let best = Infinity;
    for (let r = 0; r < REPEATS; r++) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) applyChunk(applyJobFor(m, i, containers[i]!, "sim", { fd: -1, isBlockDevice: false, freeMode: "skip", dryRun: true }));
      best = Math.min(best, performance.now() - t0);
    }
    const packet = encodeBlock({ imageId: m.imageId, sender: 1 }, 0, 0, 0, containers[0]!.subarray(0, blockBytesForMtu(1500)));
    const decodes = 200_000;
    let bestDecode = Infinity;
    for (let r = 0; r < REPEATS; r++) {
      const t0 = performance.now();
      for (let i = 0; i < decodes; i++) decodePacket(packet);
      bestDecode = Math.min(bestDecode, performance.now() - t0);
    }
    const rawMiB = rawBytes / 2 ** 20;
    return { applyMicrosPerRawMiB: (best * 1000) / rawMiB, applyMicrosPerChunk: 0, receiveMicrosPerPacket: (bestDecode * 1000) / decodes, rawMiB, chunks: n };
  } finally {
    closeImage(image);
  }
}
