// GET /metrics: the daemon's counts in Prometheus's text format, through prom-client (the
// standard Node client: its own registry here, so nothing global leaks in). The fleet's figures
// are read from the daemon once per scrape; HTTP latency is observed as requests end. Every label
// has a bounded set of values: node and job states, failure reasons, route patterns (never raw
// paths), status codes, and the images being served (at most MAX_SESSIONS).
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { DaemonApi } from "../daemon/api-types.ts";

/** Seconds; boot.ipxe and reports take milliseconds, a slow status tens of them. */
const LATENCY_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export class HttpMetrics {
  private readonly registry = new Registry();
  private readonly latency: Histogram<"route" | "method" | "code">;
  private readonly g: ReturnType<typeof fleetGauges>;

  constructor(private readonly api: DaemonApi) {
    this.latency = new Histogram({ name: "discus_http_request_duration_seconds", help: "HTTP requests by route pattern, method and status", labelNames: ["route", "method", "code"], buckets: LATENCY_BUCKETS_S, registers: [this.registry] });
    this.g = fleetGauges(this.registry);
  }

  observe(route: string, method: string, status: number, seconds: number): void {
    this.latency.observe({ route, method, code: String(status) }, seconds);
  }

  /** The whole exposition, with the fleet's figures as of now. */
  async render(): Promise<string> {
    const m = await this.api.metrics();
    const g = this.g;
    for (const [state, n] of Object.entries(m.nodesByState)) g.nodes.set({ state }, n);
    for (const [state, n] of Object.entries(m.jobsByState)) g.jobs.set({ state }, n);
    g.sessions.set(m.sessions.length);
    // Sessions come and go: drop the series of those that stopped.
    for (const metric of [g.rate, g.clients, g.loss, g.sent]) metric.reset();
    for (const s of m.sessions) {
      g.rate.set({ image: s.image, group: s.group }, s.rateBitsPerSecond);
      g.clients.set({ image: s.image }, s.clients);
      g.loss.set({ image: s.image }, s.lossFraction);
      g.sent.inc({ image: s.image }, s.bytesSent);
    }
    setCount(g.failures, m.jobFailures);
    for (const [metric, value] of [[g.rejected, m.chunksRejected], [g.done, m.clientsDone], [g.failed, m.clientsFailed]] as const) {
      metric.reset();
      metric.inc(value);
    }
    return this.registry.metrics();
  }
}

/** A counter whose running total the daemon keeps: shown as that total. */
function setCount(counter: Counter<"reason">, totals: Record<string, number>): void {
  counter.reset();
  for (const [reason, n] of Object.entries(totals)) counter.inc({ reason }, n);
}

function fleetGauges(r: Registry) {
  const registers = [r];
  return {
    nodes: new Gauge({ name: "discus_nodes", help: "Nodes in the inventory by state", labelNames: ["state"], registers }),
    jobs: new Gauge({ name: "discus_jobs", help: "Each node's newest job, by state", labelNames: ["state"], registers }),
    sessions: new Gauge({ name: "discus_sessions", help: "Images being served now", registers }),
    rate: new Gauge({ name: "discus_session_rate_bits_per_second", help: "A session's current send rate", labelNames: ["image", "group"], registers }),
    clients: new Gauge({ name: "discus_session_clients", help: "Clients a session has heard recently", labelNames: ["image"], registers }),
    loss: new Gauge({ name: "discus_session_loss_ratio", help: "The latest loss a client reported to the session (0..1)", labelNames: ["image"], registers }),
    sent: new Counter({ name: "discus_session_sent_bytes_total", help: "Bytes a session has sent since it started", labelNames: ["image"], registers }),
    failures: new Counter({ name: "discus_job_failures_total", help: "Jobs failed since the daemon started, by reason", labelNames: ["reason"], registers }),
    rejected: new Counter({ name: "discus_chunks_rejected_total", help: "Chunks clients rejected (bad digest) since the daemon started", registers }),
    done: new Counter({ name: "discus_clients_done_total", help: "Session clients that reported done since the daemon started", registers }),
    failed: new Counter({ name: "discus_clients_failed_total", help: "Session clients that reported failing since the daemon started", registers }),
  };
}
