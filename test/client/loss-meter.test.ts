// The loss meter across the u32 wrap of the server's block sequence (about 14 h at 1 Gbit/s).
import { describe, expect, test } from "bun:test";
import { LossMeter } from "../../src/client/loss-meter.ts";

const U32 = 2 ** 32;

/** Feeds every `keep`-th sequence number of [first, first + count), wrapped to u32. */
function feed(meter: LossMeter, first: number, count: number, keep: number): void {
  for (let i = 0; i < count; i += keep) meter.count((first + i) % U32);
}

describe("loss meter", () => {
  test("no loss before the wrap reads zero", () => {
    const m = new LossMeter();
    feed(m, 1000, 500, 1);
    expect(m.take()).toEqual({ received: 500, span: 500 });
  });

  test("an interval across 2^32 with no loss reads zero loss, not ~100 %", () => {
    const m = new LossMeter();
    feed(m, U32 - 300, 600, 1);
    expect(m.take()).toEqual({ received: 600, span: 600 });
  });

  test("an interval across 2^32 with half the blocks lost reads one half", () => {
    const m = new LossMeter();
    feed(m, U32 - 301, 600, 2);
    const s = m.take();
    expect(s.received).toBe(300);
    expect(s.span).toBe(599);
  });

  test("blocks out of order around the wrap still span the right range", () => {
    const m = new LossMeter();
    for (const seq of [5, U32 - 5, 0, U32 - 1, 2]) m.count(seq);
    expect(m.take()).toEqual({ received: 5, span: 11 });
  });

  test("the first block of an interval may come after the wrap and a later one before it", () => {
    const m = new LossMeter();
    m.count(3);
    m.count(U32 - 2);
    expect(m.take()).toEqual({ received: 2, span: 6 });
    // A take starts again: the next interval is measured on its own.
    m.count(U32 - 1);
    expect(m.take()).toEqual({ received: 1, span: 1 });
  });
});
