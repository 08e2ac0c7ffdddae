// The server's pure parts: the merging send queue and the rate control law.
import { describe, expect, test } from "bun:test";
import { SendQueue } from "../../src/server/queue.ts";
import { DEFAULT_RATE_LAW, nextRate, TokenBucket, type RateLaw } from "../../src/server/pacer.ts";
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
    out.push(`${next.chunk}:${next.block}`);
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
    expect(drain(q)).toEqual(["3:1", "3:2", "3:3", "3:9", "7:0"]);
    expect(q.empty).toBe(true);
  });

  test("a merge into the entry being sent wraps round to the blocks behind its cursor", () => {
    const q = new SendQueue(8);
    q.merge(1, 8, wanted(8, [4, 5, 6]));
    expect(q.take()).toEqual({ chunk: 1, block: 4 });
    q.merge(1, 8, wanted(8, [0, 4]));
    expect(drain(q)).toEqual(["1:5", "1:6", "1:0", "1:4"]);
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
    expect(nextRate(law, 150e6, [sample(0), sample(0.7), sample(0.7)]).rate).toBeLessThan(50e6);
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

  test("rates stay within the configured floor and ceiling", () => {
    expect(nextRate(law, 16e6, [sample(0.99)]).rate).toBe(15e6);
    expect(nextRate(law, 149e6, [sample(0)]).rate).toBe(150e6);
  });
});

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
