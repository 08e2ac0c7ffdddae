// The server's only memory of demand: chunks with blocks still to send, served round-robin.
// A request for a chunk already queued merges into its entry, so N clients asking for the same
// blocks cost one transmission. Each entry's turn sends the blocks it held when the turn began,
// back to back (clients read a gap as loss); blocks asked for during its turn, or again after it,
// wait for its next turn behind every other entry, so no request, however often repeated, can
// hold the sender on one chunk. Bounded: requests beyond maxQueuedChunks are dropped (and
// counted); the clients ask again.
import { assert } from "../util/assert.ts";
import { bitmapFor, clearBit, countBits, nextSetBit, setBit, testBit } from "../util/bitmap.ts";

interface Entry {
  chunk: number;
  blockCount: number;
  /** Blocks asked for that this entry's next turn will send. */
  pending: Uint8Array;
  pendingBlocks: number;
  /** Blocks of the turn under way (only the entry at the head has any). */
  turn: Uint8Array;
  turnBlocks: number;
  /** Where the next scan of the turn starts: a turn sends its blocks in order. */
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
  /** Round-robin order: chunks waiting for a turn; `active` is the one taking its turn. */
  private readonly order: number[] = [];
  private head = 0;
  private active: Entry | null = null;

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
      // An empty request makes no entry: an entry is in the order exactly while it has blocks.
      if (countBits(wanted, Math.min(blockCount, wanted.length * 8)) === 0) return { addedBlocks: 0, accepted: true };
      if (this.entries.size >= this.maxQueuedChunks) return { addedBlocks: 0, accepted: false };
      entry = { chunk, blockCount, pending: bitmapFor(blockCount), pendingBlocks: 0, turn: bitmapFor(blockCount), turnBlocks: 0, cursor: 0 };
      this.entries.set(chunk, entry);
      this.order.push(chunk);
    }
    assert(entry.blockCount === blockCount, "block count of a chunk is fixed");
    let added = 0;
    for (let byte = 0; byte < wanted.length && byte < entry.pending.length; byte++) {
      // Blocks still to go out in this turn are queued already; sent ones wait for the next.
      const fresh = wanted[byte]! & ~entry.pending[byte]! & ~entry.turn[byte]!;
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
    return { addedBlocks: added, accepted: true };
  }

  /** The next block to send, taken off the queue; null when nothing is pending. */
  take(): { chunk: number; block: number } | null {
    const entry = this.active ?? this.startTurn();
    if (entry === null) return null;
    const block = nextSetBit(entry.turn, entry.cursor, entry.blockCount);
    assert(block >= 0 && testBit(entry.turn, block), "an entry in its turn has a block to send");
    clearBit(entry.turn, block);
    entry.turnBlocks--;
    entry.cursor = block + 1;
    if (entry.turnBlocks === 0) this.endTurn(entry);
    return { chunk: entry.chunk, block };
  }

  /** The chunk the next `take` will come from (for read-ahead), then the few after it. */
  upcoming(maxChunks: number): number[] {
    const out: number[] = [];
    if (this.active !== null && maxChunks > 0) out.push(this.active.chunk);
    for (let i = this.head; i < this.order.length && out.length < maxChunks; i++) {
      const chunk = this.order[i]!;
      if (this.entries.has(chunk)) out.push(chunk);
    }
    return out;
  }

  /** Takes the next waiting entry off the order and moves its pending blocks into its turn. */
  private startTurn(): Entry | null {
    while (this.head < this.order.length) {
      const entry = this.entries.get(this.order[this.head++]!);
      if (entry === undefined) continue;
      this.compact();
      [entry.turn, entry.pending] = [entry.pending, entry.turn];
      entry.turnBlocks = entry.pendingBlocks;
      entry.pendingBlocks = 0;
      entry.cursor = 0;
      assert(entry.turnBlocks > 0, "a waiting entry has blocks");
      this.active = entry;
      return entry;
    }
    return null;
  }

  /** A finished turn: blocks asked for meanwhile go to the back of the order, else the entry goes. */
  private endTurn(entry: Entry): void {
    this.active = null;
    if (entry.pendingBlocks > 0) this.order.push(entry.chunk);
    else this.drop(entry);
  }

  private drop(entry: Entry): void {
    this.entries.delete(entry.chunk);
    if (this.entries.size === 0) {
      this.order.length = 0;
      this.head = 0;
    }
  }

  /** Keeps the order list proportional to the live entries (each is in it at most once). */
  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Consistency check for tests: every count matches its bitmap, and only the active entry has a turn. */
  checkInvariants(): void {
    for (const e of this.entries.values()) {
      assert(countBits(e.pending, e.blockCount) === e.pendingBlocks && countBits(e.turn, e.blockCount) === e.turnBlocks, `entry ${e.chunk} counts consistent`);
      assert(e.pendingBlocks + e.turnBlocks > 0 && (e === this.active || e.turnBlocks === 0), `entry ${e.chunk} queued sensibly`);
    }
    assert(this.order.length - this.head <= this.entries.size, "each entry waits in the order at most once");
  }
}
