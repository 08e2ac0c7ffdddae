// A hostile host on the simulated LAN, doing what test/net/forger.ts does in "hostile" mode on the
// namespace LAN: forged announcements (a wrong manifest digest, a disk 1024× too large, 2^32 − 1
// chunks, another image id) at 10/s and in answer to every query; a valid request for all of chunk
// 0 three times a second; the first request heard from a client replayed at 2000/s; and 200/s each
// of garbage, valid-CRC requests for chunks that do not exist, forged blocks (random data in real
// chunk buffers) and reports claiming 100 % loss under random sender ids.
import type { GroupTransport, OpenTransport } from "../../../src/net/transport.ts";
import { decodePacket, encodeAnnounce, encodeBlock, encodeReport, encodeRequest, PacketType, ReportState, type AnnounceBody } from "../../../src/net/wire.ts";
import { bitmapFor, fillBits } from "../../../src/util/bitmap.ts";
import { equalBytes } from "../../../src/util/bytes.ts";
import { mulberry32 } from "../../../src/util/shuffle.ts";
import { every, type Clock, type TimerHandle } from "../../../src/util/clock.ts";

export interface HostileRates {
  announcePerSecond: number;
  chunk0PerSecond: number;
  replayPerSecond: number;
  garbagePerSecond: number;
  badChunkPerSecond: number;
  forgedBlockPerSecond: number;
  lossReportPerSecond: number;
}

/** The rates of test/net/hostile.test.ts. */
export const HOSTILE_RATES: HostileRates = {
  announcePerSecond: 10,
  chunk0PerSecond: 3,
  replayPerSecond: 2000,
  garbagePerSecond: 200,
  badChunkPerSecond: 200,
  forgedBlockPerSecond: 200,
  lossReportPerSecond: 200,
};

/** Forged blocks land in blocks 0..9 of chunks 0..63, as the forger's do. */
const FORGED_CHUNKS = 64;
const FORGED_BLOCKS = 10;
const MAX_GARBAGE_BYTES = 1400;
const BAD_CHUNK_BASE = 1_000_000;

export class HostileHost {
  readonly sent: Record<string, number> = {};
  private transport: GroupTransport | null = null;
  private timers: TimerHandle[] = [];
  private captured: Uint8Array | null = null;
  private readonly next: () => number;
  private readonly me: { imageId: Uint8Array; sender: number };
  private readonly blockCount: number;

  constructor(
    private readonly clock: Clock,
    private readonly real: AnnounceBody,
    private readonly imageId: Uint8Array,
    seed: number,
    private readonly rates: HostileRates = HOSTILE_RATES,
  ) {
    this.next = mulberry32(seed);
    this.me = { imageId, sender: this.randomId() };
    this.blockCount = Math.ceil(real.chunkBytes / real.blockBytes);
  }

  async start(open: OpenTransport): Promise<void> {
    this.transport = await open((bytes) => this.heard(bytes));
    const r = this.rates;
    const plan: [number, () => [string, Uint8Array] | null][] = [
      [r.announcePerSecond, () => ["announce", this.announces()[this.random(4)]!]],
      [r.chunk0PerSecond, () => ["chunk0", this.fullRequest(0)]],
      [r.replayPerSecond, () => (this.captured === null ? null : ["replay", this.captured])],
      [r.garbagePerSecond, () => ["garbage", this.randomBytes(1 + this.random(MAX_GARBAGE_BYTES))]],
      [r.badChunkPerSecond, () => ["badChunk", this.fullRequest(BAD_CHUNK_BASE + this.random(1000))]],
      [r.forgedBlockPerSecond, () => ["block", this.forgedBlock()]],
      [r.lossReportPerSecond, () => ["lossReport", this.lossReport()]],
    ];
    for (const [perSecond, make] of plan) {
      if (perSecond <= 0) continue;
      this.timers.push(
        every(this.clock, 1000 / perSecond, () => {
          const p = make();
          if (p !== null) this.send(p[0], p[1]);
        }),
      );
    }
  }

  stop(): void {
    for (const t of this.timers) t.cancel();
    this.timers = [];
    this.transport?.close();
    this.transport = null;
  }

  private heard(bytes: Uint8Array): void {
    const d = decodePacket(bytes);
    if (!d.ok) return;
    // Every query gets the forgeries at once: they race the real server's answer.
    if (d.packet.type === PacketType.query) for (const a of this.announces()) this.send("announce", a);
    if (d.packet.type === PacketType.request && this.captured === null && d.packet.sender !== this.me.sender && equalBytes(d.packet.imageId, this.imageId)) this.captured = bytes.slice();
  }

  private send(kind: string, bytes: Uint8Array): void {
    this.transport?.send(bytes);
    this.sent[kind] = (this.sent[kind] ?? 0) + 1;
  }

  private random(n: number): number {
    return Math.floor(this.next() * n);
  }

  private randomId(): number {
    return (this.random(2 ** 31) * 2 + 1) >>> 0;
  }

  private randomBytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.random(256);
    return b;
  }

  private announces(): Uint8Array[] {
    const real = this.real;
    const c = { imageId: this.imageId, sender: this.me.sender };
    return [
      encodeAnnounce(c, { ...real, sourceBytes: real.sourceBytes * 1024, manifestSha256: this.randomBytes(32) }),
      encodeAnnounce(c, { ...real, manifestSha256: this.randomBytes(32) }),
      encodeAnnounce(c, { ...real, dataChunkCount: 2 ** 32 - 1 }),
      encodeAnnounce({ imageId: this.randomBytes(16), sender: c.sender }, { ...real, manifestSha256: this.randomBytes(32) }),
    ];
  }

  private fullRequest(chunk: number): Uint8Array {
    const all = bitmapFor(this.blockCount);
    fillBits(all, this.blockCount);
    return encodeRequest(this.me, chunk, this.blockCount, all);
  }

  private forgedBlock(): Uint8Array {
    return encodeBlock({ imageId: this.imageId, sender: this.random(2 ** 32) >>> 0 }, this.random(FORGED_CHUNKS), this.random(1 << 30), this.random(FORGED_BLOCKS), this.randomBytes(this.real.blockBytes));
  }

  private lossReport(): Uint8Array {
    const body = { state: ReportState.progress, elapsedMs: 1000, chunksDone: 0, chunksTotal: 1, bytesWritten: 0, blocksReceived: 0, duplicateBlocks: 0, requestsSent: 1, rerequests: 0, chunksRejected: 0, intervalReceived: 0, intervalSeqSpan: 1000, message: "" };
    return encodeReport({ imageId: this.imageId, sender: this.randomId() }, body);
  }
}
