// Numbers as the page shows them (pure functions).

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 || v >= 100 ? 0 : 1)} ${UNITS[u]}`;
}

export function bytesRate(bytesPerSecond: number): string {
  return `${bytes(bytesPerSecond)}/s`;
}

export function bitRate(bitsPerSecond: number): string {
  if (bitsPerSecond >= 1e9) return `${(bitsPerSecond / 1e9).toFixed(2)} Gbit/s`;
  return `${(bitsPerSecond / 1e6).toFixed(1)} Mbit/s`;
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** Clock time of an epoch-ms instant (the page's own time zone). */
export function clock(atMs: number | null): string {
  return atMs === null ? "" : new Date(atMs).toLocaleTimeString([], { hour12: false });
}

export interface Sample {
  atMs: number;
  percent: number;
}

/**
 * Seconds left for a load, from the first and latest progress the page saw of it: the average
 * pace so far, which a multicast load keeps (the whole group moves at the session's rate).
 * null until there are two samples with progress between them.
 */
export function etaSeconds(first: Sample, latest: Sample): number | null {
  const gained = latest.percent - first.percent;
  const tookMs = latest.atMs - first.atMs;
  if (gained <= 0 || tookMs <= 0 || latest.percent >= 100) return null;
  return ((100 - latest.percent) * tookMs) / gained / 1000;
}

const PLOT_HEADROOM = 1.15;

/** SVG polyline points for a rate plot of `width` x `height` (pure): the newest point at the right. */
export function plotPoints(values: readonly number[], width: number, height: number): string {
  if (values.length === 0) return "";
  // Headroom above the peak, so a steady rate draws a visible line rather than the top edge.
  const top = Math.max(...values, 1) * PLOT_HEADROOM;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  return values.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / top) * height).toFixed(1)}`).join(" ");
}
