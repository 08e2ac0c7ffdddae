// The process's peak resident memory, for reports.
import { readFileSync } from "node:fs";

/**
 * Peak RSS of this process image, from VmHWM. Not getrusage's ru_maxrss: Linux carries that
 * across exec, so a client started from a large parent would report the parent's peak.
 */
export function peakRssBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux: fall through
  }
  return process.resourceUsage().maxRSS * 1024;
}
