// The server's pure parts: the merging send queue and the rate control law.
import { describe, expect, test } from "bun:test";
import { SendQueue } from "../../src/server/queue.ts";
import { DEFAULT_RATE_LAW, nextRate, TokenBucket, type RateLaw } from "../../src/server/pacer.ts";
import { LossReports } from "../../src/server/loss-reports.ts";
import { bitmapFor, fillBits, setBit } from "../../src/util/bitmap.ts";

function wanted(blockCount: number, blocks: number[]): Uint8Array {
  const b = bitmapFor(blockCount);
  for (const i of blocks) setBit(b, i);
  return b;
}

function drain(q: SendQueue): string[] {
  const out: string[] = [];
  for (let n = 0; n < 100000; n++) {
    const next = q.take();
    if (next === null) return out;
    out.push(next.kind === "block" ? `${next.chunk}:${next.block}` : `${next.chunk}:r${next.group}.${next.index}`);
  }
  throw new Error("queue never emptied");
}

describe("send queue", () => {
  test("requests for blocks already queued cost nothing; new blocks join the entry", () => {
    const q = new SendQueue(8);
    expect(q.merge(3, 10, wanted(10, [1, 2, 3]))).toEqual({ addedBlocks: 3, accepted: true });
    expect(q.merge(3, 10, wanted(10, [2, 3]))).toEqual({ addedBlocks: 0, accepted: true });
    expect(q.merge(3, 10, wanted(10, [3, 9]))).toEqual({ addedBlocks: 1, accepted: true });
    expect(q.merge(7, 10, wanted(10, [0]))).toEqual({ addedBlocks: 1, accepted: true });
    q.checkInvariants();
    // Chunk 7's one block is a small turn: it goes first, in the urgent lane.
    expect(drain(q)).toEqual(["7:0", "3:1", "3:2", "3:3", "3:9"]);
    expect(q.empty).toBe(true);
  });

  test("a merge into the entry being sent wraps round to the blocks behind its cursor", () => {
    const q = new SendQueue(8);
    q.merge(1, 8, wanted(8, [4, 5, 6]));
    expect(q.take()).toEqual({ kind: "block", chunk: 1, block: 4 });
    q.merge(1, 8, wanted(8, [0, 4]));
    expect(drain(q)).toEqual(["1:5", "1:6", "1:0", "1:4"]);
  });

  test("repairs: each group gets as many repairs as the largest single request, fresh each turn", () => {
    const q = new SendQueue(8);
    q.useRepairs = true;
    // 20 blocks: one group. Two clients lack different blocks: two repairs serve both (not three blocks).
    q.merge(3, 20, wanted(20, [1, 2]));
    q.merge(3, 20, wanted(20, [5]));
    q.checkInvariants();
    expect(drain(q)).toEqual(["3:r0.0", "3:r0.1"]);
    // Asked again later (a repair was lost): the next index, never one a receiver may hold.
    q.merge(3, 20, wanted(20, [7]));
    expect(drain(q)).toEqual(["3:r0.2"]);
  });

  test("repairs: a request for most of a group gets the blocks themselves; repairs only when enabled", () => {
    const q = new SendQueue(8);
    q.useRepairs = true;
    const all = bitmapFor(20);
    fillBits(all, 20);
    q.merge(0, 20, all);
    // A client lacking one block is repaired in the urgent lane, not after the whole chunk's turn.
    q.merge(0, 20, wanted(20, [1]));
    expect(drain(q)).toEqual(["0:r0.0", ...Array.from({ length: 20 }, (_, b) => `0:${b}`)]);
    // 11 of 20 blocks is more than repairLimit (half the group): blocks.
    q.merge(1, 20, wanted(20, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    expect(drain(q)).toEqual(["1:0", "1:1", "1:2", "1:3", "1:4", "1:5", "1:6", "1:7", "1:8", "1:9", "1:10"]);
    q.useRepairs = false;
    q.merge(2, 20, wanted(20, [4]));
    q.merge(2, 20, wanted(20, [6]));
    expect(drain(q)).toEqual(["2:4", "2:6"]);
  });

  test("repairs: interleaved groups are repaired separately, and a request a turn's repairs cover waits for nothing", () => {
    const q = new SendQueue(8);
    q.useRepairs = true;
    // 400 blocks: 3 groups, block b in group b % 3. Group 0 lacks 2 (one client), group 1 lacks 1.
    q.merge(9, 400, wanted(400, [0, 3, 1]));
    q.merge(9, 400, wanted(400, [6]));
    expect(q.take()).toEqual({ kind: "repair", chunk: 9, group: 0, index: 0 });
    // Another client lacking one block of group 0 while two more repairs of it are coming: nothing queued.
    expect(q.merge(9, 400, wanted(400, [30])).addedBlocks).toBe(0);
    q.checkInvariants();
    expect(drain(q)).toEqual(["9:r0.1", "9:r1.0"]);
    expect(q.empty).toBe(true);
  });

  test("manifest parts (criticalFrom on) go first even when asked for whole: nothing is written without them", () => {
    const q = new SendQueue(8, 10);
    q.merge(3, 4, wanted(4, [0, 1, 2, 3]));
    q.merge(10, 4, wanted(4, [0, 1, 2, 3]));
    expect(drain(q)).toEqual(["10:0", "10:1", "10:2", "10:3", "3:0", "3:1", "3:2", "3:3"]);
  });

  test("a manifest part asked for whole again and again is urgent once in 16 chunks' worth, not every turn", () => {
    const q = new SendQueue(4096, 1000);
    const blocks = 64;
    const all = bitmapFor(blocks);
    fillBits(all, blocks);
    for (let c = 0; c < 200; c++) q.merge(c, blocks, all);
    let manifest = 0;
    for (let n = 0; n < 200 * blocks; n++) {
      // A replayed request for the whole of manifest part 1000, before every packet.
      q.merge(1000, blocks, all);
      if (q.take()!.chunk === 1000) manifest++;
    }
    // 200 chunks' worth of packets: 200 / 17 urgent turns at most, plus one per round of the main lane.
    expect(manifest).toBeGreaterThan(0);
    expect(manifest).toBeLessThanOrEqual(Math.ceil(200 / (16 + 1)) * blocks + 2 * blocks);
    q.checkInvariants();
  });

  test("small turns never take more than half the sender while whole chunks wait", () => {
    const q = new SendQueue(4096);
    const blocks = 64;
    const all = bitmapFor(blocks);
    fillBits(all, blocks);
    for (let c = 0; c < 100; c++) q.merge(c, blocks, all);
    let whole = 0;
    let small = 0;
    // A host asks for one block of a thousand other chunks again and again (each a small turn).
    for (let n = 0; n < 20000 && whole < 100 * blocks; n++) {
      q.merge(1000 + (n % 1000), blocks, wanted(blocks, [n % blocks]));
      const next = q.take()!;
      if (next.chunk < 1000) whole++;
      else small++;
    }
    expect(whole).toBe(100 * blocks);
    // Small turns may spend the 1024-packet credit they start with, then one per whole-chunk packet.
    expect(small).toBeLessThanOrEqual(whole + 1024);
    q.checkInvariants();
  });

  test("the bound holds: a request for a new chunk beyond it is refused, merges still work", () => {
    const q = new SendQueue(2);
    const all = bitmapFor(5);
    fillBits(all, 5);
    q.merge(0, 5, all);
    q.merge(1, 5, all);
    expect(q.merge(2, 5, all)).toEqual({ addedBlocks: 0, accepted: false });
    expect(q.merge(1, 5, all).accepted).toBe(true);
    expect(q.queuedChunks).toBe(2);
    expect(drain(q).length).toBe(10);
  });

  test("entries are served round-robin, a whole turn each: one chunk's blocks go out back to back", () => {
    const q = new SendQueue(8);
    q.merge(0, 4, wanted(4, [0, 1, 2, 3]));
    q.merge(1, 4, wanted(4, [0, 1]));
    expect(q.take()).toEqual({ kind: "block", chunk: 0, block: 0 });
    // Chunk 0 asked for again in full while its turn is under way: block 0 (sent) waits a round.
    expect(q.merge(0, 4, wanted(4, [0, 1, 2, 3])).addedBlocks).toBe(1);
    q.checkInvariants();
    expect(drain(q)).toEqual(["0:1", "0:2", "0:3", "1:0", "1:1", "0:0"]);
  });

  test("bits added to the entry being sent wait for its next turn; a small request goes ahead of whole chunks", () => {
    const q = new SendQueue(8);
    q.merge(5, 8, wanted(8, [2, 3]));
    q.merge(6, 8, wanted(8, [6, 7]));
    q.merge(7, 8, wanted(8, [1, 2]));
    expect(q.take()).toEqual({ kind: "block", chunk: 5, block: 2 });
    // Ahead of the cursor, but not in this turn: it waits too (a turn is fixed when it starts).
    expect(q.merge(5, 8, wanted(8, [5])).addedBlocks).toBe(1);
    // A request for one block is small: chunk 5's urgent entry waits ahead of the whole chunks.
    expect(q.upcoming(4)).toEqual([5, 5, 6, 7]);
    expect(drain(q)).toEqual(["5:3", "5:5", "6:6", "6:7", "7:1", "7:2"]);
  });

  test("a client re-asking for one chunk many times a second cannot starve the others", () => {
    const blocks = 737;
    const all = bitmapFor(blocks);
    fillBits(all, blocks);
    const q = new SendQueue(4096);
    const others = [11, 12, 13, 14, 15, 16, 17, 18];
    q.merge(0, blocks, all);
    for (const c of others) q.merge(c, blocks, all);
    // The repeater asks for all of chunk 0 again before every block the server sends.
    const sentOf = new Map<number, number>();
    let sent = 0;
    const limit = 20 * blocks * others.length; // far beyond fair: the repeater starved the rest
    while (others.some((c) => (sentOf.get(c) ?? 0) < blocks) && sent < limit) {
      q.merge(0, blocks, all);
      const next = q.take()!;
      sentOf.set(next.chunk, (sentOf.get(next.chunk) ?? 0) + 1);
      sent++;
      if (sent % 997 === 0) q.checkInvariants();
    }
    // Every other chunk went out once; chunk 0 had no more than one turn per round.
    expect(sent).toBeLessThanOrEqual((others.length + 2) * blocks);
    expect(sentOf.get(0)!).toBeLessThanOrEqual(2 * blocks);
  });

  test("a slow client re-asking for its missing blocks gets one turn per round, no more", () => {
    const q = new SendQueue(16);
    q.merge(1, 10, wanted(10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    q.merge(2, 10, wanted(10, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    const order: number[] = [];
    for (let n = 0; n < 40; n++) {
      const next = q.take();
      if (next === null) break;
      order.push(next.chunk);
      // After every block of chunk 1 it asks again for the blocks it "lost" (every other one).
      if (next.chunk === 1) q.merge(1, 10, wanted(10, [0, 2, 4, 6, 8]));
    }
    // Chunk 2 is done within the first two turns, however often chunk 1 asks.
    expect(order.slice(0, 20).filter((c) => c === 2).length).toBe(10);
  });

  test("bits beyond the chunk's block count are ignored", () => {
    const q = new SendQueue(2);
    const b = new Uint8Array([0xff]);
    expect(q.merge(0, 3, b).addedBlocks).toBe(3);
    expect(drain(q)).toEqual(["0:0", "0:1", "0:2"]);
  });
});

describe("rate control law", () => {
  const law: RateLaw = { ...DEFAULT_RATE_LAW, maxBitsPerSecond: 150e6, minBitsPerSecond: 15e6 };
  const sample = (loss: number) => ({ receivedBlocks: Math.round(1000 * (1 - loss)), seqSpan: 1000 });

  test("random loss under the threshold leaves the rate alone; no reports change nothing", () => {
    expect(nextRate(law, 150e6, [sample(0.05), sample(0.04), sample(0.06)]).rate).toBe(150e6);
    expect(nextRate(law, 150e6, []).rate).toBe(150e6);
  });

  test("one slow client among many does not set the rate; half of them does", () => {
    expect(nextRate(law, 150e6, [sample(0), sample(0), sample(0), sample(0.7)]).rate).toBe(150e6);
    // Half of them does, cutting at most a quarter of the rate per step.
    let rate = 150e6;
    for (let step = 0; step < 4; step++) rate = nextRate(law, rate, [sample(0), sample(0.7), sample(0.7)]).rate;
    expect(rate).toBeLessThan(50e6);
  });

  test("a 100 Mbit/s bottleneck under a 150 Mbit/s ceiling: the rate converges just below it and stays", () => {
    // The loss a bottleneck causes: whatever exceeds its capacity.
    const bottleneck = 100e6;
    let rate = law.maxBitsPerSecond;
    const history: number[] = [];
    for (let step = 0; step < 60; step++) {
      const loss = Math.max(0, 1 - bottleneck / rate);
      rate = nextRate(law, rate, [sample(loss), sample(loss)]).rate;
      history.push(rate);
    }
    const tail = history.slice(-20);
    for (const r of tail) {
      expect(r).toBeGreaterThan(0.85 * bottleneck);
      expect(r).toBeLessThan(1.12 * bottleneck);
    }
  });

  test("clients that saw too little to judge are not outvoted by the few that claim loss", () => {
    const quiet = { receivedBlocks: 3, seqSpan: 3 };
    expect(nextRate(law, 150e6, [quiet, quiet, sample(1)]).rate).toBe(150e6);
    expect(nextRate(law, 150e6, [quiet, sample(1), sample(1)]).rate).toBe(112.5e6);
  });

  test("one step cuts the rate by at most a quarter, whatever the loss reported", () => {
    expect(nextRate(law, 150e6, [sample(1), sample(1)]).rate).toBe(112.5e6);
    expect(nextRate(law, 150e6, [sample(0.2)]).rate).toBeCloseTo(150e6 * 0.8 * 0.95, 0);
  });

  test("rates stay within the configured floor and ceiling", () => {
    expect(nextRate(law, 16e6, [sample(0.99)]).rate).toBe(15e6);
    expect(nextRate(law, 149e6, [sample(0)]).rate).toBe(150e6);
  });
});

describe("loss reports the rate law listens to", () => {
  const limits = { recentRequestMs: 5000, reportMemoryMs: 3000, maxHosts: 4 };
  const lossy = { receivedBlocks: 0, seqSpan: 1000 };
  const clean = { receivedBlocks: 1000, seqSpan: 1000 };

  test("one host counts once, however many sender ids its reports carry", () => {
    const book = new LossReports(limits);
    for (const host of ["10.0.0.11", "10.0.0.12", "10.0.0.66"]) book.requested(host, 0);
    book.reported("10.0.0.11", clean, 0);
    book.reported("10.0.0.12", clean, 0);
    for (let i = 0; i < 200; i++) book.reported("10.0.0.66", lossy, 0);
    const samples = book.take(100);
    expect(samples.length).toBe(3);
    expect(nextRate(rateLaw(), 100e6, samples).rate).toBe(100e6);
  });

  test("reports from hosts that have not asked for blocks lately are ignored", () => {
    const book = new LossReports(limits);
    book.requested("10.0.0.11", 0);
    book.reported("10.0.0.11", clean, 0);
    book.reported("10.0.0.99", lossy, 0); // never asked for anything
    expect(book.take(10)).toEqual([clean]);
    book.reported("10.0.0.11", lossy, 5500);
    expect(book.take(6000)).toEqual([]); // its last request is 6 s old
  });

  test("a host reporting first, or between the others' reports, cannot decide a step alone", () => {
    const book = new LossReports(limits);
    for (const host of ["a", "b", "c", "forger"]) book.requested(host, 0);
    book.reported("forger", lossy, 100);
    expect(book.take(500)).toEqual([]); // 1 of 4 clients: wait for the others
    for (const host of ["a", "b", "c"]) book.reported(host, clean, 600);
    expect(book.take(1000).length).toBe(4);
    book.reported("forger", lossy, 1200);
    expect(book.take(1500)).toEqual([]);
  });

  test("a lone client decides alone", () => {
    const book = new LossReports(limits);
    book.requested("a", 0);
    book.reported("a", lossy, 100);
    expect(book.take(500)).toEqual([lossy]);
  });

  test("the books are bounded: hosts beyond the bound are not remembered", () => {
    const book = new LossReports(limits);
    for (let i = 0; i < 100; i++) {
      book.requested(`10.0.1.${i}`, 0);
      book.reported(`10.0.1.${i}`, lossy, 0);
    }
    expect(book.take(1).length).toBe(4);
  });

  test("forged total-loss reports 200 times a second from one host that also asks for blocks: the rate stays at the ceiling", () => {
    const book = new LossReports(limits);
    let rate = 100e6;
    for (let step = 0; step < 40; step++) {
      // Control steps every 500 ms; clients report once a second, the forger every 5 ms.
      const nowMs = step * 500;
      for (const host of ["a", "b", "c", "forger"]) book.requested(host, nowMs);
      if (step % 2 === 0) for (const host of ["a", "b", "c"]) book.reported(host, clean, nowMs);
      for (let i = 0; i < 100; i++) book.reported("forger", lossy, nowMs + i * 5);
      rate = nextRate(rateLaw(), rate, book.take(nowMs + 499)).rate;
    }
    expect(rate).toBe(100e6);
  });
});

function rateLaw(): RateLaw {
  return { ...DEFAULT_RATE_LAW, maxBitsPerSecond: 100e6, minBitsPerSecond: 10e6 };
}

describe("token bucket", () => {
  test("releases bytes at the rate, in bursts no larger than the burst size", () => {
    const bucket = new TokenBucket(8e6, 10000); // 1 MB/s
    expect(bucket.refill(0)).toBe(10000);
    bucket.spend(10000);
    expect(bucket.refill(5)).toBeCloseTo(5000, 5);
    expect(bucket.waitMs(6000)).toBeCloseTo(1, 5);
    expect(bucket.refill(1000)).toBe(10000);
  });
});
