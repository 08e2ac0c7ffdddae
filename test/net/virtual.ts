// For engine tests: a virtual clock whose time jumps from one timer to the next, and a LAN in
// memory where every datagram reaches every transport (the sender's too, like multicast loopback)
// after a fixed latency. Deterministic: timers due at the same time fire in the order they were set.
import type { Clock, TimerHandle } from "../../src/util/clock.ts";
import type { GroupTransport, OpenTransport, Peer } from "../../src/net/transport.ts";
import type { OpenImage } from "../../src/image/reader.ts";
import { ServeSession } from "../../src/server/session.ts";

interface Timer {
  atMs: number;
  order: number;
  fn: () => void;
  live: boolean;
}

export class VirtualClock implements Clock {
  private now = 0;
  private order = 0;
  /** A binary min-heap on (atMs, order): thousands of engines keep thousands of timers. */
  private readonly heap: Timer[] = [];

  nowMs(): number {
    return this.now;
  }

  setTimer(delayMs: number, fn: () => void): TimerHandle {
    const t: Timer = { atMs: this.now + Math.max(0, delayMs), order: this.order++, fn, live: true };
    this.push(t);
    return { cancel: () => void (t.live = false) };
  }

  /** Fires the earliest live timer (moving time to it); false when none is left. */
  step(): boolean {
    for (let t = this.pop(); t !== undefined; t = this.pop()) {
      if (!t.live) continue;
      t.live = false;
      this.now = t.atMs;
      t.fn();
      return true;
    }
    return false;
  }

  private before(a: Timer, b: Timer): boolean {
    return a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order);
  }

  private push(t: Timer): void {
    const h = this.heap;
    h.push(t);
    for (let i = h.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): Timer | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length === 0 || last === undefined) return top;
    h[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.before(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.before(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
    return top;
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
    /** Called per packet and receiver: true drops it (independent loss, as the netlab's nftables rule). */
    private readonly dropAt: (address: string) => boolean = () => false,
  ) {}

  /** The transport of a host at `address`. */
  transport(address: string, port: number): OpenTransport {
    return async (onMessage) => {
      const member = { peer: { address, port }, deliver: onMessage };
      this.members.add(member);
      const t: GroupTransport = {
        send: (bytes) => {
          const copy = bytes.slice();
          for (const m of [...this.members]) {
            if (m !== member && this.dropAt(m.peer.address)) continue;
            this.clock.setTimer(this.latencyMs, () => this.members.has(m) && m.deliver(copy, member.peer));
          }
        },
        close: () => void this.members.delete(member),
      };
      return t;
    };
  }
}

/** The group, port and server address engine tests use on a MemoryLan. */
export const VIRTUAL_GROUP = "239.77.0.1";
export const VIRTUAL_PORT = 4520;
export const VIRTUAL_SERVER_ADDRESS = "198.18.0.1";

/** A ServeSession of `image` on the LAN at 100 Mbit/s, MTU 1500, never idling out. */
export function virtualServer(
  image: OpenImage,
  clock: VirtualClock,
  lan: MemoryLan,
  o: { seed: number; adaptiveRate?: boolean; readChunk?: (index: number) => Promise<Uint8Array> },
): ServeSession {
  return new ServeSession(
    image,
    { imageName: image.path, group: VIRTUAL_GROUP, port: VIRTUAL_PORT, rateBitsPerSecond: 100e6, adaptiveRate: o.adaptiveRate ?? true, mtuBytes: 1500, idleMs: null, seed: o.seed },
    { clock, openTransport: lan.transport(VIRTUAL_SERVER_ADDRESS, VIRTUAL_PORT), readChunk: o.readChunk },
  );
}
