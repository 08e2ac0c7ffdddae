// Where a client collects blocks into chunks: a fixed set of chunk buffers (the memory budget)
// and, for each chunk being filled, which blocks it has. Pure bookkeeping: no sockets, no timers.
import { assert } from "../util/assert.ts";
import { bitmapFor, setBit, testBit } from "../util/bitmap.ts";
import { decodeMissing, FEC_MAX_REPAIR_BLOCKS } from "../net/fec.ts";
import { countPerGroup, groupBlocks, repairLimit, sourceSymbol } from "../net/fec-groups.ts";

export class BufferPool {
  private readonly free: Uint8Array[] = [];
  /** Buffers made so far: made on demand, so an idle or small load holds little memory. */
  private made = 0;

  constructor(
    readonly bufferBytes: number,
    readonly bufferCount: number,
  ) {
    assert(bufferCount >= 2, "at least two chunk buffers");
  }

  /** Buffers that take() can still hand out (free ones and those not yet made). */
  get freeCount(): number {
    return this.free.length + (this.bufferCount - this.made);
  }

  /** Buffers allocated so far (at most bufferCount). */
  get allocatedCount(): number {
    return this.made;
  }

  take(): Uint8Array | null {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    if (this.made >= this.bufferCount) return null;
    this.made++;
    return new Uint8Array(this.bufferBytes);
  }

  give(buffer: Uint8Array): void {
    assert(buffer.byteLength === this.bufferBytes && this.free.length < this.made, "a returned buffer is one of ours");
    this.free.push(buffer);
  }
}

export interface Slot {
  chunk: number;
  buffer: Uint8Array;
  got: Uint8Array;
  gotBlocks: number;
  /** Last time this chunk showed life: a block arrived, or someone (we or another) asked for it. */
  lastActivityMs: number;
  /** How long to wait after lastActivityMs before asking (again); doubles while nothing comes. */
  waitMs: number;
  /** Requests this client sent for the chunk. */
  requests: number;
  /** True when this client asked for the chunk (it counts against the request window). */
  requestedByUs: boolean;
  /**
   * Per FEC group, repairs held until enough arrive to decode (null: none yet). Only a group's
   * still-missing count of them is kept, so they never outgrow the holes in the chunk's buffer.
   */
  repairs: Map<number, Uint8Array>[] | null;
}

export interface Geometry {
  chunkBytes: number;
  blockBytes: number;
  blockCount: number;
  /** FEC groups per chunk (src/net/fec-groups.ts). */
  groups: number;
}

/** Size of block `block` of a chunk: every block is full but the last. */
export function blockLength(g: Geometry, block: number): number {
  return Math.min(g.blockBytes, g.chunkBytes - block * g.blockBytes);
}

export function newSlot(chunk: number, buffer: Uint8Array, g: Geometry, nowMs: number, waitMs: number): Slot {
  return { chunk, buffer, got: bitmapFor(g.blockCount), gotBlocks: 0, lastActivityMs: nowMs, waitMs, requests: 0, requestedByUs: false, repairs: null };
}

/** Stores a block; returns false when the slot already had it (a duplicate). */
export function storeBlock(slot: Slot, g: Geometry, block: number, data: Uint8Array): boolean {
  if (testBit(slot.got, block)) return false;
  slot.buffer.set(data, block * g.blockBytes);
  setBit(slot.got, block);
  slot.gotBlocks++;
  return true;
}

/** Blocks of `group` this slot lacks. */
export function missingInGroup(slot: Slot, g: Geometry, group: number): number {
  let n = 0;
  for (let b = group; b < g.blockCount; b += g.groups) if (!testBit(slot.got, b)) n++;
  return n;
}

function heldRepairs(slot: Slot, group: number): number {
  return slot.repairs?.[group]?.size ?? 0;
}

/** Holes in a group up to which a client counts on repairs: half the repair indices at most. */
export function repairAskLimit(groupBlockCount: number): number {
  return Math.min(repairLimit(groupBlockCount), FEC_MAX_REPAIR_BLOCKS >> 1);
}

/**
 * The request bitmap for a slot: per group, as many of the blocks it lacks as the repairs it holds
 * do not make up for (any blocks or repairs will do, so the first ones missing stand for them).
 */
export function requestBitmap(slot: Slot, g: Geometry): Uint8Array {
  const out = bitmapFor(g.blockCount);
  for (let group = 0; group < g.groups; group++) {
    const missing = missingInGroup(slot, g, group);
    // Repairs fill a group's holes only while they are few. Beyond that ask for every hole: past
    // repairLimit the server sends the blocks themselves, and a client holding most of the 64
    // repair indices would otherwise wait for fresh ones that may never come.
    let need = missing <= repairAskLimit(groupBlocks(g.blockCount, g.groups, group)) ? missing - heldRepairs(slot, group) : missing;
    for (let b = group; b < g.blockCount && need > 0; b += g.groups) {
      if (testBit(slot.got, b)) continue;
      setBit(out, b);
      need--;
    }
  }
  return out;
}

/**
 * True when an overheard request will serve this slot too, group by group: it asks for every
 * block we still need there, or for at least as many blocks as we need and few enough that the
 * server answers with repairs (which fill anyone's holes).
 */
export function covers(wanted: Uint8Array, slot: Slot, g: Geometry): boolean {
  const ours = requestBitmap(slot, g);
  const theirs = countPerGroup(wanted, g.blockCount, g.groups);
  const needs = countPerGroup(ours, g.blockCount, g.groups);
  for (let group = 0; group < g.groups; group++) {
    const need = needs[group]!;
    if (need === 0) continue;
    const count = theirs[group]!;
    if (count >= need && count <= repairLimit(groupBlocks(g.blockCount, g.groups, group))) continue;
    for (let b = group; b < g.blockCount; b += g.groups) if (testBit(ours, b) && !testBit(wanted, b)) return false;
  }
  return true;
}

/** Keeps a repair of `group`; false when it cannot help (group whole, held already, or enough held). */
export function storeRepair(slot: Slot, g: Geometry, group: number, index: number, data: Uint8Array): boolean {
  const missing = missingInGroup(slot, g, group);
  const held = (slot.repairs ??= Array.from({ length: g.groups }, () => new Map<number, Uint8Array>()))[group]!;
  if (missing === 0 || held.has(index) || held.size >= missing) return false;
  held.set(index, data.slice()); // the datagram's buffer may be reused
  return true;
}

/** Decodes `group` once its blocks and repairs add up to the whole group; returns blocks recovered. */
export function decodeGroup(slot: Slot, g: Geometry, group: number): number {
  const held = slot.repairs?.[group];
  const missing = missingInGroup(slot, g, group);
  if (held === undefined || missing === 0 || held.size < missing) return 0;
  const have = new Map<number, Uint8Array>();
  for (let b = group, i = 0; b < g.blockCount; b += g.groups, i++) if (testBit(slot.got, b)) have.set(i, sourceSymbol(slot.buffer.subarray(0, g.chunkBytes), g.blockBytes, b));
  const recovered = decodeMissing(groupBlocks(g.blockCount, g.groups, group), g.blockBytes, have, held);
  assert(recovered !== null && recovered.size === missing, "enough repairs decode the group");
  for (const [i, symbol] of recovered) {
    const b = i * g.groups + group;
    storeBlock(slot, g, b, symbol.subarray(0, blockLength(g, b)));
  }
  held.clear();
  return missing;
}
