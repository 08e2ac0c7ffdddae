// Where a client collects blocks into chunks: a fixed set of chunk buffers (the memory budget)
// and, for each chunk being filled, which blocks it has. Pure bookkeeping: no sockets, no timers.
import { assert } from "../util/assert.ts";
import { bitmapFor, setBit, testBit } from "../util/bitmap.ts";

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
}

export interface Geometry {
  chunkBytes: number;
  blockBytes: number;
  blockCount: number;
}

/** Size of block `block` of a chunk: every block is full but the last. */
export function blockLength(g: Geometry, block: number): number {
  return Math.min(g.blockBytes, g.chunkBytes - block * g.blockBytes);
}

export function newSlot(chunk: number, buffer: Uint8Array, g: Geometry, nowMs: number, waitMs: number): Slot {
  return { chunk, buffer, got: bitmapFor(g.blockCount), gotBlocks: 0, lastActivityMs: nowMs, waitMs, requests: 0, requestedByUs: false };
}

/** Stores a block; returns false when the slot already had it (a duplicate). */
export function storeBlock(slot: Slot, g: Geometry, block: number, data: Uint8Array): boolean {
  if (testBit(slot.got, block)) return false;
  slot.buffer.set(data, block * g.blockBytes);
  setBit(slot.got, block);
  slot.gotBlocks++;
  return true;
}

/** The request bitmap for a slot: every block it lacks. */
export function missingBitmap(slot: Slot, g: Geometry): Uint8Array {
  const out = bitmapFor(g.blockCount);
  for (let i = 0; i < out.length; i++) out[i] = ~slot.got[i]! & 0xff;
  const tail = g.blockCount & 7;
  if (tail) out[out.length - 1]! &= (1 << tail) - 1;
  return out;
}

/** True when `wanted` asks for every block this slot lacks (someone else's request covers ours). */
export function covers(wanted: Uint8Array, slot: Slot, g: Geometry): boolean {
  for (let i = 0; i < slot.got.length; i++) {
    let missing = ~slot.got[i]! & 0xff;
    if (i === slot.got.length - 1 && g.blockCount & 7) missing &= (1 << (g.blockCount & 7)) - 1;
    if ((missing & ~(wanted[i] ?? 0)) !== 0) return false;
  }
  return true;
}
