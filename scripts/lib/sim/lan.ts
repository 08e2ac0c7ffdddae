// An in-memory LAN for the simulator, giving each host the engines' OpenTransport. One switch,
// one multicast group: a datagram sent by any host crosses its uplink, then every other host's
// downlink, and loops back at once to its sender (IP_MULTICAST_LOOP). A link serializes packets
// at its rate (payload + IP/UDP + Ethernet bytes, as pacing and tc count them), holds a FIFO
// bounded in bytes that drops at the tail like a NIC or switch port, and adds its propagation
// latency; a downlink then drops each packet with its receiver's own seeded loss probability.
// Downlinks with the same rate and latency carry the same packets at the same times, so they are
// modelled once (a "class") and each packet costs one event per class, not per receiver.
import type { GroupTransport, OpenTransport, Peer } from "../../../src/net/transport.ts";
import { wireBytes } from "../../../src/net/wire.ts";
import { mulberry32 } from "../../../src/util/shuffle.ts";
import { assert } from "../../../src/util/assert.ts";
import type { Scheduler } from "./scheduler.ts";
import type { Clock, TimerHandle } from "../../../src/util/clock.ts";

export const SIM_PORT = 4520;
/** Local delivery of a host's own datagram (loopback) takes this long. */
const LOOPBACK_MS = 0.001;

export interface LinkSpec {
  rateBitsPerSecond: number;
  latencyMs: number;
  /** FIFO bound: a packet that would make the backlog exceed this is dropped. */
  queueBytes: number;
}

/**
 * Cores shared by hosts that run on one machine (validating against a namespace run on this
 * machine): each packet a host's main thread handles takes a core, first come first served.
 */
export class CorePool {
  private readonly freeAtMs: number[];
  constructor(cores: number) {
    assert(Number.isInteger(cores) && cores >= 1, "a pool has whole cores");
    this.freeAtMs = Array(cores).fill(0);
  }

  /** When the first core is free (all may be booked into the future). */
  firstFreeMs(): number {
    return Math.min(...this.freeAtMs);
  }

  /** Runs `costMs` of work ready at `readyMs` on the first free core; returns when it ends. */
  reserve(readyMs: number, costMs: number): number {
    let core = 0;
    for (let i = 1; i < this.freeAtMs.length; i++) if (this.freeAtMs[i]! < this.freeAtMs[core]!) core = i;
    const end = Math.max(readyMs, this.freeAtMs[core]!) + costMs;
    this.freeAtMs[core] = end;
    return end;
  }
}

/** A host's main thread: the CPU time each datagram it sends or hears costs, on a core pool. */
export interface HostCpu {
  pool: CorePool;
  receiveMs: number;
  sendMs: number;
}

export interface HostSpec {
  address: string;
  /** Null: the host's CPU is never the bottleneck, and packets cost it no time. */
  cpu: HostCpu | null;
  up: LinkSpec;
  down: LinkSpec;
  /** Probability that a datagram toward this host is lost (0..1), drawn per packet. */
  lossProbability: number;
  seed: number;
}

export interface LinkCounters {
  packets: number;
  bytes: number;
  queueDrops: number;
}

type Receive = (bytes: Uint8Array, from: Peer) => void;

interface Member {
  host: Host;
  receive: Receive | null;
}

class Link {
  /** When the link finishes sending what it holds. */
  private freeAtMs = 0;
  readonly counters: LinkCounters = { packets: 0, bytes: 0, queueDrops: 0 };
  constructor(readonly spec: LinkSpec) {
    assert(spec.rateBitsPerSecond > 0 && spec.latencyMs >= 0 && spec.queueBytes > 0, "a link has a rate, a latency and a queue");
  }

  /** When a packet entering now arrives at the far end, or null if the queue drops it. */
  enter(nowMs: number, payloadBytes: number): number | null {
    const bytes = wireBytes(payloadBytes);
    const msPerByte = 8000 / this.spec.rateBitsPerSecond;
    const backlogBytes = Math.max(0, this.freeAtMs - nowMs) / msPerByte;
    if (backlogBytes + bytes > this.spec.queueBytes) {
      this.counters.queueDrops++;
      return null;
    }
    this.freeAtMs = Math.max(this.freeAtMs, nowMs) + bytes * msPerByte;
    this.counters.packets++;
    this.counters.bytes += bytes;
    return this.freeAtMs + this.spec.latencyMs;
  }
}

export class Host {
  readonly up: Link;
  readonly nextLoss: () => number;
  /** Datagrams delivered to, and lost toward, this host (after its downlink). */
  received = 0;
  lost = 0;
  sent = 0;
  /** Endpoints open on this host (a restarted server opens a new one). */
  readonly members: Member[] = [];
  /** When the host's main thread is done with what it has (one thread: packets in order). */
  threadFreeAtMs = 0;
  constructor(
    readonly spec: HostSpec,
    readonly downClass: DownClass,
  ) {
    this.up = new Link(spec.up);
    this.nextLoss = mulberry32(spec.seed);
  }
}

class DownClass {
  readonly link: Link;
  members: Member[] = [];
  /** Some member closed: compact the list before the next delivery. */
  dirty = false;
  constructor(spec: LinkSpec) {
    this.link = new Link(spec);
  }
}

export class Lan {
  private readonly classes = new Map<string, DownClass>();
  private readonly hosts = new Map<string, Host>();

  constructor(private readonly clock: Scheduler) {}

  /** Adds a host (its address must be new) and returns it. */
  addHost(spec: HostSpec): Host {
    assert(!this.hosts.has(spec.address), "host addresses are distinct");
    const key = `${spec.down.rateBitsPerSecond}/${spec.down.latencyMs}/${spec.down.queueBytes}`;
    let c = this.classes.get(key);
    if (c === undefined) this.classes.set(key, (c = new DownClass(spec.down)));
    const host = new Host(spec, c);
    this.hosts.set(spec.address, host);
    return host;
  }

  /** The engines' view of `host`: each open makes one socket-like endpoint on it. */
  transport(host: Host): OpenTransport {
    return async (onMessage) => this.open(host, onMessage);
  }

  private open(host: Host, onMessage: Receive): GroupTransport {
    const member: Member = { host, receive: onMessage };
    host.downClass.members.push(member);
    host.members.push(member);
    const from: Peer = { address: host.spec.address, port: SIM_PORT };
    return {
      send: (bytes) => {
        if (member.receive === null) return;
        host.sent++;
        // Loopback: the host's own stack hands it to every socket it has on the group.
        this.clock.setTimer(LOOPBACK_MS, () => {
          for (const m of host.members) m.receive?.(bytes, from);
        });
        const cpu = host.spec.cpu;
        if (cpu === null) return this.transmit(host, bytes, from);
        // The send system call takes the host's thread (and a core) before the packet is on the wire.
        const ready = (host.threadFreeAtMs = cpu.pool.reserve(Math.max(this.clock.nowMs(), host.threadFreeAtMs), cpu.sendMs));
        this.clock.at(ready, () => this.transmit(host, bytes, from));
      },
      close: () => {
        if (member.receive === null) return;
        member.receive = null;
        host.members.splice(host.members.indexOf(member), 1);
        host.downClass.dirty = true;
      },
    };
  }

  private transmit(host: Host, bytes: Uint8Array, from: Peer): void {
    const atSwitch = host.up.enter(this.clock.nowMs(), bytes.length);
    if (atSwitch !== null) this.clock.at(atSwitch, () => this.forward(bytes, from, host));
  }

  /** At the switch: copy to every downlink class (one shared buffer; receivers must not mutate it). */
  private forward(bytes: Uint8Array, from: Peer, sender: Host): void {
    for (const c of this.classes.values()) {
      const arrive = c.link.enter(this.clock.nowMs(), bytes.length);
      if (arrive === null) continue;
      this.clock.at(arrive, () => deliver(this.clock, c, bytes, from, sender));
    }
  }

  counters(): { up: Record<string, LinkCounters>; downQueueDrops: number } {
    const up: Record<string, LinkCounters> = {};
    for (const [a, h] of this.hosts) up[a] = h.up.counters;
    let downQueueDrops = 0;
    for (const c of this.classes.values()) downQueueDrops += c.link.counters.queueDrops;
    return { up, downQueueDrops };
  }
}

function deliver(clock: Scheduler, c: DownClass, bytes: Uint8Array, from: Peer, sender: Host): void {
  if (c.dirty) {
    c.members = c.members.filter((m) => m.receive !== null);
    c.dirty = false;
  }
  // By index over the list as it is now: a receiver that opens an endpoint while hearing this
  // packet hears the next one; one that closes is skipped (receive is null).
  const members = c.members;
  for (let i = 0, n = members.length; i < n; i++) {
    const m = members[i]!;
    const r = m.receive;
    if (r === null || m.host === sender) continue;
    const h = m.host;
    if (h.spec.lossProbability > 0 && h.nextLoss() < h.spec.lossProbability) {
      h.lost++;
      continue;
    }
    h.received++;
    const cpu = h.spec.cpu;
    if (cpu === null) {
      r(bytes, from);
      continue;
    }
    h.threadFreeAtMs = cpu.pool.reserve(Math.max(clock.nowMs(), h.threadFreeAtMs), cpu.receiveMs);
    clock.at(h.threadFreeAtMs, () => m.receive === r && r(bytes, from));
  }
}

/**
 * A host's view of time on a shared machine: a timer whose moment comes while the host's main
 * thread is still busy with packets, or while every core is taken, runs when both are free.
 */
export function hostClock(clock: Scheduler, host: Host): Clock {
  return {
    nowMs: () => clock.nowMs(),
    setTimer(delayMs, fn) {
      let cancelled = false;
      let handle: TimerHandle;
      const fire = (): void => {
        if (cancelled) return;
        const freeMs = Math.max(host.threadFreeAtMs, host.spec.cpu?.pool.firstFreeMs() ?? 0);
        if (freeMs > clock.nowMs()) handle = clock.at(freeMs, fire);
        else fn();
      };
      handle = clock.setTimer(delayMs, fire);
      return {
        cancel() {
          cancelled = true;
          handle.cancel();
        },
      };
    },
  };
}
