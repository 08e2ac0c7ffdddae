// GET /metrics, read by a real Prometheus: Debian's `prometheus` runs in a lab namespace and
// scrapes the real daemon (bearer token from a file), so the exposition is parsed by Prometheus's
// own parser (a malformed one would make `up` 0). The values it stored must match the API's:
// nodes and newest jobs by state, the session and its rate, failures by reason, HTTP latency
// counts. Without the token /metrics is 401.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLab, destroyStaleLabs, type Lab } from "../../scripts/lib/netlab.ts";
import { drain, type Drained } from "../../scripts/lib/drain.ts";
import { LAB_DAEMON_HTTP_PORT, startLabDaemon, type LabDaemon } from "../../scripts/lib/lab-daemon.ts";
import { discusOk, FIXTURE_TIMEOUT_MS, tmpDir } from "../helpers.ts";

const PROM_PORT = 9090;
const POLLS = 150;
const POLL_MS = 200;
let dir = "";
let lab: Lab;
let daemon: LabDaemon | undefined;
let prometheus: Drained | undefined;
let sock = "";
let admin = "";

async function call(method: string, path: string, body?: unknown, token: string | null = admin): Promise<{ status: number; body: any; text: string }> {
  const res = await fetch(`http://localhost${path}`, { method, unix: sock, headers: token === null ? {} : { authorization: `Bearer ${token}` }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed, text };
}

/** One PromQL instant query, asked from the client namespace where Prometheus listens: value by label set. */
async function query(promql: string): Promise<Map<string, number>> {
  const url = `http://${lab.clients[0]!.address}:${PROM_PORT}/api/v1/query?query=${encodeURIComponent(promql)}`;
  const r = await lab.exec(lab.clients[0]!, ["bun", "-e", `const r = await fetch(${JSON.stringify(url)}); process.stdout.write(await r.text())`]);
  const out = new Map<string, number>();
  const data = JSON.parse(r.stdout) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
  for (const row of data.data.result) {
    const { __name__: _, instance: _i, job: _j, ...labels } = row.metric;
    out.set(labelKey(labels), Number(row.value[1]));
  }
  return out;
}

/** A label set as a map key, whatever the order its labels came in. */
function labelKey(labels: Record<string, string>): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
}
const one = (m: Map<string, number>, labels: Record<string, string> = {}) => m.get(labelKey(labels));

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  const images = join(dir, "images");
  mkdirSync(images);
  writeFileSync(join(dir, "source.img"), Buffer.alloc(2 << 20, 9));
  await discusOk(["create", "--raw", "--quiet", join(dir, "source.img"), join(images, "deb12.dsc")]);
  const state = join(dir, "state");
  sock = join(state, "api.sock");
  lab = await createLab({ clients: 1 });
  const s = lab.server;
  daemon = await startLabDaemon(lab, { state, images });
  admin = daemon.adminToken();
  // Prometheus in the client's namespace, scraping the daemon every second with the admin token.
  const prom = join(dir, "prom");
  mkdirSync(join(prom, "data"), { recursive: true });
  writeFileSync(join(prom, "token"), admin, { mode: 0o600 });
  writeFileSync(join(prom, "prometheus.yml"), [
    "global: { scrape_interval: 1s, scrape_timeout: 1s }",
    "scrape_configs:",
    "  - job_name: discus",
    `    authorization: { type: Bearer, credentials_file: ${join(prom, "token")} }`,
    `    static_configs: [{ targets: ["${s.address}:${LAB_DAEMON_HTTP_PORT}"] }]`,
    "",
  ].join("\n"));
  const c = lab.clients[0]!;
  prometheus = drain([lab.spawn(c, ["prometheus", `--config.file=${join(prom, "prometheus.yml")}`, `--storage.tsdb.path=${join(prom, "data")}`, `--web.listen-address=${c.address}:${PROM_PORT}`])]);
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  await Promise.all([prometheus?.stop(), daemon?.stop()]);
  await lab?.destroy();
  if (dir) await $`rm -rf ${dir}`.quiet().nothrow();
});

describe("GET /metrics", () => {
  test("needs the admin token", async () => {
    expect((await call("GET", "/metrics", undefined, null)).status).toBe(401);
    const r = await call("GET", "/metrics");
    expect(r.status).toBe(200);
    expect(r.text).toContain("# TYPE discus_nodes gauge");
    expect(r.text).not.toContain(admin);
  });

  test("Prometheus scrapes it, and what it stored matches the API", async () => {
    const failing = join(dir, "power-fails.sh");
    writeFileSync(failing, "#!/bin/sh\necho 'PDU unreachable' >&2\nexit 1\n", { mode: 0o755 });
    const base = { tags: [], diskRule: "only", image: "deb12" };
    expect((await call("POST", "/api/nodes", { ...base, name: "a", mac: "52:54:00:00:00:0a", power: { driver: "none" } })).status).toBe(201);
    expect((await call("POST", "/api/nodes", { ...base, name: "b", mac: "52:54:00:00:00:0b", power: { driver: "command", command: failing } })).status).toBe(201);
    expect((await call("POST", "/api/nodes", { ...base, name: "c", mac: "52:54:00:00:00:0c", power: { driver: "none" } })).status).toBe(201);
    expect((await call("POST", "/api/reload", { selectors: ["a", "b"], image: null })).status).toBe(200);
    expect((await call("GET", "/boot.ipxe?mac=52:54:00:00:00:0a", undefined, null)).text).toContain("discus.action=load");
    expect((await call("GET", "/boot.ipxe?mac=52:54:00:00:00:ee", undefined, null)).text).toContain("discus.action=inventory");
    // b's power command fails: its job ends failed, reason power.
    for (let i = 0; i < POLLS && (await call("GET", "/api/nodes/b")).body.job.state !== "failed"; i++) await Bun.sleep(POLL_MS);
    const status = (await call("GET", "/api/status")).body as { nodes: { node: { state: string }; job: { state: string } | null }[]; sessions: { image: string; rateBitsPerSecond: number }[] };
    const byState = (pick: (n: (typeof status.nodes)[number]) => string | undefined) => {
      const m = new Map<string, number>();
      for (const n of status.nodes) {
        const k = pick(n);
        if (k !== undefined) m.set(k, (m.get(k) ?? 0) + 1);
      }
      return m;
    };
    // Wait for a scrape after all that.
    let up = new Map<string, number>();
    let failures = new Map<string, number>();
    for (let i = 0; i < POLLS; i++) {
      up = await query('up{job="discus"}').catch(() => new Map());
      failures = await query("discus_job_failures_total").catch(() => new Map());
      if (one(up) === 1 && one(failures, { reason: "power" }) === 1) break;
      await Bun.sleep(POLL_MS);
    }
    expect(one(up), `prometheus: ${prometheus?.text().slice(-2000)}`).toBe(1);
    expect(one(failures, { reason: "power" })).toBe(1);
    expect(one(failures, { reason: "disk-rule" })).toBe(0);
    const nodes = await query("discus_nodes");
    for (const [state, n] of byState((x) => x.node.state)) expect(one(nodes, { state })).toBe(n);
    expect(one(nodes, { state: "new" })).toBe(1);
    const jobs = await query("discus_jobs");
    for (const [state, n] of byState((x) => x.job?.state)) expect(one(jobs, { state })).toBe(n);
    expect(one(jobs, { state: "failed" })).toBe(1);
    expect(one(await query("discus_sessions"))).toBe(status.sessions.length);
    expect(status.sessions.length).toBe(1);
    const rate = await query("discus_session_rate_bits_per_second");
    expect(one(rate, { image: "deb12", group: (status.sessions[0] as unknown as { group: string }).group })).toBe(status.sessions[0]!.rateBitsPerSecond);
    const boots = await query('discus_http_request_duration_seconds_count{route="/boot.ipxe"}');
    expect(one(boots, { route: "/boot.ipxe", method: "GET", code: "200" })).toBeGreaterThanOrEqual(2);
    // Route patterns, never raw paths: the node routes show as one pattern.
    const routes = await query("count by (route) (discus_http_request_duration_seconds_count)");
    for (const key of routes.keys()) expect(key).not.toContain("52:54");
  }, 90_000);
});
