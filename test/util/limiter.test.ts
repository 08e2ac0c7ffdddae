// The Limiter: never more than maxRunning tasks at once, FIFO turns, a bounded wait list, and a
// failing task frees its slot.
import { describe, expect, test } from "bun:test";
import { Limiter } from "../../src/util/limiter.ts";

describe("Limiter", () => {
  test("runs at most maxRunning at once, in the order asked, and every task ends", async () => {
    const limiter = new Limiter(3, 100);
    let now = 0;
    let peak = 0;
    const started: number[] = [];
    const release: (() => void)[] = [];
    const tasks = Array.from({ length: 10 }, (_, i) =>
      limiter.run(async () => {
        started.push(i);
        peak = Math.max(peak, ++now);
        await new Promise<void>((r) => release.push(r));
        now--;
        return i * 2;
      }),
    );
    while (started.length < 10) {
      await Bun.sleep(1);
      expect(limiter.load.running).toBeLessThanOrEqual(3);
      release.shift()?.();
    }
    release.forEach((r) => r());
    expect(await Promise.all(tasks)).toEqual(Array.from({ length: 10 }, (_, i) => i * 2));
    expect(peak).toBe(3);
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(limiter.load).toEqual({ running: 0, waiting: 0 });
  });

  test("a failing task frees its slot; past maxWaiting a task is refused at once", async () => {
    const limiter = new Limiter(1, 1);
    let open!: () => void;
    const first = limiter.run(() => new Promise<void>((r) => (open = r)));
    const second = limiter.run(async () => {
      throw new Error("power failed");
    });
    await expect(limiter.run(async () => 1)).rejects.toThrow("1 tasks wait already");
    open();
    await first;
    await expect(second).rejects.toThrow("power failed");
    expect(await limiter.run(async () => "after")).toBe("after");
  });
});
