// `bash scripts/sim --table`: the simulator's tables for docs/BENCHMARKS.md. Scaling at no loss and
// at 1 % independent loss per client; skewed starts (Frisbee's table 2); one slow client; a server
// restart; the hostile host. Each row is one seeded run of the real server and loader code.
import type { SimConfig } from "./run.ts";
import type { SimSummary } from "./summary.ts";
import { describeCpu } from "./cpu.ts";
import { runOnce, type Loaded } from "../../sim.ts";

/** Clients in the skew, restart and hostile scenarios (the N = 100 for the hostile one). */
const SCENARIO_CLIENTS = 100;
const SLOW_CLIENTS = 10;
const SLOW_FRACTION = 0.3;
const RESTART_DOWN_MS = 2000;

const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : "—");
const pct = (x: number) => `${(100 * x).toFixed(1)}`;

function row(name: string, s: SimSummary, wallS: number): string {
  const t1 = s.secondsOneClient ?? NaN;
  return `| ${name} | ${f(s.seconds)} | ${f(s.seconds / t1)} | ${f(s.sentOverImage)} | ${pct(s.duplicateFraction)} | ${f(s.requestsPerClient, 1)} | ${f(s.serverPacketsPerSecond, 0)} | ${pct(s.controlShareOfDownlink)} | ${f(s.blocksWithoutBufferPerClient, 0)} | ${s.downlinkQueueDrops} | ${s.clientsDone}/${s.clients}${s.everyChunkOnce ? "" : " (disks WRONG)"} | ${f(wallS, 1)} |`;
}

const HEADER = [
  "| run | T(N) s | T(N)/T(1) | sent/image | dup blocks % | requests/client | server packets/s | control % of downlink | blocks without buffer/client | downlink queue drops | done | sim wall s |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
];

async function timed(config: SimConfig, img: Loaded): Promise<[SimSummary, number]> {
  const t0 = performance.now();
  const s = await runOnce(config, img, true);
  return [s, (performance.now() - t0) / 1000];
}

export async function printTables(base: SimConfig, img: Loaded, counts: number[]): Promise<void> {
  const t = img.image.trailer;
  console.log(`Image: ${t.dataChunkCount} + ${t.manifestPartCount} chunks of ${t.chunkBytes >> 10} KiB (${(img.imageBytes / 2 ** 20).toFixed(1)} MiB sent per copy); links ${base.linkBitsPerSecond / 1e6} Mbit/s, MTU ${base.mtuBytes}, latency ${base.latencyMs} ms; disks ${base.diskBytesPerSecond / 1e6} MB/s behind a ${base.dirtyBackgroundBytes >> 20} MiB write-back cache, flushed at the end; client CPU ${base.clientCores} cores, ${describeCpu(base.cpu)}; loader memory ${base.bufferBytes >> 10} KiB, window ${base.windowChunks}; seed ${base.seed}.`);
  for (const loss of [0, 0.01]) {
    console.log();
    console.log(`Scaling, ${loss * 100} % independent loss per client, simultaneous starts:`);
    console.log();
    for (const h of HEADER) console.log(h);
    for (const n of counts) {
      const [s, wall] = await timed({ ...base, clients: n, lossProbability: loss }, img);
      console.log(row(`N = ${n}`, s, wall));
    }
  }
  console.log();
  console.log(`Scenarios, N = ${SCENARIO_CLIENTS} unless named (skew window ${(base.skewWindowMs / 1000).toFixed(2)} s, the image's time on the link):`);
  console.log();
  for (const h of HEADER) console.log(h);
  const scenarios: [string, SimConfig][] = [
    ["simultaneous", { ...base, clients: SCENARIO_CLIENTS }],
    ["clustered: half at 0, half at window/2", { ...base, clients: SCENARIO_CLIENTS, skew: "clustered" }],
    ["uniform over the window", { ...base, clients: SCENARIO_CLIENTS, skew: "uniform" }],
    [`N = ${SLOW_CLIENTS}, client 0 at ${SLOW_FRACTION * 100} % of the link`, { ...base, clients: SLOW_CLIENTS, slowClientBitsPerSecond: base.linkBitsPerSecond * SLOW_FRACTION }],
    ["server killed at window/2, back 2 s later", { ...base, clients: SCENARIO_CLIENTS, restart: { atMs: base.skewWindowMs / 2, downMs: RESTART_DOWN_MS } }],
    ["hostile host (forger.ts hostile rates)", { ...base, clients: SCENARIO_CLIENTS, hostile: true }],
  ];
  for (const [name, config] of scenarios) {
    const [s, wall] = await timed(config, img);
    console.log(row(name, s, wall));
    if (s.failures.length > 0) console.log(`|  | first failure: ${s.failures[0]} | | | | | | | | | | |`);
  }
}
