// The dashboard's live feed: Server-Sent Events (GET /api/stream). One hub per server reads the
// daemon once a tick, whatever the number of pages open, works out which rows changed, and sends
// every page the same small update; a page that just connected gets the whole view first. The
// hub runs only while a page is open. A page that cannot keep up is cut off, not buffered for
// ever: the browser's EventSource reconnects and starts from a fresh snapshot.
import type { DaemonApi } from "../daemon/api-types.ts";
import { assert } from "../util/assert.ts";
import { fleetRow, imageRow, sessionRow } from "./fleet-view.ts";
import type { EventRow, FleetRow, ImageRow, SessionRow, StreamMessage } from "./view-types.ts";

/** One read of the daemon per tick: pages never poll, and never get more than one update a second. */
export const STREAM_TICK_MS = 1000;
/** Pages open at once, at most; the next is refused (503) rather than slowing every other. */
export const MAX_STREAM_CLIENTS = 64;
/** Points of each session's rate plot: two minutes at one a tick. */
export const RATE_HISTORY_POINTS = 120;
/** Audit events a snapshot carries (the page keeps as many, newest first). */
export const STREAM_EVENTS = 50;
/** Unsent bytes a page may lag by before it is cut off (a snapshot of 100,000 nodes fits). */
export const MAX_STREAM_BACKLOG_BYTES = 64 * 1024 * 1024;
/** A comment line this often keeps proxies and Bun's idle timeout (10 s) from closing a quiet stream. */
export const KEEPALIVE_MS = 5000;
assert(KEEPALIVE_MS < 10_000 && STREAM_TICK_MS <= KEEPALIVE_MS, "a quiet stream is kept alive within Bun's idle timeout");

interface Subscriber {
  send(text: string): boolean;
  close(): void;
}

interface Keyed<T> {
  row: T;
  json: string;
}

const encoder = new TextEncoder();

function frame(message: StreamMessage): string {
  return `event: ${message.kind}\ndata: ${JSON.stringify(message)}\n\n`;
}

/** The rows of `next` whose JSON differs from `known` (updated in place), and the ids gone. */
export function diffRows<T extends { id: string }>(known: Map<string, Keyed<T>>, next: readonly T[]): { changed: T[]; removed: string[] } {
  const changed: T[] = [];
  const seen = new Set<string>();
  for (const row of next) {
    seen.add(row.id);
    const json = JSON.stringify(row);
    if (known.get(row.id)?.json === json) continue;
    known.set(row.id, { row, json });
    changed.push(row);
  }
  const removed = [...known.keys()].filter((id) => !seen.has(id));
  for (const id of removed) known.delete(id);
  return { changed, removed };
}

export class LiveHub {
  private readonly subscribers = new Set<Subscriber>();
  private readonly nodes = new Map<string, Keyed<FleetRow>>();
  private readonly sessions = new Map<string, Keyed<SessionRow>>();
  private readonly histories = new Map<string, number[]>();
  private images: Keyed<ImageRow[]> = { row: [], json: "" };
  private events: EventRow[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  private first: Promise<void> | null = null;
  private busy = false;
  private lastSentMs = 0;

  constructor(
    private readonly api: DaemonApi,
    private readonly epochMs: () => number = Date.now,
    private readonly log: (line: string) => void = () => {},
  ) {}

  get clients(): number {
    return this.subscribers.size;
  }

  /** A text/event-stream response for one page; null when MAX_STREAM_CLIENTS are open already. */
  async open(signal: AbortSignal): Promise<Response | null> {
    if (this.subscribers.size >= MAX_STREAM_CLIENTS) return null;
    this.start();
    await this.first;
    let sub: Subscriber | null = null;
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          sub = {
            send: (text) => {
              if ((controller.desiredSize ?? 0) <= 0) return false;
              controller.enqueue(encoder.encode(text));
              return true;
            },
            close: () => controller.close(),
          };
          this.subscribers.add(sub);
          sub.send(`retry: ${STREAM_TICK_MS * 2}\n${frame(this.snapshot())}`);
        },
        cancel: () => this.drop(sub),
      },
      new ByteLengthQueuingStrategy({ highWaterMark: MAX_STREAM_BACKLOG_BYTES }),
    );
    signal.addEventListener("abort", () => this.drop(sub));
    return new Response(stream, { headers: { "content-type": "text/event-stream", "cache-control": "no-store", "x-accel-buffering": "no" } });
  }

  stop(): void {
    for (const s of [...this.subscribers]) this.drop(s, true);
  }

  private drop(sub: Subscriber | null, close = false): void {
    if (sub === null || !this.subscribers.delete(sub)) return;
    if (close) {
      try {
        sub.close();
      } catch {
        // Already closed by the other side.
      }
    }
    if (this.subscribers.size > 0 || this.timer === null) return;
    clearInterval(this.timer);
    this.timer = null;
    this.first = null;
  }

  private start(): void {
    if (this.timer !== null) return;
    this.nodes.clear();
    this.sessions.clear();
    this.histories.clear();
    this.images = { row: [], json: "" };
    this.events = [];
    this.first = this.refresh().then(() => undefined);
    this.timer = setInterval(() => void this.tick(), STREAM_TICK_MS);
  }

  private snapshot(): StreamMessage {
    return {
      kind: "snapshot",
      atMs: this.epochMs(),
      nodes: [...this.nodes.values()].map((k) => k.row),
      sessions: [...this.sessions.values()].map((k) => k.row),
      images: this.images.row,
      events: this.events,
    };
  }

  private async tick(): Promise<void> {
    // A slow read (a busy database) skips ticks rather than piling them up.
    if (this.busy || this.subscribers.size === 0) return;
    this.busy = true;
    try {
      const update = await this.refresh();
      const now = this.epochMs();
      const empty = update.nodes.length + update.removedNodes.length + update.sessions.length + update.removedSessions.length + update.events.length === 0 && update.images === null;
      if (!empty) this.broadcast(frame(update));
      else if (now - this.lastSentMs >= KEEPALIVE_MS) this.broadcast(": keepalive\n\n");
      else return;
      this.lastSentMs = now;
    } catch (e) {
      this.log(`dashboard stream: reading the daemon failed: ${(e as Error).message}`);
    } finally {
      this.busy = false;
    }
  }

  private broadcast(text: string): void {
    for (const s of [...this.subscribers]) if (!s.send(text)) this.drop(s, true);
  }

  /** Reads the daemon, updates the hub's rows, and returns what changed. */
  private async refresh(): Promise<Extract<StreamMessage, { kind: "update" }>> {
    const [nodes, images, events] = await Promise.all([this.api.listNodes(), this.api.listImages(), this.api.listEvents(STREAM_EVENTS)]);
    const sizes = new Map(images.map((i) => [i.name, i.fileBytes]));
    const sessionRows = this.api.liveSessions().map((s) => sessionRow(s, sizes.get(s.image) ?? 0, this.history(s.image, s.rateBitsPerSecond)));
    for (const id of this.histories.keys()) if (!sessionRows.some((s) => s.id === id)) this.histories.delete(id);
    const n = diffRows(this.nodes, nodes.map(fleetRow));
    const s = diffRows(this.sessions, sessionRows);
    const imageRows = images.map(imageRow);
    const imagesJson = JSON.stringify(imageRows);
    const imagesChanged = imagesJson !== this.images.json;
    if (imagesChanged) this.images = { row: imageRows, json: imagesJson };
    const newest = this.events[0]?.id ?? 0;
    const fresh = events.filter((e) => e.id > newest);
    this.events = [...fresh, ...this.events].slice(0, STREAM_EVENTS);
    return { kind: "update", atMs: this.epochMs(), nodes: n.changed, removedNodes: n.removed, sessions: s.changed, removedSessions: s.removed, images: imagesChanged ? imageRows : null, events: fresh };
  }

  private history(image: string, rate: number): number[] {
    const h = this.histories.get(image) ?? [];
    h.push(rate);
    if (h.length > RATE_HISTORY_POINTS) h.shift();
    this.histories.set(image, h);
    return [...h];
  }
}
