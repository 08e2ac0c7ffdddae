// The partition table of a whole disk: which byte ranges are partitions, and which bytes belong to the
// table itself (and to boot code hidden around it) and so must always be captured.
import type { BlockReader } from "../fs/types.ts";
import { assert, assertCount } from "../util/assert.ts";
import type { Range } from "../util/ranges.ts";
import { readGpt } from "./gpt.ts";
import { readMbr } from "./mbr.ts";

export interface Partition {
  /** 1-based, as Linux names them (sda1, ...); logical MBR partitions start at 5, GPT follows the entry slot. */
  index: number;
  startBytes: number;
  sizeBytes: number;
  /** MBR: the type byte as "0x83"; GPT: the type GUID, lowercase canonical form. */
  type: string;
  /** GPT partition name; null on MBR. */
  name: string | null;
  /** GPT unique partition GUID, lowercase; null on MBR. */
  uuid: string | null;
}

/** GPT details, in sectors (LBAs) of `sectorBytes`. */
export interface GptInfo {
  diskGuid: string;
  firstUsableLba: number;
  /** Inclusive. */
  lastUsableLba: number;
  entryCount: number;
  entryBytes: number;
  /** Where the backup header is (the primary's AlternateLBA; the backup's own MyLBA when the primary is bad). */
  alternateLba: number;
  /** The primary entry array (2, the standard place, when the primary header is bad). */
  entryArrayLba: number;
  /** The backup entry array (right before the backup header when the backup header is bad). */
  backupEntryArrayLba: number;
  /** Primary header and entries pass their CRCs; when false the table was read from the backup. */
  primaryValid: boolean;
  /** Backup header and entries pass their CRCs and agree with the header in use. */
  backupValid: boolean;
}

export interface PartitionTable {
  kind: "mbr" | "gpt";
  sectorBytes: number;
  /** Bytes of the whole disk (the reader's size). */
  diskBytes: number;
  /** Data partitions in index order; an MBR extended container is not one of them. */
  partitions: Partition[];
  /**
   * Bytes that must be captured whatever the partitions hold, normalized: MBR sector 0 and everything up
   * to the first partition (GRUB's core.img lives in that gap), each EBR sector; GPT: LBA 0 through the
   * end of the primary entry array and up to the first partition, the backup entry array and backup header.
   */
  keep: Range[];
  gpt?: GptInfo;
}

/** The table is there but inconsistent: the caller captures the whole disk raw, with the message as warning. */
export class PartitionTableError extends Error {
  override name = "PartitionTableError";
}

/** Bytes every sector size we accept holds at least: the MBR is 512 bytes. */
export const mbrBytes = 512;
const sectorBytesMin = 512;
const sectorBytesMax = 65536;

/**
 * The disk's partition table, or null when there is none at all (no 0x55AA, or a filesystem boot sector or
 * superblock at offset 0 rather than an MBR). Throws PartitionTableError when a table is there but
 * inconsistent (overlaps, partitions past the end of the disk, bad CRCs on both GPT copies, EBR loops).
 */
export function readPartitionTable(reader: BlockReader, sectorBytes: number): PartitionTable | null {
  assert(
    sectorBytes >= sectorBytesMin && sectorBytes <= sectorBytesMax && (sectorBytes & (sectorBytes - 1)) === 0,
    `sector size ${sectorBytes} is a power of two in [${sectorBytesMin}, ${sectorBytesMax}]`,
  );
  assertCount(reader.sizeBytes, "disk bytes");
  if (reader.sizeBytes < sectorBytes) return null;
  const mbr = readMbr(reader, sectorBytes);
  if (mbr === null) return null;
  if (mbr.kind === "protective") return readGpt(reader, sectorBytes);
  return mbr.table;
}

/** A named stretch of the disk, for overlap checks and their messages. */
export interface Span {
  what: string;
  startBytes: number;
  sizeBytes: number;
}

/** Throws PartitionTableError unless every span is nonempty, lies inside [minBytes, maxBytes), and none overlap. */
export function checkDisjoint(spans: readonly Span[], minBytes: number, maxBytes: number): void {
  for (const s of spans) {
    if (s.sizeBytes <= 0) throw new PartitionTableError(`${s.what} has size zero`);
    if (s.startBytes < minBytes || s.startBytes + s.sizeBytes > maxBytes) {
      throw new PartitionTableError(
        `${s.what} (bytes ${s.startBytes}+${s.sizeBytes}) lies outside its allowed area [${minBytes}, ${maxBytes})`,
      );
    }
  }
  const sorted = [...spans].sort((a, b) => a.startBytes - b.startBytes);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.startBytes < prev.startBytes + prev.sizeBytes) throw new PartitionTableError(`${prev.what} and ${cur.what} overlap`);
  }
}
