// How a chunk's blocks form FEC groups (docs/PROTOCOL.md, "Repairs"). A chunk of K blocks has
// G = ceil(K / FEC_MAX_SOURCE_BLOCKS) groups; block b belongs to group b mod G, at index
// floor(b / G) in it. Interleaving spreads a burst of consecutive losses over the groups. Pure.
import { assert } from "../util/assert.ts";
import { FEC_MAX_REPAIR_BLOCKS, FEC_MAX_SOURCE_BLOCKS } from "./fec.ts";

export function fecGroupCount(blockCount: number): number {
  assert(blockCount >= 1, "a chunk has blocks");
  return Math.ceil(blockCount / FEC_MAX_SOURCE_BLOCKS);
}

/** Blocks in group `group` of a chunk of `blockCount` blocks cut into `groups` groups. */
export function groupBlocks(blockCount: number, groups: number, group: number): number {
  assert(group >= 0 && group < groups && groups <= blockCount, "group within the chunk");
  return Math.floor((blockCount - 1 - group) / groups) + 1;
}

/**
 * The most repairs the server sends for a group in one turn. Beyond half the group a receiver
 * lacks most of it (a late joiner): the blocks themselves cost the same and no coding.
 */
export function repairLimit(groupBlockCount: number): number {
  return Math.min(FEC_MAX_REPAIR_BLOCKS, groupBlockCount >> 1);
}

/** Set bits of `bitmap` per group: how many blocks of each group a request asks for. */
export function countPerGroup(bitmap: Uint8Array, blockCount: number, groups: number): Uint16Array {
  const counts = new Uint16Array(groups);
  for (let byte = 0; byte < bitmap.length; byte++) {
    const bits = bitmap[byte]!;
    if (bits === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      const b = byte * 8 + bit;
      if (b < blockCount && bits & (1 << bit)) counts[b % groups]!++;
    }
  }
  return counts;
}

assert(FEC_MAX_REPAIR_BLOCKS <= 0xff, "a repair index fits the wire's u8");

/** Block `block` of a chunk's bytes as a coding symbol: blockBytes long, the short last block zero-padded. */
export function sourceSymbol(chunk: Uint8Array, blockBytes: number, block: number): Uint8Array {
  const start = block * blockBytes;
  assert(start < chunk.length, "a block inside its chunk");
  const end = start + blockBytes;
  if (end <= chunk.length) return chunk.subarray(start, end);
  const padded = new Uint8Array(blockBytes);
  padded.set(chunk.subarray(start));
  return padded;
}

/** Every source symbol of one group, in index order: what a repair of that group is coded over. */
export function groupSymbols(chunk: Uint8Array, blockBytes: number, blockCount: number, groups: number, group: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let b = group; b < blockCount; b += groups) out.push(sourceSymbol(chunk, blockBytes, b));
  return out;
}
