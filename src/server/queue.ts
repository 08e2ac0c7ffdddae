// The server's only memory of demand: chunks with blocks still to send, first come first served.
// A request for a chunk already queued merges into its entry, so N clients asking for the same
// blocks cost one transmission. Bounded: requests beyond maxQueuedChunks are dropped (and counted);
// the clients ask again.
import { assert } from "../util/assert.ts";
import { bitmapFor, clearBit, countBits, nextSetBit, setBit, testBit } from "../util/bitmap.ts";

interface Entry {
  chunk: number;
  blockCount: number;
  pending: Uint8Array;
  pendingBlocks: number;
  /** Where the next scan for a pending block starts: blocks go out in order, wrapping. */
  cursor: number;
}

export interface MergeResult {
  /** Blocks newly queued by this request (0: everything asked for was already queued). */
  addedBlocks: number;
  /** False when the queue was full and the request was dropped. */
  accepted: boolean;
}

export class SendQueue {
  private readonly entries = new Map<number, Entry>();
  private readonly order: number[] = [];
  private head = 0;

  constructor(private readonly maxQueuedChunks: number) {
    assert(maxQueuedChunks >= 1, "queue holds at least one chunk");
  }

  get queuedChunks(): number {
    return this.entries.size;
  }

  get empty(): boolean {
    return this.entries.size === 0;
  }

  merge(chunk: number, blockCount: number, wanted: Uint8Array): MergeResult {
    let entry = this.entries.get(chunk);
    if (entry === undefined) {
      if (this.entries.size >= this.maxQueuedChunks) return { addedBlocks: 0, accepted: false };
      entry = { chunk, blockCount, pending: bitmapFor(blockCount), pendingBlocks: 0, cursor: 0 };
      this.entries.set(chunk, entry);
      this.order.push(chunk);
    }
    assert(entry.blockCount === blockCount, "block count of a chunk is fixed");
    let added = 0;
    for (let byte = 0; byte < wanted.length; byte++) {
      const fresh = wanted[byte]! & ~entry.pending[byte]!;
      if (fresh === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const b = byte * 8 + bit;
        if (b < blockCount && fresh & (1 << bit)) {
          setBit(entry.pending, b);
          added++;
        }
      }
    }
    entry.pendingBlocks += added;
    if (entry.pendingBlocks === 0) this.remove(chunk);
    return { addedBlocks: added, accepted: true };
  }

  /** The next block to send, taken off the queue; null when nothing is pending. */
  take(): { chunk: number; block: number } | null {
    while (this.head < this.order.length) {
      const chunk = this.order[this.head]!;
      const entry = this.entries.get(chunk);
      if (entry === undefined) {
        this.head++;
        continue;
      }
      const block = nextSetBit(entry.pending, entry.cursor, entry.blockCount);
      assert(block >= 0 && testBit(entry.pending, block), "a queued entry has a pending block");
      clearBit(entry.pending, block);
      entry.pendingBlocks--;
      entry.cursor = block + 1 === entry.blockCount ? 0 : block + 1;
      if (entry.pendingBlocks === 0) this.remove(chunk);
      return { chunk, block };
    }
    return null;
  }

  /** The chunk the next `take` will come from (for read-ahead), then the few after it. */
  upcoming(maxChunks: number): number[] {
    const out: number[] = [];
    for (let i = this.head; i < this.order.length && out.length < maxChunks; i++) {
      const chunk = this.order[i]!;
      if (this.entries.has(chunk)) out.push(chunk);
    }
    return out;
  }

  private remove(chunk: number): void {
    this.entries.delete(chunk);
    // Compact the order list now and then so it stays proportional to the live entries.
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
    if (this.entries.size === 0) {
      this.order.length = 0;
      this.head = 0;
    }
  }

  /** Consistency check for tests: every pending count matches its bitmap. */
  checkInvariants(): void {
    for (const e of this.entries.values()) assert(countBits(e.pending, e.blockCount) === e.pendingBlocks && e.pendingBlocks > 0, `entry ${e.chunk} consistent`);
  }
}
