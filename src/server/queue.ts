// The server's only memory of demand: chunks with blocks still to send, served round-robin.
// A request for a chunk already queued merges into its entry, so N clients asking for the same
// blocks cost one transmission. Each entry's turn sends the blocks it held when the turn began,
// back to back (clients read a gap as loss); blocks asked for during its turn, or again after it,
// wait for its next turn behind every other entry, so no request, however often repeated, can
// hold the sender on one chunk. Bounded: requests beyond maxQueuedChunks are dropped (and
// counted); the clients ask again.
//
// Repairs (FEC, docs/PROTOCOL.md): with `useRepairs` on, a turn sends, for each group where every
// request asked for few blocks, as many fresh repair blocks as the largest single request asked
// for, instead of the union of the blocks asked for: one repair fills a different hole at each
// receiver, so repair traffic follows the worst receiver's loss, not the sum of everyone's.
//
// Two lanes: a request for a few blocks of a chunk (a repair of a chunk clients hold half-filled)
// goes to the chunk's urgent entry, in the urgent lane; a request for much of a chunk to its main
// entry, in the main lane. A half-filled chunk holds a buffer in every client that lacks a block
// of it, so finishing it first frees those buffers for the blocks that follow, even when another
// client has just asked for the whole chunk. The urgent lane earns one packet of credit per
// main-lane packet, so it never takes more than half the sender while whole chunks wait, whatever
// the requests say.
import { assert } from "../util/assert.ts";
import { bitmapFor, clearBit, countBits, nextSetBit, setBit, testBit } from "../util/bitmap.ts";
import { countPerGroup, fecGroupCount, groupBlocks, repairLimit } from "../net/fec-groups.ts";
import { FEC_MAX_REPAIR_BLOCKS } from "../net/fec.ts";

interface Entry {
  chunk: number;
  /** The chunk's urgent entry (small requests) rather than its main one. */
  urgent: boolean;
  blockCount: number;
  /** Blocks asked for that this entry's next turn will send. */
  pending: Uint8Array;
  pendingBlocks: number;
  /** Blocks of the turn under way (only the entry at the head has any), and its repairs left. */
  turn: Uint8Array;
  turnBlocks: number;
  /** Where the next scan of the turn starts: a turn sends its blocks in order. */
  cursor: number;
  groups: number;
  /** Per group: the most blocks one request merged since the turn began asked for. */
  pendingMax: Uint16Array;
  /** Per group: repairs this turn still sends (after its blocks). */
  turnRepairs: Uint16Array;
  /** Per group: the next repair index, so each repair sent is one receivers do not hold yet (shared by the chunk's two entries). */
  repairNext: Uint8Array;
}

function keyOf(chunk: number, urgent: boolean): number {
  return chunk * 2 + (urgent ? 1 : 0);
}

/** One packet's worth of work: a block of a chunk, or a repair of one of its groups. */
export type Send = { kind: "block"; chunk: number; block: number } | { kind: "repair"; chunk: number; group: number; index: number };

export interface MergeResult {
  /** Blocks newly queued by this request (0: everything asked for was already queued). */
  addedBlocks: number;
  /** False when the queue was full and the request was dropped. */
  accepted: boolean;
}

/** Repair cursors of recently queued chunks, so a chunk asked for again gets fresh repairs (oldest forgotten). */
const MAX_REMEMBERED_CURSORS = 4096;
/** A turn of at most this fraction of a chunk's blocks is small: it waits in the urgent lane. */
const SMALL_TURN_DIVISOR = 8;
/**
 * A manifest part asked for whole is urgent again only after this many chunks' worth of packets
 * since its last urgent turn: a replayed request for it then costs one turn in this many, as in
 * the main lane, not half the sender.
 */
const CRITICAL_SPACING_CHUNKS = 16;
/** Urgent-lane credit, in packets, at most (and at the start). */
const MAX_URGENT_CREDIT_PACKETS = 1024;

/** A request for a few blocks of each group (`counts`) and of the chunk: it goes to the chunk's urgent entry. */
function smallRequest(counts: Uint16Array, blockCount: number): boolean {
  let total = 0;
  for (let g = 0; g < counts.length; g++) {
    if (counts[g]! > repairLimit(groupBlocks(blockCount, counts.length, g))) return false;
    total += counts[g]!;
  }
  return total <= Math.max(1, Math.floor(blockCount / SMALL_TURN_DIVISOR));
}

/** Entries waiting for a turn (by key), first come first served; each in at most one lane once. */
class Lane {
  private readonly list: number[] = [];
  private head = 0;

  get waiting(): number {
    return this.list.length - this.head;
  }

  push(chunk: number): void {
    this.list.push(chunk);
  }

  /** The next chunk, or -1. */
  shift(): number {
    if (this.head >= this.list.length) return -1;
    const chunk = this.list[this.head++]!;
    // Keep the list proportional to what waits in it.
    if (this.head > 1024 && this.head * 2 > this.list.length) {
      this.list.splice(0, this.head);
      this.head = 0;
    }
    return chunk;
  }

  peek(maxChunks: number, out: number[]): void {
    for (let i = this.head; i < this.list.length && out.length < maxChunks; i++) out.push(this.list[i]!);
  }

  clear(): void {
    this.list.length = 0;
    this.head = 0;
  }
}

export class SendQueue {
  private readonly entries = new Map<number, Entry>();
  private readonly main = new Lane();
  private readonly urgent = new Lane();
  private active: Entry | null = null;
  private activeUrgent = false;
  private urgentCredit = MAX_URGENT_CREDIT_PACKETS;
  private readonly cursors = new Map<number, Uint8Array>();
  /** Packets taken so far: the queue's own clock, for spacing critical turns. */
  private taken = 0;
  /** When each critical chunk last had a whole urgent turn (in packets taken); one entry per manifest part. */
  private readonly criticalTurns = new Map<number, number>();
  /** Set by the session: repairs pay off only when several receivers lose different blocks. */
  useRepairs = false;

  /**
   * `criticalFrom`: chunks from this index on (the manifest parts) are urgent whatever is asked:
   * a client can write nothing before it has them, and every client asks for them first, so a
   * client that missed their first turn must not wait a whole round of the queue for them.
   */
  constructor(
    private readonly maxQueuedChunks: number,
    private readonly criticalFrom = Infinity,
  ) {
    assert(maxQueuedChunks >= 1, "queue holds at least one chunk");
  }

  get queuedChunks(): number {
    return this.entries.size;
  }

  get empty(): boolean {
    return this.entries.size === 0;
  }

  merge(chunk: number, blockCount: number, wanted: Uint8Array): MergeResult {
    // Counted once per request, by group: for emptiness, the lane, and the repair plan.
    const counts = countPerGroup(wanted, blockCount, fecGroupCount(blockCount));
    // An empty request makes no entry: an entry waits in a lane exactly while it has blocks.
    if (counts.every((n) => n === 0)) return { addedBlocks: 0, accepted: true };
    const urgent = chunk >= this.criticalFrom || smallRequest(counts, blockCount);
    let entry = this.entries.get(keyOf(chunk, urgent));
    const fresh = entry === undefined;
    if (entry === undefined) {
      if (this.entries.size >= this.maxQueuedChunks) return { addedBlocks: 0, accepted: false };
      entry = this.newEntry(chunk, urgent, blockCount);
      this.entries.set(keyOf(chunk, urgent), entry);
    }
    assert(entry.blockCount === blockCount, "block count of a chunk is fixed");
    const added = this.mergeBits(entry, wanted, counts);
    if (fresh) this.enqueue(entry);
    return { addedBlocks: added, accepted: true };
  }

  private mergeBits(entry: Entry, wanted: Uint8Array, counts: Uint16Array): number {
    const { blockCount, groups } = entry;
    // A group this turn still sends enough repairs for is served by them: nothing to queue.
    const served = (b: number): boolean => entry.turnRepairs[b % groups]! >= counts[b % groups]!;
    let added = 0;
    for (let byte = 0; byte < wanted.length && byte < entry.pending.length; byte++) {
      // Blocks still to go out in this turn are queued already; sent ones wait for the next.
      const fresh = wanted[byte]! & ~entry.pending[byte]! & ~entry.turn[byte]!;
      if (fresh === 0) continue;
      for (let bit = 0; bit < 8; bit++) {
        const b = byte * 8 + bit;
        if (b < blockCount && fresh & (1 << bit) && !served(b)) {
          setBit(entry.pending, b);
          added++;
        }
      }
    }
    entry.pendingBlocks += added;
    for (let g = 0; g < groups; g++) if (entry.turnRepairs[g]! < counts[g]!) entry.pendingMax[g] = Math.max(entry.pendingMax[g]!, counts[g]!);
    return added;
  }

  private newEntry(chunk: number, urgent: boolean, blockCount: number): Entry {
    const groups = fecGroupCount(blockCount);
    let repairNext = this.cursors.get(chunk);
    if (repairNext === undefined) {
      if (this.cursors.size >= MAX_REMEMBERED_CURSORS) this.cursors.delete(this.cursors.keys().next().value!);
      repairNext = new Uint8Array(groups);
      this.cursors.set(chunk, repairNext);
    }
    const e = { chunk, urgent, blockCount, pending: bitmapFor(blockCount), pendingBlocks: 0, turn: bitmapFor(blockCount), turnBlocks: 0, cursor: 0 };
    return { ...e, groups, pendingMax: new Uint16Array(groups), turnRepairs: new Uint16Array(groups), repairNext };
  }

  /** The next packet to send, taken off the queue: blocks of a turn first, then its repairs. */
  take(): Send | null {
    const entry = this.active ?? this.startTurn();
    if (entry === null) return null;
    const block = entry.cursor < entry.blockCount ? nextSetBit(entry.turn, entry.cursor, entry.blockCount) : -1;
    let send: Send;
    if (block >= 0) {
      assert(testBit(entry.turn, block), "an entry in its turn has a block to send");
      clearBit(entry.turn, block);
      entry.cursor = block + 1;
      send = { kind: "block", chunk: entry.chunk, block };
    } else {
      entry.cursor = entry.blockCount;
      const group = entry.turnRepairs.findIndex((n) => n > 0);
      assert(group >= 0, "an entry in its turn has a repair to send");
      entry.turnRepairs[group]!--;
      const index = entry.repairNext[group]!;
      entry.repairNext[group] = (index + 1) % FEC_MAX_REPAIR_BLOCKS;
      send = { kind: "repair", chunk: entry.chunk, group, index };
    }
    this.urgentCredit = this.activeUrgent ? this.urgentCredit - 1 : Math.min(MAX_URGENT_CREDIT_PACKETS, this.urgentCredit + 1);
    this.taken++;
    entry.turnBlocks--;
    if (entry.turnBlocks === 0) this.endTurn(entry);
    return send;
  }

  /** The chunk the next `take` sends from (its turn starts now if none is under way); null: empty. */
  nextChunk(): number | null {
    return (this.active ?? this.startTurn())?.chunk ?? null;
  }

  /** The chunk the next `take` will come from, then the few after it: a guess good for read-ahead. */
  upcoming(maxChunks: number): number[] {
    const keys: number[] = [];
    this.urgent.peek(maxChunks, keys);
    this.main.peek(maxChunks, keys);
    const out = this.active === null ? [] : [this.active.chunk];
    for (const key of keys) if (out.length < maxChunks) out.push(Math.floor(key / 2));
    return out;
  }

  /** Takes the next waiting entry off a lane and moves its pending blocks into its turn. */
  private startTurn(): Entry | null {
    const urgentFirst = this.urgent.waiting > 0 && (this.urgentCredit > 0 || this.main.waiting === 0);
    // Manifest parts not due for another whole urgent turn keep their place in the urgent lane.
    const held: number[] = [];
    let entry: Entry | null = null;
    let urgent = false;
    for (const lane of urgentFirst ? [true, false] : [false, true]) {
      entry = lane ? this.nextUrgent(held) : this.nextMain();
      urgent = lane;
      if (entry !== null) break;
    }
    // Nothing else to send: a held part goes now rather than the sender idling.
    if (entry === null && held.length > 0) {
      entry = this.entries.get(held.shift()!)!;
      urgent = true;
    }
    for (const key of held) this.urgent.push(key);
    if (entry === null) return null;
    if (urgent && !this.small(entry)) this.criticalTurns.set(entry.chunk, this.taken);
    this.begin(entry, urgent);
    return entry;
  }

  /** The next urgent entry due a turn; grown ones move to the main lane, held parts to `held`. */
  private nextUrgent(held: number[]): Entry | null {
    for (let n = this.urgent.waiting; n > 0; n--) {
      const key = this.urgent.shift();
      const entry = this.entries.get(key);
      if (entry === undefined) continue;
      if (this.small(entry) || this.criticalDue(entry)) return entry;
      // Grown while it waited (many different small requests): it waits its turn with the others.
      if (entry.chunk < this.criticalFrom) this.main.push(key);
      else held.push(key);
    }
    return null;
  }

  private nextMain(): Entry | null {
    for (let key = this.main.shift(); key >= 0; key = this.main.shift()) {
      const entry = this.entries.get(key);
      if (entry !== undefined) return entry;
    }
    return null;
  }

  private begin(entry: Entry, urgent: boolean): void {
    [entry.turn, entry.pending] = [entry.pending, entry.turn];
    entry.turnBlocks = entry.pendingBlocks;
    entry.pendingBlocks = 0;
    entry.cursor = 0;
    const plan = this.repairPlan(entry, entry.turn);
    for (let g = 0; g < entry.groups; g++) {
      if (plan[g] === 0) continue;
      for (let b = g; b < entry.blockCount; b += entry.groups) {
        if (testBit(entry.turn, b)) {
          clearBit(entry.turn, b);
          entry.turnBlocks--;
        }
      }
      entry.turnRepairs[g] = plan[g]!;
      entry.turnBlocks += plan[g]!;
    }
    entry.pendingMax.fill(0);
    assert(entry.turnBlocks > 0, "a waiting entry has blocks");
    this.active = entry;
    this.activeUrgent = urgent;
  }

  /** Per group, the repairs a turn of `blocks` would send instead of them (0: send the blocks). */
  private repairPlan(entry: Entry, blocks: Uint8Array): Uint16Array {
    const plan = new Uint16Array(entry.groups);
    if (!this.useRepairs) return plan;
    const union = countPerGroup(blocks, entry.blockCount, entry.groups);
    for (let g = 0; g < entry.groups; g++) {
      // Blocks asked for but going out in the turn before count in the max, not in the union.
      const want = Math.min(entry.pendingMax[g]!, union[g]!);
      if (want > 0 && want <= repairLimit(groupBlocks(entry.blockCount, entry.groups, g))) plan[g] = want;
    }
    return plan;
  }

  /** Packets the entry's next turn would send: few means it may wait in the urgent lane. */
  private small(entry: Entry): boolean {
    const plan = this.repairPlan(entry, entry.pending);
    const union = countPerGroup(entry.pending, entry.blockCount, entry.groups);
    let packets = 0;
    for (let g = 0; g < entry.groups; g++) packets += plan[g]! > 0 ? plan[g]! : union[g]!;
    return packets <= Math.max(1, Math.floor(entry.blockCount / SMALL_TURN_DIVISOR));
  }

  /** Small turns wait in the urgent lane, and so do manifest parts (held there until due). */
  private urgentNow(entry: Entry): boolean {
    return entry.chunk >= this.criticalFrom || this.small(entry);
  }

  /** A manifest part whose last whole urgent turn is CRITICAL_SPACING_CHUNKS behind (or that never had one). */
  private criticalDue(entry: Entry): boolean {
    if (entry.chunk < this.criticalFrom) return false;
    const lastTurn = this.criticalTurns.get(entry.chunk);
    return lastTurn === undefined || this.taken - lastTurn > CRITICAL_SPACING_CHUNKS * entry.blockCount;
  }

  private enqueue(entry: Entry): void {
    (entry.urgent && this.urgentNow(entry) ? this.urgent : this.main).push(keyOf(entry.chunk, entry.urgent));
  }

  /** A finished turn: blocks asked for meanwhile go to the back of a lane, else the entry goes. */
  private endTurn(entry: Entry): void {
    this.active = null;
    if (entry.pendingBlocks > 0) this.enqueue(entry);
    else this.drop(entry);
  }

  private drop(entry: Entry): void {
    this.entries.delete(keyOf(entry.chunk, entry.urgent));
    if (this.entries.size === 0) {
      this.main.clear();
      this.urgent.clear();
    }
  }

  /** Consistency check for tests: every count matches its bitmap, and only the active entry has a turn. */
  checkInvariants(): void {
    for (const e of this.entries.values()) {
      const repairs = e.turnRepairs.reduce((a, n) => a + n, 0);
      assert(countBits(e.pending, e.blockCount) === e.pendingBlocks && countBits(e.turn, e.blockCount) + repairs === e.turnBlocks, `entry ${e.chunk} counts consistent`);
      assert(e.pendingBlocks + e.turnBlocks > 0 && (e === this.active || e.turnBlocks === 0), `entry ${e.chunk} queued sensibly`);
    }
    assert(this.main.waiting + this.urgent.waiting <= this.entries.size, "each entry waits in a lane at most once");
  }
}
