// Validation of the simulator against real processes (`bash scripts/sim --validate`, root): the
// same image served by `discus serve` to `discus load` in network namespaces at 100 Mbit/s.
// 1. Calibrate: N = 1 and 2, no loss; each process's CPU time per packet (less a bare start-up)
//    gives the per-packet costs of the host CPU model. A client's is flat; the server's grows with
//    the receivers (the kernel copies each multicast datagram to every veth in the sender's
//    context), so it is fitted as a + b × N from the two points.
// 2. Validate: N = 4, no loss and 5 % loss; real times (median of REPEATS) against the simulator on
//    the same machine model (all hosts on this machine's cores), and on a machine per host.
import { cpus, totalmem } from "node:os";
import { closeSync, fdatasyncSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { realRun, type RealRun } from "./real.ts";
import { cli as treeCli } from "../../../test/helpers.ts";
import { simulate, type SimConfig } from "./run.ts";
import { summarize } from "./summary.ts";
import type { Loaded } from "../../sim.ts";

const REPEATS = 3;
const VALIDATE_CLIENTS = 4;
const LINK_MBIT = 100;
const TOLERANCE = 0.15;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** CPU seconds a bare `bun cli --version` costs: the start-up every real process pays. */
async function startupCpuSeconds(cli: string): Promise<number> {
  const p = Bun.spawn(["bun", cli, "--version"], { stdout: "ignore", stderr: "ignore" });
  await p.exited;
  return Number(p.resourceUsage()!.cpuTime.total) / 1e6;
}

async function realRuns(img: Loaded, cli: string, clients: number, loss: number): Promise<RealRun[]> {
  const runs: RealRun[] = [];
  for (let i = 0; i < REPEATS; i++) {
    const r = await realRun(img.imagePath, img.diskPath, clients, LINK_MBIT, loss, cli);
    console.error(`real N=${clients} loss ${loss}%: ${r.seconds.toFixed(2)} s (load average ${r.loadAverage})${r.failures.length ? ` FAILED: ${r.failures[0]}` : ""}`);
    runs.push(r);
  }
  return runs;
}

/**
 * This machine's disk as the real clients use it: N writers each write the image's disk into the
 * page cache and fdatasync it, as a load does; bytes over the time of the slowest.
 */
function measureDisk(writers: number, bytes: number): number {
  const buf = new Uint8Array(1 << 20).map((_, i) => (i * 2654435761) >>> 24);
  const paths = Array.from({ length: writers }, (_, i) => `/tmp/discus-sim-disk-${process.pid}-${i}`);
  try {
    const fds = paths.map((p) => openSync(p, "w"));
    const t0 = performance.now();
    for (const fd of fds) for (let off = 0; off < bytes; off += buf.length) writeSync(fd, buf, 0, buf.length, off);
    for (const fd of fds) fdatasyncSync(fd);
    const seconds = (performance.now() - t0) / 1000;
    for (const fd of fds) closeSync(fd);
    return (writers * bytes) / seconds;
  } finally {
    for (const p of paths) rmSync(p, { force: true });
  }
}

/** Linux starts writing dirty pages back past this share of memory. */
function dirtyBackgroundBytes(): number {
  return Math.floor((totalmem() * Number(readFileSync("/proc/sys/vm/dirty_background_ratio", "utf8").trim())) / 100);
}

export async function validate(base: SimConfig, img: Loaded): Promise<void> {
  // SIM_REAL_CLI: another checkout's src/cli.ts, when this tree is mid-edit.
  const cli = process.env.SIM_REAL_CLI ?? treeCli;
  const startup = await startupCpuSeconds(cli);
  const perPacket = async (n: number) => {
    const cal = (await realRuns(img, cli, n, 0)).filter((r) => r.failures.length === 0);
    const receiveUs = median(cal.flatMap((r) => r.clientCpuSeconds.map((c) => ((c - startup) / r.blocksReceivedPerClient) * 1e6)));
    const sendUs = median(cal.map((r) => ((r.serverCpuSeconds - startup) / r.serverBlocksSent) * 1e6));
    return { receiveUs, sendUs, seconds: median(cal.map((r) => r.seconds)) };
  };
  const one = await perPacket(1);
  const two = await perPacket(2);
  const receiveUs = (one.receiveUs + two.receiveUs) / 2;
  const perReceiverUs = two.sendUs - one.sendUs;
  const sendUsFor = (n: number) => one.sendUs + perReceiverUs * (n - 1);
  const cores = cpus().length;
  const diskBytes = img.chunks.writtenBytes.reduce((a, b) => a + b, 0);
  const diskRate = measureDisk(VALIDATE_CLIENTS, diskBytes);
  const dirty = dirtyBackgroundBytes();
  console.log(`this machine: ${cores} cores; disk ${(diskRate / 1e6).toFixed(0)} MB/s with ${VALIDATE_CLIENTS} writers flushing ${(diskBytes / 2 ** 20).toFixed(0)} MiB each; write-back threshold ${(dirty / 2 ** 20).toFixed(0)} MiB`);
  console.log(`calibration (real N = 1 and 2, ${REPEATS} runs each; process CPU less ${startup.toFixed(2)} s start-up): client ${one.receiveUs.toFixed(1)} / ${two.receiveUs.toFixed(1)} µs per packet heard; server ${one.sendUs.toFixed(1)} / ${two.sendUs.toFixed(1)} µs per packet sent, so ${sendUsFor(VALIDATE_CLIENTS).toFixed(1)} µs at N = ${VALIDATE_CLIENTS}; real T(1) ${one.seconds.toFixed(2)} s, T(2) ${two.seconds.toFixed(2)} s`);
  console.log();
  console.log(`| loss | real s (median of ${REPEATS}) | real runs | sim s, ${cores} shared cores | sim/real | sim s, a machine per host | sim/real | within ${TOLERANCE * 100}% |`);
  console.log("|---:|---:|---|---:|---:|---:|---:|---|");
  for (const loss of [0, 5]) {
    const runs = await realRuns(img, cli, VALIDATE_CLIENTS, loss);
    const ok = runs.filter((r) => r.failures.length === 0 && r.allCorrect);
    const real = median(ok.map((r) => r.seconds));
    const config: SimConfig = { ...base, clients: VALIDATE_CLIENTS, linkBitsPerSecond: LINK_MBIT * 1e6, lossProbability: loss / 100, skew: "simultaneous", hostile: false, restart: null, slowClientBitsPerSecond: null, bufferBytes: 64 << 20, diskBytesPerSecond: diskRate, dirtyBackgroundBytes: dirty };
    const shared = summarize(await simulate({ ...config, sharedCores: cores, hostReceiveMs: receiveUs / 1000, hostSendMs: sendUsFor(VALIDATE_CLIENTS) / 1000 }, img.image, img.chunks, img.allChunks), img.imageBytes);
    const apart = summarize(await simulate({ ...config, sharedCores: null }, img.image, img.chunks, img.allChunks), img.imageBytes);
    const ratio = shared.clientSecondsMax / real;
    console.log(`| ${loss}% | ${real.toFixed(2)} | ${ok.map((r) => r.seconds.toFixed(2)).join(", ")} | ${shared.clientSecondsMax.toFixed(2)} | ${ratio.toFixed(2)} | ${apart.clientSecondsMax.toFixed(2)} | ${(apart.clientSecondsMax / real).toFixed(2)} | ${Math.abs(ratio - 1) <= TOLERANCE ? "yes" : "NO"} |`);
    console.log(`|  | load average ${ok.map((r) => r.loadAverage).join(", ")}; requests/client real ${median(ok.map((r) => r.requestsPerClient)).toFixed(0)}, sim ${shared.requestsPerClient.toFixed(0)}; duplicate blocks real ${(100 * median(ok.map((r) => r.duplicateFraction))).toFixed(1)} %, sim ${(100 * shared.duplicateFraction).toFixed(1)} % | | | | | | |`);
  }
}
