// Send rate and its jitter from rx-sampler.ts samples (scripts/bench-daemon.ts). Pure.

/** A window counts as "in the transfer" above this share of the rate ceiling. */
const ACTIVE_SHARE = 0.2;
/** Cut from each end of the transfer: the loader's start (manifest) and its last repairs. */
const TRIM_MS = 1000;
/** Fewer steady windows than this: the transfer was too short to judge. */
const MIN_WINDOWS = 10;

export interface RateFigures {
  /** Mean over the steady part of the transfer, Ethernet frame bits per second / 1e6. */
  meanMbit: number;
  /** Standard deviation of the window rates over their mean. */
  cv: number;
  p5Mbit: number;
  p50Mbit: number;
  maxMbit: number;
  /** Windows below half the mean: stalls. */
  stalls: number;
  /** When the stalls ended, seconds since the first sample (the sampler's start). */
  stallAtS: number[];
  windows: number;
  seconds: number;
}

/** samples: [ms, cumulative bytes]; ceiling in bits per second. Null when no steady part was seen. */
export function rateFigures(samples: readonly [number, number][], ceilingBitsPerSecond: number): RateFigures | null {
  const rates: { t: number; mbit: number }[] = [];
  for (let i = 1; i < samples.length; i++) {
    const [t0, b0] = samples[i - 1]!;
    const [t1, b1] = samples[i]!;
    if (t1 > t0) rates.push({ t: t1, mbit: ((b1 - b0) * 8) / ((t1 - t0) * 1000) });
  }
  const active = rates.filter((r) => r.mbit * 1e6 > ACTIVE_SHARE * ceilingBitsPerSecond);
  if (active.length === 0) return null;
  const from = active[0]!.t + TRIM_MS;
  const to = active[active.length - 1]!.t - TRIM_MS;
  const steady = rates.filter((r) => r.t > from && r.t <= to);
  if (steady.length < MIN_WINDOWS) return null;
  const inSteady = samples.filter(([t]) => t >= from && t <= to);
  const [ta, ba] = inSteady[0]!;
  const [tb, bb] = inSteady[inSteady.length - 1]!;
  const meanMbit = ((bb - ba) * 8) / ((tb - ta) * 1000);
  const values = steady.map((r) => r.mbit).sort((a, b) => a - b);
  const avg = values.reduce((s, v) => s + v, 0) / values.length;
  const sd = Math.sqrt(values.reduce((s, v) => s + (v - avg) ** 2, 0) / values.length);
  const at = (p: number) => values[Math.min(values.length - 1, Math.floor((p / 100) * values.length))]!;
  return {
    meanMbit,
    cv: sd / avg,
    p5Mbit: at(5),
    p50Mbit: at(50),
    maxMbit: values[values.length - 1]!,
    stalls: values.filter((v) => v < avg / 2).length,
    stallAtS: steady.filter((r) => r.mbit < avg / 2).map((r) => Math.round(r.t / 100) / 10),
    windows: values.length,
    seconds: (tb - ta) / 1000,
  };
}
