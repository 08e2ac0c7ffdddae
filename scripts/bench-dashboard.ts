// The web dashboard's benchmark (issue 12, "Measure"): a real `discus server` in a lab's server
// namespace (scripts/lib/lab-daemon.ts), N nodes imported and reloaded, N simulated agents
// (scripts/lib/bench-agents.ts, via scripts/lib/bench-fleet.ts) booting and reporting progress
// every 3 s from a client namespace, and Debian's Chromium (scripts/lib/browser.ts) in an extra
// namespace, logged in with the admin token. Figures:
//   1. page weight: every response of a first visit as Chromium counts it (CDP Network events),
//      and the gzip size of the html/js/css for reference (the server gzips the css and js);
//   2. time to first render: navigation start to first contentful paint, and login submit to the
//      fleet table holding all N rows; median of --renders runs, a fresh browser context each;
//   3. CPU while the agents report: the daemon's (utime+stime from /proc over the window) with no
//      page, one page and --pages pages open, the browser's (its whole process tree from /proc,
//      and the renderer's own TaskDuration/ScriptDuration from CDP), and the live stream's bytes
//      per second as each page receives them; and, with no agents (nothing changes), the daemon's
//      CPU with and without one page: the live hub's own cost of reading the fleet every second.
// Usage: bun scripts/bench-dashboard.ts [--nodes 1000] [--run 60] [--renders 3] [--pages 5]
//   [--idle 30] [--concurrency 64] [--image-mb 8] [--state DIR]
//   (--pages 0: no many-pages window; --idle 0: no idle windows)
import { $ } from "bun";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BrowserContext, Page } from "puppeteer-core";
import { destroyStaleLabs, withLab, type Lab } from "./lib/netlab.ts";
import { startLabDaemon, type LabDaemon } from "./lib/lab-daemon.ts";
import { launchBrowser, type LabBrowser } from "./lib/browser.ts";
import { benchArgs, benchNodeRows, cpuSeconds, ensureImage, fleetCli, macOf, NODES_CSV_HEADER, runAgents, treeCpuSeconds } from "./lib/bench-fleet.ts";
import { PageNet, type RendererMetric } from "./lib/page-net.ts";
import type { AgentsResult } from "./lib/bench-agents.ts";

const WORK = "/tmp/discus-bench-dashboard";
const MAX_NODES = 10_000;
const STREAM_PATH = "/api/stream";
const ROWS_SELECTOR = "#fleet-table tbody tr";
const SUBMIT_SELECTOR = "#login button[type=submit]";
/** A first visit on a busy 2-core machine: seconds; a table of 10,000 rows: tens of seconds. */
const PAGE_TIMEOUT_MS = 120_000;
/** After a login, the page's first render and the hub's first ticks stay out of the window. */
const SETTLE_MS = 3000;
/** After the agents, the stream's last update (one tick) must reach every page. */
const FINAL_STATE_TIMEOUT_MS = 15_000;
const RELOAD = ["reload", "tag:bench"];
/** The states a node may end a window in: its agent reported `written` and booted again. */
const DONE_STATES = ["written", "booted"];

interface Options {
  nodes: number;
  runMs: number;
  renders: number;
  pages: number;
  idleMs: number;
  concurrency: number;
  imageMb: number;
  stateDir: string;
}

function parseOptions(argv: string[]): Options {
  const { get, int } = benchArgs(argv);
  return {
    nodes: int("nodes", 1000, 1, MAX_NODES),
    runMs: int("run", 60, 3, 3600) * 1000,
    renders: int("renders", 3, 1, 20),
    pages: int("pages", 5, 0, 32),
    idleMs: int("idle", 30, 0, 3600) * 1000,
    concurrency: int("concurrency", 64, 1, 1024),
    imageMb: int("image-mb", 8, 8, 8192),
    stateDir: get("state", join(WORK, "state")),
  };
}

const loadAverage = (): number => Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);

/** The middle value (the mean of the two middle ones for an even count). Pure. */
function median(values: readonly number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

// ---- one page: open, log in ------------------------------------------------------------------------

interface Dashboard {
  context: BrowserContext;
  page: Page;
  net: PageNet;
  /** Console errors and uncaught exceptions of the page. */
  errors: string[];
}

/** A fresh browser context (no cache, no cookie), its page recorded, on the login form. */
async function openDashboard(lb: LabBrowser, url: string): Promise<Dashboard> {
  const context = await lb.browser.createBrowserContext();
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (m) => void (m.type() === "error" && errors.push(m.text())));
  page.on("pageerror", (e) => void errors.push(String(e)));
  const net = await PageNet.attach(page);
  await page.goto(url, { waitUntil: "load", timeout: PAGE_TIMEOUT_MS });
  await page.waitForSelector("#token", { timeout: PAGE_TIMEOUT_MS });
  return { context, page, net, errors };
}

/** Logs in; ms from the form's submit event to the table holding `nodes` rows (both page clocks). */
async function logIn(d: Dashboard, token: string, nodes: number): Promise<number> {
  await d.page.type("#token", token);
  await d.page.evaluate(`document.addEventListener("submit", () => { window.__submitAt = performance.now(); }, { capture: true, once: true })`);
  // Set up before the click, so the moment the rows appear is stamped by the page itself.
  const shown = d.page.waitForFunction(
    `(() => { if (document.querySelectorAll(${JSON.stringify(ROWS_SELECTOR)}).length < ${nodes}) return false; window.__rowsAt ??= performance.now(); return true; })()`,
    { polling: "mutation", timeout: PAGE_TIMEOUT_MS },
  );
  await d.page.click(SUBMIT_SELECTOR);
  await shown;
  return (await d.page.evaluate("window.__rowsAt - window.__submitAt")) as number;
}

interface PaintTimes {
  fcpMs: number;
  domContentLoadedMs: number;
  loadMs: number;
}

async function paintTimes(page: Page): Promise<PaintTimes> {
  await page.waitForFunction(`performance.getEntriesByName("first-contentful-paint").length > 0`, { timeout: PAGE_TIMEOUT_MS });
  return (await page.evaluate(`(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return { fcpMs: performance.getEntriesByName("first-contentful-paint")[0].startTime, domContentLoadedMs: nav.domContentLoadedEventEnd, loadMs: nav.loadEventEnd };
  })()`)) as PaintTimes;
}

// ---- figure 1 and 2: a first visit ----------------------------------------------------------------

interface Weight {
  path: string;
  type: string;
  status: number;
  wireBytes: number;
  bodyBytes: number;
  /** Bun.gzipSync of the body (default level), for the page's own files; null for API calls. */
  gzipBytes: number | null;
}

interface Visit {
  paint: PaintTimes;
  loginToRowsMs: number;
  weights: Weight[];
  /** The stream's first message (the snapshot of N nodes): characters of its data, and the stream's body bytes so far. */
  snapshotChars: number;
  streamBodyBytes: number;
  streamMessages: number;
  errors: string[];
}

const GZIP_TYPES = new Set(["Document", "Script", "Stylesheet"]);

async function weights(net: PageNet): Promise<Weight[]> {
  const out: Weight[] = [];
  for (const r of net.responses()) {
    if (r.type === "EventSource") continue;
    const gzipBytes = GZIP_TYPES.has(r.type) ? Bun.gzipSync(await net.body(r.requestId)).length : null;
    out.push({ path: new URL(r.url).pathname, type: r.type, status: r.status, wireBytes: r.encodedBytes, bodyBytes: r.bodyBytes, gzipBytes });
  }
  return out;
}

async function firstVisit(lb: LabBrowser, url: string, token: string, nodes: number): Promise<Visit> {
  const d = await openDashboard(lb, url);
  try {
    const paint = await paintTimes(d.page);
    const loginToRowsMs = await logIn(d, token, nodes);
    const stream = d.net.stream(STREAM_PATH);
    if (stream === undefined) throw new Error(`the page opened no ${STREAM_PATH}`);
    return { paint, loginToRowsMs, weights: await weights(d.net), snapshotChars: stream.firstMessageChars, streamBodyBytes: stream.bodyBytes, streamMessages: stream.messages, errors: d.errors };
  } finally {
    await d.context.close();
  }
}

// ---- figure 3: CPU while the agents report --------------------------------------------------------

interface Window {
  pages: number;
  seconds: number;
  loadAverageAtStart: number;
  daemonCpuPercent: number;
  /** Chromium's whole process tree, % of one core; `samePids`: no process came or went in the window. */
  browserCpuPercent: number;
  samePids: boolean;
  /** Summed over the pages: the renderers' main-thread task and script time, % of one core. */
  rendererPercent: Record<RendererMetric, number>;
  /** The stream, per page (mean over the pages): body bytes (the event-stream text), its messages' data characters, messages. */
  sseBytesPerSecond: number;
  sseDataCharsPerSecond: number;
  sseMessagesPerSecond: number;
  /** Pages whose table showed every node written or booted after the agents. */
  pagesCaughtUp: number;
  agents: AgentsResult;
  errors: string[];
}

interface IdleWindow {
  pages: number;
  seconds: number;
  loadAverageAtStart: number;
  daemonCpuPercent: number;
  browserCpuPercent: number;
}

interface Ctx {
  lab: Lab;
  daemon: LabDaemon;
  lb: LabBrowser;
  browserPid: number;
  token: string;
  o: Options;
}

interface PagesSample {
  renderer: Record<RendererMetric, number>[];
  streamBytes: number[];
  streamChars: number[];
  streamMessages: number[];
}

async function samplePages(ds: Dashboard[]): Promise<PagesSample> {
  const streams = ds.map((d) => d.net.stream(STREAM_PATH));
  return {
    renderer: await Promise.all(ds.map((d) => d.net.rendererSeconds())),
    // Body bytes: Chromium's encodedDataLength on a stream's dataReceived lags its data (it said
    // 150,803 bytes on the wire for a 283,329-character snapshot), the decoded length does not.
    streamBytes: streams.map((s) => s?.bodyBytes ?? NaN),
    streamChars: streams.map((s) => s?.messageChars ?? NaN),
    streamMessages: streams.map((s) => s?.messages ?? NaN),
  };
}

function rendererPercent(a: PagesSample, b: PagesSample, seconds: number): Record<RendererMetric, number> {
  const keys: RendererMetric[] = ["TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration"];
  return Object.fromEntries(keys.map((k) => [k, (100 * b.renderer.reduce((s, r, i) => s + r[k] - a.renderer[i]![k], 0)) / seconds])) as Record<RendererMetric, number>;
}

const meanPerPage = (a: number[], b: number[], seconds: number): number => (a.length === 0 ? 0 : a.reduce((s, x, i) => s + (b[i]! - x), 0) / a.length / seconds);

/** Whether the page's table shows every node in a done state (the stream kept up). */
async function caughtUp(d: Dashboard, nodes: number): Promise<boolean> {
  const sel = DONE_STATES.map((s) => `${ROWS_SELECTOR}[data-state=${s}]`).join(",");
  return d.page
    .waitForFunction(`document.querySelectorAll(${JSON.stringify(sel)}).length === ${nodes}`, { timeout: FINAL_STATE_TIMEOUT_MS, polling: 1000 })
    .then(() => true, () => false);
}

async function cpuWindow(c: Ctx, pages: number): Promise<Window> {
  const { o } = c;
  await fleetCli(c.lab, c.lab.clients[0]!, o.stateDir, RELOAD);
  const ds: Dashboard[] = [];
  try {
    for (let i = 0; i < pages; i++) {
      const d = await openDashboard(c.lb, c.daemon.url);
      ds.push(d);
      await logIn(d, c.token, o.nodes);
    }
    await Bun.sleep(SETTLE_MS);
    const macs = Array.from({ length: o.nodes }, (_, i) => macOf(i + 1));
    const [d0, b0, p0, la] = [cpuSeconds(c.daemon.proc.pid), treeCpuSeconds(c.browserPid), await samplePages(ds), loadAverage()];
    const t0 = performance.now();
    const agents = await runAgents(c.lab, c.lab.clients[0]!, { url: c.daemon.url, adminToken: c.token, macs, runMs: o.runMs, concurrency: o.concurrency, agentProcs: 1, statusEveryMs: 0, expectNodes: o.nodes });
    const seconds = (performance.now() - t0) / 1000;
    const [d1, b1, p1] = [cpuSeconds(c.daemon.proc.pid), treeCpuSeconds(c.browserPid), await samplePages(ds)];
    const done = await Promise.all(ds.map((d) => caughtUp(d, o.nodes)));
    return {
      pages,
      seconds,
      loadAverageAtStart: la,
      daemonCpuPercent: (100 * (d1 - d0)) / seconds,
      browserCpuPercent: (100 * (b1.seconds - b0.seconds)) / seconds,
      samePids: b0.pids.join() === b1.pids.join(),
      rendererPercent: rendererPercent(p0, p1, seconds),
      sseBytesPerSecond: meanPerPage(p0.streamBytes, p1.streamBytes, seconds),
      sseDataCharsPerSecond: meanPerPage(p0.streamChars, p1.streamChars, seconds),
      sseMessagesPerSecond: meanPerPage(p0.streamMessages, p1.streamMessages, seconds),
      pagesCaughtUp: done.filter(Boolean).length,
      agents,
      errors: ds.flatMap((d) => d.errors),
    };
  } finally {
    for (const d of ds) await d.context.close();
  }
}

/** The fleet idle (no agents): the daemon's CPU over `idleMs` with `pages` pages open. */
async function idleWindow(c: Ctx, pages: number): Promise<IdleWindow> {
  const ds: Dashboard[] = [];
  try {
    for (let i = 0; i < pages; i++) {
      const d = await openDashboard(c.lb, c.daemon.url);
      ds.push(d);
      await logIn(d, c.token, c.o.nodes);
    }
    await Bun.sleep(SETTLE_MS);
    const [d0, b0, la] = [cpuSeconds(c.daemon.proc.pid), treeCpuSeconds(c.browserPid), loadAverage()];
    const t0 = performance.now();
    await Bun.sleep(c.o.idleMs);
    const seconds = (performance.now() - t0) / 1000;
    const [d1, b1] = [cpuSeconds(c.daemon.proc.pid), treeCpuSeconds(c.browserPid)];
    return { pages, seconds, loadAverageAtStart: la, daemonCpuPercent: (100 * (d1 - d0)) / seconds, browserCpuPercent: (100 * (b1.seconds - b0.seconds)) / seconds };
  } finally {
    for (const d of ds) await d.context.close();
  }
}

// ---- the run ----------------------------------------------------------------------------------------

interface Bench {
  visits: Visit[];
  windows: Window[];
  idle: IdleWindow[];
  reloadMs: number;
}

async function importAndReload(lab: Lab, o: Options): Promise<number> {
  const csv = join(WORK, "nodes.csv");
  writeFileSync(csv, `${NODES_CSV_HEADER}\n${benchNodeRows(o.nodes).join("\n")}\n`);
  await fleetCli(lab, lab.clients[0]!, o.stateDir, ["node", "import", csv]);
  return (await fleetCli(lab, lab.clients[0]!, o.stateDir, RELOAD)).ms;
}

function checkDaemonPid(pid: number): void {
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
  if (!argv.includes("server")) throw new Error(`pid ${pid} is not the daemon: ${argv.join(" ")}`);
}

async function bench(lab: Lab, o: Options, images: string): Promise<Bench> {
  rmSync(o.stateDir, { recursive: true, force: true });
  const daemon = await startLabDaemon(lab, { state: o.stateDir, images });
  let lb: LabBrowser | null = null;
  try {
    checkDaemonPid(daemon.proc.pid);
    const token = daemon.adminToken();
    const reloadMs = await importAndReload(lab, o);
    console.error(`${o.nodes} nodes imported and reloaded (reload ${(reloadMs / 1000).toFixed(1)} s); first visits...`);
    lb = await launchBrowser(lab.extras[0]!.ns);
    const browserPid = lb.browser.process()?.pid;
    if (browserPid === undefined) throw new Error("puppeteer did not say Chromium's pid");
    const visits: Visit[] = [];
    for (let i = 0; i < o.renders; i++) visits.push(await firstVisit(lb, daemon.url, token, o.nodes));
    const c: Ctx = { lab, daemon, lb, browserPid, token, o };
    const windows: Window[] = [];
    // Without, with one page, with many, without again: the two baselines show any drift.
    for (const pages of [0, 1, ...(o.pages > 1 ? [o.pages] : []), 0]) {
      console.error(`window: ${pages} page(s), agents for ${o.runMs / 1000} s...`);
      windows.push(await cpuWindow(c, pages));
    }
    const idle: IdleWindow[] = [];
    if (o.idleMs > 0) for (const pages of [0, 1, 0]) idle.push(await idleWindow(c, pages));
    return { visits, windows, idle, reloadMs };
  } finally {
    await lb?.close();
    await daemon.stop();
  }
}

// ---- the summary ------------------------------------------------------------------------------------

const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : "-");
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "-");
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "-");

function weightTable(v: Visit): string[] {
  const out = ["| response | type | status | bytes on the wire | body bytes | body gzip (reference) |", "|---|---|---:|---:|---:|---:|"];
  for (const w of v.weights) out.push(`| ${w.path} | ${w.type} | ${w.status} | ${w.wireBytes} | ${w.bodyBytes} | ${w.gzipBytes ?? "-"} |`);
  const sum = (f: (w: Weight) => number) => v.weights.reduce((s, w) => s + f(w), 0);
  const own = v.weights.filter((w) => w.gzipBytes !== null);
  out.push(`| **all (${v.weights.length})** | | | **${sum((w) => w.wireBytes)}** | **${sum((w) => w.bodyBytes)}** | html+js+css ${own.reduce((s, w) => s + w.gzipBytes!, 0)} (body ${own.reduce((s, w) => s + w.bodyBytes, 0)}) |`);
  out.push(`| ${STREAM_PATH} when the rows showed (${v.streamMessages} message${v.streamMessages === 1 ? "" : "s"}; the snapshot's data ${v.snapshotChars} chars) | EventSource | 200 | - | ${v.streamBodyBytes} | - |`);
  return out;
}

function renderTable(visits: Visit[], nodes: number): string[] {
  const row = (name: string, f: (v: Visit) => number) => `| ${name} | ${visits.map((v) => f0(f(v))).join(" / ")} | **${f0(median(visits.map(f)))}** |`;
  return [
    `| ms (runs ${visits.map((_, i) => i + 1).join(" / ")}) | each run | median |`,
    "|---|---:|---:|",
    row("navigation start → first contentful paint (the login form)", (v) => v.paint.fcpMs),
    row("navigation start → DOMContentLoaded", (v) => v.paint.domContentLoadedMs),
    row("navigation start → load", (v) => v.paint.loadMs),
    row(`login submit → fleet table holds all ${nodes} rows`, (v) => v.loginToRowsMs),
  ];
}

function windowTable(ws: Window[]): string[] {
  const out = [
    "| pages open | window s | load avg at start | daemon CPU % | browser CPU % (all processes) | renderers' main thread busy % / in script % (wall) | SSE bytes/s per page | SSE messages/s | pages caught up | agent errors |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const w of ws) {
    out.push(`| ${w.pages} | ${f1(w.seconds)} | ${f2(w.loadAverageAtStart)} | ${f1(w.daemonCpuPercent)} | ${f1(w.browserCpuPercent)}${w.samePids ? "" : " *"} | ${f1(w.rendererPercent.TaskDuration)} / ${f1(w.rendererPercent.ScriptDuration)} | ${w.pages > 0 ? f0(w.sseBytesPerSecond) : "-"} | ${w.pages > 0 ? f2(w.sseMessagesPerSecond) : "-"} | ${w.pages > 0 ? `${w.pagesCaughtUp}/${w.pages}` : "-"} | ${w.agents.errorCount} |`);
  }
  return out;
}

function ratios(ws: Window[]): string[] {
  const base = ws.filter((w) => w.pages === 0);
  const none = base.reduce((s, w) => s + w.daemonCpuPercent, 0) / base.length;
  const noneBrowser = base.reduce((s, w) => s + w.browserCpuPercent, 0) / base.length;
  const out = [`daemon CPU without a page: ${base.map((w) => f1(w.daemonCpuPercent)).join(" and ")} % (mean ${f1(none)} %); browser idle ${f1(noneBrowser)} %.`];
  for (const w of ws.filter((x) => x.pages > 0)) {
    out.push(`${w.pages} page(s) / none: daemon CPU ${f2(w.daemonCpuPercent / none)} (${w.daemonCpuPercent >= none ? "+" : ""}${f1(w.daemonCpuPercent - none)} points of a core); browser CPU ${f1(w.browserCpuPercent)} % against ${f1(noneBrowser)} % idle.`);
  }
  return out;
}

function idleLines(ws: IdleWindow[]): string[] {
  if (ws.length === 0) return [];
  const none = ws.filter((w) => w.pages === 0);
  const base = none.reduce((s, w) => s + w.daemonCpuPercent, 0) / none.length;
  const one = ws.find((w) => w.pages === 1)!;
  const each = ws.map((w) => `${w.pages} page(s) ${f1(w.daemonCpuPercent)} % (browser ${f1(w.browserCpuPercent)} %, load ${f2(w.loadAverageAtStart)})`).join("; ");
  return [`idle fleet (no agents), ${f1(ws[0]!.seconds)} s each: daemon CPU ${each}; one page / none ${f2(one.daemonCpuPercent / base)} (${one.daemonCpuPercent >= base ? "+" : ""}${f1(one.daemonCpuPercent - base)} points of a core: the hub reading the fleet once a second).`];
}

async function machine(): Promise<string> {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown CPU";
  const cores = (await $`nproc`.text()).trim();
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const chromium = (await $`/usr/bin/chromium --version`.nothrow().text()).trim();
  return `${cpu}, ${cores} cores; load average at the end ${load}; bun ${Bun.version}; ${chromium}`;
}

function summary(b: Bench, o: Options, where: string): string[] {
  const errors = [...b.visits.flatMap((v) => v.errors), ...b.windows.flatMap((w) => w.errors)];
  return [
    `## The dashboard with ${o.nodes} nodes reporting (${new Date().toISOString().slice(0, 10)})`,
    "",
    `${where}. ${o.nodes} nodes, power none, reloaded (CLI ${f1(b.reloadMs / 1000)} s); agents report every 3 s for ${o.runMs / 1000} s, at most ${o.concurrency} requests in flight.`,
    "",
    "Page weight, first visit (no cache, no cookie); the server gzips the css and js, the html and API calls go as they are:",
    "",
    ...weightTable(b.visits[0]!),
    "",
    ...renderTable(b.visits, o.nodes),
    "",
    ...windowTable(b.windows),
    "",
    ...ratios(b.windows),
    ...idleLines(b.idle),
    `console errors in the pages: ${errors.length}${errors.length > 0 ? `: ${errors.slice(0, 5).join(" | ")}` : ""}`,
  ];
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  await destroyStaleLabs();
  mkdirSync(WORK, { recursive: true });
  const images = await ensureImage(WORK, o.imageMb);
  const b = await withLab({ clients: 1, extras: 1 }, (lab) => bench(lab, o, images));
  const text = summary(b, o, await machine()).join("\n");
  const json = JSON.stringify({ options: o, ...b }, (k, v) => (k === "latenciesMs" ? undefined : v));
  console.log(text);
  console.log(json);
  const out = join(import.meta.dir, "..", ".cache", "bench");
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "dashboard.md"), `${text}\n`);
  writeFileSync(join(out, "dashboard.json"), `${json}\n`);
  if (b.windows.some((w) => w.agents.errorCount > 0 || w.pagesCaughtUp < w.pages)) process.exitCode = 1;
}

await main();
