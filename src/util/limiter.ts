// Runs asynchronous tasks at most `maxRunning` at a time, the rest waiting in FIFO order, at most
// `maxWaiting` of them (a bound on memory; past it `run` refuses at once). Used where a burst of
// work would hit one thing at the same second: forty power actions on one PDU or BMC network.
import { assert } from "./assert.ts";

export class Limiter {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly maxRunning: number,
    private readonly maxWaiting: number,
  ) {
    assert(Number.isSafeInteger(maxRunning) && maxRunning >= 1, "at least one task may run");
    assert(Number.isSafeInteger(maxWaiting) && maxWaiting >= 0, "a whole number of tasks may wait");
  }

  /** Tasks running now, and waiting for a turn. */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.maxRunning) {
      if (this.waiting.length >= this.maxWaiting) throw new Error(`limiter: ${this.maxWaiting} tasks wait already`);
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.running++;
    try {
      return await task();
    } finally {
      this.running--;
      // Hand the freed slot to the oldest waiter.
      this.waiting.shift()?.();
    }
  }
}
