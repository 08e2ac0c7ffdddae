// The simulator's command line: every value checked here, before any work (exit 2 naming the
// option, as the CLI does), and turned into a SimConfig.
import { parseArgs } from "node:util";
import { DiscusError } from "../../../src/util/errors.ts";
import { assert } from "../../../src/util/assert.ts";
import { intOption } from "../../../src/cli/options.ts";
import { MEASURED_CPU } from "./cpu.ts";
import type { SimConfig, Skew } from "./run.ts";
import type { SimImageSpec } from "./image.ts";

export type Mode = "json" | "text" | "table" | "validate" | "measure-cpu";

export interface SimCommand {
  mode: Mode;
  config: SimConfig;
  image: SimImageSpec;
  /** Table mode: the client counts of the scaling table (1, 10, 100, 1000 by default). */
  tableClients: number[];
}

const MAX_SIM_CLIENTS = 4096;
const MAX_RATE_MBIT = 100_000;
const MAX_LATENCY_MS = 1000;
const MAX_DISK_MBPS = 100_000;
const MAX_IMAGE_MIB = 1024;
const MAX_LIMIT_S = 24 * 3600;
/** The sim's per-loader memory default: the CLI's --memory minimum (8 MiB). */
const DEFAULT_BUFFER_KIB = 8 << 10;
/** Write-back threshold of a client's page cache: Linux's 10 % dirty_background_ratio of 2.5 GiB. */
const DEFAULT_DIRTY_MIB = 256;
const IMAGE_MIB = 64;
const CHUNK_KIB = 256;
/** --table: a 16 MiB disk in 64 KiB chunks, 2 MiB per loader (an eighth of the image, as above). */
const TABLE_IMAGE_MIB = 16;
const TABLE_CHUNK_KIB = 64;
const TABLE_BUFFER_KIB = 2 << 10;
assert(TABLE_BUFFER_KIB * IMAGE_MIB === DEFAULT_BUFFER_KIB * TABLE_IMAGE_MIB, "the table keeps the default memory/image ratio");
/** Below this the loader has too few buffers to be a loader at all. */
const MIN_BUFFER_CHUNKS = 4;
/** Per-packet main-thread CPU of a real client and server (µs), from `--validate`'s N = 1 run. */
export const DEFAULT_HOST_RECEIVE_US = 26;
export const DEFAULT_HOST_SEND_US = 35;

const SKEWS: Skew[] = ["simultaneous", "clustered", "uniform"];

function usage(option: string, why: string, action: string): never {
  throw new DiscusError("usage", option, why, action);
}

/** A decimal number in lo..hi. */
function numberOption(option: string, raw: string | undefined, fallback: number, lo: number, hi: number): number {
  if (raw === undefined) return fallback;
  if (!/^\d+(\.\d+)?$/.test(raw.trim())) usage(option, `"${raw}" is not a number`, `Give a plain decimal number in ${lo}..${hi}`);
  const n = Number(raw);
  if (n < lo || n > hi) usage(option, `${raw} is outside ${lo}..${hi}`, `Give a number in ${lo}..${hi}`);
  return n;
}

const int = (option: string, raw: string | undefined, fallback: number, lo: number, hi: number) => (raw === undefined ? fallback : intOption(option, raw, lo, hi, `Give a whole number in ${lo}..${hi}`));

export function parseSimArgs(argv: string[]): SimCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      options: {
        clients: { type: "string" }, loss: { type: "string" }, "rate-mbit": { type: "string" }, mtu: { type: "string" },
        "latency-ms": { type: "string" }, "latency-spread-ms": { type: "string" }, "slow-mbit": { type: "string" },
        skew: { type: "string" }, "restart-at-s": { type: "string" }, "restart-down-s": { type: "string" }, hostile: { type: "boolean" },
        "disk-mbps": { type: "string" }, "dirty-mib": { type: "string" }, "client-cores": { type: "string" }, "shared-cores": { type: "string" },
        seed: { type: "string" }, "image-mib": { type: "string" }, "chunk-kib": { type: "string" }, "memory-kib": { type: "string" },
        window: { type: "string" }, "limit-s": { type: "string" }, "table-clients": { type: "string" },
        json: { type: "boolean" }, table: { type: "boolean" }, validate: { type: "boolean" }, "measure-cpu": { type: "boolean" },
      },
    });
  } catch (e) {
    usage("scripts/sim", (e as Error).message, "See the options at the top of scripts/sim.ts");
  }
  const v = parsed.values;
  const modes = (["json", "table", "validate", "measure-cpu"] as const).filter((m) => v[m] === true);
  if (modes.length > 1) usage(`--${modes[1]}`, `cannot be combined with --${modes[0]}`, "Pick one of --json, --table, --validate, --measure-cpu");
  const skew = (v.skew ?? "simultaneous") as Skew;
  if (!SKEWS.includes(skew)) usage("--skew", `"${v.skew}" is not one of ${SKEWS.join(", ")}`, "Pick one of them");
  // The table's 1000 loaders fit in memory with a smaller image, at the same memory/image ratio.
  const table = v.table === true;
  const image: SimImageSpec = { diskMiB: int("--image-mib", v["image-mib"], table ? TABLE_IMAGE_MIB : IMAGE_MIB, 1, MAX_IMAGE_MIB), chunkKiB: int("--chunk-kib", v["chunk-kib"], table ? TABLE_CHUNK_KIB : CHUNK_KIB, 64, 65536), seed: 1 };
  if (image.chunkKiB % 4 !== 0) usage("--chunk-kib", `${image.chunkKiB} is not a multiple of 4`, "Chunks are whole 4 KiB pages");
  const rate = numberOption("--rate-mbit", v["rate-mbit"], 100, 1, MAX_RATE_MBIT) * 1e6;
  const slow = v["slow-mbit"] === undefined ? null : numberOption("--slow-mbit", v["slow-mbit"], 0, 1, MAX_RATE_MBIT) * 1e6;
  const restartAt = v["restart-at-s"] === undefined ? null : numberOption("--restart-at-s", v["restart-at-s"], 0, 0, MAX_LIMIT_S);
  const memoryKiB = int("--memory-kib", v["memory-kib"], Math.max(table ? TABLE_BUFFER_KIB : DEFAULT_BUFFER_KIB, MIN_BUFFER_CHUNKS * image.chunkKiB), MIN_BUFFER_CHUNKS * image.chunkKiB, 4 << 20);
  const sharedCores = v["shared-cores"] === undefined ? null : int("--shared-cores", v["shared-cores"], 2, 1, 1024);
  const clients = int("--clients", v.clients, 10, 1, MAX_SIM_CLIENTS);
  const config: SimConfig = {
    seed: int("--seed", v.seed, 1, 0, 2 ** 32 - 1),
    clients,
    linkBitsPerSecond: rate,
    mtuBytes: int("--mtu", v.mtu, 1500, 584, 9000),
    lossProbability: numberOption("--loss", v.loss, 0, 0, 50) / 100,
    latencyMs: numberOption("--latency-ms", v["latency-ms"], 0.05, 0, MAX_LATENCY_MS),
    latencySpreadMs: numberOption("--latency-spread-ms", v["latency-spread-ms"], 0, 0, MAX_LATENCY_MS),
    slowClientBitsPerSecond: slow,
    skew,
    // Frisbee's window: the time the image takes on the link; set from the image once it is known.
    skewWindowMs: 0,
    restart: restartAt === null ? null : { atMs: restartAt * 1000, downMs: numberOption("--restart-down-s", v["restart-down-s"], 2, 0, MAX_LIMIT_S) * 1000 },
    hostile: v.hostile === true,
    diskBytesPerSecond: numberOption("--disk-mbps", v["disk-mbps"], 200, 1, MAX_DISK_MBPS) * 1e6,
    dirtyBackgroundBytes: int("--dirty-mib", v["dirty-mib"], DEFAULT_DIRTY_MIB, 0, 1 << 20) * 2 ** 20,
    clientCores: int("--client-cores", v["client-cores"], 2, 1, 64),
    cpu: MEASURED_CPU,
    sharedCores,
    hostReceiveMs: DEFAULT_HOST_RECEIVE_US / 1000,
    hostSendMs: DEFAULT_HOST_SEND_US / 1000,
    bufferBytes: memoryKiB << 10,
    windowChunks: int("--window", v.window, 4, 1, 64),
    giveUpMs: 60_000,
    limitMs: numberOption("--limit-s", v["limit-s"], 600, 1, MAX_LIMIT_S) * 1000,
  };
  const tableClients = (v["table-clients"] ?? "1,10,100,1000").split(",").map((t) => intOption("--table-clients", t, 1, MAX_SIM_CLIENTS, "Give client counts like 1,10,100,1000"));
  return { mode: modes[0] ?? "text", config, image, tableClients };
}
