// The contract every filesystem parser meets. Parsers are pure functions of the bytes a reader returns.
import type { Range } from "../util/ranges.ts";

/** Synchronous positional reads of one partition (or a whole unpartitioned device). */
export interface BlockReader {
  /** Bytes readable from offset 0. */
  readonly sizeBytes: number;
  /** Exactly `lengthBytes` bytes at `offsetBytes`; throws if they are not all there. */
  read(offsetBytes: number, lengthBytes: number): Uint8Array;
}

export type FsKind = "ext2" | "ext3" | "ext4" | "fat12" | "fat16" | "fat32" | "ntfs" | "xfs" | "swap";

export interface FsAllocation {
  kind: FsKind;
  label: string | null;
  uuid: string | null;
  /** The filesystem's allocation unit (block or cluster) in bytes. */
  blockBytes: number;
  /** Bytes the filesystem spans from offset 0; whatever lies beyond it in the partition is not the filesystem's. */
  fsBytes: number;
  /** Bytes that must be captured: metadata and allocated blocks, relative to offset 0. */
  allocated: Range[];
}

export interface FsParser {
  /** Family name for messages, e.g. "ext" or "fat". */
  readonly name: string;
  /** Cheap signature check (reads at most the first 64 KiB). */
  detect(reader: BlockReader): boolean;
  /**
   * Allocation from the filesystem's own maps. Throws FsUnsupportedError for anything not fully
   * understood (unknown incompatible feature, bad checksum, inconsistent geometry): never guess free.
   */
  allocation(reader: BlockReader): FsAllocation;
}
