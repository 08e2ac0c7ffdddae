// Pacing and self-tuning of the server's send rate (docs/PROTOCOL.md, "Pacing").
// Pure: time comes in as an argument, so the control law can be tested without a clock.
import { assert } from "../util/assert.ts";

/**
 * The token bucket's burst bound: bytes the sender may put on the wire back to back, in whole
 * packets. 64 KiB is 0.52 ms of a 1 Gbit/s port and 52 us of a 10 Gbit/s one (within 100 us of line
 * rate either way), the size of one UDP GSO message, and within the lab links' 64 KiB tbf burst.
 */
export const MAX_BURST_BYTES = 64 * 1024;

/** The burst bound for packets of this wire size: as many whole ones as fit MAX_BURST_BYTES. */
export function burstBoundBytes(fullPacketWireBytes: number): number {
  assert(fullPacketWireBytes > 0 && fullPacketWireBytes <= MAX_BURST_BYTES, "a packet fits the burst bound");
  return Math.floor(MAX_BURST_BYTES / fullPacketWireBytes) * fullPacketWireBytes;
}

/** Token bucket in wire bytes: sends go out in bursts no larger than burstBytes. */
export class TokenBucket {
  private tokensBytes = 0;
  private lastMs: number | null = null;

  constructor(
    private rateBitsPerSecond: number,
    private readonly burstBytes: number,
  ) {
    assert(rateBitsPerSecond > 0 && burstBytes > 0, "positive rate and burst");
  }

  get burstBoundBytes(): number {
    return this.burstBytes;
  }

  setRate(rateBitsPerSecond: number): void {
    assert(rateBitsPerSecond > 0, "positive rate");
    this.rateBitsPerSecond = rateBitsPerSecond;
  }

  /** Tokens available at `nowMs`; an idle bucket holds one burst at most. */
  refill(nowMs: number): number {
    if (this.lastMs !== null) {
      const gainedBytes = ((nowMs - this.lastMs) / 1000) * (this.rateBitsPerSecond / 8);
      this.tokensBytes = Math.min(this.burstBytes, this.tokensBytes + gainedBytes);
    } else {
      this.tokensBytes = this.burstBytes;
    }
    this.lastMs = nowMs;
    return this.tokensBytes;
  }

  spend(bytes: number): void {
    this.tokensBytes -= bytes;
  }

  /** Milliseconds until `bytes` tokens are there (0 when they already are). */
  waitMs(bytes: number): number {
    const missing = bytes - this.tokensBytes;
    return missing <= 0 ? 0 : (missing * 8 * 1000) / this.rateBitsPerSecond;
  }
}

/** What a client reported about the blocks it saw in its last interval. */
export interface LossSample {
  receivedBlocks: number;
  seqSpan: number;
}

export interface RateLaw {
  /** The configured rate: the ceiling, and the starting point. */
  maxBitsPerSecond: number;
  minBitsPerSecond: number;
  /** Median loss above this is congestion: slow down to what the median client gets. */
  lossHigh: number;
  /** Median loss below this: speed up by increaseFraction of the ceiling per step. */
  lossLow: number;
  increaseFraction: number;
  /** Decrease lands this far below the delivered rate, so the queue at the bottleneck drains. */
  decreaseMargin: number;
  /** One step cuts the rate by at most this fraction, whatever the reports claim. */
  maxCutFraction: number;
  /** A sample spanning fewer blocks than this says too little to act on. */
  minSampleSpan: number;
}

export const DEFAULT_RATE_LAW: Omit<RateLaw, "maxBitsPerSecond" | "minBitsPerSecond"> = {
  lossHigh: 0.1,
  lossLow: 0.02,
  increaseFraction: 0.05,
  decreaseMargin: 0.95,
  // A quarter per step: a bottleneck at half the rate is reached in three steps (1.5 s), while
  // reports of total loss (a forger alone before the clients arrive) cost one step, not the floor.
  maxCutFraction: 0.25,
  minSampleSpan: 64,
};

/**
 * One step of the control law, run every control interval with the samples clients reported.
 * The median client decides: random loss of a few percent (which slowing down would not cure)
 * stays under lossHigh and leaves the rate alone, and one slow client cannot hold back the rest;
 * its re-requests are served at the rate everyone else can take. Returns the new rate.
 */
export function nextRate(law: RateLaw, rateBitsPerSecond: number, samples: LossSample[]): { rate: number; medianLoss: number | null } {
  const losses = samples
    .filter((s) => s.seqSpan >= law.minSampleSpan)
    .map((s) => Math.min(1, Math.max(0, 1 - s.receivedBlocks / s.seqSpan)))
    .sort((a, b) => a - b);
  // Most reporters must have seen enough to judge: a client that saw little has no opinion, and
  // must not leave the decision to the few (perhaps one forger) that claim one.
  if (losses.length === 0 || losses.length * 2 <= samples.length) return { rate: rateBitsPerSecond, medianLoss: null };
  // The lower median: with two clients, the better one decides.
  const median = losses[(losses.length - 1) >> 1]!;
  let rate = rateBitsPerSecond;
  if (median > law.lossHigh) rate = Math.max(rate * (1 - median) * law.decreaseMargin, rate * (1 - law.maxCutFraction));
  else if (median < law.lossLow) rate = rate + law.maxBitsPerSecond * law.increaseFraction;
  return { rate: Math.min(law.maxBitsPerSecond, Math.max(law.minBitsPerSecond, rate)), medianLoss: median };
}
