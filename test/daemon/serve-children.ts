// The `discus serve` children of daemons (src/daemon/session-child.ts), found by their command
// lines in /proc: the tests check that a daemon runs one per image, and leaves none behind.
import { readdirSync, readFileSync } from "node:fs";

export interface ServeChild {
  pid: number;
  ppid: number;
  argv: string[];
}

function readChild(pid: number): ServeChild | null {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a.length > 0);
    if (!argv.includes("serve") || !argv.includes("--exit-with-stdin")) return null;
    // Field 4 of /proc/PID/stat, after the command name in parentheses.
    const ppid = Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);
    return { pid, ppid, argv };
  } catch {
    return null; // it ended while we looked
  }
}

/** Every supervised `discus serve` now running, optionally only those of `parentPid`. */
export function serveChildren(parentPid?: number): ServeChild[] {
  const out: ServeChild[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const c = readChild(Number(name));
    if (c !== null && (parentPid === undefined || c.ppid === parentPid)) out.push(c);
  }
  return out;
}

/** The value of `--group` in a child's command line. */
export function groupOf(c: ServeChild): string {
  return c.argv[c.argv.indexOf("--group") + 1] ?? "";
}

export function alive(pid: number): boolean {
  try {
    // A zombie is as good as gone: it serves nothing.
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
}

/** Polls `cond` every 50 ms until it holds or `timeoutMs` passes; returns whether it held. */
export async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) return false;
    await Bun.sleep(50);
  }
  return true;
}
