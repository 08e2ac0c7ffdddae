// What the control-server benchmarks share (scripts/bench-daemon.ts, scripts/bench-dashboard.ts):
// the bench nodes' MACs and CSV rows, a random raw image for the catalog, the fleet CLI run in a
// lab namespace, a process's CPU time from /proc, and the simulated agents
// (scripts/lib/bench-agents.ts) split over one or more processes, their results merged.
import { $ } from "bun";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Host, Lab } from "./netlab.ts";
import { ENDPOINTS, type AgentsConfig, type AgentsResult, type Endpoint } from "./bench-agents.ts";
import { cli } from "../../test/helpers.ts";

const agentsScript = join(import.meta.dir, "bench-agents.ts");

/** The i-th bench node's MAC (i from 1), locally administered. Pure. */
/** A benchmark's `--name VALUE` options: text with a default, and whole numbers checked against a range. */
export function benchArgs(argv: string[]): { get(name: string, fallback: string): string; int(name: string, fallback: number, min: number, max: number): number } {
  const get = (name: string, fallback: string) => {
    const at = argv.indexOf(`--${name}`);
    return at >= 0 && argv[at + 1] !== undefined ? argv[at + 1]! : fallback;
  };
  const int = (name: string, fallback: number, min: number, max: number) => {
    const v = Number(get(name, String(fallback)));
    if (!Number.isInteger(v) || v < min || v > max) throw new Error(`--${name} must be a whole number in ${min}..${max}`);
    return v;
  };
  return { get, int };
}

export function macOf(i: number): string {
  return `02:00:5e:${((i >> 16) & 255).toString(16).padStart(2, "0")}:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
}

/** CSV rows (no header) of nodes bench-00001.. with image "bench", tag "bench", power none. Pure. */
export function benchNodeRows(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `bench-${String(i + 1).padStart(5, "0")},${macOf(i + 1)},serial:BENCH0001,bench,bench,none`);
}

export const NODES_CSV_HEADER = "name,mac,disk,image,tags,power";

/** A random raw image of `mb` MiB, "bench.dsc", in its own images directory under `workDir` (kept between runs). */
export async function ensureImage(workDir: string, mb: number): Promise<string> {
  const dir = join(workDir, `images-${mb}m`);
  const image = join(dir, "bench.dsc");
  if (await Bun.file(image).exists()) return dir;
  mkdirSync(dir, { recursive: true });
  const source = join(workDir, "source.img");
  await $`head -c ${mb}M /dev/urandom > ${source}`;
  await $`bun ${cli} create ${source} ${image} --raw --quiet`;
  rmSync(source);
  return dir;
}

/** The fleet CLI in `host`'s namespace, against the daemon of `state` (its socket and token). */
export async function fleetCli(lab: Lab, host: Host, state: string, args: string[]): Promise<{ ms: number; stdout: string }> {
  const t0 = performance.now();
  const r = await lab.exec(host, ["bun", cli, ...args, "--state", state]);
  if (r.exitCode !== 0) throw new Error(`discus ${args.join(" ")} exited ${r.exitCode}: ${r.stderr.trim()}`);
  return { ms: performance.now() - t0, stdout: r.stdout };
}

export const CLK_TCK = Number((await $`getconf CLK_TCK`.text()).trim());

/** utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

export interface AgentsRun {
  url: string;
  adminToken: string;
  macs: string[];
  runMs: number;
  /** Requests in flight at most, over all the agent processes. */
  concurrency: number;
  agentProcs: number;
  /** 0: no /api/status poller; otherwise the first process polls this often. */
  statusEveryMs: number;
  /** Nodes /api/status must list. */
  expectNodes: number;
}

/** The agents in `host`'s namespace, `agentProcs` processes sharing the MACs; their results merged. */
export async function runAgents(lab: Lab, host: Host, o: AgentsRun): Promise<AgentsResult> {
  const share = Math.ceil(o.macs.length / o.agentProcs);
  const runs = Array.from({ length: o.agentProcs }, async (_, p) => {
    const config: AgentsConfig = {
      url: o.url,
      macs: o.macs.slice(p * share, (p + 1) * share),
      runMs: o.runMs,
      concurrency: Math.max(1, Math.floor(o.concurrency / o.agentProcs)),
      adminToken: o.adminToken,
      statusEveryMs: p === 0 ? o.statusEveryMs : 0,
      expectNodes: o.expectNodes,
    };
    const r = await lab.exec(host, ["bun", agentsScript, JSON.stringify(config)]);
    if (r.exitCode !== 0) throw new Error(`the agents exited ${r.exitCode}: ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as AgentsResult;
  });
  const results = await Promise.all(runs);
  const merged: AgentsResult = { latenciesMs: Object.fromEntries(ENDPOINTS.map((e) => [e, results.flatMap((r) => r.latenciesMs[e])])) as Record<Endpoint, number[]>, errorCount: 0, errors: [], wallMs: 0 };
  for (const r of results) {
    merged.errorCount += r.errorCount;
    merged.errors.push(...r.errors);
    merged.wallMs = Math.max(merged.wallMs, r.wallMs);
  }
  return merged;
}

/** Every live process's parent, from /proc/PID/stat (field 4). */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      out.set(Number(name), Number(readFileSync(`/proc/${name}/stat`, "utf8").split(") ")[1]!.split(" ")[1]));
    } catch {
      // Gone between the listing and the read.
    }
  }
  return out;
}

/**
 * CPU seconds of `root` and every live descendant (a browser and its renderers), with the pids
 * counted: a child that exits inside a window takes its time with it, so compare pid sets.
 */
export function treeCpuSeconds(root: number): { seconds: number; pids: number[] } {
  const ppid = parents();
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; p = ppid.get(p), hops++) if (p === root) return true;
    return false;
  };
  const pids = [...ppid.keys()].filter(inTree);
  let seconds = 0;
  for (const pid of pids) {
    try {
      seconds += cpuSeconds(pid);
    } catch {
      // Exited since the listing.
    }
  }
  return { seconds, pids };
}
