// `discus serve`: one ServeSession (session.ts) on the real network and the wall clock, serving an
// image file until it is idle long enough or aborted. What it does is told through events, and
// (for a supervising parent, `discus server`) through a snapshot every so often.
import { closeImage, openImage, type OpenImage } from "../image/reader.ts";
import { refuseDamagedImage } from "../image/scan.ts";
import { every, wallClock, type Clock, type TimerHandle } from "../util/clock.ts";
import { assert } from "../util/assert.ts";
import { groupTransport } from "../net/socket.ts";
import type { SessionKey } from "../net/auth.ts";
import { ServeSession, type ServeEvent, type ServeSessionOptions, type ServeStats } from "./session.ts";
import type { ServeSnapshot } from "./events.ts";

export type { ServeEvent, ServeStats, SessionSummary } from "./session.ts";

export interface ServeOptions {
  image: string;
  group: string;
  port: number;
  iface: string;
  ttl: number;
  rateBitsPerSecond: number;
  /** Turn off to send at exactly rateBitsPerSecond whatever clients report. */
  adaptiveRate: boolean;
  mtuBytes: number;
  /** Stop after this long with no request; null: serve until aborted. */
  idleExitMs: number | null;
  /** Tell "idle" after this long with no request, but keep serving (a parent decides); null: never. Not with idleExitMs. */
  idleEventMs: number | null;
  /** Called with the session's snapshot every `everyMs` while it runs. */
  snapshots?: { everyMs: number; emit: (s: ServeSnapshot) => void };
  /** The sender id comes from it; default: random. */
  seed?: number;
  /** Take only control packets authenticated with this key; null: the open mode. */
  authKey: SessionKey | null;
  onEvent: (e: ServeEvent) => void;
  signal?: AbortSignal;
}

const SOCKET_BUFFER_BYTES = 8 << 20;
/** `discus serve --events json` writes a snapshot line this often: a supervising parent's status view. */
export const SNAPSHOT_INTERVAL_MS = 1000;

/**
 * A session of an open image on the real network: refuses a damaged image first (headers and their
 * tiling: every client would refuse a chunk that claims another's sectors, so serving such an
 * image would only load the network). `discus serve` and `discus server` both start theirs here.
 */
export function networkSession(image: OpenImage, o: ServeSessionOptions, net: { iface: string; ttl: number }, clock: Clock = wallClock): ServeSession {
  refuseDamagedImage(image, false, "The image is damaged: `discus verify` lists every bad chunk; copy it again from its source");
  const openTransport = groupTransport({ group: o.group, port: o.port, iface: net.iface, ttl: net.ttl, receiveBufferBytes: SOCKET_BUFFER_BYTES, sendBufferBytes: SOCKET_BUFFER_BYTES });
  return new ServeSession(image, o, { clock, openTransport, shortWait: clock === wallClock ? wallShortWait : undefined });
}

const pauseCell = new Int32Array(new SharedArrayBuffer(4));
/** The wall clock's sub-millisecond waits: Atomics.wait sleeps in the kernel (futex), to ~0.1 ms. */
const wallShortWait = {
  pause: (ms: number): void => void (ms > 0 && Atomics.wait(pauseCell, 0, 0, ms)),
  soon: (fn: () => void): TimerHandle => {
    const t = setImmediate(fn);
    return { cancel: () => clearImmediate(t) };
  },
};

export async function serveImage(o: ServeOptions): Promise<ServeStats> {
  assert(o.idleExitMs === null || o.idleEventMs === null, "one idle time: exit or tell");
  const image = openImage(o.image);
  let snapshots: TimerHandle | null = null;
  try {
    const session = networkSession(
      image,
      { imageName: o.image, group: o.group, port: o.port, rateBitsPerSecond: o.rateBitsPerSecond, adaptiveRate: o.adaptiveRate, mtuBytes: o.mtuBytes, idleMs: o.idleExitMs ?? o.idleEventMs, seed: o.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]!, authKey: o.authKey },
      o,
    );
    const ended = new Promise<ServeStats>((resolve) =>
      session.on((e) => {
        o.onEvent(e);
        if (e.kind === "idle" && o.idleExitMs !== null) void session.stop();
        else if (e.kind === "ended") resolve(e.stats);
      }),
    );
    if (o.signal?.aborted) return await session.stop();
    o.signal?.addEventListener("abort", () => void session.stop(), { once: true });
    await session.start();
    if (o.signal?.aborted) return await session.stop();
    const s = o.snapshots;
    if (s !== undefined) snapshots = every(wallClock, s.everyMs, () => s.emit(session.snapshot()));
    return await ended;
  } finally {
    snapshots?.cancel();
    closeImage(image);
  }
}
