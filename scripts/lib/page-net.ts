// What one page loads, as Chromium itself counts it (the DevTools protocol's Network domain, on a
// CDP session of the page): each response's URL, type and bytes, and for an EventSource stream,
// which never finishes loading, the bytes received so far and its messages. Used by
// scripts/bench-dashboard.ts for the page weight and the live stream's bytes per second.
import type { CDPSession, Page } from "puppeteer-core";

export interface Loaded {
  requestId: string;
  url: string;
  /** Chromium's resource type: Document, Script, Stylesheet, Fetch, EventSource... */
  type: string;
  status: number;
  /** Bytes on the wire, headers included (loadingFinished, or summed dataReceived while open). */
  encodedBytes: number;
  /** Body bytes after any content decoding (summed dataReceived). */
  bodyBytes: number;
  finished: boolean;
  /** EventSource messages received, and the characters of their data. */
  messages: number;
  messageChars: number;
  /** Characters of the first message's data (the dashboard's snapshot). */
  firstMessageChars: number;
}

/** A CPU metric of the page's renderer (Performance.getMetrics), seconds. */
export type RendererMetric = "TaskDuration" | "ScriptDuration" | "LayoutDuration" | "RecalcStyleDuration";
const RENDERER_METRICS: readonly RendererMetric[] = ["TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration"];

export class PageNet {
  private readonly byId = new Map<string, Loaded>();

  private constructor(readonly session: CDPSession) {}

  /** Starts recording `page`'s network (call before it navigates). */
  static async attach(page: Page): Promise<PageNet> {
    const net = new PageNet(await page.createCDPSession());
    const s = net.session;
    s.on("Network.responseReceived", (e) => {
      const r = net.entry(e.requestId);
      r.url = e.response.url;
      r.type = e.type;
      r.status = e.response.status;
    });
    s.on("Network.dataReceived", (e) => {
      const r = net.entry(e.requestId);
      r.bodyBytes += e.dataLength;
      if (!r.finished) r.encodedBytes += e.encodedDataLength;
    });
    s.on("Network.loadingFinished", (e) => {
      const r = net.entry(e.requestId);
      r.finished = true;
      r.encodedBytes = e.encodedDataLength;
    });
    s.on("Network.eventSourceMessageReceived", (e) => {
      const r = net.entry(e.requestId);
      if (r.messages === 0) r.firstMessageChars = e.data.length;
      r.messages++;
      r.messageChars += e.data.length;
    });
    await s.send("Network.enable");
    await s.send("Performance.enable");
    return net;
  }

  private entry(requestId: string): Loaded {
    let r = this.byId.get(requestId);
    if (r === undefined) {
      r = { requestId, url: "", type: "", status: 0, encodedBytes: 0, bodyBytes: 0, finished: false, messages: 0, messageChars: 0, firstMessageChars: 0 };
      this.byId.set(requestId, r);
    }
    return r;
  }

  /** Every response so far, in the order they started (copies). */
  responses(): Loaded[] {
    return [...this.byId.values()].filter((r) => r.url !== "").map((r) => ({ ...r }));
  }

  /** The EventSource request whose URL ends with `path` (the newest, after reconnections). */
  stream(path: string): Loaded | undefined {
    return this.responses().filter((r) => r.type === "EventSource" && new URL(r.url).pathname === path).pop();
  }

  /** A response's body as Chromium kept it. */
  async body(requestId: string): Promise<Uint8Array<ArrayBuffer>> {
    const b = await this.session.send("Network.getResponseBody", { requestId });
    return b.base64Encoded ? new Uint8Array(Buffer.from(b.body, "base64")) : new TextEncoder().encode(b.body);
  }

  async rendererSeconds(): Promise<Record<RendererMetric, number>> {
    const { metrics } = await this.session.send("Performance.getMetrics");
    const value = (name: string) => metrics.find((m) => m.name === name)?.value ?? NaN;
    return Object.fromEntries(RENDERER_METRICS.map((m) => [m, value(m)])) as Record<RendererMetric, number>;
  }
}
