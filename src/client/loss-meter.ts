// The loss a client sees, from the server's block sequence numbers: what it reports each interval
// so the server can pace (docs/PROTOCOL.md, "Pacing").
//
// Sequence numbers are u32 and wrap (after about 14 h at 1 Gbit/s), so they are compared in serial
// number arithmetic (RFC 1982): each is placed by its signed 32-bit distance from the interval's
// first block, which is exact while an interval spans fewer than 2^31 blocks (hours of traffic).
import { assert } from "../util/assert.ts";

/** Half the u32 sequence space: the largest distance serial arithmetic can order. */
export const SEQ_HALF_RANGE = 2 ** 31;
assert(SEQ_HALF_RANGE * 2 === 2 ** 32, "the block sequence is a u32");

/** Signed distance from `from` to `to` in the u32 sequence space: in [-2^31, 2^31). */
export function seqDistance(from: number, to: number): number {
  return (to - from) | 0;
}

export class LossMeter {
  private received = 0;
  /** The interval's first sequence number, or -1 before any block. */
  private base = -1;
  /** Lowest and highest distance from `base` seen in this interval. */
  private minOffset = 0;
  private maxOffset = 0;

  count(seq: number): void {
    this.received++;
    if (this.base < 0) {
      this.base = seq >>> 0;
      return;
    }
    const offset = seqDistance(this.base, seq >>> 0);
    if (offset < this.minOffset) this.minOffset = offset;
    if (offset > this.maxOffset) this.maxOffset = offset;
  }

  /** Blocks received since the last take, and the sequence numbers they spanned; starts again. */
  take(): { received: number; span: number } {
    const sample = { received: this.received, span: this.base < 0 ? 0 : this.maxOffset - this.minOffset + 1 };
    this.reset();
    return sample;
  }

  /** A restarted server numbers from zero again: what was counted says nothing any more. */
  reset(): void {
    this.received = 0;
    this.base = -1;
    this.minOffset = this.maxOffset = 0;
  }
}
