// The process's peak resident memory, for reports.
import { readFileSync } from "node:fs";

/**
 * Peak RSS of this process image, from VmHWM. Not getrusage's ru_maxrss: Linux carries that
 * across exec, so a client started from a large parent would report the parent's peak.
 * Another process's peak (tests watch a server's) comes from its own status file.
 */
export function peakRssBytes(pid: number | "self" = "self"): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch (e) {
    if (pid !== "self") throw e; // another process: only its status file can tell
  }
  return process.resourceUsage().maxRSS * 1024;
}
