// Time, injected: engines ask a Clock for the time and for timers instead of calling
// performance.now() and setTimeout, so the same code runs on the wall clock or, in the simulator
// (scripts/sim), on virtual time that jumps from one event to the next.

export interface TimerHandle {
  /** Stops the timer if it has not fired; harmless afterwards. */
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic scale with an arbitrary origin. */
  nowMs(): number;
  /** Calls `fn` once, `delayMs` (≥ 0) from now. */
  setTimer(delayMs: number, fn: () => void): TimerHandle;
}

export const wallClock: Clock = {
  nowMs: () => performance.now(),
  setTimer(delayMs, fn) {
    const t = setTimeout(fn, Math.max(0, delayMs));
    return { cancel: () => clearTimeout(t) };
  },
};

/** Calls `fn` every `intervalMs` until the handle is cancelled (a chain of one-shot timers). */
export function every(clock: Clock, intervalMs: number, fn: () => void): TimerHandle {
  let current: TimerHandle | null = null;
  let cancelled = false;
  const arm = (): void => {
    current = clock.setTimer(intervalMs, () => {
      if (cancelled) return;
      arm();
      fn();
    });
  };
  arm();
  return {
    cancel() {
      cancelled = true;
      current?.cancel();
    },
  };
}
