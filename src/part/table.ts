// The partition table of a whole disk: which byte ranges are partitions, and which bytes belong to the
// table itself (and to boot code hidden around it) and so must always be captured.
import type { BlockReader } from "../fs/types.ts";
import { assert, assertCount } from "../util/assert.ts";
import { isPowerOfTwo } from "../util/bytes.ts";
import { readGpt } from "./gpt.ts";
import { readMbr } from "./mbr.ts";
import type { PartitionTable } from "./types.ts";

const sectorBytesMin = 512;
const sectorBytesMax = 65536;

/**
 * The disk's partition table, or null when there is none at all (no 0x55AA, or a filesystem boot sector or
 * superblock at offset 0 rather than an MBR). Throws PartitionTableError when a table is there but
 * inconsistent (overlaps, partitions past the end of the disk, bad CRCs on both GPT copies, EBR loops).
 */
export function readPartitionTable(reader: BlockReader, sectorBytes: number): PartitionTable | null {
  assert(
    sectorBytes >= sectorBytesMin && sectorBytes <= sectorBytesMax && isPowerOfTwo(sectorBytes),
    `sector size ${sectorBytes} is a power of two in [${sectorBytesMin}, ${sectorBytesMax}]`,
  );
  assertCount(reader.sizeBytes, "disk bytes");
  if (reader.sizeBytes < sectorBytes) return null;
  const mbr = readMbr(reader, sectorBytes);
  if (mbr === null) return null;
  if (mbr.kind === "protective") return readGpt(reader, sectorBytes);
  return mbr.table;
}

