// Multicast sessions on demand, in the daemon's process: one ServeSession per image that a job
// needs, on the image's persisted group; stopped once idle with no job left that needs it (as
// Emulab's mfrisbeed starts and reaps frisbeed). In process rather than one child per image: the
// engine is built to be embedded (several sessions in one process are tested in
// test/net/two-sessions.test.ts), and its state is visible to the daemon without a pipe.
import { closeImage, openImage, type OpenImage } from "../image/reader.ts";
import { wallClock, type Clock } from "../util/clock.ts";
import { deriveSessionKey, SessionKey } from "../net/auth.ts";
import { hex } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";
import { networkSession } from "../server/serve.ts";
import type { ServeEvent, ServeSession } from "../server/session.ts";
import type { ImageRecord } from "./model.ts";

export interface SessionOptions {
  iface: string;
  ttl: number;
  rateBitsPerSecond: number;
  mtuBytes: number;
  /** A session with no request for this long, and no job needing it, stops. */
  idleMs: number;
  /** Each image's session key is derived from it (state-dir.ts sessionSecret); null: open sessions. */
  authSecret: Uint8Array | null;
}

/** Sessions at once, at most: each holds a socket and a chunk cache. */
export const MAX_SESSIONS = 64;

interface Running {
  record: ImageRecord;
  image: OpenImage;
  session: ServeSession;
}

export class Sessions {
  private readonly running = new Map<string, Running>();

  constructor(
    private readonly o: SessionOptions,
    /** Whether a job still needs the image (then an idle session stays). */
    private readonly needed: (imageName: string) => Promise<boolean>,
    private readonly onEvent: (image: string, e: ServeEvent) => void,
    private readonly clock: Clock = wallClock,
  ) {}

  /** Serves the image if it is not served yet. */
  async ensure(record: ImageRecord): Promise<void> {
    if (this.running.has(record.name)) return;
    if (this.running.size >= MAX_SESSIONS) {
      throw new DiscusError("usage", `image ${record.name}`, `cannot be served now: ${MAX_SESSIONS} images are served at once already`, "Wait for other reloads to end (idle sessions stop by themselves)");
    }
    const image = openImage(record.path);
    try {
      const seed = crypto.getRandomValues(new Uint32Array(1))[0]!;
      const session = networkSession(
        image,
        { imageName: record.name, group: record.group, port: record.port, rateBitsPerSecond: this.o.rateBitsPerSecond, adaptiveRate: true, mtuBytes: this.o.mtuBytes, idleMs: this.o.idleMs, seed, authKey: this.keyOf(record) },
        this.o,
        this.clock,
      );
      session.on((e) => {
        this.onEvent(record.name, e);
        if (e.kind === "idle") void this.stopIfUnneeded(record.name);
      });
      this.running.set(record.name, { record, image, session });
      await session.start();
    } catch (e) {
      this.running.delete(record.name);
      closeImage(image);
      if (e instanceof DiscusError) throw e;
      // A socket the kernel refuses (address in use, no such interface) is the host's, not a bug.
      throw new DiscusError("io", `the session for image ${record.name} on ${record.group}:${record.port}`, `could not start: ${(e as Error).message}`, "Check --iface and that no other server uses that group and port");
    }
  }

  private keyOf(record: ImageRecord): SessionKey | null {
    const secret = this.o.authSecret;
    return secret === null ? null : new SessionKey(deriveSessionKey(secret, record.imageId, record.group));
  }

  /** The image's session key in hex, for the agent's boot script only (never a log, event or API answer). */
  authKeyHex(record: ImageRecord): string | null {
    const secret = this.o.authSecret;
    return secret === null ? null : hex(deriveSessionKey(secret, record.imageId, record.group));
  }

  private async stopIfUnneeded(name: string): Promise<void> {
    if (await this.needed(name)) return;
    await this.stop(name);
  }

  async stop(name: string): Promise<void> {
    const r = this.running.get(name);
    if (r === undefined) return;
    this.running.delete(name);
    await r.session.stop();
    closeImage(r.image);
  }

  async stopAll(): Promise<void> {
    for (const name of [...this.running.keys()]) await this.stop(name);
  }

  list(): { image: string; group: string; port: number; rateBitsPerSecond: number; clients: number; bytesSent: number }[] {
    return [...this.running.values()].map((r) => {
      const s = r.session.snapshot();
      return { image: r.record.name, group: r.record.group, port: r.record.port, rateBitsPerSecond: s.rateBitsPerSecond, clients: s.clients.length, bytesSent: s.bytesSent };
    });
  }
}
