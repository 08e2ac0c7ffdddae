// The control server's benchmark (issue 11, "Measure"): a real `discus server` process in the
// lab's server namespace, N nodes imported from CSV and reloaded, N simulated agents
// (scripts/lib/bench-agents.ts) booting, reading their plan and reporting every 3 s from a client
// namespace, and a dashboard polling /api/status. Figures: p50/p99 latency per endpoint, errors,
// the daemon's CPU (% of one core) and RSS. Then pacing under that HTTP load: a real `discus load`
// pulls the image from the daemon's session (a `discus serve` child of the daemon,
// src/daemon/sessions.ts), and from a standalone `discus serve` at the same rate, each with idle
// HTTP and with the agents running; a listening host's kernel counter (scripts/lib/rx-sampler.ts)
// gives the rate per 100 ms window. The two should match: both send from a process of their own.
// Usage: bun scripts/bench-daemon.ts [--nodes 1000] [--run 60] [--concurrency 64] [--agent-procs 1]
//   [--rate 200mbit] [--image-mb 384] [--db sqlite|postgres|postgres://...] [--state DIR] [--no-pacing]
//   --state: the daemon's state directory (SQLite lives there), wiped first; default under /tmp.
import { $ } from "bun";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { destroyStaleLabs, withLab, type Host, type Lab } from "./lib/netlab.ts";
import { percentile, type AgentsResult, type Endpoint } from "./lib/bench-agents.ts";
import { benchArgs, benchNodeRows, cpuSeconds, ensureImage as ensureImageIn, fleetCli, macOf, NODES_CSV_HEADER, runAgents as runAgentsIn } from "./lib/bench-fleet.ts";
import { rateFigures, type RateFigures } from "./lib/rate-windows.ts";
import { startSampler } from "./lib/sampler.ts";
import { cli } from "../test/helpers.ts";
import { startPostgres, type Postgres } from "../test/daemon/postgres.ts";
import { groupOf, serveChildren } from "../test/daemon/serve-children.ts";

const HTTP_PORT = 8080;
/** The daemon's sessions and the standalone `discus serve` use different ports, so neither hears the other's clients. */
const DAEMON_MCAST_PORT = 4520;
const CHILD_MCAST_PORT = 4521;
const MAX_NODES = 10_000;
const WORK = "/tmp/discus-bench-daemon";
const TARGET = "/dev/shm/discus-bench-daemon-target.img";
const here = import.meta.dir;
/** The transfer under load starts this long after the agents, so the boot burst falls inside it. */
const TRANSFER_DELAY_MS = 2000;
const DAEMON_UP_TIMEOUT_MS = 30_000;
const LOADER_TIMEOUT_MS = 600_000;
const STATUS_EVERY_MS = 1000;
/** One more node, never run by the agents: the bench boots it to read the session key (discus.auth) a loader needs. */
const PACER_MAC = "02:00:5e:ff:ff:fe";
const RELOAD = ["reload", "tag:bench", "tag:pacer"];

interface Options {
  nodes: number;
  runMs: number;
  concurrency: number;
  agentProcs: number;
  rate: string;
  rateBitsPerSecond: number;
  imageMb: number;
  db: string;
  stateDir: string;
  pacing: boolean;
}

function parseOptions(argv: string[]): Options {
  const { get, int } = benchArgs(argv);
  const rate = get("rate", "200mbit");
  const m = /^(\d+)mbit$/.exec(rate);
  if (m === null) throw new Error(`--rate ${rate}: give Mbit/s as e.g. 200mbit`);
  return {
    nodes: int("nodes", 1000, 1, MAX_NODES),
    runMs: int("run", 60, 3, 3600) * 1000,
    concurrency: int("concurrency", 64, 1, 1024),
    agentProcs: int("agent-procs", 1, 1, 16),
    rate,
    rateBitsPerSecond: Number(m[1]) * 1e6,
    imageMb: int("image-mb", 384, 8, 8192),
    db: get("db", "sqlite"),
    stateDir: get("state", join(WORK, "state")),
    pacing: !argv.includes("--no-pacing"),
  };
}

// ---- processes: the daemon, the CLI, CPU and memory ----------------------------------------------

interface Daemon {
  url: string;
  pid: number;
  proc: ReturnType<Lab["spawn"]>;
  /** Log lines seen, request lines with a 5xx status, and the last few lines. */
  lines: () => number;
  count5xx: () => number;
  tail: () => string[];
}

/** A request's log line: `METHOD PATH STATUS 1.2ms` (src/http/api.ts). */
const SERVER_ERROR_LINE = / 5\d\d [\d.]+ms$/;

/** Drains a child's stderr (so it never blocks on a full pipe), counting lines, keeping the last ones. */
function drain(stream: ReadableStream<Uint8Array>, keep = 200): { lines: () => number; count5xx: () => number; tail: () => string[] } {
  const tail: string[] = [];
  let lines = 0;
  let errors = 0;
  let partial = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const parts = (partial + decoder.decode(chunk)).split("\n");
      partial = parts.pop()!;
      lines += parts.length;
      for (const line of parts) if (SERVER_ERROR_LINE.test(line)) errors++;
      tail.push(...parts);
      if (tail.length > keep) tail.splice(0, tail.length - keep);
    }
  })();
  return { lines: () => lines, count5xx: () => errors, tail: () => tail };
}

async function startDaemon(lab: Lab, state: string, imagesDir: string, o: Options, dbUrl: string | null): Promise<Daemon> {
  const s = lab.server;
  const args = ["bun", cli, "server", "--state", state, "--listen", `${s.address}:${HTTP_PORT}`, "--images", imagesDir, "--iface", s.address, "--port", String(DAEMON_MCAST_PORT), "--rate", o.rate, ...(dbUrl ? ["--db", dbUrl] : [])];
  const proc = lab.spawn(s, args);
  const log = drain(proc.stderr);
  const url = `http://${s.address}:${HTTP_PORT}`;
  const deadline = performance.now() + DAEMON_UP_TIMEOUT_MS;
  while (performance.now() < deadline) {
    const r = await lab.exec(lab.clients[0]!, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", `${url}/api/status`]);
    if (r.stdout === "401") return { url, pid: proc.pid, proc, ...log };
    await Bun.sleep(200);
  }
  proc.kill("SIGKILL");
  throw new Error(`the daemon did not answer within ${DAEMON_UP_TIMEOUT_MS} ms:\n${log.tail().join("\n")}`);
}

/** The fleet CLI in a client namespace, against the daemon (token from the state dir). */
function fleet(lab: Lab, state: string, args: string[]): Promise<{ ms: number; stdout: string }> {
  return fleetCli(lab, lab.clients[0]!, state, args);
}

function memoryMiB(pid: number): { hwm: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { hwm: kb("VmHWM") / 1024, rss: kb("VmRSS") / 1024 };
}

/** CPU of `pid` over whatever `work` does, as % of one core. */
async function withCpu<T>(pid: number, work: () => Promise<T>): Promise<{ value: T; cpuPercent: number; seconds: number }> {
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  const value = await work();
  const seconds = (performance.now() - t0) / 1000;
  return { value, cpuPercent: (100 * (cpuSeconds(pid) - c0)) / seconds, seconds };
}

// ---- the agents, the sampler, the loader, the child server ---------------------------------------

function runAgents(lab: Lab, daemon: Daemon, token: string, o: Options): Promise<AgentsResult> {
  const macs = Array.from({ length: o.nodes }, (_, i) => macOf(i + 1));
  return runAgentsIn(lab, lab.clients[0]!, { url: daemon.url, adminToken: token, macs, runMs: o.runMs, concurrency: o.concurrency, agentProcs: o.agentProcs, statusEveryMs: STATUS_EVERY_MS, expectNodes: o.nodes + 1 });
}

/** The rate at the listening host, and how often the loader had to ask again (its losses). */
interface Transfer {
  rate: RateFigures;
  rerequests: number;
  /** The machine's 1-minute load average as the transfer began: other work skews the figures. */
  loadAverage: number;
}

/** One `discus load` of the whole image, measured at the listening host. */
async function transfer(lab: Lab, group: string, port: number, imageId: string, ceiling: number, keyArgs: string[]): Promise<Transfer> {
  const [, loader, listener] = lab.clients as [Host, Host, Host];
  const loadAverage = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
  const stopSampler = startSampler(lab, listener);
  await Bun.sleep(300);
  const proc = lab.spawn(loader, ["bun", cli, "load", TARGET, "--group", group, "--port", String(port), "--iface", loader.address, "--image-id", imageId, "--give-up", "60s", "--json", ...keyArgs]);
  const timer = setTimeout(() => proc.kill("SIGKILL"), LOADER_TIMEOUT_MS);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  const samples = await stopSampler();
  rmSync(TARGET, { force: true });
  if (code !== 0) throw new Error(`discus load exited ${code}: ${stderr.trim()}`);
  const figures = rateFigures(samples, ceiling);
  if (figures === null) throw new Error("the transfer was too short to measure a steady rate: give a larger --image-mb");
  return { rate: figures, rerequests: (JSON.parse(stdout) as { rerequests: number }).rerequests, loadAverage };
}

function startChildServe(lab: Lab, imagesDir: string, o: Options, keyArgs: string[]): ReturnType<Lab["spawn"]> {
  const s = lab.server;
  return lab.spawn(s, ["bun", cli, "serve", join(imagesDir, "bench.dsc"), "--group", lab.group(0), "--port", String(CHILD_MCAST_PORT), "--iface", s.address, "--rate", o.rate, "--quiet", ...keyArgs]);
}

/**
 * Boots the pacer node as an agent would and keeps its session key (discus.auth), if the daemon
 * gives one, in a 0600 file: `--auth-key-file` args for the loader and for the child serve (so
 * both senders check the same HMACs), or none for open sessions.
 */
async function sessionKeyArgs(lab: Lab, daemon: Daemon): Promise<string[]> {
  const r = await lab.exec(lab.clients[1]!, ["curl", "-sf", `${daemon.url}/boot.ipxe?mac=${PACER_MAC}`]);
  if (r.exitCode !== 0 || !r.stdout.includes("discus.token=")) throw new Error(`the pacer node got no agent script: ${r.stdout.slice(0, 200)}`);
  const key = /discus\.auth=([0-9a-f]+)/.exec(r.stdout)?.[1];
  if (key === undefined) return [];
  const file = join(WORK, "session.key");
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return ["--auth-key-file", file];
}

// ---- the runs ------------------------------------------------------------------------------------

interface HttpRun {
  label: string;
  agents: AgentsResult;
  daemonCpuPercent: number;
  seconds: number;
}

interface PacingRun {
  label: string;
  http: "idle" | "agents";
  rate: RateFigures;
  rerequests: number;
  loadAverage: number;
  /** CPU of the process that sends, over the run. */
  senderCpuPercent: number;
  /** RSS of the process that sends, at the end of the run (MiB). */
  senderRssMiB: number;
}

interface Bench {
  importMs: number;
  reloadMs: number;
  http: HttpRun[];
  pacing: PacingRun[];
  memory: { hwm: number; rss: number };
  /** The daemon's session child after its runs (0 without --pacing). */
  sessionChild: { hwm: number; rss: number };
  daemon5xx: number;
  daemonLogLines: number;
}

/** The agents, and `discus load` starting TRANSFER_DELAY_MS after them (the boot burst falls inside). */
async function agentsWithTransfer(lab: Lab, daemon: Daemon, token: string, o: Options, send: () => Promise<Transfer>): Promise<{ agents: AgentsResult; sent: Transfer }> {
  const agents = runAgents(lab, daemon, token, o);
  await Bun.sleep(TRANSFER_DELAY_MS);
  const sent = await send();
  return { agents: await agents, sent };
}

/** The daemon's `discus serve` child for the image's group (src/daemon/sessions.ts). */
function sessionChildPid(daemon: Daemon, group: string): number {
  const child = serveChildren(daemon.pid).find((c) => groupOf(c) === group);
  if (child === undefined) throw new Error(`the daemon (pid ${daemon.pid}) has no session child on ${group}`);
  return child.pid;
}

/** CPU of the sender and of the daemon over `work`, as % of one core. */
async function withCpus<T>(senderPid: number, daemonPid: number, work: () => Promise<T>): Promise<{ value: T; senderCpuPercent: number; daemonCpuPercent: number; seconds: number }> {
  const d0 = cpuSeconds(daemonPid);
  const r = await withCpu(senderPid, work);
  return { value: r.value, senderCpuPercent: r.cpuPercent, daemonCpuPercent: (100 * (cpuSeconds(daemonPid) - d0)) / r.seconds, seconds: r.seconds };
}

async function pacingRuns(lab: Lab, daemon: Daemon, token: string, o: Options, b: Bench, state: string, imagesDir: string, image: { group: string; imageId: string }): Promise<void> {
  const ceiling = o.rateBitsPerSecond;
  // A fresh reload: the nodes' jobs keep the daemon's session up, and the agents have work again.
  await fleet(lab, state, RELOAD);
  const keyArgs = await sessionKeyArgs(lab, daemon);
  const sessionPid = sessionChildPid(daemon, image.group);
  const fromDaemon = () => transfer(lab, image.group, DAEMON_MCAST_PORT, image.imageId, ceiling, keyArgs);
  const a = await withCpus(sessionPid, daemon.pid, fromDaemon);
  b.pacing.push({ label: "daemon's session (child)", http: "idle", ...a.value, senderCpuPercent: a.senderCpuPercent, senderRssMiB: memoryMiB(sessionPid).rss });
  const bRun = await withCpus(sessionPid, daemon.pid, () => agentsWithTransfer(lab, daemon, token, o, fromDaemon));
  b.pacing.push({ label: "daemon's session (child)", http: "agents", ...bRun.value.sent, senderCpuPercent: bRun.senderCpuPercent, senderRssMiB: memoryMiB(sessionPid).rss });
  b.http.push({ label: "agents + daemon's session", agents: bRun.value.agents, daemonCpuPercent: bRun.daemonCpuPercent, seconds: bRun.seconds });
  b.sessionChild = memoryMiB(sessionPid);

  await fleet(lab, state, RELOAD);
  const child = startChildServe(lab, imagesDir, o, keyArgs);
  drain(child.stderr);
  try {
    await Bun.sleep(1000);
    const childSend = () => transfer(lab, lab.group(0), CHILD_MCAST_PORT, image.imageId, ceiling, keyArgs);
    const c = await withCpus(child.pid, daemon.pid, childSend);
    b.pacing.push({ label: "standalone (discus serve)", http: "idle", ...c.value, senderCpuPercent: c.senderCpuPercent, senderRssMiB: memoryMiB(child.pid).rss });
    const d = await withCpus(child.pid, daemon.pid, () => agentsWithTransfer(lab, daemon, token, o, childSend));
    b.pacing.push({ label: "standalone (discus serve)", http: "agents", ...d.value.sent, senderCpuPercent: d.senderCpuPercent, senderRssMiB: memoryMiB(child.pid).rss });
    b.http.push({ label: "agents + standalone serve", agents: d.value.agents, daemonCpuPercent: d.daemonCpuPercent, seconds: d.seconds });
  } finally {
    child.kill("SIGTERM");
    await child.exited;
  }
}

async function bench(lab: Lab, o: Options, imagesDir: string, dbUrl: string | null): Promise<Bench> {
  const state = o.stateDir;
  rmSync(state, { recursive: true, force: true });
  const daemon = await startDaemon(lab, state, imagesDir, o, dbUrl);
  try {
    const token = readFileSync(join(state, "admin.token"), "utf8").trim();
    const csv = join(WORK, "nodes.csv");
    const rows = benchNodeRows(o.nodes);
    rows.push(`bench-pacer,${PACER_MAC},serial:BENCH0001,bench,pacer,none`);
    writeFileSync(csv, `${NODES_CSV_HEADER}\n${rows.join("\n")}\n`);
    const imported = await fleet(lab, state, ["node", "import", csv]);
    const image = (JSON.parse((await fleet(lab, state, ["image", "list", "--json"])).stdout) as { name: string; group: string; imageId: string }[]).find((i) => i.name === "bench");
    if (image === undefined) throw new Error(`the daemon's catalog has no image "bench" from ${imagesDir}`);
    const reloaded = await fleet(lab, state, RELOAD);
    const b: Bench = { importMs: imported.ms, reloadMs: reloaded.ms, http: [], pacing: [], memory: { hwm: 0, rss: 0 }, sessionChild: { hwm: 0, rss: 0 }, daemon5xx: 0, daemonLogLines: 0 };
    console.error(`imported ${o.nodes} nodes in ${(imported.ms / 1000).toFixed(1)} s, reloaded them in ${(reloaded.ms / 1000).toFixed(1)} s; agents run for ${o.runMs / 1000} s`);
    const h = await withCpu(daemon.pid, () => runAgents(lab, daemon, token, o));
    b.http.push({ label: "agents only", agents: h.value, daemonCpuPercent: h.cpuPercent, seconds: h.seconds });
    if (o.pacing) await pacingRuns(lab, daemon, token, o, b, state, imagesDir, image);
    b.memory = memoryMiB(daemon.pid);
    b.daemon5xx = daemon.count5xx();
    b.daemonLogLines = daemon.lines();
    return b;
  } finally {
    daemon.proc.kill("SIGTERM");
    await daemon.proc.exited;
  }
}

// ---- the summary -----------------------------------------------------------------------------------

const ROWS: [string, Endpoint[]][] = [
  ["GET /boot.ipxe (all)", ["boot-agent", "boot-exit"]],
  ["  agent script (1st boot)", ["boot-agent"]],
  ["  exit (boot after written)", ["boot-exit"]],
  ["GET /api/agent/plan", ["plan"]],
  ["POST /api/agent/report (all)", ["report", "written"]],
  ["  loading, every 3 s", ["report"]],
  ["  written", ["written"]],
  ["GET /api/status (admin, 1/s)", ["status"]],
];

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "-");
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "-");

function latencyTable(run: HttpRun): string[] {
  const out = ["| endpoint | calls | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"];
  for (const [name, endpoints] of ROWS) {
    const v = endpoints.flatMap((e) => run.agents.latenciesMs[e]).sort((a, b) => a - b);
    out.push(`| ${name} | ${v.length} | ${f1(percentile(v, 50))} | ${f1(percentile(v, 99))} | ${f1(v[v.length - 1] ?? NaN)} |`);
  }
  return out;
}

function runsTable(runs: HttpRun[]): string[] {
  const out = ["| run | boot.ipxe p50 / p99 ms | report p50 / p99 ms | status p50 / p99 ms | errors | daemon CPU, % of a core |", "|---|---:|---:|---:|---:|---:|"];
  const pp = (r: HttpRun, e: Endpoint[]) => {
    const v = e.flatMap((x) => r.agents.latenciesMs[x]).sort((a, b) => a - b);
    return `${f1(percentile(v, 50))} / ${f1(percentile(v, 99))}`;
  };
  for (const r of runs) out.push(`| ${r.label} | ${pp(r, ["boot-agent", "boot-exit"])} | ${pp(r, ["report", "written"])} | ${pp(r, ["status"])} | ${r.agents.errorCount} | ${f1(r.daemonCpuPercent)} |`);
  return out;
}

function pacingTable(runs: PacingRun[]): string[] {
  const out = ["| sender | HTTP | mean Mbit/s | p5 / p50 / max per 100 ms | CV of 100 ms windows | stalls (< half) | steady s | loader re-requests | sender CPU % | sender RSS MiB | load avg at start |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"];
  for (const r of runs) {
    const x = r.rate;
    out.push(`| ${r.label} | ${r.http} | ${f1(x.meanMbit)} | ${f1(x.p5Mbit)} / ${f1(x.p50Mbit)} / ${f1(x.maxMbit)} | ${f2(x.cv)} | ${x.stalls} | ${f1(x.seconds)} | ${r.rerequests} | ${f1(r.senderCpuPercent)} | ${f1(r.senderRssMiB)} | ${f2(r.loadAverage)} |`);
  }
  const find = (label: string, http: string) => runs.find((r) => r.label.startsWith(label) && r.http === http)?.rate;
  const [ai, al, ci, cl] = [find("daemon", "idle"), find("daemon", "agents"), find("standalone", "idle"), find("standalone", "agents")];
  if (ai && al && ci && cl) {
    out.push("");
    out.push(`rate, loaded / idle: daemon's child ${f2(al.meanMbit / ai.meanMbit)}, standalone ${f2(cl.meanMbit / ci.meanMbit)}; daemon's / standalone, loaded: ${f2(al.meanMbit / cl.meanMbit)}`);
    out.push(`CV, loaded / idle: daemon's child ${f2(al.cv / ai.cv)}, standalone ${f2(cl.cv / ci.cv)}; daemon's / standalone, loaded: ${f2(al.cv / cl.cv)}`);
    // The lead's threshold (issue 11): more than ~5 % lost to HTTP work, or markedly more jitter than a standalone server.
    const when = (x: RateFigures) => (x.stallAtS.length === 0 ? "none" : x.stallAtS.slice(0, 40).join(" "));
    out.push(`stalls, s since the listener started (0.3 s before the loader, ${TRANSFER_DELAY_MS / 1000} s after the agents): daemon's child ${when(al)}; standalone ${when(cl)}`);
    const drop = 1 - al.meanMbit / ai.meanMbit;
    if (drop > 0.05 || al.cv > 2 * cl.cv) {
      out.push(`NOTE: the daemon's session looks hurt by the HTTP load: its rate loaded / idle is ${f2(al.meanMbit / ai.meanMbit)}, its CV loaded ${f2(al.cv)} against ${f2(cl.cv)} for the standalone server.`);
    }
  }
  return out;
}

async function machine(): Promise<string> {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown CPU";
  const cores = (await $`nproc`.text()).trim();
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  return `${cpu}, ${cores} cores; load average at the end ${load}; bun ${Bun.version}`;
}

function summary(b: Bench, o: Options, dbKind: string, where: string): string[] {
  const lines = [
    `## discus server under ${o.nodes} agents (${new Date().toISOString().slice(0, 10)})`,
    "",
    `${where}. Database ${dbKind} (state in ${o.stateDir}); ${o.nodes} nodes; each agent reports every 3 s for ${o.runMs / 1000} s; at most ${o.concurrency} requests in flight (${o.agentProcs} agent process${o.agentProcs > 1 ? "es" : ""}); session rate ${o.rate}, image ${o.imageMb} MiB.`,
    `import of ${o.nodes} nodes (CSV) ${f1(b.importMs / 1000)} s; reload of ${o.nodes} nodes ${f1(b.reloadMs / 1000)} s (CLI wall time).`,
    "",
    ...latencyTable(b.http[0]!),
    "",
    `errors: ${b.http.reduce((s, r) => s + r.agents.errorCount, 0)} (5xx in the daemon's log: ${b.daemon5xx}); daemon CPU ${f1(b.http[0]!.daemonCpuPercent)} % of one core over ${f1(b.http[0]!.seconds)} s; RSS ${f1(b.memory.rss)} MiB at the end, peak (VmHWM) ${f1(b.memory.hwm)} MiB; its session child ${f1(b.sessionChild.rss)} MiB, peak ${f1(b.sessionChild.hwm)} MiB.`,
  ];
  for (const e of b.http.flatMap((r) => r.agents.errors).slice(0, 10)) lines.push(`  error: ${e}`);
  if (b.pacing.length > 0) lines.push("", ...runsTable(b.http), "", ...pacingTable(b.pacing));
  return lines;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  await destroyStaleLabs();
  mkdirSync(WORK, { recursive: true });
  const imagesDir = await ensureImageIn(WORK, o.imageMb);
  let pg: Postgres | null = null;
  try {
    if (o.db === "postgres") pg = await startPostgres();
    const dbUrl = o.db === "sqlite" ? null : pg !== null ? await pg.newDatabase() : o.db;
    const dbKind = o.db === "sqlite" ? "SQLite (WAL)" : "PostgreSQL";
    const b = await withLab({ clients: 3 }, (lab) => bench(lab, o, imagesDir, dbUrl));
    const text = summary(b, o, dbKind, await machine()).join("\n");
    console.log(text);
    mkdirSync(join(here, "..", ".cache", "bench"), { recursive: true });
    writeFileSync(join(here, "..", ".cache", "bench", "daemon.md"), `${text}\n`);
    const errors = b.http.reduce((s, r) => s + r.agents.errorCount, 0) + b.daemon5xx;
    if (errors > 0) process.exitCode = 1;
  } finally {
    await pg?.stop();
  }
}

await main();
