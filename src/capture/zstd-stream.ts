// One chunk's zstd frame, compressed as a stream: every step is flushed (ZSTD_e_flush ends a
// block), so the bytes produced so far plus ZSTD_LAST_BLOCK are always a complete frame. Later
// steps match against earlier ones through the frame's window, which independent frames cannot.
// node:zlib runs the compression on Bun's thread pool, so the main thread reads ahead meanwhile.
import zlib from "node:zlib";
import { assert } from "../util/assert.ts";

const C = zlib.constants;

/** A stateful encoder of one chunk's payload. Steps run one at a time, in order. */
export interface ChunkEncoder {
  /** Compresses `data` and flushes; resolves to exactly the bytes this step added. */
  step(data: Uint8Array): Promise<Uint8Array>;
  dispose(): void;
}

/**
 * The frame's window: 8 MiB covers the whole of a typical chunk (1 MiB of output is ~6 MiB of
 * data), so any repeat inside a chunk is found; the level's own window (2 MiB at level 3) is not.
 * A decoder needs this much memory per chunk it decodes at once.
 */
export const ZSTD_WINDOW_LOG = 23;
/**
 * Hash table of at least 2^18 entries (1 MiB) for the fast levels: levels 1-3 use 2^13..2^17,
 * which forgets most of an 8 MiB window; on the paper image 2^18 makes level 3 3.6 % smaller at
 * the same speed. Levels 4 and up already use 2^18 or more.
 */
export const ZSTD_MIN_HASH_LOG = 18;
const FAST_LEVEL_MAX = 3;
/** Output buffer of the stream: fewer round trips to the thread pool than node's 16 KiB. */
const OUTPUT_CHUNK_BYTES = 256 << 10;

export function zstdChunkEncoder(level: number): ChunkEncoder {
  const stream = zlib.createZstdCompress({
    chunkSize: OUTPUT_CHUNK_BYTES,
    params: {
      [C.ZSTD_c_compressionLevel]: level,
      [C.ZSTD_c_windowLog]: ZSTD_WINDOW_LOG,
      ...(level <= FAST_LEVEL_MAX ? { [C.ZSTD_c_hashLog]: ZSTD_MIN_HASH_LOG } : {}),
      // No checksum: the payload is closed with a bare last block (the chunk has its own SHA-256).
      [C.ZSTD_c_checksumFlag]: 0,
      [C.ZSTD_c_contentSizeFlag]: 0,
    },
  });
  let parts: Buffer[] = [];
  let failure: Error | null = null;
  let busy = false;
  stream.on("data", (b: Buffer) => parts.push(b));
  stream.on("error", (e: Error) => (failure = e));
  return {
    async step(data: Uint8Array): Promise<Uint8Array> {
      assert(!busy && data.length > 0, "one non-empty step at a time");
      busy = true;
      stream.write(data);
      // The flush callback runs after the transform has pushed all output of this step.
      await new Promise<void>((resolve) => stream.flush(C.ZSTD_e_flush, () => resolve()));
      busy = false;
      if (failure) throw failure;
      const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      parts = [];
      return new Uint8Array(out.buffer, out.byteOffset, out.length);
    },
    dispose(): void {
      stream.destroy();
    },
  };
}
