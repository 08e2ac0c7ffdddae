// The wire codec: every packet type round-trips, and no input whatever makes the decoder throw.
import { describe, expect, test } from "bun:test";
import {
  ANNOUNCE_BODY_BYTES,
  blockBytesForMtu,
  blocksPerChunk,
  decodePacket,
  encodeAnnounce,
  encodeBlock,
  encodeQuery,
  encodeReport,
  encodeRepairPacket,
  encodeRequest,
  HEADER_BYTES,
  MAX_BLOCK_BYTES,
  MAX_BLOCKS_PER_CHUNK,
  MAX_MTU_BYTES,
  MIN_BLOCK_BYTES,
  MIN_MTU_BYTES,
  type AnnounceBody,
  PacketType,
  ReportState,
  type Packet,
} from "../../src/net/wire.ts";
import { view } from "../../src/util/bytes.ts";
import { discus } from "../helpers.ts";
import { MAX_DATA_CHUNKS } from "../../src/image/manifest.ts";
import { MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from "../../src/image/constants.ts";

const imageId = Uint8Array.from({ length: 16 }, (_, i) => i * 7 + 1);
const common = { imageId, sender: 0xdeadbeef };

/** A deterministic generator, so a failing fuzz case can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function samples(): Uint8Array[] {
  // 737 blocks (a 1 MiB chunk at the 1500-byte MTU): 93 bitmap bytes, 1 bit used in the last.
  const bitmap = new Uint8Array(93).fill(0x5a);
  bitmap[92] = 0x01;
  return [
    encodeQuery(common),
    encodeAnnounce(common, {
      chunkBytes: 1 << 20,
      blockBytes: 1424,
      dataChunkCount: 63,
      manifestPartCount: 1,
      manifestBytes: 4321,
      sourceBytes: 671088640,
      rateBitsPerSecond: 100e6,
      manifestSha256: new Uint8Array(32).fill(9),
    }),
    encodeRequest(common, 17, 737, bitmap),
    encodeBlock(common, 5, 123456, 736, new Uint8Array(1424).fill(3)),
    encodeReport(common, {
      state: ReportState.done,
      elapsedMs: 12345,
      chunksDone: 63,
      chunksTotal: 63,
      bytesWritten: 203485184,
      blocksReceived: 48358,
      duplicateBlocks: 1190,
      requestsSent: 66,
      rerequests: 26,
      chunksRejected: 1,
      intervalReceived: 800,
      intervalSeqSpan: 812,
      message: "fin ✓",
    }),
    encodeRepairPacket(common, 9, 0xfffffffe, 3, 63, new Uint8Array(1424).fill(7)),
  ];
}

describe("wire protocol v2", () => {
  test("block size fits a 1500-byte MTU and a chunk's bitmap fits one datagram", () => {
    const blockBytes = blockBytesForMtu(1500);
    expect(blockBytes).toBe(1424);
    expect(HEADER_BYTES + 12 + blockBytes + 28).toBeLessThanOrEqual(1500);
    expect(blocksPerChunk(1 << 20, blockBytes)).toBe(737);
    expect(HEADER_BYTES + 8 + MAX_BLOCKS_PER_CHUNK / 8 + 28).toBeLessThanOrEqual(1500);
  });

  test("every MTU the server accepts gives blocks within the announced bounds (576..583 would not)", () => {
    expect(MIN_MTU_BYTES).toBe(584);
    expect(blockBytesForMtu(MIN_MTU_BYTES)).toBe(MIN_BLOCK_BYTES);
    for (let mtu = 576; mtu < MIN_MTU_BYTES; mtu++) expect(blockBytesForMtu(mtu)).toBeLessThan(MIN_BLOCK_BYTES);
    for (let mtu = MIN_MTU_BYTES; mtu <= MAX_MTU_BYTES; mtu++) {
      const b = blockBytesForMtu(mtu);
      if (b < MIN_BLOCK_BYTES || b > MAX_BLOCK_BYTES || b % 8 !== 0) throw new Error(`MTU ${mtu} gives ${b}-byte blocks`);
    }
  });

  test("`serve --mtu 576..583` is refused with exit 2 before anything is served", async () => {
    for (const mtu of [576, 583]) {
      const r = await discus(["serve", "/nonexistent.dsc", "--group", "239.77.0.1", "--iface", "198.18.0.1", "--mtu", String(mtu)]);
      expect({ mtu, code: r.code }).toEqual({ mtu, code: 2 });
      expect(r.stderr).toContain(`outside ${MIN_MTU_BYTES}..`);
    }
  });

  test("announced fields are bounded by the image format's limits and agree with each other", () => {
    const good: AnnounceBody = { chunkBytes: 1 << 20, blockBytes: 1424, dataChunkCount: 63, manifestPartCount: 1, manifestBytes: 4321, sourceBytes: 671088640, rateBitsPerSecond: 100e6, manifestSha256: new Uint8Array(32) };
    const decodes = (change: Partial<AnnounceBody>) => decodePacket(encodeAnnounce(common, { ...good, ...change })).ok;
    expect(decodes({})).toBe(true);
    // The forged announce of the issue: 2^32 - 1 data chunks.
    expect(decodes({ dataChunkCount: 2 ** 32 - 1 })).toBe(false);
    expect(decodes({ dataChunkCount: MAX_DATA_CHUNKS + 1, manifestBytes: (MAX_DATA_CHUNKS + 1) * 64 + 200, manifestPartCount: 1025 })).toBe(false);
    // A count the manifest cannot hold (64 bytes of digests per chunk), or parts it does not fill.
    expect(decodes({ dataChunkCount: 1000 })).toBe(false);
    expect(decodes({ manifestPartCount: 2 })).toBe(false);
    expect(decodes({ manifestBytes: 63 * 64 + (2 << 20) })).toBe(false);
    expect(decodes({ chunkBytes: MIN_CHUNK_BYTES - 8 })).toBe(false);
    expect(decodes({ chunkBytes: MAX_CHUNK_BYTES + 8, manifestPartCount: 1 })).toBe(false);
    expect(decodes({ blockBytes: 504 })).toBe(false);
    expect(decodes({ sourceBytes: 0 })).toBe(false);
    // The largest image the format allows still decodes.
    const most = MAX_DATA_CHUNKS * 64 + 4096;
    expect(decodes({ chunkBytes: MAX_CHUNK_BYTES, blockBytes: 8928, dataChunkCount: MAX_DATA_CHUNKS, manifestBytes: most, manifestPartCount: Math.ceil(most / MAX_CHUNK_BYTES) })).toBe(true);
  });

  test("every packet type round-trips", () => {
    const decoded = samples().map((b) => decodePacket(b));
    const packets = decoded.map((d) => {
      if (!d.ok) throw new Error(`decode failed: ${d.reason}`);
      return d.packet;
    });
    expect(packets.map((p) => p.type)).toEqual([PacketType.query, PacketType.announce, PacketType.request, PacketType.block, PacketType.report, PacketType.repair]);
    for (const p of packets) {
      expect([...p.imageId]).toEqual([...imageId]);
      expect(p.sender).toBe(0xdeadbeef);
    }
    const [, a, r, b, rep, fix] = packets as [Packet, Extract<Packet, { type: PacketType.announce }>, Extract<Packet, { type: PacketType.request }>, Extract<Packet, { type: PacketType.block }>, Extract<Packet, { type: PacketType.report }>, Extract<Packet, { type: PacketType.repair }>];
    expect([fix.chunk, fix.seq, fix.group, fix.index, fix.data.length, fix.data[0]]).toEqual([9, 0xfffffffe, 3, 63, 1424, 7]);
    expect([a.chunkBytes, a.blockBytes, a.dataChunkCount, a.manifestPartCount, a.manifestBytes, a.sourceBytes, a.rateBitsPerSecond]).toEqual([1 << 20, 1424, 63, 1, 4321, 671088640, 100e6]);
    expect([r.chunk, r.blockCount, r.bitmap.length]).toEqual([17, 737, 93]);
    expect([b.chunk, b.seq, b.block, b.data.length, b.data[0]]).toEqual([5, 123456, 736, 1424, 3]);
    expect([rep.state, rep.bytesWritten, rep.duplicateBlocks, rep.intervalSeqSpan, rep.message]).toEqual([ReportState.done, 203485184, 1190, 812, "fin ✓"]);
    expect(samples()[1]!.length).toBe(HEADER_BYTES + ANNOUNCE_BODY_BYTES);
  });

  test("a flipped bit anywhere is caught by the CRC", () => {
    for (const packet of samples()) {
      for (let bit = 0; bit < packet.length * 8; bit += 13) {
        const bad = packet.slice();
        bad[bit >>> 3]! ^= 1 << (bit & 7);
        const d = decodePacket(bad);
        expect(d.ok).toBe(false);
      }
    }
  });

  test("fuzz: mutated, truncated, extended and random datagrams never throw", () => {
    const next = rng(20261121);
    const base = samples();
    const reasons = new Map<string, number>();
    for (let i = 0; i < 20000; i++) {
      // A random sample, not i % length: with six samples and four modes, some pairs would never meet.
      const src = base[Math.floor(next() * base.length)]!;
      let bytes: Uint8Array;
      const mode = i % 4;
      if (mode === 0) {
        bytes = src.slice(0, Math.floor(next() * src.length));
      } else if (mode === 1) {
        bytes = new Uint8Array(src.length + 1 + Math.floor(next() * 64));
        bytes.set(src);
      } else if (mode === 2) {
        bytes = Uint8Array.from({ length: Math.floor(next() * 1600) }, () => Math.floor(next() * 256));
      } else {
        // Valid framing and CRC around random fields: the structural checks must hold alone.
        bytes = src.slice();
        for (let k = 0; k < 4; k++) bytes[HEADER_BYTES + Math.floor(next() * (bytes.length - HEADER_BYTES + 1))] = Math.floor(next() * 256);
        const dv = view(bytes);
        dv.setUint32(28, 0, true);
        const head = Bun.hash.crc32(bytes.subarray(0, 28));
        dv.setUint32(28, Number(Bun.hash.crc32(bytes.subarray(HEADER_BYTES), head)) >>> 0, true);
      }
      const d = decodePacket(bytes);
      const key = d.ok ? `ok:${d.packet.type}` : d.reason;
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
      if (d.ok && d.packet.type === PacketType.request) {
        expect(d.packet.blockCount).toBeGreaterThanOrEqual(1);
        expect(d.packet.blockCount).toBeLessThanOrEqual(MAX_BLOCKS_PER_CHUNK);
        expect(d.packet.bitmap.length).toBe(Math.ceil(d.packet.blockCount / 8));
      }
      if (d.ok && d.packet.type === PacketType.announce) {
        expect(d.packet.blockBytes).toBeGreaterThanOrEqual(512);
        expect(blocksPerChunk(d.packet.chunkBytes, d.packet.blockBytes)).toBeLessThanOrEqual(MAX_BLOCKS_PER_CHUNK);
      }
    }
    // The fuzzer reached the CRC check, the length checks and the field checks, and some re-framed packets survived.
    for (const reason of ["short", "magic", "crc", "length"]) expect(reasons.get(reason) ?? 0).toBeGreaterThan(0);
    expect([...reasons.keys()].some((k) => k.startsWith("ok:"))).toBe(true);
  });

  test("another protocol version is dropped as such", () => {
    const bytes = encodeQuery(common);
    // Version 1 had no repairs: a v1 client would never finish on a v2 server.
    bytes[4] = 1;
    expect(decodePacket(bytes)).toEqual({ ok: false, reason: "version" });
  });

  test("a reserved byte that is not zero is dropped as a bad field, in every body that has one", () => {
    const [, announce, request, block, report, repair] = samples();
    // Reserved bytes by body (docs/PROTOCOL.md): announce 6-7, request 6-7, block 10-11, report 1-3 and 62-63, repair 11.
    const cases: [Uint8Array, number[]][] = [
      [repair!, [11]],
      [announce!, [6, 7]],
      [request!, [6, 7]],
      [block!, [10, 11]],
      [report!, [1, 2, 3, 62, 63]],
    ];
    for (const [packet, offsets] of cases) {
      expect(decodePacket(packet).ok).toBe(true);
      for (const off of offsets) {
        const bytes = packet.slice();
        bytes[HEADER_BYTES + off] = 1;
        resealCrc(bytes);
        expect(decodePacket(bytes)).toEqual({ ok: false, reason: "field" });
      }
    }
  });
});

/** Recomputes a packet's CRC after a test changed its bytes, so only the change is judged. */
function resealCrc(bytes: Uint8Array): void {
  const dv = view(bytes);
  dv.setUint32(28, 0, true);
  const head = Bun.hash.crc32(bytes.subarray(0, 28));
  dv.setUint32(28, Number(Bun.hash.crc32(bytes.subarray(HEADER_BYTES), head)) >>> 0, true);
}
