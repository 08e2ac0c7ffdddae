// The server's sending rate: the token bucket that paces blocks, the control law that moves the
// rate with the loss clients report, and the charge that leaves room on the group's downlinks for
// the clients' own requests and reports. No clock or network: times are passed in.
import { wireBytes } from "../net/wire.ts";
import { assert } from "../util/assert.ts";
import { burstBoundBytes, DEFAULT_RATE_LAW, nextRate, TokenBucket, type LossSample, type RateLaw } from "./pacer.ts";

/**
 * Clients' requests and reports go to the whole group, so they share every client's downlink with
 * the blocks: the sender leaves room for them by spending tokens on each one it hears, up to this
 * share of the rate per CONTROL_CHARGE_WINDOW_MS (so a flood cannot silence it).
 */
const MAX_CONTROL_SHARE = 0.5;
const CONTROL_CHARGE_WINDOW_MS = 100;
/** Lowest rate the control law may choose: a tenth of the configured one, at least 1 Mbit/s. */
const MIN_RATE_FRACTION = 0.1;
const MIN_RATE_BITS_PER_SECOND = 1e6;
/** Rate changes smaller than this fraction are not worth an event. */
const RATE_CHANGE_FRACTION = 0.001;
assert(MAX_CONTROL_SHARE < 1 && MIN_RATE_FRACTION < 1, "control traffic and the lowest rate leave room for blocks");

/** A rate change worth telling: the new rate and what moved it. */
export interface RateChange {
  rateBitsPerSecond: number;
  /** The median of the clients' reported loss that moved it. */
  lossFraction: number;
  previousBitsPerSecond: number;
  reports: number;
}

export class RateControl {
  private readonly law: RateLaw;
  private rate: number;
  readonly bucket: TokenBucket;
  private windowStartMs = 0;
  private chargedBytes = 0;

  /** Starts at the configured rate, the ceiling of the law. */
  constructor(rateBitsPerSecond: number, fullPacketWireBytes: number) {
    assert(rateBitsPerSecond > 0, "a positive rate");
    this.law = { ...DEFAULT_RATE_LAW, maxBitsPerSecond: rateBitsPerSecond, minBitsPerSecond: Math.max(MIN_RATE_BITS_PER_SECOND, rateBitsPerSecond * MIN_RATE_FRACTION) };
    this.rate = rateBitsPerSecond;
    this.bucket = new TokenBucket(this.rate, burstBoundBytes(fullPacketWireBytes));
  }

  get rateBitsPerSecond(): number {
    return this.rate;
  }

  /** A client's packet took room on every downlink of the group: the blocks leave it that room. */
  charge(payloadBytes: number, nowMs: number): void {
    if (nowMs - this.windowStartMs >= CONTROL_CHARGE_WINDOW_MS) {
      this.windowStartMs = nowMs;
      this.chargedBytes = 0;
    }
    const capBytes = (this.rate / 8) * (CONTROL_CHARGE_WINDOW_MS / 1000) * MAX_CONTROL_SHARE;
    const bytes = wireBytes(payloadBytes);
    if (this.chargedBytes + bytes > capBytes) return;
    this.chargedBytes += bytes;
    this.bucket.refill(nowMs);
    this.bucket.spend(bytes);
  }

  /** Moves the rate by the law given the clients' loss samples; the change, if worth telling. */
  adapt(samples: LossSample[]): RateChange | null {
    const step = nextRate(this.law, this.rate, samples);
    const worthTelling = Math.abs(step.rate - this.rate) / this.rate > RATE_CHANGE_FRACTION;
    if (!worthTelling) return null;
    const previousBitsPerSecond = this.rate;
    this.rate = step.rate;
    this.bucket.setRate(this.rate);
    return { rateBitsPerSecond: this.rate, lossFraction: step.medianLoss ?? 0, previousBitsPerSecond, reports: samples.length };
  }
}
