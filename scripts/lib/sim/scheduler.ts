// Virtual time for the simulator: a Clock whose timers live in a binary heap of (timeMs, seq).
// Time jumps from one event to the next; events due at the same instant run in the order they
// were scheduled (seq), so a run depends only on its inputs. Between instants the scheduler lets
// promise continuations settle (engines await chunk reads and sink applies that resolve through
// this scheduler), so no real time or I/O ever decides an order.
import type { Clock, TimerHandle } from "../../../src/util/clock.ts";
import { assert } from "../../../src/util/assert.ts";

interface Event {
  timeMs: number;
  seq: number;
  fn: (() => void) | null;
}

/** Macrotask turns per instant: one drains every microtask chain (nothing here waits on real I/O). */
const SETTLE_TURNS = 1;
/** Events run per instant at most: more means a zero-delay loop, a bug in whatever scheduled it. */
const MAX_EVENTS_PER_INSTANT = 50_000_000;

export class Scheduler implements Clock {
  private heap: Event[] = [];
  private now = 0;
  private seq = 0;
  /** Events run so far (a measure of the simulator's own work). */
  eventsRun = 0;

  nowMs(): number {
    return this.now;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    assert(Number.isFinite(delayMs), "a timer delay is a finite number");
    const e: Event = { timeMs: this.now + Math.max(0, delayMs), seq: this.seq++, fn };
    this.push(e);
    return { cancel: () => void (e.fn = null) };
  }

  /** Same as setTimer at an absolute time (never before now). */
  at(timeMs: number, fn: () => void): TimerHandle {
    return this.setTimer(timeMs - this.now, fn);
  }

  /** Resolves `value` through the scheduler after `delayMs` of virtual time. */
  after<T>(delayMs: number, value: T): Promise<T> {
    return new Promise((resolve) => this.setTimer(delayMs, () => resolve(value)));
  }

  get pending(): number {
    return this.heap.length;
  }

  /**
   * Runs events until `done()` is true, nothing is left, or virtual time passes `untilMs`.
   * Each instant: run every event due then, let microtasks and a macrotask turn settle, repeat.
   */
  async run(done: () => boolean, untilMs: number): Promise<void> {
    while (!done()) {
      const first = this.heap[0];
      if (first === undefined || first.timeMs > untilMs) return;
      this.now = first.timeMs;
      let ran = 0;
      while (this.heap.length > 0 && this.heap[0]!.timeMs === this.now) {
        const e = this.pop();
        if (e.fn === null) continue;
        const fn = e.fn;
        e.fn = null;
        fn();
        this.eventsRun++;
        assert(++ran < MAX_EVENTS_PER_INSTANT, "events at one instant are bounded");
      }
      for (let i = 0; i < SETTLE_TURNS; i++) await settle();
    }
  }

  private push(e: Event): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  private pop(): Event {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && before(h[r]!, h[l]!) ? r : l;
        if (!before(h[c]!, last)) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

function before(a: Event, b: Event): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq);
}

/** One macrotask turn: every pending promise continuation runs before it returns. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
