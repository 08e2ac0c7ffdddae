// FAT12/16/32 (including EFI System Partitions): allocation from the first FAT, cross-checked
// against every other FAT copy. Layout per Microsoft's "FAT: General Overview of On-Disk Format".
import { assert } from "../util/assert.ts";
import { BS_JUMP, BS_OEM_NAME, BPB_BYTES_PER_SECTOR, BPB_SECTORS_PER_CLUSTER, BPB_RESERVED_SECTORS, BPB_FAT_COUNT, BPB_ROOT_ENTRY_COUNT, BPB_TOTAL_SECTORS_16, BPB_MEDIA, BPB_FAT_SECTORS_16, BPB_TOTAL_SECTORS_32 } from "./fat-bpb.ts";
import { isPowerOfTwo } from "../util/bytes.ts";
import { FsUnsupportedError } from "../util/errors.ts";
import { normalizeRanges, type Range } from "../util/ranges.ts";
import type { BlockReader, FsAllocation, FsParser } from "./types.ts";

// Boot sector / BPB offsets shared by all FAT types are in fs/fat-bpb.ts.
// FAT32-only BPB fields.
const BPB32_FAT_SECTORS_32 = 0x24;
const BPB32_EXT_FLAGS = 0x28;
const BPB32_FS_VERSION = 0x2a;
const BPB32_ROOT_CLUSTER = 0x2c;
const BPB32_BACKUP_BOOT_SECTOR = 0x32;
// Boot-sector bytes that define the volume's layout, which a FAT32 backup boot sector must repeat:
// sector and cluster size, reserved sectors, FAT count, root entries, sector counts, media, FAT
// sizes, version and root cluster. Drive geometry, hidden sectors and ExtFlags may drift.
const LAYOUT_FIELDS: ReadonlyArray<readonly [number, number]> = [
  [BPB_BYTES_PER_SECTOR, BPB_FAT_SECTORS_16 + 2],
  [BPB_TOTAL_SECTORS_32, BPB32_EXT_FLAGS],
  [BPB32_FS_VERSION, BPB32_ROOT_CLUSTER + 4],
];
// The extended boot record (signature, serial, label) sits at different offsets for FAT12/16 and FAT32.
const EBR16_OFFSET = 0x24;
const EBR32_OFFSET = 0x40;
const EBR_BOOT_SIGNATURE = 0x02;
const EBR_VOLUME_ID = 0x03;
const EBR_VOLUME_LABEL = 0x07;
const EBR_LABEL_BYTES = 11;
const SIGNATURE_OFFSET = 510;
const BOOT_SECTOR_BYTES = 512;

// FAT32 ExtFlags bit 7: FATs are not mirrored, only the "active" one is current.
const EXT_FLAGS_NO_MIRRORING = 0x80;
// Microsoft's thresholds: the cluster count alone decides FAT12 vs FAT16 vs FAT32.
const FAT12_MAX_CLUSTERS = 4084;
const FAT16_MAX_CLUSTERS = 65524;
// Cluster numbers are 28 bits and 0x0FFFFFF7 marks bad clusters, so this is the most FAT32 can address.
const FAT32_MAX_CLUSTERS = 0x0ffffff5;
const FIRST_DATA_CLUSTER = 2;
// Entry values from this one up mark bad clusters (the first) and ends of chains; below it, a used
// entry must name a cluster of the volume. FAT32 entries are 28 bits wide.
const BAD_CLUSTER: Record<FatKind, number> = { fat12: 0xff7, fat16: 0xfff7, fat32: 0x0ffffff7 };
const ENTRY_MASK: Record<FatKind, number> = { fat12: 0xfff, fat16: 0xffff, fat32: 0x0fffffff };
// FAT[0] holds the media byte in its low 8 bits and ones above.
const MEDIA_BITS = 0xff;
const DIR_ENTRY_BYTES = 32;
const DIR_ATTRIBUTES = 11;
const ATTR_VOLUME_ID = 0x08;
const ATTR_LONG_NAME = 0x0f;
const DIR_ENTRY_FREE = 0xe5;
// A directory holds at most 65536 entries (the spec's limit); bounds the label search.
const MAX_DIR_ENTRIES = 65536;
// FAT32 FATs can be hundreds of MiB; compare copies this many entries at a time.
const ENTRIES_PER_CHUNK = 1 << 20;
const NO_LABEL = "NO NAME";

export type FatKind = "fat12" | "fat16" | "fat32";

const FAT_ENTRY_BITS: Record<FatKind, number> = { fat12: 12, fat16: 16, fat32: 32 };

export interface FatGeometry {
  kind: FatKind;
  sectorBytes: number;
  sectorsPerCluster: number;
  reservedSectors: number;
  fatCount: number;
  fatSectors: number;
  rootDirSectors: number;
  totalSectors: number;
  /** First sector of cluster 2. */
  dataStartSector: number;
  clusterCount: number;
  /** FAT32 only: first cluster of the root directory. */
  rootCluster: number;
  /** Offset of the extended boot record (signature, serial, label) in the boot sector. */
  ebrOffset: number;
  /** The BPB's media descriptor byte, which FAT[0] repeats. */
  media: number;
}

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

/** The cheap part of the BPB sanity check: what any FAT boot sector must look like. */
function looksLikeFatBootSector(boot: Uint8Array): boolean {
  if (boot.length < BOOT_SECTOR_BYTES) return false;
  const view = new DataView(boot.buffer, boot.byteOffset, boot.byteLength);
  if (view.getUint16(SIGNATURE_OFFSET, true) !== 0xaa55) return false;
  const jump = boot[BS_JUMP]!;
  if (jump !== 0xeb && jump !== 0xe9) return false;
  // NTFS and exFAT reuse the boot sector layout; their OEM ids tell them apart.
  const oem = latin1(boot.subarray(BS_OEM_NAME, BS_OEM_NAME + 8));
  if (oem === "NTFS    " || oem === "EXFAT   ") return false;
  const sectorBytes = view.getUint16(BPB_BYTES_PER_SECTOR, true);
  if (!isPowerOfTwo(sectorBytes) || sectorBytes < 512 || sectorBytes > 4096) return false;
  if (!isPowerOfTwo(boot[BPB_SECTORS_PER_CLUSTER]!)) return false;
  if (view.getUint16(BPB_RESERVED_SECTORS, true) === 0) return false;
  const fatCount = boot[BPB_FAT_COUNT]!;
  if (fatCount < 1 || fatCount > 4) return false;
  const media = boot[BPB_MEDIA]!;
  return media === 0xf0 || media >= 0xf8;
}

function unsupported(why: string): never {
  throw new FsUnsupportedError(`FAT: ${why}`);
}

/** Decodes and validates the BPB. Throws FsUnsupportedError for any geometry it cannot trust. */
export function parseFatBootSector(boot: Uint8Array): FatGeometry {
  if (!looksLikeFatBootSector(boot)) unsupported("no valid FAT boot sector");
  const view = new DataView(boot.buffer, boot.byteOffset, boot.byteLength);
  const sectorBytes = view.getUint16(BPB_BYTES_PER_SECTOR, true);
  const sectorsPerCluster = boot[BPB_SECTORS_PER_CLUSTER]!;
  const reservedSectors = view.getUint16(BPB_RESERVED_SECTORS, true);
  const fatCount = boot[BPB_FAT_COUNT]!;
  const rootEntryCount = view.getUint16(BPB_ROOT_ENTRY_COUNT, true);
  const totalSectors16 = view.getUint16(BPB_TOTAL_SECTORS_16, true);
  const totalSectors32 = view.getUint32(BPB_TOTAL_SECTORS_32, true);
  const fatSectors16 = view.getUint16(BPB_FAT_SECTORS_16, true);

  if (totalSectors16 !== 0 && totalSectors32 !== 0 && totalSectors16 !== totalSectors32) {
    unsupported(`BPB has two different sector counts (${totalSectors16} and ${totalSectors32})`);
  }
  const totalSectors = totalSectors16 !== 0 ? totalSectors16 : totalSectors32;
  if (totalSectors === 0) unsupported("BPB sector count is zero");

  // A zero 16-bit FAT size is what makes a BPB a FAT32 BPB (that is how every driver reads it).
  const isFat32Layout = fatSectors16 === 0;
  let fatSectors: number;
  let rootCluster = 0;
  if (isFat32Layout) {
    fatSectors = view.getUint32(BPB32_FAT_SECTORS_32, true);
    if (fatSectors === 0) unsupported("both FAT size fields are zero");
    if (rootEntryCount !== 0) unsupported("FAT32 BPB with a fixed root directory");
    const version = view.getUint16(BPB32_FS_VERSION, true);
    if (version !== 0) unsupported(`unknown FAT32 version ${version >> 8}.${version & 0xff}`);
    // With mirroring off the copies legitimately differ and "the first FAT" may be stale.
    if ((view.getUint16(BPB32_EXT_FLAGS, true) & EXT_FLAGS_NO_MIRRORING) !== 0) {
      unsupported("FAT32 with FAT mirroring disabled");
    }
    rootCluster = view.getUint32(BPB32_ROOT_CLUSTER, true);
  } else {
    fatSectors = fatSectors16;
    if (rootEntryCount === 0) unsupported("FAT12/16 BPB without a root directory");
  }

  const rootDirSectors = Math.ceil((rootEntryCount * DIR_ENTRY_BYTES) / sectorBytes);
  const dataStartSector = reservedSectors + fatCount * fatSectors + rootDirSectors;
  if (dataStartSector >= totalSectors) {
    unsupported(`data area starts at sector ${dataStartSector}, beyond the ${totalSectors}-sector volume`);
  }
  const clusterCount = Math.floor((totalSectors - dataStartSector) / sectorsPerCluster);
  if (clusterCount < 1) unsupported("volume has no data clusters");

  let kind: FatKind;
  if (isFat32Layout) {
    // The 32-bit entries are what is on disk even if a tool made too few clusters for Microsoft's
    // rule (Linux and dosfstools read such volumes as FAT32, so their FATs are 32-bit).
    if (clusterCount > FAT32_MAX_CLUSTERS) unsupported(`${clusterCount} clusters is more than FAT32 can address`);
    kind = "fat32";
    if (rootCluster < FIRST_DATA_CLUSTER || rootCluster >= clusterCount + FIRST_DATA_CLUSTER) {
      unsupported(`root directory cluster ${rootCluster} is outside the ${clusterCount} clusters`);
    }
  } else if (clusterCount <= FAT12_MAX_CLUSTERS) {
    kind = "fat12";
  } else if (clusterCount <= FAT16_MAX_CLUSTERS) {
    kind = "fat16";
  } else {
    unsupported(`${clusterCount} clusters need FAT32, but the BPB describes FAT12/16`);
  }

  const fatBytesNeeded = Math.ceil(((clusterCount + FIRST_DATA_CLUSTER) * FAT_ENTRY_BITS[kind]) / 8);
  if (fatBytesNeeded > fatSectors * sectorBytes) {
    unsupported(`FAT of ${fatSectors} sectors is too small for ${clusterCount} clusters`);
  }

  return {
    kind,
    sectorBytes,
    sectorsPerCluster,
    reservedSectors,
    fatCount,
    fatSectors,
    rootDirSectors,
    totalSectors,
    dataStartSector,
    clusterCount,
    rootCluster,
    ebrOffset: isFat32Layout ? EBR32_OFFSET : EBR16_OFFSET,
    media: boot[BPB_MEDIA]!,
  };
}

/** Byte offset of FAT entry `index` within a FAT (FAT12 packs two entries in three bytes). */
function fatByteOffset(kind: FatKind, index: number): number {
  if (kind === "fat12") return index + (index >>> 1);
  return kind === "fat16" ? index * 2 : index * 4;
}

/** Entry `index` of a FAT, from `bytes` holding that FAT starting at byte `baseBytes`. */
function fatEntry(kind: FatKind, view: DataView, baseBytes: number, index: number): number {
  const at = fatByteOffset(kind, index) - baseBytes;
  if (kind === "fat12") {
    const pair = view.getUint16(at, true);
    return (index & 1) === 1 ? pair >>> 4 : pair & 0x0fff;
  }
  // FAT32's top 4 bits are reserved; any non-zero value counts as in use (conservative).
  return kind === "fat16" ? view.getUint16(at, true) : view.getUint32(at, true);
}

/**
 * FAT[0] of every copy must repeat the BPB's media byte with ones above it: a FAT that does not
 * (zeroed, overwritten, or read at the wrong place) says nothing trustworthy about free clusters.
 */
function checkMediaEntry(geo: FatGeometry, views: readonly DataView[]): void {
  const expected = (ENTRY_MASK[geo.kind] & ~MEDIA_BITS) | geo.media;
  views.forEach((view, copy) => {
    const entry = fatEntry(geo.kind, view, 0, 0) & ENTRY_MASK[geo.kind];
    if (entry !== expected) {
      unsupported(`FAT copy ${copy + 1} starts with 0x${entry.toString(16)}, not the media entry 0x${expected.toString(16)}`);
    }
  });
}

/** A used entry must point at a cluster of the volume, or mark a bad cluster or a chain's end. */
function checkEntryValue(geo: FatGeometry, index: number, raw: number): void {
  const value = raw & ENTRY_MASK[geo.kind];
  if (value === 0 || value >= BAD_CLUSTER[geo.kind]) return;
  if (value < FIRST_DATA_CLUSTER || value >= geo.clusterCount + FIRST_DATA_CLUSTER) {
    unsupported(`cluster ${index} chains to cluster ${value}, outside the volume's ${geo.clusterCount} clusters (damaged FAT or sector count?)`);
  }
}

/**
 * Runs of clusters (as cluster numbers) whose entry in the first FAT is non-zero. Every other FAT copy
 * must agree on which clusters are free, or the volume is not trusted.
 */
export function allocatedClusterRuns(reader: BlockReader, geo: FatGeometry, entriesPerChunk = ENTRIES_PER_CHUNK): Range[] {
  assert(entriesPerChunk >= 2 && entriesPerChunk % 2 === 0, "FAT chunks hold an even number of entries");
  const fatBytes = geo.fatSectors * geo.sectorBytes;
  const firstFatBytes = geo.reservedSectors * geo.sectorBytes;
  const endEntry = geo.clusterCount + FIRST_DATA_CLUSTER;
  const runs: Range[] = [];
  let runStart = -1;
  // Chunks hold an even number of entries, so FAT12 chunks always start on a whole byte.
  for (let chunkStart = 0; chunkStart < endEntry; chunkStart += entriesPerChunk) {
    const chunkEnd = Math.min(endEntry, chunkStart + entriesPerChunk);
    const baseBytes = fatByteOffset(geo.kind, chunkStart);
    const lengthBytes = Math.min(fatBytes, fatByteOffset(geo.kind, chunkEnd) + 2) - baseBytes;
    const views: DataView[] = [];
    for (let copy = 0; copy < geo.fatCount; copy++) {
      const bytes = reader.read(firstFatBytes + copy * fatBytes + baseBytes, lengthBytes);
      views.push(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    }
    const first = views[0]!;
    if (chunkStart === 0) checkMediaEntry(geo, views);
    // Entries 0 and 1 are reserved (media byte, dirty flags), not clusters.
    for (let index = Math.max(chunkStart, FIRST_DATA_CLUSTER); index < chunkEnd; index++) {
      const entry = fatEntry(geo.kind, first, baseBytes, index);
      checkEntryValue(geo, index, entry);
      const used = entry !== 0;
      for (let copy = 1; copy < views.length; copy++) {
        if ((fatEntry(geo.kind, views[copy]!, baseBytes, index) !== 0) !== used) {
          unsupported(`FAT copies 1 and ${copy + 1} disagree on whether cluster ${index} is free`);
        }
      }
      if (used && runStart < 0) runStart = index;
      if (!used && runStart >= 0) {
        runs.push({ start: runStart, length: index - runStart });
        runStart = -1;
      }
    }
  }
  if (runStart >= 0) runs.push({ start: runStart, length: endEntry - runStart });
  return runs;
}

/**
 * Entries past the last cluster (the FAT's last sector is rarely full) are never used: mkfs.fat and
 * Windows leave them zero. One in use means the sector count was cut below the data it holds.
 */
function checkFatTail(reader: BlockReader, geo: FatGeometry): void {
  const fatBytes = geo.fatSectors * geo.sectorBytes;
  const endEntry = geo.clusterCount + FIRST_DATA_CLUSTER;
  const capacity = Math.floor((fatBytes * 8) / FAT_ENTRY_BITS[geo.kind]);
  for (let chunkStart = endEntry; chunkStart < capacity; chunkStart += ENTRIES_PER_CHUNK) {
    const chunkEnd = Math.min(capacity, chunkStart + ENTRIES_PER_CHUNK);
    // FAT12 entries may start mid-byte: read from the byte holding the first one.
    const baseBytes = fatByteOffset(geo.kind, chunkStart);
    const lengthBytes = Math.min(fatBytes, fatByteOffset(geo.kind, chunkEnd) + 2) - baseBytes;
    const bytes = reader.read(geo.reservedSectors * geo.sectorBytes + baseBytes, lengthBytes);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let index = chunkStart; index < chunkEnd; index++) {
      if (fatEntry(geo.kind, view, baseBytes, index) !== 0) {
        unsupported(`FAT entry ${index} past the volume's ${geo.clusterCount} clusters is in use (damaged sector count?)`);
      }
    }
  }
}

/** A FAT32 backup boot sector must describe the same layout as the primary. */
function checkBackupBootSector(reader: BlockReader, boot: Uint8Array, geo: FatGeometry): void {
  if (geo.kind !== "fat32") return;
  const backupSector = new DataView(boot.buffer, boot.byteOffset, boot.byteLength).getUint16(BPB32_BACKUP_BOOT_SECTOR, true);
  if (backupSector === 0 || backupSector === 0xffff) return; // no backup recorded
  if (backupSector >= geo.reservedSectors) unsupported(`backup boot sector ${backupSector} lies outside the reserved sectors`);
  const backup = reader.read(backupSector * geo.sectorBytes, BOOT_SECTOR_BYTES);
  for (const [start, end] of LAYOUT_FIELDS) {
    for (let i = start; i < end; i++) {
      if (backup[i] !== boot[i]) unsupported(`the backup boot sector (sector ${backupSector}) describes another layout (byte 0x${i.toString(16)} differs)`);
    }
  }
}

/** Label from the boot sector's extended boot record, or null when absent or "NO NAME". */
function bootSectorLabel(boot: Uint8Array, geo: FatGeometry): string | null {
  if (boot[geo.ebrOffset + EBR_BOOT_SIGNATURE] !== 0x29) return null;
  const at = geo.ebrOffset + EBR_VOLUME_LABEL;
  return cleanLabel(boot.subarray(at, at + EBR_LABEL_BYTES));
}

function cleanLabel(raw: Uint8Array): string | null {
  const label = latin1(raw).replace(/[ \0]+$/, "");
  return label === "" || label === NO_LABEL ? null : label;
}

/** The serial as blkid shows it: "XXXX-XXXX", high half first. */
function volumeSerial(boot: Uint8Array, geo: FatGeometry): string | null {
  const signature = boot[geo.ebrOffset + EBR_BOOT_SIGNATURE];
  if (signature !== 0x29 && signature !== 0x28) return null;
  const view = new DataView(boot.buffer, boot.byteOffset, boot.byteLength);
  const serial = view.getUint32(geo.ebrOffset + EBR_VOLUME_ID, true);
  const hex = serial.toString(16).toUpperCase().padStart(8, "0");
  return `${hex.slice(0, 4)}-${hex.slice(4)}`;
}

/** Scans directory entries for the volume label entry. Returns undefined if the scan should continue. */
function labelInEntries(entries: Uint8Array): { label: string | null } | "end" | undefined {
  for (let at = 0; at + DIR_ENTRY_BYTES <= entries.length; at += DIR_ENTRY_BYTES) {
    const first = entries[at]!;
    if (first === 0) return "end";
    if (first === DIR_ENTRY_FREE) continue;
    const attributes = entries[at + DIR_ATTRIBUTES]!;
    if ((attributes & ATTR_LONG_NAME) === ATTR_LONG_NAME) continue;
    if ((attributes & ATTR_VOLUME_ID) !== 0) {
      const raw = entries.slice(at, at + EBR_LABEL_BYTES);
      if (raw[0] === 0x05) raw[0] = DIR_ENTRY_FREE; // 0x05 stands for a real leading 0xE5 byte
      return { label: cleanLabel(raw) };
    }
  }
  return undefined;
}

/**
 * The label entry in the root directory (what blkid prefers), or undefined if there is none.
 * Cosmetic only: follows at most a directory's worth of clusters and never affects allocation.
 */
function rootDirectoryLabel(reader: BlockReader, geo: FatGeometry): string | null | undefined {
  const clusterBytes = geo.sectorsPerCluster * geo.sectorBytes;
  if (geo.kind !== "fat32") {
    const rootStart = (geo.reservedSectors + geo.fatCount * geo.fatSectors) * geo.sectorBytes;
    const found = labelInEntries(reader.read(rootStart, geo.rootDirSectors * geo.sectorBytes));
    return typeof found === "object" ? found.label : undefined;
  }
  const maxClusters = Math.ceil((MAX_DIR_ENTRIES * DIR_ENTRY_BYTES) / clusterBytes);
  let cluster = geo.rootCluster;
  for (let step = 0; step < maxClusters; step++) {
    if (cluster < FIRST_DATA_CLUSTER || cluster >= geo.clusterCount + FIRST_DATA_CLUSTER) return undefined;
    const offsetBytes = (geo.dataStartSector + (cluster - FIRST_DATA_CLUSTER) * geo.sectorsPerCluster) * geo.sectorBytes;
    const found = labelInEntries(reader.read(offsetBytes, clusterBytes));
    if (found === "end") return undefined;
    if (found !== undefined) return found.label;
    const entryBytes = reader.read(geo.reservedSectors * geo.sectorBytes + cluster * 4, 4);
    cluster = new DataView(entryBytes.buffer, entryBytes.byteOffset, 4).getUint32(0, true) & 0x0fffffff;
  }
  return undefined;
}

function allocation(reader: BlockReader): FsAllocation {
  if (reader.sizeBytes < BOOT_SECTOR_BYTES) unsupported("area is smaller than a boot sector");
  const boot = reader.read(0, BOOT_SECTOR_BYTES);
  const geo = parseFatBootSector(boot);
  const fsBytes = geo.totalSectors * geo.sectorBytes;
  if (fsBytes > reader.sizeBytes) {
    unsupported(`volume of ${fsBytes} bytes is larger than its ${reader.sizeBytes}-byte partition`);
  }
  checkBackupBootSector(reader, boot, geo);
  const clusterBytes = geo.sectorsPerCluster * geo.sectorBytes;
  const dataStartBytes = geo.dataStartSector * geo.sectorBytes;

  // Reserved sectors (boot, FSInfo, backup boot), every FAT copy and the fixed root directory.
  const allocated: Range[] = [{ start: 0, length: dataStartBytes }];
  const runs = allocatedClusterRuns(reader, geo);
  checkFatTail(reader, geo);
  if (geo.kind === "fat32" && !runs.some((r) => geo.rootCluster >= r.start && geo.rootCluster < r.start + r.length)) {
    unsupported(`the FAT marks root directory cluster ${geo.rootCluster} free`);
  }
  for (const run of runs) {
    allocated.push({
      start: dataStartBytes + (run.start - FIRST_DATA_CLUSTER) * clusterBytes,
      length: run.length * clusterBytes,
    });
  }
  const ranges = normalizeRanges(allocated);
  const last = ranges[ranges.length - 1];
  assert(last !== undefined && last.start + last.length <= fsBytes, "FAT allocation lies within the volume");

  const rootLabel = rootDirectoryLabel(reader, geo);
  return {
    kind: geo.kind,
    label: rootLabel !== undefined ? rootLabel : bootSectorLabel(boot, geo),
    uuid: volumeSerial(boot, geo),
    blockBytes: clusterBytes,
    fsBytes,
    allocated: ranges,
  };
}

export const fatParser: FsParser = {
  name: "fat",
  detect(reader: BlockReader): boolean {
    if (reader.sizeBytes < BOOT_SECTOR_BYTES) return false;
    return looksLikeFatBootSector(reader.read(0, BOOT_SECTOR_BYTES));
  },
  allocation,
};
