// Runs `discus serve` and `discus load` on the hosts of a netlab Lab: shared by the multicast
// tests, the demo and the benchmark.
import type { Host, Lab } from "./netlab.ts";
import type { LoadStats } from "../../src/client/stats.ts";
import { cli } from "../../test/helpers.ts";
import { peakRssBytes } from "../../src/util/memory.ts";

export const MCAST_PORT = 4520;

export interface RunningServer {
  /** Everything the server logged so far. */
  log(): string;
  /** Its peak resident memory so far (VmHWM), while it runs. */
  peakRssBytes(): number;
  /** Stops it (SIGTERM, or SIGKILL for a crash) and waits for it to exit. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<number>;
}

export function startServer(lab: Lab, image: string, group: string, args: string[] = [], host: Host = lab.server): RunningServer {
  const proc = lab.spawn(host, ["bun", cli, "serve", image, "--group", group, "--port", String(MCAST_PORT), "--iface", host.address, ...args]);
  let text = "";
  const decoder = new TextDecoder();
  const reading = (async () => {
    for await (const chunk of proc.stderr) text += decoder.decode(chunk);
  })();
  return {
    log: () => text,
    // `ip netns exec` execs the command in place, so the spawned pid is the server's.
    peakRssBytes: () => peakRssBytes(proc.pid),
    async stop(signal = "SIGTERM") {
      proc.kill(signal);
      const code = await proc.exited;
      await reading;
      return code;
    },
  };
}

export interface ClientResult {
  host: Host;
  target: string;
  exitCode: number;
  stats: LoadStats | null;
  stderr: string;
  startedMs: number;
  endedMs: number;
}

/** Runs `discus load --json` on `host` to completion (or until timeoutMs, then kills it); `prefix` wraps the command (e.g. GNU time). */
export async function runClient(lab: Lab, host: Host, group: string, target: string, args: string[] = [], timeoutMs = 300_000, prefix: string[] = []): Promise<ClientResult> {
  const startedMs = performance.now();
  const proc = lab.spawn(host, [...prefix, "bun", cli, "load", target, "--group", group, "--port", String(MCAST_PORT), "--iface", host.address, "--json", ...args]);
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  const endedMs = performance.now();
  let stats: LoadStats | null = null;
  if (exitCode === 0) stats = JSON.parse(stdout) as LoadStats;
  return { host, target, exitCode, stats, stderr, startedMs, endedMs };
}
