// A client's side of repairs (FEC): which blocks it asks for, which repairs it keeps, and that a
// group decodes to the chunk's exact bytes, the short last block included. Repairs are coded the
// way the server codes them (groupSymbols over the chunk), so both ends are checked together.
import { describe, expect, test } from "bun:test";
import { covers, decodeGroup, newSlot, requestBitmap, storeBlock, storeRepair, type Geometry } from "../../src/client/assembly.ts";
import { encodeRepair } from "../../src/net/fec.ts";
import { fecGroupCount, groupSymbols, repairLimit } from "../../src/net/fec-groups.ts";
import { bitmapFor, countBits, setBit, testBit } from "../../src/util/bitmap.ts";
import { rng } from "../rng.ts";

const BLOCK_BYTES = 1424;
// 400 blocks and a short last one: three interleaved groups (134, 133, 133 blocks).
const CHUNK_BYTES = 399 * BLOCK_BYTES + 700;
const BLOCKS = 400;
const g: Geometry = { chunkBytes: CHUNK_BYTES, blockBytes: BLOCK_BYTES, blockCount: BLOCKS, groups: fecGroupCount(BLOCKS) };

function chunkBytes(seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: CHUNK_BYTES }, () => r.below(256));
}

/** A slot that received every block but `lost`, into a buffer holding stale bytes from earlier use. */
function slotMissing(chunk: Uint8Array, lost: number[]): ReturnType<typeof newSlot> {
  const slot = newSlot(0, new Uint8Array(CHUNK_BYTES).fill(0xee), g, 0, 40);
  for (let b = 0; b < BLOCKS; b++) {
    if (lost.includes(b)) continue;
    storeBlock(slot, g, b, chunk.subarray(b * BLOCK_BYTES, Math.min(CHUNK_BYTES, (b + 1) * BLOCK_BYTES)));
  }
  return slot;
}

function repair(chunk: Uint8Array, group: number, index: number): Uint8Array {
  return encodeRepair(groupSymbols(chunk, BLOCK_BYTES, BLOCKS, g.groups, group), index, BLOCK_BYTES);
}

describe("client repairs", () => {
  test("three groups, interleaved; the last block is short", () => {
    expect(g.groups).toBe(3);
    expect(BLOCKS % g.groups).toBe(1);
  });

  test("lost blocks of one group, the short last one among them, decode to the chunk's exact bytes", () => {
    const chunk = chunkBytes(1);
    // Group 0 holds blocks 0, 3, ..., 399 (the short last block).
    const lost = [0, 3, 399];
    const slot = slotMissing(chunk, lost);
    expect(storeRepair(slot, g, 0, 5, repair(chunk, 0, 5))).toBe(true);
    expect(storeRepair(slot, g, 0, 9, repair(chunk, 0, 9))).toBe(true);
    expect(decodeGroup(slot, g, 0)).toBe(0); // two repairs for three holes: not yet
    expect(storeRepair(slot, g, 0, 5, repair(chunk, 0, 5))).toBe(false); // held already
    expect(storeRepair(slot, g, 0, 40, repair(chunk, 0, 40))).toBe(true);
    expect(decodeGroup(slot, g, 0)).toBe(3);
    expect(slot.gotBlocks).toBe(BLOCKS);
    expect(Buffer.from(slot.buffer).equals(Buffer.from(chunk))).toBe(true);
    // The group is whole: further repairs are of no use and are not kept.
    expect(storeRepair(slot, g, 0, 41, repair(chunk, 0, 41))).toBe(false);
  });

  test("random losses in every group, seeded: any repairs, as many as the holes, rebuild the chunk", () => {
    const r = rng(7);
    for (let trial = 0; trial < 20; trial++) {
      const chunk = chunkBytes(100 + trial);
      const lost = [...new Set(Array.from({ length: 1 + r.below(30) }, () => r.below(BLOCKS)))];
      const slot = slotMissing(chunk, lost);
      for (let group = 0; group < g.groups; group++) {
        const holes = lost.filter((b) => b % g.groups === group).length;
        const first = r.below(64);
        for (let k = 0; k < holes; k++) expect(storeRepair(slot, g, group, (first + k) % 64, repair(chunk, group, (first + k) % 64))).toBe(true);
        expect(decodeGroup(slot, g, group)).toBe(holes);
      }
      expect(Buffer.from(slot.buffer).equals(Buffer.from(chunk))).toBe(true);
    }
  });

  test("a request asks, per group, for the holes its repairs do not make up for", () => {
    const chunk = chunkBytes(2);
    const slot = slotMissing(chunk, [0, 3, 6, 1]);
    let ask = requestBitmap(slot, g);
    expect([0, 3, 6, 1].every((b) => testBit(ask, b))).toBe(true);
    expect(countBits(ask, BLOCKS)).toBe(4);
    storeRepair(slot, g, 0, 0, repair(chunk, 0, 0));
    ask = requestBitmap(slot, g);
    expect(countBits(ask, BLOCKS)).toBe(3); // two of group 0, one of group 1
    expect(testBit(ask, 1)).toBe(true);
  });

  test("a group with more holes than half the repair indices asks for every hole, whatever repairs it holds", () => {
    const chunk = chunkBytes(4);
    // 40 holes in group 0 (blocks 0, 3, 6, ...): more than 32, so repairs are not counted on.
    const lost = Array.from({ length: 40 }, (_, k) => 3 * k);
    const slot = slotMissing(chunk, lost);
    for (let i = 0; i < 10; i++) storeRepair(slot, g, 0, i, repair(chunk, 0, i));
    const ask = requestBitmap(slot, g);
    expect(countBits(ask, BLOCKS)).toBe(40);
    expect(lost.every((b) => testBit(ask, b))).toBe(true);
  });

  test("an overheard request covers ours when the server will answer it with enough repairs", () => {
    const slot = slotMissing(chunkBytes(3), [0, 3]);
    const other = (blocks: number[]) => {
      const b = bitmapFor(BLOCKS);
      for (const x of blocks) setBit(b, x);
      return b;
    };
    // Two other blocks of group 0: two repairs will come, and they fill our two holes.
    expect(covers(other([6, 9]), slot, g)).toBe(true);
    // One block of group 0: one repair, we need two.
    expect(covers(other([6]), slot, g)).toBe(false);
    // Other groups' blocks are no use to us.
    expect(covers(other([1, 4]), slot, g)).toBe(false);
    // Most of group 0 is more than repairLimit: the server sends those blocks, not ours.
    const many = Array.from({ length: repairLimit(134) + 1 }, (_, k) => 6 + 3 * k);
    expect(covers(other(many), slot, g)).toBe(false);
    expect(covers(other([0, 3, ...many]), slot, g)).toBe(true);
  });
});
