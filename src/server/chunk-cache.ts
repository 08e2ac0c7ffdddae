// The server's window on the image: a few chunks kept in memory, least recently used first out,
// with asynchronous read-ahead of the chunks queued next. Bounded at maxChunks buffers. Where the
// bytes come from is the caller's: the image file (with a synchronous read when read-ahead has not
// brought a chunk yet) or any asynchronous chunk source (the simulator's).
import { read } from "node:fs";
import { assert } from "../util/assert.ts";
import { readFully } from "../util/io.ts";

export interface ChunkReader {
  /** Reads a chunk without blocking; the cache keeps what it resolves to. */
  readAsync(chunk: number): Promise<Uint8Array>;
  /** Reads a chunk at once, or null when this source only reads asynchronously. */
  readNow: ((chunk: number) => Uint8Array) | null;
  /** Takes back a buffer the cache no longer holds, for a later read to fill (optional). */
  recycle?: (bytes: Uint8Array) => void;
}

/**
 * Chunk-sized buffers the cache let go, handed out again: a fresh buffer per chunk read costs the
 * reading thread page faults and zeroing on every chunk (13 % of the server's CPU, measured).
 * Unlike the client's BufferPool (a fixed memory budget that says "none left"), this never refuses:
 * the cache's own bound limits the buffers in use, and at most maxBuffers spare ones are kept.
 */
class SpareBuffers {
  private readonly spare: Uint8Array[] = [];

  constructor(
    private readonly bufferBytes: number,
    private readonly maxBuffers: number,
  ) {
    assert(bufferBytes > 0 && maxBuffers >= 0, "a pool of positive-sized buffers");
  }

  take(): Uint8Array {
    return this.spare.pop() ?? new Uint8Array(this.bufferBytes);
  }

  give(bytes: Uint8Array): void {
    assert(bytes.length === this.bufferBytes, "a pooled buffer is chunk-sized");
    if (this.spare.length < this.maxBuffers) this.spare.push(bytes);
  }
}

/**
 * Chunks of an image file: chunk i at byte i × chunkBytes, read into buffers the cache gives back
 * (at most maxSpareBuffers kept). A buffer is reused only once the cache dropped it, and the
 * cache's callers use a chunk's bytes synchronously, never across an await.
 */
export function fileChunkReader(fd: number, chunkBytes: number, maxSpareBuffers: number): ChunkReader {
  const pool = new SpareBuffers(chunkBytes, maxSpareBuffers);
  return {
    readAsync: (chunk) =>
      new Promise((resolve, reject) => {
        const bytes = pool.take();
        read(fd, bytes, 0, chunkBytes, chunk * chunkBytes, (err, n) => {
          if (err === null && n === chunkBytes) return resolve(bytes);
          pool.give(bytes);
          reject(err ?? new Error(`short read of chunk ${chunk}`));
        });
      }),
    readNow: (chunk) => {
      const bytes = pool.take();
      readFully(fd, bytes, chunk * chunkBytes);
      return bytes;
    },
    recycle: (bytes) => pool.give(bytes),
  };
}

export class ChunkCache {
  /** Map iteration order is insertion order: re-inserting on use makes the first key the LRU. */
  private readonly chunks = new Map<number, Uint8Array>();
  private readonly loading = new Set<number>();
  reads = 0;
  /** Called when a read-ahead brought a chunk in (a sender waiting for it may go on). */
  onLoaded: () => void = () => {};

  constructor(
    private readonly reader: ChunkReader,
    private readonly maxChunks: number,
  ) {
    assert(maxChunks >= 2, "cache holds at least two chunks");
  }

  /** The chunk's bytes; null when they are not here yet (a read is under way, onLoaded follows). */
  get(chunk: number): Uint8Array | null {
    const hit = this.chunks.get(chunk);
    if (hit !== undefined) {
      this.chunks.delete(chunk);
      this.chunks.set(chunk, hit);
      return hit;
    }
    if (this.reader.readNow === null) {
      this.start(chunk, true);
      return null;
    }
    const bytes = this.reader.readNow(chunk);
    this.reads++;
    this.insert(chunk, bytes);
    return bytes;
  }

  /** Starts reading chunks that will be wanted soon, without waiting for them. */
  readAhead(chunks: number[]): void {
    for (const chunk of chunks) this.start(chunk, false);
  }

  private start(chunk: number, needed: boolean): void {
    if (this.chunks.has(chunk) || this.loading.has(chunk)) return;
    if (!needed && this.loading.size >= this.maxChunks >> 1) return;
    this.loading.add(chunk);
    this.reader.readAsync(chunk).then(
      (bytes) => {
        this.loading.delete(chunk);
        this.reads++;
        if (!this.chunks.has(chunk)) this.insert(chunk, bytes);
        else this.reader.recycle?.(bytes); // read at once meanwhile: this copy is not needed
        this.onLoaded();
      },
      // A failed read-ahead is simply not cached: the next `get` reads again (and reports).
      () => this.loading.delete(chunk),
    );
  }

  private insert(chunk: number, bytes: Uint8Array): void {
    this.chunks.set(chunk, bytes);
    while (this.chunks.size > this.maxChunks) {
      const oldest = this.chunks.keys().next().value as number;
      const bytes = this.chunks.get(oldest)!;
      this.chunks.delete(oldest);
      this.reader.recycle?.(bytes);
    }
  }
}
