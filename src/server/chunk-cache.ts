// The server's window on the image file: a few chunks kept in memory, least recently used first
// out, with asynchronous read-ahead of the chunks queued next. Bounded at maxChunks buffers.
import { read } from "node:fs";
import { assert } from "../util/assert.ts";
import { readFully } from "../util/io.ts";

export class ChunkCache {
  /** Map iteration order is insertion order: re-inserting on use makes the first key the LRU. */
  private readonly chunks = new Map<number, Uint8Array>();
  private readonly loading = new Set<number>();
  reads = 0;

  constructor(
    private readonly fd: number,
    private readonly chunkBytes: number,
    private readonly maxChunks: number,
  ) {
    assert(maxChunks >= 2, "cache holds at least two chunks");
  }

  /** The chunk's bytes, read now if read-ahead has not brought them yet. */
  get(chunk: number): Uint8Array {
    const hit = this.chunks.get(chunk);
    if (hit !== undefined) {
      this.chunks.delete(chunk);
      this.chunks.set(chunk, hit);
      return hit;
    }
    const bytes = new Uint8Array(this.chunkBytes);
    readFully(this.fd, bytes, chunk * this.chunkBytes);
    this.reads++;
    this.insert(chunk, bytes);
    return bytes;
  }

  /** Starts reading chunks that will be wanted soon, without waiting for them. */
  readAhead(chunks: number[]): void {
    for (const chunk of chunks) {
      if (this.chunks.has(chunk) || this.loading.has(chunk) || this.loading.size >= this.maxChunks >> 1) continue;
      this.loading.add(chunk);
      const bytes = new Uint8Array(this.chunkBytes);
      read(this.fd, bytes, 0, this.chunkBytes, chunk * this.chunkBytes, (err, n) => {
        this.loading.delete(chunk);
        // A failed or short read-ahead is simply not cached: `get` reads again and reports.
        if (err === null && n === this.chunkBytes && !this.chunks.has(chunk)) {
          this.reads++;
          this.insert(chunk, bytes);
        }
      });
    }
  }

  private insert(chunk: number, bytes: Uint8Array): void {
    this.chunks.set(chunk, bytes);
    while (this.chunks.size > this.maxChunks) {
      const oldest = this.chunks.keys().next().value as number;
      this.chunks.delete(oldest);
    }
  }
}
