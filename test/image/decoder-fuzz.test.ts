// The image format's decoders meet corrupt and hostile bytes: the chunk header, the manifest (its
// fixed part and its info JSON) and the trailer. Whatever the input, a decoder returns a value
// that keeps the format's invariants or throws its own error, never a TypeError, RangeError or
// assertion (which the command line would report as an internal error).
import { describe, expect, test } from "bun:test";
import { ChunkFormatError, decodeChunkHeader, encodeChunkHeader, type ChunkHeader } from "../../src/image/chunk.ts";
import { Codec, CHUNK_FIXED_HEADER_BYTES, MAX_CHUNK_RAW_BYTES } from "../../src/image/constants.ts";
import { imageInfo } from "../../src/image/info.ts";
import { decodeManifest, DIGEST_ENTRY_BYTES, encodeManifest, ManifestError, type Manifest } from "../../src/image/manifest.ts";
import { decodeTrailer, encodeTrailer, TrailerError } from "../../src/image/trailer.ts";
import { crc32, utf8, view } from "../../src/util/bytes.ts";
import { SchemaError } from "../../src/util/schema.ts";
import { rng, type Rng } from "../rng.ts";

const CASES = 4000;
const CHUNK_BYTES = 1 << 20;
const imageId = Uint8Array.from({ length: 16 }, (_, i) => i + 1);

/** Values that sit on the edges decoders get wrong: zero, one, powers of two, all ones. */
const EDGES = [0, 1, 2, 511, 512, 4096, 65535, 65536, 2 ** 31, 2 ** 32 - 1, 2 ** 53 - 1, 2 ** 53, 2 ** 63, 2 ** 64 - 1];

function header(r: Rng): ChunkHeader {
  const regions = [];
  let at = r.below(1000);
  const first = at;
  for (let i = 0, n = 1 + r.below(6); i < n; i++) {
    at += r.below(50);
    const length = 1 + r.below(100);
    regions.push({ start: at, length });
    at += length;
  }
  return { imageId, chunkIndex: r.below(100), codec: Codec.zstd, sectorBytes: 512, firstSector: first, endSector: at + r.below(10), regions, payloadBytes: 1 + r.below(4000), rawBytes: regions.reduce((s, x) => s + x.length, 0) * 512 };
}

/** Writes an edge or random value into a u8/u16/u32/u64 field at a random offset. */
function poke(r: Rng, bytes: Uint8Array, fromOffset: number): void {
  const dv = view(bytes);
  const width = r.pick([1, 2, 4, 8]);
  const at = fromOffset + r.below(Math.max(1, bytes.length - fromOffset - width));
  const value = r.next() < 0.6 ? r.pick(EDGES) : r.below(2 ** 32);
  if (width === 8) dv.setBigUint64(at, BigInt(Math.min(value, 2 ** 64 - 1)) & ((1n << 64n) - 1n), true);
  else for (let b = 0; b < width; b++) bytes[at + b] = Math.floor(value / 2 ** (8 * b)) & 0xff;
}

function mutate(r: Rng, bytes: Uint8Array): Uint8Array {
  const out = bytes.slice(0, r.next() < 0.1 ? r.below(bytes.length + 1) : bytes.length);
  const kind = r.below(3);
  if (kind === 0) {
    for (let i = 0, n = 1 + r.below(4); i < n && out.length > 0; i++) {
      const at = r.below(out.length);
      out[at] = out[at]! ^ (1 << r.below(8));
    }
  }
  else if (kind === 1 && out.length > 0) poke(r, out, 0);
  return out;
}

function expectOnly(error: new (...args: never[]) => Error, run: () => void): "ok" | "refused" {
  try {
    run();
    return "ok";
  } catch (e) {
    if (!(e instanceof error)) throw new Error(`decoder threw ${(e as Error).name}: ${(e as Error).message}`);
    return "refused";
  }
}

describe("decoders refuse whatever they cannot read, in their own words", () => {
  test("chunk header: flips, truncation and edge values (CRC refreshed so fields are reached)", () => {
    const r = rng(9001);
    const seen = { ok: 0, refused: 0 };
    for (let i = 0; i < CASES; i++) {
      const bytes = mutate(r, encodeChunkHeader(header(r)));
      // Refresh the CRC most of the time, so the decoder's field checks are what is tested.
      if (bytes.length >= CHUNK_FIXED_HEADER_BYTES && r.next() < 0.8) {
        view(bytes).setUint32(68, 0, true);
        view(bytes).setUint32(68, crc32(bytes.subarray(0, Math.min(bytes.length, view(bytes).getUint32(12, true)))), true);
      }
      seen[expectOnly(ChunkFormatError, () => {
        const h = decodeChunkHeader(bytes, CHUNK_BYTES);
        // What the decoder lets through keeps the invariants restore relies on.
        expect(h.endSector).toBeGreaterThan(h.firstSector);
        expect(h.rawBytes).toBeLessThanOrEqual(MAX_CHUNK_RAW_BYTES);
        let cursor = h.firstSector;
        for (const g of h.regions) {
          expect(g.start).toBeGreaterThanOrEqual(cursor);
          expect(g.start + g.length).toBeLessThanOrEqual(h.endSector);
          cursor = g.start + g.length;
        }
      })]++;
    }
    expect(seen.refused).toBeGreaterThan(CASES / 4);
    expect(seen.ok).toBeGreaterThan(0);
  });

  test("manifest: fixed fields, lengths and the info JSON", () => {
    const r = rng(9002);
    const base = manifest();
    const seen = { ok: 0, refused: 0 };
    for (let i = 0; i < CASES; i++) {
      const m = r.next() < 0.5 ? { ...base, info: mutateJson(r, structuredClone(base.info)) as Manifest["info"] } : base;
      const bytes = mutate(r, encodeManifest(m));
      seen[expectOnly(ManifestError, () => {
        const d = decodeManifest(bytes).manifest;
        expect(d.digests.length).toBe(d.dataChunkCount * DIGEST_ENTRY_BYTES);
        expect(d.dataSectors * d.sectorBytes).toBeLessThanOrEqual(d.sourceBytes);
        expect(typeof d.info.partitionTable.kind).toBe("string");
        expect(Array.isArray(d.info.areas)).toBe(true);
      })]++;
    }
    expect(seen.refused).toBeGreaterThan(CASES / 4);
    expect(seen.ok).toBeGreaterThan(0);
  });

  test("info JSON: every field missing, mistyped or out of range is named", () => {
    const r = rng(9003);
    const base = manifest().info;
    for (let i = 0; i < CASES; i++) {
      const result = expectOnly(SchemaError, () => imageInfo(mutateJson(r, structuredClone(base)), ""));
      expect(["ok", "refused"]).toContain(result);
    }
    expect(() => imageInfo({ ...base, partitionTable: { ...base.partitionTable, kind: "zfs" } }, "")).toThrow("partitionTable.kind should be one of mbr, gpt, none");
    expect(() => imageInfo({ ...base, areas: [{ ...base.areas[0]!, startBytes: -1 }] }, "")).toThrow("areas[0].startBytes should be a whole number");
  });

  test("trailer: flips and edge values, CRC refreshed", () => {
    const r = rng(9004);
    const base = encodeTrailer({ chunkBytes: CHUNK_BYTES, imageId, dataChunkCount: 10, manifestPartCount: 1, manifestBytes: 1000, manifestSha256: new Uint8Array(32) });
    for (let i = 0; i < CASES; i++) {
      const bytes = mutate(r, base);
      if (bytes.length === 512 && r.next() < 0.8) view(bytes).setUint32(80, crc32(bytes.subarray(0, 80)), true);
      expectOnly(TrailerError, () => decodeTrailer(bytes));
    }
  });
});

function manifest(): Manifest {
  const dataChunkCount = 3;
  return {
    imageId,
    sectorBytes: 512,
    chunkBytes: CHUNK_BYTES,
    sourceBytes: 64 << 20,
    dataChunkCount,
    codec: Codec.zstd,
    dataSectors: 1000,
    info: {
      created: { tool: "discus", version: "0.1.0", at: null, host: "h", source: "/dev/x" },
      codec: "zstd",
      level: 3,
      partitionTable: { kind: "gpt", partitionCount: 1, diskGuid: "00000000-0000-0000-0000-000000000000" },
      areas: [{ partition: 1, startBytes: 1 << 20, sizeBytes: 8 << 20, type: "0x83", fs: "ext4", label: null, uuid: null, captured: "fs", capturedBytes: 4096, warning: null }],
      minFreeBytes: 32768,
    },
    digests: new Uint8Array(dataChunkCount * DIGEST_ENTRY_BYTES),
    signature: null,
  };
}

const ODD_VALUES: unknown[] = [null, 0, -1, 1.5, 2 ** 60, "", "x".repeat(5000), [], {}, true, utf8("x")];

/** Deletes, retypes or nests one random field somewhere in a JSON value. */
function mutateJson(r: Rng, value: unknown): unknown {
  if (typeof value !== "object" || value === null || r.next() < 0.15) return r.pick(ODD_VALUES);
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length === 0) return value;
  const key = r.pick(keys);
  if (r.next() < 0.2) delete obj[key];
  else obj[key] = mutateJson(r, obj[key]);
  return value;
}

describe("manifest signature block", () => {
  const signed = (): Manifest => ({
    ...manifest(),
    signature: { publicKey: Uint8Array.from({ length: 32 }, (_, i) => i + 100), signature: Uint8Array.from({ length: 64 }, (_, i) => 255 - i) },
  });

  test("round-trips, and its reserved bytes (10-11 of the block) must be zero", () => {
    const bytes = encodeManifest(signed());
    const decoded = decodeManifest(bytes);
    expect(decoded.manifest.signature).toEqual(signed().signature);
    expect(decoded.body.length).toBe(bytes.length - 116);
    for (const off of [10, 11]) {
      const bad = bytes.slice();
      bad[decoded.body.length + off] = 1;
      expect(() => decodeManifest(bad)).toThrow(/signature block reserved field reserved is not zero/);
    }
  });

  test("every byte of the block changed alone is refused by a ManifestError or carried into the signature", () => {
    const bytes = encodeManifest(signed());
    const start = bytes.length - 116;
    for (let off = start; off < bytes.length; off++) {
      const bad = bytes.slice();
      bad[off]! ^= 0x41;
      const outcome = expectOnly(ManifestError, () => decodeManifest(bad));
      // Only the key and the signature themselves are free bytes; the signature check judges them.
      const inKeyOrSignature = (off - start >= 16 && off - start < 48) || off - start >= 52;
      expect(outcome).toBe(inKeyOrSignature ? "ok" : "refused");
    }
  });
});
