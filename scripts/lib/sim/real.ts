// The real counterpart of a simulated run, for validating the simulator: `discus serve` and N
// `discus load` processes in network namespaces (scripts/lib/netlab.ts: tbf-limited veths, nftables
// random loss), on the image the simulator uses. Reports the clients' own load times and the CPU
// time each process used (what the simulator's host CPU model is calibrated from).
import { $ } from "bun";
import { mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { destroyStaleLabs, withLab, type Host, type Lab } from "../netlab.ts";
import { MCAST_PORT } from "../mcast.ts";
import { cli as treeCli } from "../../../test/helpers.ts";
import type { LoadStats } from "../../../src/client/stats.ts";

export interface RealRun {
  clients: number;
  lossPercent: number;
  /** Slowest client's own `seconds` (from its start to its last chunk written); NaN if one failed. */
  seconds: number;
  clientSeconds: number[];
  allCorrect: boolean;
  requestsPerClient: number;
  duplicateFraction: number;
  blocksReceivedPerClient: number;
  /** CPU seconds (user + system) of each client process, and of the server. */
  clientCpuSeconds: number[];
  serverCpuSeconds: number;
  serverBlocksSent: number;
  failures: string[];
  /** This machine's 1-minute load average when the run started (other work skews real times). */
  loadAverage: number;
}

const SERVER_POLL_MS = 20;
const SERVER_START_LIMIT_MS = 10_000;
const CLIENT_TIMEOUT_MS = 300_000;
const SUMMARY_WAIT_MS = 3500;

const cpuSeconds = (p: Bun.Subprocess): number => {
  const u = p.resourceUsage();
  return u === undefined ? NaN : Number(u.cpuTime.total) / 1e6;
};

async function loadOne(cli: string, lab: Lab, host: Host, group: string, target: string) {
  const proc = lab.spawn(host, ["bun", cli, "load", target, "--group", group, "--port", String(MCAST_PORT), "--iface", host.address, "--json", "--give-up", "60s"]);
  const timer = setTimeout(() => proc.kill("SIGKILL"), CLIENT_TIMEOUT_MS);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { stats: exitCode === 0 ? (JSON.parse(stdout) as LoadStats) : null, stderr, cpu: cpuSeconds(proc), target };
}

/** One run of N real clients at `linkMbit` (every link) with `lossPercent` toward each client. */
/** `cli` is the discus entry to run (default: this tree's src/cli.ts). */
export async function realRun(imagePath: string, diskPath: string, clients: number, linkMbit: number, lossPercent: number, cli = treeCli): Promise<RealRun> {
  await destroyStaleLabs();
  const work = join("/tmp", `discus-sim-real-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const want = (await $`sha256sum ${diskPath}`.text()).split(" ")[0]!;
  const diskBytes = statSync(diskPath).size;
  try {
    const loadAverage = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
    return await withLab({ clients, linkMbit, lossPercent: Array(clients).fill(lossPercent) }, async (lab) => {
      const group = lab.group(0);
      const server = lab.spawn(lab.server, ["bun", cli, "serve", imagePath, "--group", group, "--port", String(MCAST_PORT), "--iface", lab.server.address, "--rate", `${linkMbit}mbit`]);
      // Clients start once the server listens (on a busy machine its start-up can take a while).
      let log = "";
      const reading = (async () => {
        for await (const chunk of server.stderr) log += new TextDecoder().decode(chunk);
      })();
      const waitStart = performance.now();
      while (!log.includes("serving") && performance.now() - waitStart < SERVER_START_LIMIT_MS) await Bun.sleep(SERVER_POLL_MS);
      const targets = lab.clients.map((_, i) => join(work, `d${i}.img`));
      await $`truncate -s ${diskBytes} ${targets}`;
      const results = await Promise.all(lab.clients.map((c, i) => loadOne(cli, lab, c, group, targets[i]!)));
      await Bun.sleep(SUMMARY_WAIT_MS);
      server.kill("SIGTERM");
      await server.exited;
      await reading;
      const shas = await Promise.all(results.map(async (r) => (r.stats !== null ? (await $`sha256sum ${r.target}`.text()).split(" ")[0] : "failed")));
      const stats = results.map((r) => r.stats).filter((s) => s !== null);
      const mean = (f: (s: LoadStats) => number) => stats.reduce((a, s) => a + f(s), 0) / Math.max(1, stats.length);
      const clientSeconds = stats.map((s) => s.seconds);
      return {
        clients,
        lossPercent,
        seconds: stats.length === clients ? Math.max(...clientSeconds) : NaN,
        clientSeconds,
        allCorrect: shas.every((s) => s === want) && stats.length === clients,
        requestsPerClient: mean((s) => s.requestsSent),
        duplicateFraction: mean((s) => s.duplicateBlocks / Math.max(1, s.blocksReceived)),
        blocksReceivedPerClient: mean((s) => s.blocksReceived),
        clientCpuSeconds: results.map((r) => r.cpu),
        serverCpuSeconds: cpuSeconds(server),
        serverBlocksSent: [...log.matchAll(/ in (\d+) blocks/g)].reduce((a, m) => a + Number(m[1]), 0),
        loadAverage,
        failures: results.filter((r) => r.stats === null).map((r) => r.stderr.trim().slice(-300)),
      };
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
