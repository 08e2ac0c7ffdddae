// The agent's side of `discus server` (docs/API.md, agent routes): when its boot script named a
// daemon (discus.server, discus.token, discus.mac), the agent reports its progress every few
// seconds and its end (written, or failed with its FAILED line) with the job's token. Bounded:
// every call times out, the final report is retried a few times, and progress reports never
// queue up (one in flight at most). A daemon that cannot be reached never stops a load.
// The `inventory` action posts the node's hardware the same way, retried like the final report.
import type { Hardware } from "./inventory.ts";

export interface DaemonLink {
  server: string;
  token: string;
  mac: string;
}

export type AgentState = "loading" | "written" | "failed";

const CALL_TIMEOUT_MS = 5000;
export const PROGRESS_INTERVAL_MS = 3000;
const FINAL_ATTEMPTS = 5;
const FINAL_RETRY_MS = 1000;
const MAX_MESSAGE_CHARS = 1024;

export class DaemonReporter {
  private lastProgressMs = -Infinity;
  private inFlight = false;

  constructor(
    private readonly link: DaemonLink,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  /** One call with the job token; true when the daemon answered 2xx. */
  private async postJson(route: string, body: unknown): Promise<boolean> {
    const url = `${this.link.server}${route}?mac=${encodeURIComponent(this.link.mac)}`;
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${this.link.token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
      });
      await res.arrayBuffer();
      return res.ok;
    } catch {
      return false;
    }
  }

  private post(state: AgentState, percent: number, bytesPerSecond: number, message: string): Promise<boolean> {
    return this.postJson("/api/agent/report", { state, percent: Math.max(0, Math.min(100, percent)), bytesPerSecond: Math.max(0, bytesPerSecond), message: message.slice(0, MAX_MESSAGE_CHARS) });
  }

  private async retried(call: () => Promise<boolean>): Promise<boolean> {
    for (let attempt = 1; attempt <= FINAL_ATTEMPTS; attempt++) {
      if (await call()) return true;
      if (attempt < FINAL_ATTEMPTS) await new Promise((r) => setTimeout(r, FINAL_RETRY_MS));
    }
    return false;
  }

  /** Progress, at most every PROGRESS_INTERVAL_MS and one call at a time; fire and forget. */
  progress(percent: number, bytesPerSecond: number): void {
    const now = this.nowMs();
    if (this.inFlight || now - this.lastProgressMs < PROGRESS_INTERVAL_MS) return;
    this.lastProgressMs = now;
    this.inFlight = true;
    void this.post("loading", percent, bytesPerSecond, "").finally(() => (this.inFlight = false));
  }

  /** The end of the job, retried: true once the daemon took it. */
  finish(state: "written" | "failed", bytesPerSecond: number, message: string): Promise<boolean> {
    return this.retried(() => this.post(state, state === "written" ? 100 : 0, bytesPerSecond, message));
  }

  /** The hardware inventory (already bounded by inventory.ts), retried: true once the daemon took it. */
  inventory(hardware: Hardware): Promise<boolean> {
    return this.retried(() => this.postJson("/api/agent/inventory", hardware));
  }
}
