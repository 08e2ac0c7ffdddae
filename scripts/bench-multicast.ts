// Multicast benchmark: discus serve/load against udpcast (udp-sender | udp-receiver | zstd -d |
// partclone.restore, the Clonezilla pipeline), side by side in one run, on the "paper" fixture
// (3 GiB ext4, ~700 MiB of files) over a bridge of 100 Mbit/s links in network namespaces.
// Prints one table per scenario and writes them to .cache/bench/multicast.md.
// Usage: bun scripts/bench-multicast.ts [--quick] [--only scaling|loss|slow|skew|tuning|server-cpu|line-rate|client-cpu]
//   --quick: N = 1 and 8 only, fewer udpcast runs; --only: one section (the others need "scaling")
//   --before DIR: with server-cpu, also measure `discus serve` from the tree in DIR (an older commit);
//     client-cpu (only when named) needs it: `discus load` of this tree and of DIR, alternated
import { $ } from "bun";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { destroyStaleLabs, withLab, type Lab } from "./lib/netlab.ts";
import { runClient, startServer, type ClientResult } from "./lib/mcast.ts";
import { cli as cliPath } from "../test/helpers.ts";
import { runUdpcast } from "./lib/udpcast.ts";
import { benchDir, paperFixture } from "./lib/paper.ts";
import { startSampler } from "./lib/sampler.ts";
import { rateFigures } from "./lib/rate-windows.ts";

const quick = process.argv.includes("--quick");
const onlyAt = process.argv.indexOf("--only");
const only = onlyAt > 0 ? process.argv[onlyAt + 1] : undefined;
const want = (section: string) => only === undefined || only === section;
const LINK_MBIT = 100;
const work = "/tmp/discus-bench-mc";
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
await destroyStaleLabs();

const cli = ["bun", cliPath];
const paper = await paperFixture();
const image = join(benchDir, "paper-zstd.dsc");
if (!(await Bun.file(image).exists())) await $`${cli} create --quiet ${paper} ${image}`;
const pcImage = join(benchDir, "paper-partclone.zst");
if (!(await Bun.file(pcImage).exists())) await $`partclone.ext4 -q -c -s ${paper} -o - 2>/dev/null | zstd -q -3 -T2 > ${pcImage}`;
const imageBytes = statSync(image).size;
const pcBytes = statSync(pcImage).size;
const linkSeconds = (bytes: number) => (bytes * 8) / (LINK_MBIT * 1e6);
await $`${cli} restore --quiet ${image} ${work}/ref.img`.quiet();
const referenceSha = (await $`sha256sum ${work}/ref.img`.text()).split(" ")[0]!;
const diskBytes = statSync(`${work}/ref.img`).size;
rmSync(`${work}/ref.img`);

const out: string[] = [];
const say = (line = "") => {
  console.log(line);
  out.push(line);
};
say(`# Multicast benchmark (${new Date().toISOString().slice(0, 10)})`);
say();
say(`paper fixture: 3 GiB ext4; discus image ${(imageBytes / 1e6).toFixed(1)} MB (zstd), partclone|zstd -3 ${(pcBytes / 1e6).toFixed(1)} MB; links ${LINK_MBIT} Mbit/s (tbf), MTU 1500.`);
say(`link limit = image bytes x 8 / ${LINK_MBIT} Mbit/s: discus ${linkSeconds(imageBytes).toFixed(1)} s, udpcast ${linkSeconds(pcBytes).toFixed(1)} s.`);
say();

interface DiscusRun {
  seconds: number;
  clients: ClientResult[];
  serverLog: string;
  allCorrect: boolean;
}

/** Serves the image to the lab's clients (each started after its delay) and checks every disk. */
async function discusRun(lab: Lab, delaysMs: number[] = [], rate = `${LINK_MBIT}mbit`): Promise<DiscusRun> {
  const group = lab.group(0);
  const server = startServer(lab, image, group, ["--rate", rate]);
  await Bun.sleep(300);
  const t0 = performance.now();
  // Targets exist beforehand, as disks do (partclone needs that); both tools get the same.
  await $`truncate -s ${diskBytes} ${lab.clients.map((_, i) => join(work, `d${i}.img`))}`;
  const clients = await Promise.all(
    lab.clients.map(async (c, i) => {
      await Bun.sleep(delaysMs[i] ?? 0);
      return runClient(lab, c, group, join(work, `d${i}.img`), ["--give-up", "60s"], 900_000);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await Bun.sleep(3500); // let the session summary come out
  const serverLog = server.log();
  await server.stop();
  const shas = await Promise.all(clients.map(async (r) => (r.exitCode === 0 ? (await $`sha256sum ${r.target}`.text()).split(" ")[0] : "failed")));
  await $`rm -f ${clients.map((r) => r.target)}`;
  return { seconds, clients, serverLog, allCorrect: shas.every((s) => s === referenceSha) };
}

async function udpcastRun(lab: Lab, delaysMs: number[] = [], maxWaitSeconds?: number) {
  const targets = lab.clients.map((_, i) => join(work, `u${i}.img`));
  await $`truncate -s ${diskBytes} ${targets}`;
  const r = await runUdpcast(lab, {
    file: pcImage,
    clients: lab.clients,
    targets,
    receiverPipeline: (t) => `zstd -dc | partclone.ext4 -q -r -s - -O ${t} >/dev/null 2>&1`,
    maxBitrateMbit: LINK_MBIT,
    startDelaysMs: delaysMs,
    maxWaitSeconds,
    timeoutMs: 400_000,
  });
  await $`rm -f ${targets}`;
  return r;
}

const stat = (r: DiscusRun, f: (c: NonNullable<ClientResult["stats"]>) => number) => {
  const v = r.clients.filter((c) => c.stats !== null).map((c) => f(c.stats!));
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
};
const dupPercent = (r: DiscusRun) => stat(r, (s) => (100 * s.duplicateBlocks) / Math.max(1, s.blocksReceived));
const requestsPerClient = (r: DiscusRun) => stat(r, (s) => s.requestsSent);
const sentMB = (r: DiscusRun) => [...r.serverLog.matchAll(/ ([\d.]+) MB in \d+ blocks/g)].reduce((a, m) => a + Number(m[1]), 0);
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "—");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "—");

// ---- N clients, no loss ---------------------------------------------------------------------
let t1 = NaN;
const lossless = new Map<number, DiscusRun>();
if (only === undefined || !["tuning", "server-cpu", "line-rate", "client-cpu"].includes(only)) {
say("## Scaling: N clients, no loss");
say();
say("| N | discus s | limit/time | T(N)/T(1) | dup blocks % | requests/client | sent/image | udpcast s | discus/udpcast | all disks correct |");
say("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
for (const n of quick ? [1, 8] : [1, 4, 8, 16]) {
  const d = await withLab({ clients: n, linkMbit: LINK_MBIT }, (lab) => discusRun(lab));
  const u = await withLab({ clients: n, linkMbit: LINK_MBIT }, (lab) => udpcastRun(lab));
  lossless.set(n, d);
  if (n === 1) t1 = d.seconds;
  say(`| ${n} | ${f1(d.seconds)} | ${f2(linkSeconds(imageBytes) / d.seconds)} | ${f2(d.seconds / t1)} | ${f2(dupPercent(d))} | ${f1(requestsPerClient(d))} | ${f2((sentMB(d) * 1e6) / imageBytes)} | ${f1(u.seconds)} | ${f2(d.seconds / u.seconds)} | ${d.allCorrect && u.failures.length === 0 ? "yes" : `discus ${d.allCorrect}, udpcast failures ${u.failures.length}`} |`);
}
say();

// ---- loss ------------------------------------------------------------------------------------
const base8 = lossless.get(8)!;
say("## Random loss towards every client (N = 8, nftables numgen random)");
say();
say("| loss | discus s | vs lossless | dup blocks % | requests/client | sent/image | udpcast s | udpcast failures | discus/udpcast |");
say("|---:|---:|---:|---:|---:|---:|---:|---|---:|");
for (const loss of [1, 5]) {
  const d = await withLab({ clients: 8, linkMbit: LINK_MBIT, lossPercent: Array(8).fill(loss) }, (lab) => discusRun(lab));
  const u = quick ? null : await withLab({ clients: 8, linkMbit: LINK_MBIT, lossPercent: Array(8).fill(loss) }, (lab) => udpcastRun(lab));
  say(`| ${loss}% | ${f1(d.seconds)} | ${f2(d.seconds / base8.seconds)} | ${f2(dupPercent(d))} | ${f1(requestsPerClient(d))} | ${f2((sentMB(d) * 1e6) / imageBytes)} | ${u ? f1(u.seconds) : "—"} | ${u ? u.failures.length : "—"} | ${u ? f2(d.seconds / u.seconds) : "—"} |${d.allCorrect ? "" : " DISCUS DISK MISMATCH"}`);
}
say();

// ---- one slow client ---------------------------------------------------------------------------
say("## One client limited to 30 Mbit/s (N = 8)");
say();
{
  const clientMbit = [30, ...Array(7).fill(null)];
  const d = await withLab({ clients: 8, linkMbit: LINK_MBIT, clientMbit }, (lab) => discusRun(lab));
  const u = await withLab({ clients: 8, linkMbit: LINK_MBIT, clientMbit }, (lab) => udpcastRun(lab));
  const fast = d.clients.slice(1).map((c) => (c.endedMs - c.startedMs) / 1000);
  const fastBase = base8.clients.map((c) => (c.endedMs - c.startedMs) / 1000);
  say("| | slow client s | fast clients s (max) | fast vs their lossless | all done s |");
  say("|---|---:|---:|---:|---:|");
  say(`| discus | ${f1((d.clients[0]!.endedMs - d.clients[0]!.startedMs) / 1000)} | ${f1(Math.max(...fast))} | ${f2(Math.max(...fast) / Math.max(...fastBase))} | ${f1(d.seconds)} |${d.allCorrect ? "" : " MISMATCH"}`);
  say(`| udpcast | ${f1(u.clientSeconds[0]!)} | ${f1(Math.max(...u.clientSeconds.slice(1)))} | — | ${f1(u.seconds)} |`);
  const rates = [...d.serverLog.matchAll(/rate [\d.]+ -> ([\d.]+) Mbit\/s/g)].map((m) => Number(m[1]));
  say();
  say(`discus server rate changes during this run (Mbit/s): ${rates.length ? rates.map((r) => r.toFixed(0)).join(", ") : "none"}`);
}
say();

// ---- skewed starts (Frisbee table 2) -------------------------------------------------------------
say("## Skewed starts (N = 8): simultaneous, clustered, uniform over a window");
say();
say("| starts | discus all done s | dup blocks % | requests/client | sent/image | udpcast (clients-to-wait) s | udpcast (max-wait 5 s) finished |");
say("|---|---:|---:|---:|---:|---:|---:|");
const window = linkSeconds(imageBytes) * 1000;
const skews: [string, number[]][] = [
  ["simultaneous", Array(8).fill(0)],
  ["clustered: 4 at 0, 4 at window/2", [0, 0, 0, 0, window / 2, window / 2, window / 2, window / 2]],
  ["uniform over the window", Array.from({ length: 8 }, (_, i) => (i * window) / 8)],
];
for (const [name, delays] of skews) {
  const d = name === "simultaneous" ? base8 : await withLab({ clients: 8, linkMbit: LINK_MBIT }, (lab) => discusRun(lab, delays));
  const u = await withLab({ clients: 8, linkMbit: LINK_MBIT }, (lab) => udpcastRun(lab, delays));
  const uw = quick ? null : await withLab({ clients: 8, linkMbit: LINK_MBIT }, (lab) => udpcastRun(lab, delays, 5));
  say(`| ${name} | ${f1(d.seconds)} | ${f2(dupPercent(d))} | ${f1(requestsPerClient(d))} | ${f2((sentMB(d) * 1e6) / imageBytes)} | ${f1(u.seconds)} | ${uw ? `${8 - uw.failures.length}/8` : "—"} |${d.allCorrect ? "" : " MISMATCH"}`);
}
say();

}

// ---- self-tuning: a ceiling above the bottleneck --------------------------------------------------
// The bottleneck must be the switch ports toward the clients: a server whose own link is the
// slowest is held back by its own qdisc (the socket blocks) and sees no loss at all.
if (want("tuning")) {
  say("## Self-tuning: server link unlimited, 100 Mbit/s ports toward 2 clients");
  say();
  // Two clients: with eight, this 2-core host cannot even absorb 100 Mbit/s (see "Scaling").
  const ports = { clients: 2, linkMbit: null, clientMbit: Array(2).fill(LINK_MBIT) };
  const fixed = await withLab(ports, (lab) => discusRun(lab, [], `${LINK_MBIT}mbit`));
  const tuned = await withLab(ports, (lab) => discusRun(lab, [], "200mbit"));
  const rates = [...tuned.serverLog.matchAll(/rate [\d.]+ -> ([\d.]+) Mbit\/s \(median client loss ([\d.]+)%/g)].map((m) => `${Number(m[1]).toFixed(0)} (${m[2]}%)`);
  say(`--rate 200mbit: all done in ${f1(tuned.seconds)} s, sent/image ${f2((sentMB(tuned) * 1e6) / imageBytes)}; --rate 100mbit: ${f1(fixed.seconds)} s, sent/image ${f2((sentMB(fixed) * 1e6) / imageBytes)}; disks ${tuned.allCorrect && fixed.allCorrect ? "correct" : "WRONG"}.`);
  say();
  say(`rate steps of the 200mbit run (every 500 ms when it changes), Mbit/s (median loss): ${rates.join(", ") || "none"}`);
}

if (want("server-cpu")) await serverCpuSection();
if (want("line-rate")) await lineRateSection();
if (only === "client-cpu") await clientCpuSection();

writeFileSync(join(benchDir, `multicast${only ? `-${only}` : ""}.md`), out.join("\n") + "\n");
rmSync(work, { recursive: true, force: true });

/** A command under GNU time, which writes "user sys maxrss-KiB" to `file`. */
function timed(file: string, cmd: string[]): string[] {
  return ["/usr/bin/time", "-f", "%U %S %M", "-o", file, ...cmd];
}
interface TimeFigures { cpuSeconds: number; userSeconds: number; sysSeconds: number; peakRssMiB: number }

/**
 * user + system CPU seconds so far of the process GNU time runs under `timePid` (its one child).
 * Read as the client starts, it splits a server's CPU into its start-up and the transfer itself.
 */
async function childCpuSeconds(timePid: number, comm: string): Promise<number> {
  const USER_HZ = 100; // ticks per second of stat's utime and stime on Linux x86-64 (a function-local: sections run before later top-level consts exist)
  const pid = (await $`pgrep -P ${timePid}`.nothrow().text()).trim().split("\n")[0];
  const stat = pid ? await Bun.file(`/proc/${pid}/stat`).text().catch(() => "") : "";
  const name = /\(([^)]*)\)/.exec(stat)?.[1];
  if (name === undefined || !name.startsWith(comm.slice(0, 15))) throw new Error(`no ${comm} process under ${timePid} (found ${name ?? "none"})`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / USER_HZ; // fields 14 and 15 of stat, counted from 3
}
async function readTime(file: string): Promise<TimeFigures> {
  const [user, sys, rssKiB] = (await Bun.file(file).text()).trim().split(/\s+/).slice(-3).map(Number);
  return { cpuSeconds: user! + sys!, userSeconds: user!, sysSeconds: sys!, peakRssMiB: rssKiB! / 1024 };
}

// ---- server CPU per byte (issue 13) -----------------------------------------------------------------
/**
 * The server's own cost: user + system CPU seconds (GNU time) of `discus serve` and of udp-sender
 * sending the same file (the discus image) to one client, per GB, on unshaped links and on 1 Gbit/s
 * tbf links, each run twice. With --before DIR the discus of that tree runs in the same lab too.
 */
async function serverCpuSection(): Promise<void> {
  const beforeAt = process.argv.indexOf("--before");
  const beforeCli = beforeAt > 0 ? join(process.argv[beforeAt + 1]!, "src", "cli.ts") : null;
  const REPEATS = 2;
  const targetDir = "/dev/shm/discus-bench-cpu"; // targets in tmpfs: the client's disk is not the limit
  mkdirSync(targetDir, { recursive: true });
  const target = join(targetDir, "t.img");
  interface CpuRun { tool: string; seconds: number; cpuSeconds: number; userSeconds: number; sysSeconds: number; peakRssMiB: number; sentBytes: number; ok: boolean; startCpuSeconds: number }

  const discusCpu = async (lab: Lab, tool: string, cliFile: string, rate: string): Promise<CpuRun> => {
    const group = lab.group(1);
    const timeFile = join(work, `time-${tool}`);
    const server = lab.spawn(lab.server, timed(timeFile, ["bun", cliFile, "serve", image, "--group", group, "--port", "4520", "--iface", lab.server.address, "--rate", rate, "--mtu", "1500", "--idle-exit", "1s"]));
    const log = new Response(server.stderr).text();
    await Bun.sleep(500);
    await $`truncate -s ${diskBytes} ${target}`;
    const startCpuSeconds = await childCpuSeconds(server.pid, "bun");
    const t0 = performance.now();
    const c = await runClient(lab, lab.clients[0]!, group, target, ["--give-up", "60s"], 600_000);
    const seconds = (performance.now() - t0) / 1000;
    await server.exited;
    const sent = [...(await log).matchAll(/ ([\d.]+) MB in \d+ blocks/g)].reduce((a, m) => a + Number(m[1]) * 1e6, 0);
    const ok = c.exitCode === 0 && (await $`sha256sum ${target}`.text()).split(" ")[0] === referenceSha;
    rmSync(target, { force: true });
    return { tool, seconds, ...(await readTime(timeFile)), sentBytes: sent, ok, startCpuSeconds };
  };

  // udpcast's session start now and then stalls on this host (both ends waiting): such a run is
  // killed after UDPCAST_STALL_MS and made again.
  const UDPCAST_STALL_MS = 120_000;
  const udpcastCpu = async (lab: Lab, mbit: number | null): Promise<CpuRun> => {
    for (let attempt = 1; ; attempt++) {
      const r = await udpcastOnce(lab, mbit);
      if (r !== null) return r;
      if (attempt === 3) throw new Error("udp-sender stalled three times");
      // What time or the shells left behind in the two namespaces (only udpcast runs there now).
      for (const h of [lab.server, lab.clients[0]!]) await $`ip netns pids ${h.ns} | xargs -r kill -9`.nothrow().quiet();
    }
  };
  const udpcastOnce = async (lab: Lab, mbit: number | null): Promise<CpuRun | null> => {
    const timeFile = join(work, "time-udp-sender");
    const rdv = lab.group(250);
    const sender = lab.spawn(lab.server, timed(timeFile, ["udp-sender", "--interface", "eth0", "--nokbd", "--min-receivers", "1", ...(mbit === null ? [] : ["--max-bitrate", `${mbit}m`]), "--portbase", "9000", "--mcast-rdv-address", rdv, "--mcast-data-address", lab.group(251), "--file", image]));
    void new Response(sender.stdout).text();
    void new Response(sender.stderr).text();
    await Bun.sleep(300); // udp-sender is up, waiting for its receiver
    const startCpuSeconds = await childCpuSeconds(sender.pid, "udp-sender");
    const t0 = performance.now();
    const receiver = lab.spawn(lab.clients[0]!, ["udp-receiver", "--interface", "eth0", "--nokbd", "--no-progress", "--portbase", "9000", "--mcast-rdv-address", rdv, "--file", target]);
    void new Response(receiver.stdout).text();
    void new Response(receiver.stderr).text();
    const stall = setTimeout(() => [receiver, sender].forEach((p) => p.kill("SIGKILL")), UDPCAST_STALL_MS);
    const code = await receiver.exited;
    const seconds = (performance.now() - t0) / 1000;
    const senderCode = await sender.exited;
    clearTimeout(stall);
    if (code !== 0 || senderCode !== 0) return null;
    const ok = code === 0 && (await $`cmp ${image} ${target}`.nothrow().quiet()).exitCode === 0;
    rmSync(target, { force: true });
    return { tool: "udp-sender", seconds, ...(await readTime(timeFile)), sentBytes: imageBytes, ok, startCpuSeconds };
  };

  say("## Server CPU per byte: one client, the discus image's bytes (issue 13)");
  say();
  say(`${(imageBytes / 1e6).toFixed(1)} MB moved to one client (discus load into tmpfs, udp-receiver --file into tmpfs); CPU = user + system of the server process (GNU time), MTU 1500; each run ${REPEATS} times; load average at the start ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}.`);
  say();
  say("\"While sending\" is the CPU after the process start (read from /proc as the client starts: for discus the runtime, the JIT's first work and opening the image; for udp-sender nearly nothing), what each further GB costs.");
  say();
  say("| links | server | run | wall s | Mbit/s (image) | sent / image | user s | sys s | start-up CPU s | CPU s per GB sent | vs udp-sender | while sending: CPU s per GB sent | vs udp-sender | peak RSS MiB | correct |");
  say("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
  for (const mbit of [null, 1000] as const) {
    const rate = mbit === null ? "10gbit" : `${mbit}mbit`;
    for (let rep = 1; rep <= REPEATS; rep++) {
      const runs = await withLab({ clients: 1, linkMbit: mbit }, async (lab) => {
        const r: CpuRun[] = [await udpcastCpu(lab, mbit), await discusCpu(lab, "discus", cliPath, rate)];
        if (beforeCli !== null) r.push(await discusCpu(lab, "discus (before)", beforeCli, rate));
        return r;
      });
      const perGbSent = (r: CpuRun) => r.cpuSeconds / (r.sentBytes / 1e9);
      const sendingPerGb = (r: CpuRun) => (r.cpuSeconds - r.startCpuSeconds) / (r.sentBytes / 1e9);
      const udp = runs[0]!;
      for (const r of runs) {
        say(`| ${mbit === null ? "unshaped" : `${mbit} Mbit/s`} | ${r.tool} | ${rep} | ${f1(r.seconds)} | ${f1((imageBytes * 8) / 1e6 / r.seconds)} | ${f2(r.sentBytes / imageBytes)} | ${f2(r.userSeconds)} | ${f2(r.sysSeconds)} | ${f2(r.startCpuSeconds)} | ${f2(perGbSent(r))} | ${f2(perGbSent(r) / perGbSent(udp))} | ${f2(sendingPerGb(r))} | ${f2(sendingPerGb(r) / sendingPerGb(udp))} | ${f1(r.peakRssMiB)} | ${r.ok ? "yes" : "NO"} |`);
      }
    }
  }
  say();
  rmSync(targetDir, { recursive: true, force: true });
}

// ---- line rate, both sides (issue 13, "Measure") -------------------------------------------------
interface SideFigures { seconds: number; server: TimeFigures; clients: TimeFigures[]; ok: boolean; samples: [number, number][] }

/** udp-sender to N udp-receivers (raw bytes into tmpfs files), every process under GNU time. */
async function udpcastLineRate(lab: Lab, mbit: number | null, dir: string): Promise<SideFigures> {
  const rdv = lab.group(250);
  const stopSampler = startSampler(lab, lab.clients[0]!);
  const senderTime = join(dir, "udp-sender.time");
  const sender = lab.spawn(lab.server, timed(senderTime, ["udp-sender", "--interface", "eth0", "--nokbd", "--min-receivers", String(lab.clients.length), ...(mbit === null ? [] : ["--max-bitrate", `${mbit}m`]), "--portbase", "9000", "--mcast-rdv-address", rdv, "--mcast-data-address", lab.group(251), "--file", image]));
  void new Response(sender.stdout).text();
  void new Response(sender.stderr).text();
  const t0 = performance.now();
  const codes = await Promise.all(lab.clients.map(async (c, i) => {
    const r = lab.spawn(c, timed(join(dir, `udp-receiver-${i}.time`), ["udp-receiver", "--interface", "eth0", "--nokbd", "--no-progress", "--portbase", "9000", "--mcast-rdv-address", rdv, "--file", join(dir, `udp-${i}.img`)]));
    void new Response(r.stdout).text();
    void new Response(r.stderr).text();
    return r.exited;
  }));
  const seconds = (performance.now() - t0) / 1000;
  await sender.exited;
  const samples = await stopSampler();
  let ok = codes.every((c) => c === 0);
  for (let i = 0; i < lab.clients.length; i++) {
    ok &&= (await $`cmp ${image} ${join(dir, `udp-${i}.img`)}`.nothrow().quiet()).exitCode === 0;
    rmSync(join(dir, `udp-${i}.img`), { force: true });
  }
  return { seconds, server: await readTime(senderTime), clients: await Promise.all(lab.clients.map((_, i) => readTime(join(dir, `udp-receiver-${i}.time`)))), ok, samples };
}

/** discus serve to N discus loads (decompress, verify, write into tmpfs), every process under GNU time. */
async function discusLineRate(lab: Lab, mbit: number | null, dir: string): Promise<SideFigures> {
  const group = lab.group(1);
  const stopSampler = startSampler(lab, lab.clients[0]!);
  const serverTime = join(dir, "serve.time");
  const server = lab.spawn(lab.server, timed(serverTime, ["bun", cliPath, "serve", image, "--group", group, "--port", "4520", "--iface", lab.server.address, "--rate", mbit === null ? "10gbit" : `${mbit}mbit`, "--idle-exit", "1s"]));
  void new Response(server.stdout).text();
  void new Response(server.stderr).text();
  await Bun.sleep(500);
  const targets = lab.clients.map((_, i) => join(dir, `discus-${i}.img`));
  for (const t of targets) await $`truncate -s ${diskBytes} ${t}`;
  const t0 = performance.now();
  const results = await Promise.all(lab.clients.map((c, i) => runClient(lab, c, group, targets[i]!, ["--give-up", "60s"], 600_000, timed(join(dir, `load-${i}.time`), []))));
  const seconds = (performance.now() - t0) / 1000;
  await server.exited;
  const samples = await stopSampler();
  let ok = results.every((r) => r.exitCode === 0);
  for (const t of targets) {
    ok &&= (await $`sha256sum ${t}`.text()).split(" ")[0] === referenceSha;
    rmSync(t, { force: true });
  }
  return { seconds, server: await readTime(serverTime), clients: await Promise.all(lab.clients.map((_, i) => readTime(join(dir, `load-${i}.time`)))), ok, samples };
}

/**
 * Both tools moving the discus image's bytes, unshaped and on 1 Gbit/s links, to 1 and 4 clients:
 * wall time, Mbit/s of the image, CPU seconds per GB of the image on each side (user + system),
 * peak RSS, link efficiency. udpcast's receivers only store bytes; discus's clients decompress,
 * verify and write the disk: "whole load against raw transfer", as the issue asks.
 */
async function lineRateSection(): Promise<void> {
  const dir = "/dev/shm/discus-bench-linerate";
  mkdirSync(dir, { recursive: true });
  const gb = imageBytes / 1e9;
  say("## Line rate, both sides (issue 13)");
  say();
  say(`${(imageBytes / 1e6).toFixed(1)} MB (the discus image's bytes) to N clients; targets in tmpfs; CPU = user + system (GNU time) per GB of that image; MTU from the link (1500); load average at the start ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}.`);
  say();
  say("Link efficiency = the image's bits over the wall time over the link rate (start-up, headers and the end included); steady link use = the frame bits a client's interface received per second over the steady part of the transfer (its first and last second cut; scripts/lib/rate-windows.ts) over the link rate. 200 Mbit/s is a rate this 2-core machine can carry with every client decompressing.");
  say();
  say("| links | N | tool | wall s | Mbit/s | link efficiency | steady link use | server CPU s/GB | client CPU s/GB (mean) | server peak RSS MiB | client peak RSS MiB (max) | correct |");
  say("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
  for (const mbit of [null, 1000, 200] as const) {
    for (const n of [1, 4]) {
      const [u, d] = await withLab({ clients: n, linkMbit: mbit }, async (lab) => [await udpcastLineRate(lab, mbit, dir), await discusLineRate(lab, mbit, dir)] as const);
      for (const [tool, r] of [["udpcast (raw bytes)", u], ["discus (whole load)", d]] as const) {
        const mbps = (imageBytes * 8) / 1e6 / r.seconds;
        const clientCpu = r.clients.reduce((a, c) => a + c.cpuSeconds, 0) / r.clients.length / gb;
        const steady = mbit === null ? null : rateFigures(r.samples, mbit * 1e6);
        const use = mbit === null ? "—" : steady === null ? "too short" : f2(steady.meanMbit / mbit);
        say(`| ${mbit === null ? "unshaped" : `${mbit} Mbit/s`} | ${n} | ${tool} | ${f2(r.seconds)} | ${f1(mbps)} | ${mbit === null ? "—" : f2(mbps / mbit)} | ${use} | ${f2(r.server.cpuSeconds / gb)} | ${f2(clientCpu)} | ${f1(r.server.peakRssMiB)} | ${f1(Math.max(...r.clients.map((c) => c.peakRssMiB)))} | ${r.ok ? "yes" : "NO"} |`);
      }
      say(`| | | discus / udpcast | ${f2(d.seconds / u.seconds)} | ${f2(u.seconds / d.seconds)} | | | ${f2(d.server.cpuSeconds / u.server.cpuSeconds)} | | | | |`);
    }
  }
  say();
  rmSync(dir, { recursive: true, force: true });
}

// ---- a client's cost, this tree against an older one (--only client-cpu --before DIR) ------------
/**
 * One `discus serve` (this tree, unshaped) and one client, whose `discus load` alternates between
 * this tree and the tree in --before DIR, CLIENT_PAIRS times each: the client's wall time, user and
 * system CPU and peak RSS (GNU time). Same image, same lab, same target file in tmpfs.
 */
async function clientCpuSection(): Promise<void> {
  const beforeAt = process.argv.indexOf("--before");
  if (beforeAt < 0) throw new Error("--only client-cpu needs --before DIR (the older tree)");
  const beforeCli = join(process.argv[beforeAt + 1]!, "src", "cli.ts");
  const CLIENT_PAIRS = 3;
  const dir = "/dev/shm/discus-bench-client";
  mkdirSync(dir, { recursive: true });
  const target = join(dir, "t.img");
  say("## A client's cost: this tree against --before (one client, unshaped)");
  say();
  say(`${(imageBytes / 1e6).toFixed(1)} MB image, target in tmpfs; load average at the start ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}.`);
  say();
  say("| client | run | wall s | user s | sys s | CPU s per GB of image | peak RSS MiB | correct |");
  say("|---|---:|---:|---:|---:|---:|---:|---|");
  await withLab({ clients: 1, linkMbit: null }, async (lab) => {
    for (let run = 1; run <= CLIENT_PAIRS; run++) {
      for (const [name, cliFile] of [["this tree", cliPath], ["before", beforeCli]] as const) {
        const group = lab.group(run);
        const server = lab.spawn(lab.server, ["bun", cliPath, "serve", image, "--group", group, "--port", "4520", "--iface", lab.server.address, "--rate", "10gbit", "--idle-exit", "1s"]);
        void new Response(server.stdout).text();
        void new Response(server.stderr).text();
        await Bun.sleep(500);
        await $`truncate -s ${diskBytes} ${target}`;
        const timeFile = join(dir, "load.time");
        const proc = lab.spawn(lab.clients[0]!, timed(timeFile, ["bun", cliFile, "load", target, "--group", group, "--port", "4520", "--iface", lab.clients[0]!.address, "--give-up", "60s", "--quiet"]));
        const t0 = performance.now();
        const code = await proc.exited;
        const seconds = (performance.now() - t0) / 1000;
        await server.exited;
        const ok = code === 0 && (await $`sha256sum ${target}`.text()).split(" ")[0] === referenceSha;
        const t = await readTime(timeFile);
        say(`| ${name} | ${run} | ${f2(seconds)} | ${f2(t.userSeconds)} | ${f2(t.sysSeconds)} | ${f2(t.cpuSeconds / (imageBytes / 1e9))} | ${f1(t.peakRssMiB)} | ${ok ? "yes" : "NO"} |`);
        rmSync(target, { force: true });
      }
    }
  });
  say();
  rmSync(dir, { recursive: true, force: true });
}
