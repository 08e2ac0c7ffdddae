// zstd payloads decoded into a reused buffer through the system's libzstd: the same bytes as
// node:zlib's decoder for every good payload, and for damaged or hostile ones a PayloadError
// (never another error, never bytes past the chunk's stated size, never a stale byte left from
// the chunk decoded before).
import { expect, test } from "bun:test";
import zlib from "node:zlib";
import { decompressPayload, PayloadError } from "../../src/image/codec.ts";
import { Codec } from "../../src/image/constants.ts";
import { rng } from "../rng.ts";

const CASES = 600;
const SCRATCH_BYTES = 4 << 20;

/** Text-like data with repeats, so frames hold matches and literals alike. */
function sample(seed: number, bytes: number): Uint8Array {
  const r = rng(seed);
  const words = Array.from({ length: 64 }, () => r.bytes(1 + r.below(12)));
  const out = new Uint8Array(bytes);
  for (let at = 0; at < bytes; ) {
    const w = r.next() < 0.1 ? r.bytes(1 + r.below(64)) : r.pick(words);
    out.set(w.subarray(0, Math.min(w.length, bytes - at)), at);
    at += w.length;
  }
  return out;
}

const compress = (data: Uint8Array) => new Uint8Array(zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 3, [zlib.constants.ZSTD_c_checksumFlag]: 0 } }));

test("good payloads decode into the scratch buffer exactly as node:zlib decodes them", () => {
  const scratch = new Uint8Array(SCRATCH_BYTES);
  for (let seed = 1; seed <= 40; seed++) {
    const data = sample(seed, 1 + rng(seed).below(SCRATCH_BYTES));
    const out = decompressPayload(Codec.zstd, compress(data), data.length, scratch);
    expect(out.buffer).toBe(scratch.buffer); // decoded in place: no buffer of its own
    expect(Buffer.compare(out, data)).toBe(0);
  }
});

test("a payload that makes more or fewer bytes than the header says is a PayloadError", () => {
  const scratch = new Uint8Array(SCRATCH_BYTES);
  const data = sample(7, 100_000);
  const payload = compress(data);
  expect(() => decompressPayload(Codec.zstd, payload, data.length - 1, scratch)).toThrow(PayloadError);
  expect(() => decompressPayload(Codec.zstd, payload, data.length + 1, scratch)).toThrow(PayloadError);
});

test("damaged payloads: the same bytes as node:zlib or a PayloadError, nothing else", () => {
  const r = rng(99);
  const scratch = new Uint8Array(SCRATCH_BYTES);
  const good = Array.from({ length: 8 }, (_, i) => sample(100 + i, 1000 + r.below(300_000)));
  let rejected = 0;
  for (let n = 0; n < CASES; n++) {
    const data = r.pick(good);
    const payload = compress(data).slice();
    const kind = r.below(3);
    for (let k = 0, flips = kind === 0 ? 1 + r.below(8) : 0; k < flips; k++) {
      const at = r.below(payload.length);
      payload[at] = payload[at]! ^ (1 << r.below(8));
    }
    const damaged = kind === 1 ? payload.subarray(0, r.below(payload.length)) : kind === 2 ? r.bytes(1 + r.below(4096)) : payload;
    scratch.fill(0xa5); // a stale byte would show where a decoder skipped
    let expected: Uint8Array | null = null;
    try {
      expected = new Uint8Array(zlib.zstdDecompressSync(damaged, { maxOutputLength: data.length }));
    } catch {
      expected = null;
    }
    try {
      const out = decompressPayload(Codec.zstd, damaged, data.length, scratch);
      expect(expected).not.toBeNull();
      expect(Buffer.compare(out, expected!)).toBe(0);
    } catch (e) {
      expect(e).toBeInstanceOf(PayloadError);
      rejected++;
    }
  }
  expect(rejected).toBeGreaterThan(CASES / 2);
});
