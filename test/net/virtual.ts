// For engine tests: a virtual clock whose time jumps from one timer to the next, and a LAN in
// memory where every datagram reaches every transport (the sender's too, like multicast loopback)
// after a fixed latency. Deterministic: timers due at the same time fire in the order they were set.
import type { Clock, TimerHandle } from "../../src/util/clock.ts";
import type { GroupTransport, OpenTransport, Peer } from "../../src/net/transport.ts";

interface Timer {
  atMs: number;
  order: number;
  fn: () => void;
  live: boolean;
}

export class VirtualClock implements Clock {
  private now = 0;
  private order = 0;
  private timers: Timer[] = [];

  nowMs(): number {
    return this.now;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const t: Timer = { atMs: this.now + Math.max(0, delayMs), order: this.order++, fn, live: true };
    this.timers.push(t);
    return { cancel: () => void (t.live = false) };
  }

  /** Fires the earliest live timer (moving time to it); false when none is left. */
  step(): boolean {
    this.timers = this.timers.filter((t) => t.live);
    if (this.timers.length === 0) return false;
    let first = this.timers[0]!;
    for (const t of this.timers) if (t.atMs < first.atMs || (t.atMs === first.atMs && t.order < first.order)) first = t;
    first.live = false;
    this.now = first.atMs;
    first.fn();
    return true;
  }

  /**
   * Steps until `done()` or `limitMs` of virtual time, letting promise callbacks (chunk reads and
   * applies that resolve at once) run between timers.
   */
  async runUntil(done: () => boolean, limitMs: number): Promise<void> {
    while (!done() && this.now < limitMs) {
      for (let i = 0; i < 4; i++) await Promise.resolve();
      if (!this.step()) return;
    }
  }
}

export class MemoryLan {
  private readonly members = new Set<{ peer: Peer; deliver: (bytes: Uint8Array, from: Peer) => void }>();

  constructor(
    private readonly clock: VirtualClock,
    private readonly latencyMs: number,
  ) {}

  /** The transport of a host at `address`. */
  transport(address: string, port: number): OpenTransport {
    return async (onMessage) => {
      const member = { peer: { address, port }, deliver: onMessage };
      this.members.add(member);
      const t: GroupTransport = {
        send: (bytes) => {
          const copy = bytes.slice();
          for (const m of [...this.members]) this.clock.setTimer(this.latencyMs, () => this.members.has(m) && m.deliver(copy, member.peer));
        },
        close: () => void this.members.delete(member),
      };
      return t;
    };
  }
}
