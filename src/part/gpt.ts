// GUID Partition Tables (UEFI spec, chapter 5): primary header at LBA 1 and its entry array, a backup
// copy at the end of the disk, both guarded by CRC32s. Reads the primary, falls back to the backup.
import type { BlockReader } from "../fs/types.ts";
import { assert } from "../util/assert.ts";
import { isPowerOfTwo, tryGetU64 } from "../util/bytes.ts";
import { normalizeRanges, type Range } from "../util/ranges.ts";
import { checkDisjoint, type GptInfo, type Partition, type PartitionTable, PartitionTableError, type Span } from "./types.ts";

// Header fields, byte offsets within the header sector.
export const headerSignatureOffset = 0;
export const headerRevisionOffset = 8;
export const headerSizeOffset = 12;
export const headerCrcOffset = 16;
export const headerMyLbaOffset = 24;
export const headerAlternateLbaOffset = 32;
export const headerFirstUsableLbaOffset = 40;
export const headerLastUsableLbaOffset = 48;
export const headerDiskGuidOffset = 56;
export const headerEntryArrayLbaOffset = 72;
export const headerEntryCountOffset = 80;
export const headerEntryBytesOffset = 84;
export const headerEntryArrayCrcOffset = 88;

export const headerSignature = "EFI PART";
/** Bytes covered by the header CRC in revision 1.0; larger sizes are allowed, smaller are not. */
export const headerBytesMin = 92;
const revisionMajor = 1;

// Entry fields, byte offsets within one entry.
const entryTypeGuidOffset = 0;
const entryUniqueGuidOffset = 16;
const entryFirstLbaOffset = 32;
const entryLastLbaOffset = 40;
const entryNameOffset = 56;
const entryNameBytes = 72; // 36 UTF-16LE code units
export const entryBytesMin = 128;

/** Bounds the entry array we will read and trust (the usual one is 128 × 128 B = 16 KiB). */
export const entryArrayBytesMax = 4 * 1024 * 1024;

export const primaryHeaderLba = 1;
/** Where the primary entry array normally sits; used only when the primary header is unreadable. */
const standardEntryArrayLba = 2;

// Bun.hash.crc32 is the IEEE 802.3 CRC-32 (reflected, init and final xor 0xFFFFFFFF) that GPT uses.
assert(Bun.hash.crc32("123456789") === 0xcbf43926, "Bun.hash.crc32 is the standard IEEE CRC-32");

export function crc32(bytes: Uint8Array): number {
  return Bun.hash.crc32(bytes) >>> 0;
}

/** A little-endian u64 that must fit in a JavaScript number; larger means corrupt input. */
export function readU64(view: DataView, offset: number, what: string): number {
  const value = tryGetU64(view, offset);
  if (value === null) throw new PartitionTableError(`${what} ${view.getBigUint64(offset, true)} is beyond 2^53`);
  return value;
}

/** Mixed-endian GUID bytes to "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lowercase. */
export function guidToString(bytes: Uint8Array): string {
  assert(bytes.length === 16, "a GUID has 16 bytes");
  const hex = (i: number): string => bytes[i]!.toString(16).padStart(2, "0");
  const run = (indices: number[]): string => indices.map(hex).join("");
  return [
    run([3, 2, 1, 0]),
    run([5, 4]),
    run([7, 6]),
    run([8, 9]),
    run([10, 11, 12, 13, 14, 15]),
  ].join("-");
}

/** CRC of the header's first `headerBytes` bytes with the CRC field itself taken as zero. */
export function headerCrc(sector: Uint8Array, headerBytes: number): number {
  const copy = sector.slice(0, headerBytes);
  new DataView(copy.buffer).setUint32(headerCrcOffset, 0, true);
  return crc32(copy);
}

export interface GptHeader {
  headerBytes: number;
  myLba: number;
  alternateLba: number;
  firstUsableLba: number;
  lastUsableLba: number;
  diskGuid: string;
  entryArrayLba: number;
  entryCount: number;
  entryBytes: number;
  entryArrayCrc: number;
}

export function entryArraySectors(header: Pick<GptHeader, "entryCount" | "entryBytes">, sectorBytes: number): number {
  return Math.ceil((header.entryCount * header.entryBytes) / sectorBytes);
}

/**
 * Decodes and checks one header sector on its own: signature, revision, size, CRC, and geometry that is
 * self-consistent on a disk of `diskSectors`. Throws PartitionTableError with the reason otherwise.
 */
export function decodeGptHeader(sector: Uint8Array, sectorBytes: number, diskSectors: number): GptHeader {
  assert(sector.length >= sectorBytes, "a header sector is whole");
  const view = new DataView(sector.buffer, sector.byteOffset, sectorBytes);
  const signature = String.fromCharCode(...sector.subarray(headerSignatureOffset, headerSignatureOffset + 8));
  if (signature !== headerSignature) throw new PartitionTableError("no \"EFI PART\" signature");
  const revision = view.getUint32(headerRevisionOffset, true);
  if (revision >>> 16 !== revisionMajor) throw new PartitionTableError(`unknown header revision 0x${revision.toString(16)}`);
  const headerBytes = view.getUint32(headerSizeOffset, true);
  if (headerBytes < headerBytesMin || headerBytes > sectorBytes) throw new PartitionTableError(`header size ${headerBytes} is out of range`);
  const storedCrc = view.getUint32(headerCrcOffset, true);
  if (headerCrc(sector, headerBytes) !== storedCrc) throw new PartitionTableError("header CRC32 mismatch");

  const header: GptHeader = {
    headerBytes,
    myLba: readU64(view, headerMyLbaOffset, "MyLBA"),
    alternateLba: readU64(view, headerAlternateLbaOffset, "AlternateLBA"),
    firstUsableLba: readU64(view, headerFirstUsableLbaOffset, "FirstUsableLBA"),
    lastUsableLba: readU64(view, headerLastUsableLbaOffset, "LastUsableLBA"),
    diskGuid: guidToString(sector.slice(headerDiskGuidOffset, headerDiskGuidOffset + 16)),
    entryArrayLba: readU64(view, headerEntryArrayLbaOffset, "PartitionEntryLBA"),
    entryCount: view.getUint32(headerEntryCountOffset, true),
    entryBytes: view.getUint32(headerEntryBytesOffset, true),
    entryArrayCrc: view.getUint32(headerEntryArrayCrcOffset, true),
  };
  checkHeaderGeometry(header, sectorBytes, diskSectors);
  return header;
}

function checkHeaderGeometry(h: GptHeader, sectorBytes: number, diskSectors: number): void {
  // The spec requires 128 × 2^n bytes per entry.
  if (h.entryBytes < entryBytesMin || h.entryBytes % entryBytesMin !== 0 || !isPowerOfTwo(h.entryBytes)) {
    throw new PartitionTableError(`entry size ${h.entryBytes} is not 128 × 2^n`);
  }
  if (h.entryCount * h.entryBytes > entryArrayBytesMax) {
    throw new PartitionTableError(`entry array of ${h.entryCount} × ${h.entryBytes} bytes exceeds ${entryArrayBytesMax}`);
  }
  if (h.firstUsableLba > h.lastUsableLba + 1) throw new PartitionTableError("first usable LBA is past the last usable LBA");
  const entrySectors = entryArraySectors(h, sectorBytes);
  if (h.entryArrayLba + entrySectors > diskSectors) throw new PartitionTableError("entry array runs past the end of the disk");
  const inUsable = (startLba: number, sectors: number): boolean =>
    h.firstUsableLba <= h.lastUsableLba && startLba <= h.lastUsableLba && startLba + sectors > h.firstUsableLba;
  if (inUsable(h.myLba, 1)) throw new PartitionTableError("header lies inside the usable area");
  if (inUsable(h.entryArrayLba, entrySectors)) throw new PartitionTableError("entry array lies inside the usable area");
  if (h.entryArrayLba < 2 && h.entryCount > 0) throw new PartitionTableError("entry array overlaps the MBR or primary header");
}

interface GptCopy {
  header: GptHeader;
  entries: Uint8Array; // exactly entryCount × entryBytes
}

/** Reads the header at `lba` and its entry array, checking both CRCs. Throws PartitionTableError. */
function readCopy(reader: BlockReader, sectorBytes: number, diskSectors: number, lba: number): GptCopy {
  if (lba >= diskSectors) throw new PartitionTableError(`header LBA ${lba} is past the end of the disk`);
  const header = decodeGptHeader(reader.read(lba * sectorBytes, sectorBytes), sectorBytes, diskSectors);
  if (header.myLba !== lba) throw new PartitionTableError(`header at LBA ${lba} says it is at LBA ${header.myLba}`);
  const entries = reader.read(header.entryArrayLba * sectorBytes, header.entryCount * header.entryBytes);
  if (crc32(entries) !== header.entryArrayCrc) throw new PartitionTableError("entry array CRC32 mismatch");
  return { header, entries };
}

type Attempt = { ok: true; copy: GptCopy } | { ok: false; reason: string };

function attempt(read: () => GptCopy): Attempt {
  try {
    return { ok: true, copy: read() };
  } catch (e) {
    if (e instanceof PartitionTableError) return { ok: false, reason: e.message };
    throw e;
  }
}

/** The backup describes the same table as `primary`, from the other end of the disk. */
function backupMatches(primary: GptHeader, backup: GptHeader): string | null {
  if (backup.alternateLba !== primary.myLba) return `backup AlternateLBA ${backup.alternateLba} is not the primary's LBA`;
  const same: (keyof GptHeader)[] = ["diskGuid", "firstUsableLba", "lastUsableLba", "entryCount", "entryBytes", "entryArrayCrc"];
  for (const key of same) {
    if (primary[key] !== backup[key]) return `backup ${key} differs from the primary's`;
  }
  return null;
}

/** A hint when the header sits where a different logical sector size would put it. */
function sectorSizeHint(reader: BlockReader, sectorBytes: number): string {
  for (const other of [512, 4096]) {
    if (other === sectorBytes || reader.sizeBytes < other + 8) continue;
    const probe = reader.read(other, 8);
    if (String.fromCharCode(...probe) === headerSignature) return ` (a GPT header sits at byte ${other}: is the sector size ${other}?)`;
  }
  return "";
}

/** Reads the GPT of a disk whose MBR is protective. Throws PartitionTableError when neither copy is usable. */
export function readGpt(reader: BlockReader, sectorBytes: number): PartitionTable {
  const diskBytes = reader.sizeBytes;
  const diskSectors = Math.floor(diskBytes / sectorBytes);
  if (diskSectors < 3) throw new PartitionTableError(`disk of ${diskSectors} sectors is too small for a GPT`);

  const primary = attempt(() => readCopy(reader, sectorBytes, diskSectors, primaryHeaderLba));
  let backup: Attempt;
  if (primary.ok) {
    const backupLba = primary.copy.header.alternateLba;
    backup = attempt(() => readCopy(reader, sectorBytes, diskSectors, backupLba));
    if (backup.ok) {
      const mismatch = backupMatches(primary.copy.header, backup.copy.header);
      if (mismatch !== null) backup = { ok: false, reason: mismatch };
    }
  } else {
    backup = attempt(() => readCopy(reader, sectorBytes, diskSectors, diskSectors - 1));
    if (backup.ok && backup.copy.header.alternateLba !== primaryHeaderLba) {
      backup = { ok: false, reason: `backup AlternateLBA ${backup.copy.header.alternateLba} is not ${primaryHeaderLba}` };
    }
  }

  const inUse = primary.ok ? primary.copy : backup.ok ? backup.copy : null;
  if (inUse === null) {
    const primaryReason = primary.ok ? "" : primary.reason;
    const backupReason = backup.ok ? "" : backup.reason;
    throw new PartitionTableError(
      `neither GPT copy is valid: primary: ${primaryReason}${sectorSizeHint(reader, sectorBytes)}; backup: ${backupReason}`,
    );
  }
  const h = inUse.header;
  const entrySectors = entryArraySectors(h, sectorBytes);
  const info: GptInfo = {
    diskGuid: h.diskGuid,
    firstUsableLba: h.firstUsableLba,
    lastUsableLba: h.lastUsableLba,
    entryCount: h.entryCount,
    entryBytes: h.entryBytes,
    alternateLba: primary.ok ? h.alternateLba : h.myLba,
    entryArrayLba: primary.ok ? h.entryArrayLba : standardEntryArrayLba,
    backupEntryArrayLba: backup.ok ? backup.copy.header.entryArrayLba : Math.max(0, h.alternateLba - entrySectors),
    primaryValid: primary.ok,
    backupValid: backup.ok,
  };

  const partitions = decodeEntries(inUse.entries, h, sectorBytes);
  const spans: Span[] = partitions.map((p) => ({ what: `partition ${p.index}`, startBytes: p.startBytes, sizeBytes: p.sizeBytes }));
  checkDisjoint(spans, h.firstUsableLba * sectorBytes, Math.min(h.lastUsableLba + 1, diskSectors) * sectorBytes);

  return {
    kind: "gpt",
    sectorBytes,
    diskBytes,
    partitions,
    keep: keepRanges(info, partitions, sectorBytes, diskSectors),
    gpt: info,
  };
}

/** Non-empty entries as partitions, numbered by slot like Linux does. Throws on inverted or out-of-area extents. */
function decodeEntries(entries: Uint8Array, h: GptHeader, sectorBytes: number): Partition[] {
  const view = new DataView(entries.buffer, entries.byteOffset, entries.byteLength);
  const nameDecoder = new TextDecoder("utf-16le");
  const out: Partition[] = [];
  for (let slot = 0; slot < h.entryCount; slot++) {
    const at = slot * h.entryBytes;
    const typeBytes = entries.subarray(at + entryTypeGuidOffset, at + entryTypeGuidOffset + 16);
    if (typeBytes.every((b) => b === 0)) continue; // unused entry
    const firstLba = readU64(view, at + entryFirstLbaOffset, `entry ${slot + 1} StartingLBA`);
    const lastLba = readU64(view, at + entryLastLbaOffset, `entry ${slot + 1} EndingLBA`);
    if (lastLba < firstLba) throw new PartitionTableError(`GPT entry ${slot + 1} ends (LBA ${lastLba}) before it starts (LBA ${firstLba})`);
    if (firstLba < h.firstUsableLba || lastLba > h.lastUsableLba) {
      throw new PartitionTableError(`GPT entry ${slot + 1} (LBA ${firstLba}..${lastLba}) lies outside the usable area`);
    }
    out.push({
      index: slot + 1,
      startBytes: firstLba * sectorBytes,
      sizeBytes: (lastLba - firstLba + 1) * sectorBytes,
      type: guidToString(typeBytes.slice()),
      name: decodeName(entries.subarray(at + entryNameOffset, at + entryNameOffset + entryNameBytes), nameDecoder),
      uuid: guidToString(entries.slice(at + entryUniqueGuidOffset, at + entryUniqueGuidOffset + 16)),
    });
  }
  return out;
}

/** UTF-16LE up to the first NUL code unit. */
function decodeName(bytes: Uint8Array, decoder: TextDecoder): string {
  let units = 0;
  while (units * 2 < bytes.length && (bytes[units * 2] !== 0 || bytes[units * 2 + 1] !== 0)) units++;
  return decoder.decode(bytes.subarray(0, units * 2));
}

/**
 * LBA 0 up to the first partition (the primary header, its entries and whatever boot code hides in the
 * gap), the primary entry array wherever it is, and everything between the usable area and the backup
 * header inclusive (the backup entry array and header), clipped to the disk.
 */
function keepRanges(info: GptInfo, partitions: readonly Partition[], sectorBytes: number, diskSectors: number): Range[] {
  const firstDataLba = partitions.length === 0
    ? info.firstUsableLba
    : Math.min(...partitions.map((p) => p.startBytes / sectorBytes));
  const entrySectors = Math.ceil((info.entryCount * info.entryBytes) / sectorBytes);
  const lbaRanges: Range[] = [
    { start: 0, length: Math.max(firstDataLba, primaryHeaderLba + 1) },
    { start: info.entryArrayLba, length: entrySectors },
    { start: info.backupEntryArrayLba, length: entrySectors },
    { start: info.alternateLba, length: 1 },
  ];
  if (info.alternateLba > info.lastUsableLba) {
    lbaRanges.push({ start: info.lastUsableLba + 1, length: info.alternateLba - info.lastUsableLba });
  }
  const clipped: Range[] = [];
  for (const r of lbaRanges) {
    const end = Math.min(r.start + r.length, diskSectors);
    if (end > r.start) clipped.push({ start: r.start * sectorBytes, length: (end - r.start) * sectorBytes });
  }
  return normalizeRanges(clipped);
}
