// The loss a client sees, from the server's block sequence numbers: what it reports each interval
// so the server can pace (docs/PROTOCOL.md, "Pacing").

export class LossMeter {
  private received = 0;
  private minSeq = -1;
  private maxSeq = -1;

  count(seq: number): void {
    this.received++;
    if (this.minSeq < 0 || seq < this.minSeq) this.minSeq = seq;
    if (seq > this.maxSeq) this.maxSeq = seq;
  }

  /** Blocks received since the last take, and the sequence numbers they spanned; starts again. */
  take(): { received: number; span: number } {
    const sample = { received: this.received, span: this.minSeq < 0 ? 0 : this.maxSeq - this.minSeq + 1 };
    this.reset();
    return sample;
  }

  /** A restarted server numbers from zero again: what was counted says nothing any more. */
  reset(): void {
    this.received = 0;
    this.minSeq = this.maxSeq = -1;
  }
}
