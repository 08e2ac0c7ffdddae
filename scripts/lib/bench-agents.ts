// Simulated netboot agents for scripts/bench-daemon.ts, run inside a lab namespace: each agent
// does what a PXE-booted node and src/agent/daemon-client.ts do against `discus server`:
// GET /boot.ipxe (token from the script), GET its plan, POST a progress report every 3 s for the
// run, POST `written`, then boot again (GET /boot.ipxe must answer `exit`). Requests in flight
// are bounded by a semaphore (fetch keeps connections alive); an admin poller reads /api/status
// as a dashboard would. Prints one JSON line: every latency (ms) per endpoint and every error.
// Usage: bun bench-agents.ts CONFIG-JSON (see AgentsConfig).
import { PROGRESS_INTERVAL_MS } from "../../src/agent/daemon-client.ts";

export interface AgentsConfig {
  url: string;
  macs: string[];
  /** How long each agent reports progress before it reports `written`. */
  runMs: number;
  /** Requests in flight at most, across all agents of this process. */
  concurrency: number;
  adminToken: string;
  /** 0: no status poller in this process. */
  statusEveryMs: number;
  /** Nodes /api/status must list. */
  expectNodes: number;
}

export type Endpoint = "boot-agent" | "plan" | "report" | "written" | "boot-exit" | "status";
export const ENDPOINTS: readonly Endpoint[] = ["boot-agent", "plan", "report", "written", "boot-exit", "status"];

export interface AgentsResult {
  latenciesMs: Record<Endpoint, number[]>;
  /** Every failed call or wrong answer is counted; the first few are kept verbatim. */
  errorCount: number;
  errors: string[];
  wallMs: number;
}

/** One call may take this long before it counts as an error. */
const CALL_TIMEOUT_MS = 20_000;
/** Errors kept verbatim (all are counted). */
const MAX_ERRORS_KEPT = 20;

class Semaphore {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  async take(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  give(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/** The p-th percentile (0..100) of sorted values, nearest rank; NaN when empty. Pure. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

class Agents {
  readonly latenciesMs = Object.fromEntries(ENDPOINTS.map((e) => [e, [] as number[]])) as Record<Endpoint, number[]>;
  readonly errors: string[] = [];
  errorCount = 0;
  private readonly gate: Semaphore;

  constructor(private readonly c: AgentsConfig) {
    this.gate = new Semaphore(c.concurrency);
  }

  private fail(what: string): void {
    this.errorCount++;
    if (this.errors.length < MAX_ERRORS_KEPT) this.errors.push(what);
  }

  /** One timed call (the wait for the semaphore is not counted); null on any failure. */
  async call(endpoint: Endpoint, path: string, token: string, body?: unknown, gated = true): Promise<string | null> {
    if (gated) await this.gate.take();
    const started = performance.now();
    try {
      const res = await fetch(`${this.c.url}${path}`, {
        method: body === undefined ? "GET" : "POST",
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
      });
      const text = await res.text();
      this.latenciesMs[endpoint].push(performance.now() - started);
      if (!res.ok) {
        this.fail(`${endpoint} ${path.split("?")[0]}: HTTP ${res.status} ${text.slice(0, 200)}`);
        return null;
      }
      return text;
    } catch (e) {
      this.fail(`${endpoint} ${path.split("?")[0]}: ${e instanceof Error ? e.message : String(e)}`);
      return null;
    } finally {
      if (gated) this.gate.give();
    }
  }

  /** One node's whole reload, as its agent sees it. */
  async agent(mac: string): Promise<void> {
    const q = `?mac=${encodeURIComponent(mac)}`;
    const script = await this.call("boot-agent", `/boot.ipxe${q}`, "");
    if (script === null) return;
    const token = /discus\.token=([A-Za-z0-9_-]+)/.exec(script)?.[1];
    if (token === undefined) return this.fail(`boot-agent ${mac}: no agent script: ${script.slice(0, 120)}`);
    if ((await this.call("plan", `/api/agent/plan${q}`, token)) === null) return;
    // A random phase, as real agents boot at different moments: reports do not come in lockstep
    // even though all the agents here boot within a few seconds.
    const startedMs = performance.now() + Math.random() * PROGRESS_INTERVAL_MS;
    await Bun.sleep(Math.max(0, startedMs - performance.now()));
    for (let n = 1; performance.now() - startedMs < this.c.runMs; n++) {
      const percent = Math.max(0, Math.min(99, (100 * (performance.now() - startedMs)) / this.c.runMs)); // a timer may wake early
      await this.call("report", `/api/agent/report${q}`, token, { state: "loading", percent, bytesPerSecond: 1.1e8, message: "" });
      await Bun.sleep(Math.max(0, startedMs + n * PROGRESS_INTERVAL_MS - performance.now()));
    }
    if ((await this.call("written", `/api/agent/report${q}`, token, { state: "written", percent: 100, bytesPerSecond: 1.1e8, message: "" })) === null) return;
    const next = await this.call("boot-exit", `/boot.ipxe${q}`, "");
    if (next !== null && !/^exit$/m.test(next)) this.fail(`boot-exit ${mac}: the second boot was not told to exit: ${next.slice(0, 120)}`);
  }

  /** Polls /api/status until `done` resolves; checks that it lists every node. */
  async poll(done: Promise<void>): Promise<void> {
    let over = false;
    void done.then(() => (over = true));
    while (!over) {
      const text = await this.call("status", "/api/status", this.c.adminToken, undefined, false);
      if (text !== null) {
        const nodes = (JSON.parse(text) as { nodes: unknown[] }).nodes.length;
        if (nodes !== this.c.expectNodes) this.fail(`status: ${nodes} nodes listed, ${this.c.expectNodes} expected`);
      }
      await Bun.sleep(this.c.statusEveryMs);
    }
  }
}

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2] ?? "") as AgentsConfig;
  const agents = new Agents(c);
  const started = performance.now();
  const all = Promise.all(c.macs.map((m) => agents.agent(m))).then(() => undefined);
  await Promise.all([all, c.statusEveryMs > 0 ? agents.poll(all) : all]);
  const result: AgentsResult = { latenciesMs: agents.latenciesMs, errorCount: agents.errorCount, errors: agents.errors, wallMs: performance.now() - started };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (import.meta.main) await main();
