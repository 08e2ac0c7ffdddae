// sendmmsg batches (issue 13): how datagrams group into GSO messages, that the message headers the
// kernel would read point at exactly the datagrams' bytes with the right segment size, and that a
// kernel taking only part of a batch (a short count, then EAGAIN) gets told apart from a refusal.
import { describe, expect, test } from "bun:test";
import { read, toArrayBuffer } from "bun:ffi";
import { datagramsIn, MAX_BATCH_MESSAGES, MAX_GSO_MESSAGE_BYTES, MAX_GSO_SEGMENTS, planMessages } from "../../src/net/batch.ts";
import { BatchSocket, type SendMessages, type SendResult } from "../../src/net/sendmmsg.ts";
import { DiscusError } from "../../src/util/errors.ts";
import { BlockWriter, decodePacket, encodeBlock, PacketType } from "../../src/net/wire.ts";

const FULL = 1472;

describe("planMessages", () => {
  test("equal datagrams share one GSO message; a shorter one ends it; a longer one starts the next", () => {
    const lengths = [FULL, FULL, FULL, 900, FULL, FULL, 2000];
    const plan = planMessages(lengths, 0, true, 1 << 20);
    expect(plan.map((m) => [m.first, m.count, m.segmentBytes])).toEqual([
      [0, 4, FULL],
      [4, 2, FULL],
      [6, 1, null],
    ]);
    expect(plan.map((m) => m.bytes)).toEqual([3 * FULL + 900, 2 * FULL, 2000]);
  });

  test("without GSO one datagram per message, at most MAX_BATCH_MESSAGES", () => {
    const plan = planMessages(Array(100).fill(FULL), 0, false, 1 << 20);
    expect(plan.length).toBe(MAX_BATCH_MESSAGES);
    expect(plan.every((m, i) => m.count === 1 && m.first === i && m.segmentBytes === null)).toBe(true);
  });

  test("a GSO message stays within one IPv4 packet and the kernel's segment count", () => {
    const big = planMessages(Array(200).fill(FULL), 0, true, 1 << 20);
    for (const m of big) {
      expect(m.bytes).toBeLessThanOrEqual(MAX_GSO_MESSAGE_BYTES);
      expect(m.count).toBeLessThanOrEqual(MAX_GSO_SEGMENTS);
    }
    expect(big[0]!.count).toBe(Math.floor(MAX_GSO_MESSAGE_BYTES / FULL));
    const small = planMessages(Array(200).fill(600), 0, true, 1 << 20);
    expect(small[0]!.count).toBe(MAX_GSO_SEGMENTS);
  });

  test("the byte budget bounds a call, but one datagram always goes", () => {
    expect(planMessages([FULL, FULL, FULL], 0, false, 2 * FULL).length).toBe(2);
    expect(planMessages([FULL], 0, false, 10).length).toBe(1);
    const plan = planMessages([FULL, FULL, FULL], 1, true, 1 << 20);
    expect(plan).toEqual([{ first: 1, count: 2, bytes: 2 * FULL, segmentBytes: FULL }]);
    expect(datagramsIn(plan, 1)).toBe(2);
    expect(datagramsIn(plan, 0)).toBe(0);
  });
});

/** What a fake kernel read from the headers: each message's bytes and its UDP_SEGMENT size. */
interface Seen {
  bytes: Uint8Array;
  segment: number | null;
}

/** Reads struct mmsghdr[count] as the kernel would (LP64 layout). */
function readMessages(headers: Uint8Array, count: number): Seen[] {
  const h = new DataView(headers.buffer, headers.byteOffset);
  return Array.from({ length: count }, (_, k) => {
    const o = k * 64;
    const iov = Number(h.getBigUint64(o + 16, true));
    expect(Number(h.getBigUint64(o + 24, true))).toBe(1);
    const base = read.ptr(iov, 0);
    const len = Number(read.u64(iov, 8));
    const bytes = new Uint8Array(toArrayBuffer(base, 0, len)).slice();
    const control = Number(h.getBigUint64(o + 32, true));
    let segment: number | null = null;
    if (control !== 0) {
      expect(read.i32(control, 8)).toBe(17); // SOL_UDP
      expect(read.i32(control, 12)).toBe(103); // UDP_SEGMENT
      segment = read.u16(control, 16);
    }
    return { bytes, segment };
  });
}

function datagrams(n: number, length = FULL): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => new Uint8Array(length).fill(i + 1));
}

describe("BatchSocket", () => {
  test("messages point at the datagrams' bytes, concatenated, with their segment size", () => {
    const seen: Seen[][] = [];
    const kernel: SendMessages = (_fd, headers, count) => {
      seen.push(readMessages(headers, count));
      return { sent: count };
    };
    const packets = [...datagrams(5), new Uint8Array(700).fill(99)];
    const s = new BatchSocket(-1, true, kernel);
    expect(s.sendMany(packets)).toBe(6);
    expect(seen.length).toBe(1);
    expect(seen[0]!.length).toBe(1);
    expect(seen[0]![0]!.segment).toBe(FULL);
    expect(Buffer.from(seen[0]![0]!.bytes).equals(Buffer.concat(packets))).toBe(true);
  });

  test("a short count is followed up; EAGAIN stops the batch and says how many went", () => {
    const replies: SendResult[] = [{ sent: 2 }, { sent: 1 }, { errno: 11 }];
    const offered: number[] = [];
    const kernel: SendMessages = (_fd, headers, count) => {
      offered.push(readMessages(headers, count)[0]!.bytes[0]!);
      return replies.shift() ?? { sent: count };
    };
    const s = new BatchSocket(-1, false, kernel);
    // Messages 1-2 taken, then 3, then EAGAIN: three datagrams went; the caller keeps the other seven.
    expect(s.sendMany(datagrams(10))).toBe(3);
    expect(offered).toEqual([1, 3, 4]);
    // Next time the rest goes, from where it stopped.
    expect(s.sendMany(datagrams(10).slice(3))).toBe(7);
  });

  test("ENOBUFS is later too; a device refusing GSO (EIO) gets plain datagrams; anything else is a clear error", () => {
    expect(new BatchSocket(-1, false, () => ({ errno: 105 })).sendMany(datagrams(3))).toBe(0);
    const segments: (number | null)[] = [];
    const noGso = new BatchSocket(-1, true, (_fd, headers, count) => {
      const m = readMessages(headers, count);
      segments.push(m[0]!.segment);
      return m[0]!.segment !== null ? { errno: 5 } : { sent: count };
    });
    expect(noGso.sendMany(datagrams(4))).toBe(4);
    expect(segments).toEqual([FULL, null]);
    expect(noGso.gso).toBe(false);
    expect(() => new BatchSocket(-1, false, () => ({ errno: 1 })).sendMany(datagrams(2))).toThrow(DiscusError);
  });
});

describe("BlockWriter", () => {
  test("writes exactly the bytes encodeBlock makes, packet after packet in one buffer", () => {
    const self = { imageId: Uint8Array.from({ length: 16 }, (_, i) => i * 7), sender: 0xdeadbeef };
    const w = new BlockWriter(self);
    const out = new Uint8Array(64 << 10);
    const dv = new DataView(out.buffer);
    let at = 0;
    const cases: [number, number, number, number][] = [[0, 0, 0, 1424], [7, 0xffffffff, 736, 1424], [4095, 123456, 0xffff, 100], [1, 2, 3, 1]];
    for (const [chunk, seq, block, n] of cases) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 31 + chunk) & 0xff);
      const length = w.write(out, dv, at, chunk, seq, block, data);
      expect(Buffer.from(out.subarray(at, at + length)).equals(Buffer.from(encodeBlock(self, chunk, seq, block, data)))).toBe(true);
      const d = decodePacket(out.subarray(at, at + length));
      expect(d.ok && d.packet.type === PacketType.block && [d.packet.chunk, d.packet.seq, d.packet.block]).toEqual([chunk, seq, block]);
      at += length;
    }
  });
});
