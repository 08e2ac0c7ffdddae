// A deterministic simulation of the real protocol code: the real ServeSession and Loaders on
// virtual time over an in-memory LAN (scripts/lib/sim). Seeded and reproducible.
// Usage: bash scripts/sim [--clients N] [--loss PERCENT] [--rate-mbit R] [--mtu M] [--latency-ms L]
//          [--latency-spread-ms S] [--slow-mbit R0] [--skew simultaneous|clustered|uniform]
//          [--restart-at-s T [--restart-down-s D]] [--hostile] [--disk-mbps MBps] [--dirty-mib M] [--client-cores C]
//          [--shared-cores C] [--seed S] [--image-mib M] [--chunk-kib K] [--memory-kib K] [--window W]
//          [--limit-s S] [--json | --table [--table-clients 1,10,100,1000] | --validate | --measure-cpu]
//   (default) one run, printed as text; --json: one JSON object (wall time and memory on stderr);
//   --table: the scaling, skew, slow-client, restart and hostile tables for docs/BENCHMARKS.md;
//   --validate: N = 4 at 100 Mbit/s against real processes in network namespaces (needs root);
//   --measure-cpu: time the real apply and decode code on this machine (cpu.ts's constants).
import { DiscusError, exitCodeByKind } from "../src/util/errors.ts";
import { peakRssBytes } from "../src/util/memory.ts";
import { parseSimArgs, type SimCommand } from "./lib/sim/options.ts";
import { loadChunks, simImage } from "./lib/sim/image.ts";
import { simulate, type SimConfig } from "./lib/sim/run.ts";
import { summarize, type SimSummary } from "./lib/sim/summary.ts";
import { measureCpu } from "./lib/sim/cpu.ts";
import { printTables } from "./lib/sim/tables.ts";
import { validate } from "./lib/sim/validate.ts";

export type Loaded = ReturnType<typeof loadChunks> & { imageBytes: number; diskPath: string; imagePath: string };

/** One simulated run, summarized, with T(1) under the same settings when N > 1. */
export async function runOnce(config: SimConfig, img: Loaded, withOneClient: boolean): Promise<SimSummary> {
  const run = await simulate(config, img.image, img.chunks, img.allChunks);
  const s = summarize(run, img.imageBytes);
  if (withOneClient) {
    const one = config.clients === 1 ? s : summarize(await simulate({ ...config, clients: 1, skew: "simultaneous", hostile: false, restart: null, slowClientBitsPerSecond: null }, img.image, img.chunks, img.allChunks), img.imageBytes);
    s.secondsOneClient = one.seconds;
  }
  return s;
}

async function main(cmd: SimCommand): Promise<void> {
  const spec = await simImage(cmd.image);
  if (cmd.mode === "measure-cpu") {
    console.log(JSON.stringify(measureCpu(spec.imagePath), null, 2));
    return;
  }
  const loaded = loadChunks(spec.imagePath);
  const t = loaded.image.trailer;
  const img: Loaded = { ...loaded, imageBytes: (t.dataChunkCount + t.manifestPartCount) * t.chunkBytes, diskPath: spec.diskPath, imagePath: spec.imagePath };
  // Frisbee's skew window: the time one copy of the image takes on the link.
  const config: SimConfig = { ...cmd.config, skewWindowMs: (img.imageBytes * 8 * 1000) / cmd.config.linkBitsPerSecond };
  const t0 = performance.now();
  if (cmd.mode === "table") await printTables(config, img, cmd.tableClients);
  else if (cmd.mode === "validate") await validate(config, img);
  else {
    const s = await runOnce(config, img, true);
    console.log(cmd.mode === "json" ? JSON.stringify(s) : JSON.stringify(s, null, 2));
  }
  console.error(`sim: ${((performance.now() - t0) / 1000).toFixed(1)} s wall, peak RSS ${(peakRssBytes() / 2 ** 20).toFixed(0)} MiB`);
}

if (import.meta.main) {
  try {
    await main(parseSimArgs(process.argv.slice(2)));
  } catch (e) {
    if (!(e instanceof DiscusError)) throw e;
    console.error(`sim: ${e.message}`);
    process.exit(exitCodeByKind[e.kind]);
  }
}
