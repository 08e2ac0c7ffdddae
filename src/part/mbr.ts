// MBR (DOS) partition tables: four primary entries in sector 0, logical partitions in a chain of EBRs
// inside one extended partition. Also tells an MBR apart from a filesystem boot sector at offset 0.
import type { BlockReader } from "../fs/types.ts";
import { assert } from "../util/assert.ts";
import { isPowerOfTwo } from "../util/bytes.ts";
import { BPB_BYTES_PER_SECTOR, BPB_FAT_COUNT, BPB_MEDIA, BPB_RESERVED_SECTORS, BPB_SECTORS_PER_CLUSTER, BS_OEM_NAME } from "../fs/fat-bpb.ts";
import { normalizeRanges, type Range } from "../util/ranges.ts";
import { checkDisjoint, mbrBytes, type Partition, type PartitionTable, PartitionTableError, type Span } from "./types.ts";

// Layout of a 512-byte MBR or EBR.
const entryTableOffset = 446;
const entryBytes = 16;
const entryCount = 4;
const signatureOffset = 510;
const signatureValue = 0xaa55; // bytes 0x55 0xAA, read little-endian

// Layout of one 16-byte entry. CHS fields are ignored: every tool since the 1990s uses the LBA fields.
const entryBootFlagOffset = 0;
const entryTypeOffset = 4;
const entryStartLbaOffset = 8;
const entrySectorCountOffset = 12;

const bootFlagInactive = 0x00;
const bootFlagActive = 0x80;

export const typeGptProtective = 0xee;
/** CHS-addressed extended, LBA-addressed extended, and Linux extended. */
const extendedTypes: ReadonlySet<number> = new Set([0x05, 0x0f, 0x85]);

/** Bounds the EBR walk: a corrupt or malicious chain cannot run forever. */
export const maxLogicalCount = 128;
const maxEbrCount = maxLogicalCount;
const firstLogicalIndex = 5;

export interface MbrEntry {
  slot: number; // 0..3
  bootFlag: number;
  type: number;
  startLba: number;
  sectorCount: number;
}

export type MbrResult = { kind: "protective" } | { kind: "mbr"; table: PartitionTable };

/** The four entries of a 512-byte MBR/EBR sector. */
export function decodeEntries(sector: Uint8Array): MbrEntry[] {
  assert(sector.length >= mbrBytes, "an MBR sector holds 512 bytes");
  const view = new DataView(sector.buffer, sector.byteOffset, mbrBytes);
  const out: MbrEntry[] = [];
  for (let slot = 0; slot < entryCount; slot++) {
    const at = entryTableOffset + slot * entryBytes;
    out.push({
      slot,
      bootFlag: view.getUint8(at + entryBootFlagOffset),
      type: view.getUint8(at + entryTypeOffset),
      startLba: view.getUint32(at + entryStartLbaOffset, true),
      sectorCount: view.getUint32(at + entrySectorCountOffset, true),
    });
  }
  return out;
}

export function hasBootSignature(sector: Uint8Array): boolean {
  const view = new DataView(sector.buffer, sector.byteOffset, mbrBytes);
  return view.getUint16(signatureOffset, true) === signatureValue;
}

function isEmptyEntry(e: MbrEntry): boolean {
  return e.type === 0 && e.sectorCount === 0;
}

function bootFlagsValid(entries: readonly MbrEntry[]): boolean {
  return entries.every((e) => e.bootFlag === bootFlagInactive || e.bootFlag === bootFlagActive);
}

// Volume boot record fields: the DOS BPB offsets are fs/fat-bpb.ts; the XFS magic is at byte 0.
const xfsMagicOffset = 0;

function asciiAt(sector: Uint8Array, offset: number, length: number): string {
  return String.fromCharCode(...sector.subarray(offset, offset + length));
}

/**
 * True when sector 0 is a filesystem's boot sector or superblock rather than an MBR: a FAT BIOS
 * parameter block, an NTFS or exFAT boot sector, or an XFS superblock. Deliberately loose: it only
 * decides between "no partition table" and "ambiguous", never which partitions exist.
 */
export function looksLikeFilesystemBootSector(sector: Uint8Array): boolean {
  const oem = asciiAt(sector, BS_OEM_NAME, 8);
  if (oem === "NTFS    " || oem === "EXFAT   ") return true;
  if (asciiAt(sector, xfsMagicOffset, 4) === "XFSB") return true;
  const view = new DataView(sector.buffer, sector.byteOffset, mbrBytes);
  const jumpShort = sector[0] === 0xeb && sector[2] === 0x90;
  const jumpNear = sector[0] === 0xe9;
  if (!jumpShort && !jumpNear) return false;
  const bytesPerSector = view.getUint16(BPB_BYTES_PER_SECTOR, true);
  const sectorsPerCluster = view.getUint8(BPB_SECTORS_PER_CLUSTER);
  const reservedSectors = view.getUint16(BPB_RESERVED_SECTORS, true);
  const fatCount = view.getUint8(BPB_FAT_COUNT);
  const media = view.getUint8(BPB_MEDIA);
  return (
    isPowerOfTwo(bytesPerSector) && bytesPerSector >= 512 && bytesPerSector <= 4096 &&
    isPowerOfTwo(sectorsPerCluster) &&
    reservedSectors >= 1 &&
    fatCount >= 1 && fatCount <= 4 &&
    (media === 0xf0 || media >= 0xf8)
  );
}

function typeString(type: number): string {
  return `0x${type.toString(16).padStart(2, "0")}`;
}

/**
 * Reads sector 0. Returns null when there is no partition table: no 0x55AA, boot flags that are not
 * 0x00/0x80 (not an MBR, as Linux decides), no entries at all, or a filesystem boot sector whose
 * "entries" are not plausible. An MBR without a single entry is treated as no table on purpose: a
 * filesystem at offset 0 that we failed to recognise must be captured whole, never skipped as free space.
 */
export function readMbr(reader: BlockReader, sectorBytes: number): MbrResult | null {
  const sector0 = reader.read(0, mbrBytes);
  if (!hasBootSignature(sector0)) return null;
  const entries = decodeEntries(sector0);
  if (!bootFlagsValid(entries)) return null;
  const used = entries.filter((e) => !isEmptyEntry(e));
  if (used.length === 0) return null;
  if (used.some((e) => e.type === typeGptProtective)) return { kind: "protective" };
  const plausible = used.every((e) => e.startLba > 0 && e.sectorCount > 0);
  if (looksLikeFilesystemBootSector(sector0)) {
    if (!plausible) return null; // a superfloppy whose boot code happens to look like entries
    // Both readings are possible; either could hide data if wrong, so the whole disk goes raw.
    throw new PartitionTableError("sector 0 is both a filesystem boot sector and an MBR with partition entries");
  }
  return { kind: "mbr", table: mbrTable(reader, sectorBytes, used) };
}

function mbrTable(reader: BlockReader, sectorBytes: number, used: readonly MbrEntry[]): PartitionTable {
  const diskBytes = reader.sizeBytes;
  for (const e of used) {
    if (e.startLba === 0 || e.sectorCount === 0) {
      throw new PartitionTableError(`MBR entry ${e.slot + 1} (type ${typeString(e.type)}) has start ${e.startLba} and size ${e.sectorCount}`);
    }
  }
  const extended = used.filter((e) => extendedTypes.has(e.type));
  if (extended.length > 1) throw new PartitionTableError("MBR has more than one extended partition");

  // Primaries and the extended container must be disjoint and on the disk.
  const primaries: Partition[] = used.filter((e) => !extendedTypes.has(e.type)).map((e) => ({
    index: e.slot + 1,
    startBytes: e.startLba * sectorBytes,
    sizeBytes: e.sectorCount * sectorBytes,
    type: typeString(e.type),
    name: null,
    uuid: null,
  }));
  const topLevel: Span[] = primaries.map((p) => ({ what: `partition ${p.index}`, startBytes: p.startBytes, sizeBytes: p.sizeBytes }));
  for (const e of extended) {
    topLevel.push({ what: `extended partition ${e.slot + 1}`, startBytes: e.startLba * sectorBytes, sizeBytes: e.sectorCount * sectorBytes });
  }
  checkDisjoint(topLevel, sectorBytes, diskBytes);

  const partitions = [...primaries];
  const keep: Range[] = [{ start: 0, length: Math.min(...topLevel.map((s) => s.startBytes)) }];
  const container = extended[0];
  if (container !== undefined) {
    const chain = readEbrChain(reader, sectorBytes, container);
    partitions.push(...chain.logicals);
    for (const ebrLba of chain.ebrLbas) keep.push({ start: ebrLba * sectorBytes, length: sectorBytes });
  }
  partitions.sort((a, b) => a.index - b.index);
  return { kind: "mbr", sectorBytes, diskBytes, partitions, keep: normalizeRanges(keep) };
}

interface EbrChain {
  logicals: Partition[];
  ebrLbas: number[];
}

/**
 * Follows the EBR chain of the extended partition. Each EBR holds at most one data entry (start relative
 * to that EBR) and one link (start relative to the extended partition). Anything else is refused rather
 * than skipped, since a skipped entry could be a partition holding data.
 */
function readEbrChain(reader: BlockReader, sectorBytes: number, container: MbrEntry): EbrChain {
  const extStartLba = container.startLba;
  const extEndLba = container.startLba + container.sectorCount; // exclusive
  const logicals: Partition[] = [];
  const ebrLbas: number[] = [];
  const visited = new Set<number>();
  let ebrLba: number | null = extStartLba;
  while (ebrLba !== null) {
    if (visited.has(ebrLba)) throw new PartitionTableError(`EBR chain loops back to sector ${ebrLba}`);
    if (visited.size >= maxEbrCount) throw new PartitionTableError(`EBR chain longer than ${maxEbrCount} links`);
    if (ebrLba < extStartLba || ebrLba >= extEndLba) {
      throw new PartitionTableError(`EBR at sector ${ebrLba} lies outside the extended partition`);
    }
    visited.add(ebrLba);
    ebrLbas.push(ebrLba);
    const sector = reader.read(ebrLba * sectorBytes, mbrBytes);
    if (!hasBootSignature(sector)) throw new PartitionTableError(`EBR at sector ${ebrLba} lacks the 0x55AA signature`);
    const entries = decodeEntries(sector);
    if (!bootFlagsValid(entries)) throw new PartitionTableError(`EBR at sector ${ebrLba} has invalid boot flags`);
    const used = entries.filter((e) => !isEmptyEntry(e));
    const links = used.filter((e) => extendedTypes.has(e.type));
    const data = used.filter((e) => !extendedTypes.has(e.type));
    if (links.length > 1 || data.length > 1) {
      throw new PartitionTableError(`EBR at sector ${ebrLba} has ${data.length} data entries and ${links.length} links (at most one each)`);
    }
    const entry = data[0];
    if (entry !== undefined) {
      if (entry.startLba === 0 || entry.sectorCount === 0) {
        throw new PartitionTableError(`logical partition in EBR at sector ${ebrLba} has start ${entry.startLba} and size ${entry.sectorCount}`);
      }
      if (logicals.length >= maxLogicalCount) throw new PartitionTableError(`more than ${maxLogicalCount} logical partitions`);
      const startLba = ebrLba + entry.startLba;
      logicals.push({
        index: firstLogicalIndex + logicals.length,
        startBytes: startLba * sectorBytes,
        sizeBytes: entry.sectorCount * sectorBytes,
        type: typeString(entry.type),
        name: null,
        uuid: null,
      });
    }
    const link = links[0];
    ebrLba = link === undefined ? null : extStartLba + link.startLba;
  }
  // Logical partitions and EBR sectors share the extended partition and must not overlap each other.
  const spans: Span[] = logicals.map((p) => ({ what: `partition ${p.index}`, startBytes: p.startBytes, sizeBytes: p.sizeBytes }));
  for (const lba of ebrLbas) spans.push({ what: `EBR at sector ${lba}`, startBytes: lba * sectorBytes, sizeBytes: sectorBytes });
  checkDisjoint(spans, extStartLba * sectorBytes, extEndLba * sectorBytes);
  return { logicals, ebrLbas };
}

/** Overwrites the sector count of entry `slot` in a 512-byte MBR/EBR sector, in place. */
export function writeEntrySectorCount(sector: Uint8Array, slot: number, sectorCount: number): void {
  assert(slot >= 0 && slot < entryCount, `MBR slot ${slot} is 0..3`);
  assert(Number.isInteger(sectorCount) && sectorCount >= 0 && sectorCount <= 0xffffffff, "sector count fits 32 bits");
  const view = new DataView(sector.buffer, sector.byteOffset, mbrBytes);
  view.setUint32(entryTableOffset + slot * entryBytes + entrySectorCountOffset, sectorCount, true);
}
