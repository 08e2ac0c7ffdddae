// Partition tables' shared vocabulary: partitions, the table, GPT details, and the overlap check
// both readers (mbr.ts, gpt.ts) use. Kept apart from table.ts so the readers need not import it.
import type { Range } from "../util/ranges.ts";

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
