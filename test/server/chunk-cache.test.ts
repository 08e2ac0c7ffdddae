// The server's chunk cache over a real image file: buffers the cache lets go are read into again
// (a fresh buffer per chunk read cost page faults and zeroing on every chunk), and reuse never
// hands out stale or overwritten bytes: every chunk returned equals the file's bytes, whatever the
// order of lookups and read-aheads.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { closeSync, openSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ChunkCache, fileChunkReader } from "../../src/server/chunk-cache.ts";
import { equalBytes } from "../../src/util/bytes.ts";
import { tmpDir } from "../helpers.ts";
import { rng } from "../rng.ts";

const CHUNK_BYTES = 64 << 10;
const CHUNKS = 12;
const CACHE_CHUNKS = 3;
const LOOKUPS = 2000;

let fd = -1;
let file: Uint8Array = new Uint8Array(0);

beforeAll(async () => {
  const path = join(await tmpDir(), "image.bin");
  const random = rng(7);
  file = random.bytes(CHUNK_BYTES * CHUNKS);
  writeFileSync(path, file);
  fd = openSync(path, "r");
});

afterAll(() => {
  if (fd >= 0) closeSync(fd);
});

const expected = (chunk: number) => file.subarray(chunk * CHUNK_BYTES, (chunk + 1) * CHUNK_BYTES);

test("chunk buffers are reused once evicted, and every lookup returns the file's bytes", async () => {
  const cache = new ChunkCache(fileChunkReader(fd, CHUNK_BYTES, CACHE_CHUNKS), CACHE_CHUNKS);
  const random = rng(11);
  const buffers = new Set<ArrayBufferLike>();
  for (let n = 0; n < LOOKUPS; n++) {
    const chunk = random.below(CHUNKS);
    if (n % 7 === 0) cache.readAhead([random.below(CHUNKS), random.below(CHUNKS)]);
    // Let some read-aheads land between lookups, as the event loop does between bursts.
    if (n % 5 === 0) await Bun.sleep(0);
    const bytes = cache.get(chunk);
    expect(bytes).not.toBeNull();
    // Compare at once: the caller's contract is synchronous use.
    expect(equalBytes(bytes!, expected(chunk))).toBe(true);
    buffers.add(bytes!.buffer);
  }
  expect(cache.reads).toBeGreaterThan(LOOKUPS / 2);
  // In the cache, spare, and read-aheads in flight (half the cache at most): never one per read.
  expect(buffers.size).toBeLessThanOrEqual(CACHE_CHUNKS + CACHE_CHUNKS + (CACHE_CHUNKS >> 1) + 1);
});
