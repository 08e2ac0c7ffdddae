// Parses sizes such as "1M", "32KiB", "4096" into bytes (binary multiples).
const MULTIPLIERS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

export function parseBytes(text: string): number {
  const m = /^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$/i.exec(text);
  if (!m) throw new Error(`"${text}" is not a size (examples: 4096, 32K, 1M, 1MiB)`);
  const value = Number(m[1]) * MULTIPLIERS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(value)) throw new Error(`"${text}" is too large`);
  return value;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}

/** Parses a bit rate such as "100mbit", "1gbit", "500k" (decimal multiples, bits per second). */
export function parseRate(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps|b)?(\/s)?\s*$/i.exec(text);
  if (!m) throw new Error(`"${text}" is not a rate (examples: 100mbit, 1gbit, 500kbit)`);
  const scale: Record<string, number> = { "": 1, k: 1e3, m: 1e6, g: 1e9 };
  return Number(m[1]) * scale[m[2]!.toLowerCase()]!;
}

/** Parses a duration such as "30s", "500ms", "2m", "1h" or a bare number of seconds, into ms. */
export function parseDurationMs(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(text);
  if (!m) throw new Error(`"${text}" is not a duration (examples: 500ms, 30s, 5m)`);
  const scale: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return Number(m[1]) * scale[(m[2] ?? "s").toLowerCase()]!;
}
