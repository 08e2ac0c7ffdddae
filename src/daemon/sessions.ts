// Multicast sessions on demand, as child processes: one `discus serve` per image that a job needs
// (as Emulab's mfrisbeed spawns one frisbeed per image), on the image's persisted group; stopped
// once idle with no job left that needs it. Children rather than in process, by measurement
// (docs/BENCHMARKS.md, "The control server"): in the daemon's process a session's pacing timers
// share one thread with HTTP, SQLite, JSON and GC, and lost up to 14 % of their rate under bursty
// agent reports. The daemon sees each child through its event lines (session-child.ts).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { wallClock, type Clock } from "../util/clock.ts";
import { deriveSessionKey } from "../net/auth.ts";
import { hex } from "../util/bytes.ts";
import { assert } from "../util/assert.ts";
import { DiscusError, exitCodeByKind, ioError, type ErrorKind } from "../util/errors.ts";
import type { ServeEvent } from "../server/session.ts";
import { describeExit, SessionChild, type ChildExit, type StartedEvent } from "./session-child.ts";
import type { ImageRecord } from "./model.ts";
import type { LiveSession } from "./api-types.ts";

export interface SessionOptions {
  iface: string;
  ttl: number;
  /** Rate ceiling and MTU of each `discus serve` child; null: the child takes the link's (net/link.ts). */
  rateBitsPerSecond: number | null;
  mtuBytes: number | null;
  /** A session with no request for this long, and no job needing it, stops. */
  idleMs: number;
  /** Each image's session key is derived from it (state-dir.ts sessionSecret); null: open sessions. */
  authSecret: Uint8Array | null;
  /** The state directory: each child reads its session key from STATE/sessions/ (mode 0600). */
  stateDir: string;
  /** Where a child's unexpected end is told. */
  log?: (line: string) => void;
}

/**
 * Sessions at once, at most. A child measured 56 MiB RSS idle, 86-110 MiB serving 200 Mbit/s with
 * 1 MiB chunks, 150 MiB at its peak (scripts/bench-daemon): 32 serving at once take about 3.5 GiB,
 * which a machine that serves 32 images at once can spare, while one daemon cannot fill its host
 * with servers.
 */
export const MAX_SESSIONS = 32;
/** A child opens the image and reads every chunk header before `started`: allow a large image on a slow disk. */
export const START_TIMEOUT_MS = 30_000;
/** A child that dies while a job needs it is started again at most this many times per window. */
export const MAX_RESTARTS_PER_WINDOW = 3;
export const RESTART_WINDOW_MS = 60_000;
assert(MAX_RESTARTS_PER_WINDOW >= 1 && RESTART_WINDOW_MS > START_TIMEOUT_MS, "a window outlasts a start, so counting within it bounds restarts");

const KEYS_DIR = "sessions";

interface Running {
  record: ImageRecord;
  child: SessionChild;
  /** The latest start of the child: ensure() waits for it. */
  ready: Promise<void>;
  restartsMs: number[];
  keyPath: string | null;
  stopping: boolean;
}

/** The kind of error a child's exit code stands for (cli.ts exits by kind); anything else is the host's. */
function kindOfExit(code: number | null): ErrorKind {
  const found = Object.entries(exitCodeByKind).find(([, c]) => c === code);
  return found === undefined ? "io" : (found[0] as ErrorKind);
}

export class Sessions {
  private readonly running = new Map<string, Running>();

  constructor(
    private readonly o: SessionOptions,
    /** Whether a job still needs the image (then an idle session stays). */
    private readonly needed: (imageName: string) => Promise<boolean>,
    private readonly onEvent: (image: string, e: ServeEvent) => void,
    private readonly clock: Clock = wallClock,
  ) {
    // Keys a killed daemon could not remove: its children are gone (stdin EOF), so are their sessions.
    const dir = join(o.stateDir, KEYS_DIR);
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch (e) {
      throw ioError(e, dir, "removing the session keys of a previous run");
    }
  }

  /** Serves the image if it is not served yet; resolves once its child has started serving. */
  async ensure(record: ImageRecord): Promise<void> {
    const existing = this.running.get(record.name);
    if (existing !== undefined) return existing.ready;
    if (this.running.size >= MAX_SESSIONS) {
      throw new DiscusError("usage", `image ${record.name}`, `cannot be served now: ${MAX_SESSIONS} images are served at once already`, "Wait for other reloads to end (idle sessions stop by themselves)");
    }
    const keyPath = this.writeKey(record);
    const r: Running = { record, keyPath, child: this.spawn(record, keyPath), ready: Promise.resolve(), restartsMs: [], stopping: false };
    this.running.set(record.name, r);
    r.ready = this.started(r);
    try {
      await r.ready;
    } catch (e) {
      this.forget(r);
      throw e;
    }
  }

  /** The child's arguments: the daemon's session options, its events as JSON, stdin as its lifeline. */
  private spawn(record: ImageRecord, keyPath: string | null): SessionChild {
    const o = this.o;
    const args = ["serve", record.path, "--group", record.group, "--port", String(record.port), "--iface", o.iface, "--ttl", String(o.ttl)];
    if (o.rateBitsPerSecond !== null) args.push("--rate", `${o.rateBitsPerSecond}bit`);
    if (o.mtuBytes !== null) args.push("--mtu", String(o.mtuBytes));
    args.push("--idle-event", `${o.idleMs}ms`, "--events", "json", "--exit-with-stdin");
    if (keyPath !== null) args.push("--auth-key-file", keyPath);
    return new SessionChild(args, (e) => {
      this.onEvent(record.name, e);
      if (e.kind === "idle") void this.stopIfUnneeded(record.name);
    });
  }

  /** Waits for the child's `started`; a child that ends or stays silent is a DiscusError naming the image and the child's last words. */
  private async started(r: Running): Promise<void> {
    const child = r.child;
    const result = await child.waitStarted(START_TIMEOUT_MS);
    if (result !== null && "kind" in result) {
      void child.ended.then((exit) => this.onChildEnded(r, child, exit));
      return;
    }
    const exit: ChildExit = result ?? (await child.stop(`it did not start within ${START_TIMEOUT_MS / 1000} s`));
    const { name, group, port } = r.record;
    throw new DiscusError(kindOfExit(exit.code), `the session for image ${name} on ${group}:${port}`, `could not start: ${describeExit(exit)}`, "Check --iface, the image file, and that no other server uses that group and port");
  }

  /** A child that ends by itself while a job needs the image is started again, a few times a minute at most. */
  private async onChildEnded(r: Running, child: SessionChild, exit: ChildExit): Promise<void> {
    if (r.stopping || this.running.get(r.record.name) !== r || r.child !== child) return;
    const { name, group, port } = r.record;
    const what = `session ${name} on ${group}:${port}`;
    this.o.log?.(`${what}: its server (pid ${child.pid}) ended unexpectedly: ${describeExit(exit)}`);
    const needed = await this.needed(name).catch(() => false);
    if (r.stopping || this.running.get(name) !== r) return;
    const nowMs = this.clock.nowMs();
    r.restartsMs = r.restartsMs.filter((t) => nowMs - t < RESTART_WINDOW_MS);
    if (!needed || r.restartsMs.length >= MAX_RESTARTS_PER_WINDOW) {
      if (needed) this.o.log?.(`${what}: restarted ${r.restartsMs.length} times within ${RESTART_WINDOW_MS / 1000} s; not again until a node needs it`);
      this.forget(r);
      return;
    }
    r.restartsMs.push(nowMs);
    r.child = this.spawn(r.record, r.keyPath);
    r.ready = this.started(r);
    await r.ready.then(
      () => this.o.log?.(`${what}: served again (pid ${r.child.pid})`),
      (e: Error) => {
        this.o.log?.(`${what}: ${e.message}`);
        if (this.running.get(name) === r) this.forget(r);
      },
    );
  }

  /** STATE/sessions/IMAGEID-GROUP.key, mode 0600, for the child's --auth-key-file; null for open sessions. */
  private writeKey(record: ImageRecord): string | null {
    const key = this.authKeyHex(record);
    if (key === null) return null;
    const dir = join(this.o.stateDir, KEYS_DIR);
    const path = join(dir, `${record.imageId}-${record.group}.key`);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // Never reuse a file another could have made readable: write a fresh one.
      rmSync(path, { force: true });
      writeFileSync(path, `${key}\n`, { mode: 0o600, flag: "wx" });
    } catch (e) {
      throw ioError(e, path, `writing the session key of image ${record.name}`);
    }
    return path;
  }

  private forget(r: Running): void {
    if (this.running.get(r.record.name) === r) this.running.delete(r.record.name);
    if (r.keyPath !== null) rmSync(r.keyPath, { force: true });
  }

  /** The image's session key in hex, for the agent's boot script and the child's key file only (never a log, event or API answer). */
  authKeyHex(record: ImageRecord): string | null {
    const secret = this.o.authSecret;
    return secret === null ? null : hex(deriveSessionKey(secret, record.imageId, record.group));
  }

  private async stopIfUnneeded(name: string): Promise<void> {
    if (await this.needed(name)) return;
    await this.stop(name);
  }

  /** Stops the image's child (stdin closed, SIGTERM, SIGKILL after a bound) and removes its key file. */
  async stop(name: string): Promise<void> {
    const r = this.running.get(name);
    if (r === undefined) return;
    r.stopping = true;
    this.forget(r);
    await r.child.stop("the daemon stopped it");
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((name) => this.stop(name)));
  }

  /** list() with each session's clients, from the same snapshots. */
  live(): LiveSession[] {
    return [...this.running.values()].map((r) => {
      const summary = this.summaryOf(r);
      return { image: summary.image, group: summary.group, port: summary.port, rateBitsPerSecond: summary.rateBitsPerSecond, bytesSent: summary.bytesSent, clients: r.child.snapshot?.clients ?? [] };
    });
  }

  /** From each child's last snapshot (at most SNAPSHOT_INTERVAL_MS old). */
  list(): { image: string; group: string; port: number; rateBitsPerSecond: number; clients: number; bytesSent: number }[] {
    return [...this.running.values()].map((r) => this.summaryOf(r));
  }

  private summaryOf(r: Running): { image: string; group: string; port: number; rateBitsPerSecond: number; clients: number; bytesSent: number } {
    const s = r.child.snapshot;
    const started: StartedEvent | null = r.child.started;
    const rate = s?.rateBitsPerSecond ?? started?.rateBitsPerSecond ?? this.o.rateBitsPerSecond ?? 0;
    return { image: r.record.name, group: r.record.group, port: r.record.port, rateBitsPerSecond: rate, clients: s?.clients.length ?? 0, bytesSent: s?.bytesSent ?? 0 };
  }
}
