// NTFS: allocation from the $Bitmap system file (MFT record 6), read through the $MFT runlist.
// Refuses volumes whose maps may be stale: dirty flag, unclean or Windows-cached $LogFile.
import { assert } from "../util/assert.ts";
import { BS_OEM_NAME, BPB_BYTES_PER_SECTOR, BPB_SECTORS_PER_CLUSTER, BPB_RESERVED_SECTORS, BPB_FAT_COUNT, BPB_ROOT_ENTRY_COUNT, BPB_TOTAL_SECTORS_16, BPB_FAT_SECTORS_16, BPB_TOTAL_SECTORS_32 } from "./fat-bpb.ts";
import { bitSet, isPowerOfTwo, tryGetU64 } from "../util/bytes.ts";
import { FsUnsupportedError } from "../util/errors.ts";
import { bitmapRuns, normalizeRanges, type Range } from "../util/ranges.ts";
import type { BlockReader, FsAllocation, FsParser } from "./types.ts";

// NTFS boot-sector fields after the DOS BPB (shared offsets: fs/fat-bpb.ts).
const BPB_TOTAL_SECTORS = 0x28;
const BPB_MFT_LCN = 0x30;
const BPB_MFT_MIRROR_LCN = 0x38;
const BPB_CLUSTERS_PER_RECORD = 0x40;
const BPB_VOLUME_SERIAL = 0x48;
const SIGNATURE_OFFSET = 510;
const BOOT_SECTOR_BYTES = 512;
const OEM_ID = "NTFS    ";
// The part of a boot sector that describes the volume (OEM id, BPB, extended BPB, serial); the
// backup copies must agree on it. Boot code may legitimately differ (boot managers rewrite it).
const VOLUME_FIELDS_END = 0x50;
const MAX_CLUSTER_BYTES = 2 * 1024 * 1024;

// Multi-sector transfer protection works in 512-byte strides whatever the sector size.
const FIXUP_STRIDE_BYTES = 512;

// MFT record (FILE record segment) header offsets.
const REC_MAGIC = 0x00;
const REC_USA_OFFSET = 0x04;
const REC_USA_COUNT = 0x06;
const REC_ATTRS_OFFSET = 0x14;
const REC_FLAGS = 0x16;
const REC_BYTES_IN_USE = 0x18;
const REC_BYTES_ALLOCATED = 0x1c;
const REC_BASE_RECORD = 0x20;
const REC_RECORD_NUMBER = 0x2c;
// Records from NTFS 3.1 on carry their own number; their update sequence array starts at 0x30.
const REC_HEADER_WITH_NUMBER_BYTES = 0x30;
const REC_FLAG_IN_USE = 0x0001;

// Attribute record header offsets.
const ATTR_TYPE = 0x00;
const ATTR_LENGTH = 0x04;
const ATTR_NON_RESIDENT = 0x08;
const ATTR_NAME_LENGTH = 0x09;
const ATTR_FLAGS = 0x0c;
const ATTR_RESIDENT_VALUE_LENGTH = 0x10;
const ATTR_RESIDENT_VALUE_OFFSET = 0x14;
const ATTR_RESIDENT_HEADER_BYTES = 0x18;
const ATTR_LOWEST_VCN = 0x10;
const ATTR_HIGHEST_VCN = 0x18;
const ATTR_MAPPING_PAIRS_OFFSET = 0x20;
const ATTR_ALLOCATED_BYTES = 0x28;
const ATTR_DATA_BYTES = 0x30;
const ATTR_INITIALIZED_BYTES = 0x38;
const ATTR_NON_RESIDENT_HEADER_BYTES = 0x40;
const ATTR_FLAG_COMPRESSED = 0x0001;
const ATTR_FLAG_ENCRYPTED = 0x4000;
const ATTR_FLAG_SPARSE = 0x8000;

const TYPE_ATTRIBUTE_LIST = 0x20;
const TYPE_VOLUME_NAME = 0x60;
const TYPE_VOLUME_INFORMATION = 0x70;
const TYPE_DATA = 0x80;
const TYPE_END = 0xffffffff;

// System files by MFT record number.
const MFT_RECORD_MFT = 0;
const MFT_RECORD_LOGFILE = 2;
const MFT_RECORD_VOLUME = 3;
const MFT_RECORD_BITMAP = 6;

// $VOLUME_INFORMATION value offsets.
const VOLINFO_MAJOR = 0x08;
const VOLINFO_MINOR = 0x09;
const VOLINFO_FLAGS = 0x0a;
const VOLINFO_MIN_BYTES = 0x0c;
const VOLUME_IS_DIRTY = 0x0001;

// $LogFile restart page header and restart area offsets.
const RP_MAGIC = 0x00;
const RP_USA_OFFSET = 0x04;
const RP_USA_COUNT = 0x06;
const RP_CHKDSK_LSN = 0x08;
const RP_SYSTEM_PAGE_BYTES = 0x10;
const RP_LOG_PAGE_BYTES = 0x14;
const RP_RESTART_AREA_OFFSET = 0x18;
const RP_MINOR_VERSION = 0x1a;
const RP_MAJOR_VERSION = 0x1c;
const RP_HEADER_BYTES = 0x1e;
const RA_CURRENT_LSN = 0x00;
const RA_CLIENT_IN_USE_LIST = 0x0c;
const RA_FLAGS = 0x0e;
// Everything we read from the restart area lies before its file_size field, which the format keeps
// ahead of the first fixup word: no deprotection needed for it.
const RA_FIELDS_WE_READ_BYTES = 0x18;
const RA_NO_CLIENT = 0xffff;
const RA_VOLUME_IS_CLEAN = 0x0002;
// Restart pages sit at offset 0 and at the system page size; probe the candidate sizes.
const LOG_PROBE_MAX_BYTES = 64 * 1024;

export interface NtfsGeometry {
  sectorBytes: number;
  clusterBytes: number;
  /** Sectors in the volume, not counting the backup boot sector that follows them. */
  totalSectors: number;
  clusterCount: number;
  mftLcn: number;
  recordBytes: number;
  /** The 64-bit volume serial as blkid shows it: 16 upper-case hex digits. */
  serial: string;
}

/** One extent of a non-resident attribute; `lcn` null marks a sparse (unallocated) run. */
export interface Run {
  vcn: number;
  lcn: number | null;
  length: number;
}

interface Attribute {
  type: number;
  nonResident: boolean;
  nameLength: number;
  flags: number;
  /** The whole attribute record, within its (fixed-up) MFT record. */
  record: Uint8Array;
}

function unsupported(why: string): never {
  throw new FsUnsupportedError(`NTFS: ${why}`);
}

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

/** A 64-bit little-endian field that must fit in a JavaScript number. */
function u64(view: DataView, at: number, what: string): number {
  const value = tryGetU64(view, at);
  if (value === null) unsupported(`${what} is too large`);
  return value;
}

function looksLikeNtfsBootSector(boot: Uint8Array): boolean {
  if (boot.length < BOOT_SECTOR_BYTES) return false;
  if (latin1(boot.subarray(BS_OEM_NAME, BS_OEM_NAME + 8)) !== OEM_ID) return false;
  const view = viewOf(boot);
  if (view.getUint16(SIGNATURE_OFFSET, true) !== 0xaa55) return false;
  const sectorBytes = view.getUint16(BPB_BYTES_PER_SECTOR, true);
  return isPowerOfTwo(sectorBytes) && sectorBytes >= 512 && sectorBytes <= 4096;
}

/** Decodes and validates the boot sector. Throws FsUnsupportedError for anything it cannot trust. */
export function parseNtfsBootSector(boot: Uint8Array): NtfsGeometry {
  if (!looksLikeNtfsBootSector(boot)) unsupported("no valid NTFS boot sector");
  const view = viewOf(boot);
  const sectorBytes = view.getUint16(BPB_BYTES_PER_SECTOR, true);
  // Values above 0x80 encode big clusters as a negative power of two (Windows 10 allows up to 2 MiB).
  const rawSectorsPerCluster = boot[BPB_SECTORS_PER_CLUSTER]!;
  const sectorsPerCluster = rawSectorsPerCluster <= 0x80 ? rawSectorsPerCluster : 2 ** (256 - rawSectorsPerCluster);
  if (!isPowerOfTwo(sectorsPerCluster)) unsupported(`bad sectors-per-cluster value ${rawSectorsPerCluster}`);
  const clusterBytes = sectorBytes * sectorsPerCluster;
  if (clusterBytes > MAX_CLUSTER_BYTES) unsupported(`cluster size ${clusterBytes} is too large`);
  // The FAT-era BPB fields must all be zero on NTFS.
  const zeroFields =
    view.getUint16(BPB_RESERVED_SECTORS, true) |
    boot[BPB_FAT_COUNT]! |
    view.getUint16(BPB_ROOT_ENTRY_COUNT, true) |
    view.getUint16(BPB_TOTAL_SECTORS_16, true) |
    view.getUint16(BPB_FAT_SECTORS_16, true) |
    view.getUint32(BPB_TOTAL_SECTORS_32, true);
  if (zeroFields !== 0) unsupported("FAT fields of the BPB are not zero");

  const totalSectors = u64(view, BPB_TOTAL_SECTORS, "sector count");
  const totalBytes = totalSectors * sectorBytes;
  if (!Number.isSafeInteger(totalBytes) || totalSectors === 0) unsupported(`bad sector count ${totalSectors}`);
  const clusterCount = Math.floor(totalBytes / clusterBytes);
  const mftLcn = u64(view, BPB_MFT_LCN, "MFT location");
  const mftMirrorLcn = u64(view, BPB_MFT_MIRROR_LCN, "MFT mirror location");
  if (mftLcn === 0 || mftLcn >= clusterCount || mftMirrorLcn >= clusterCount) {
    unsupported(`MFT (${mftLcn}) or its mirror (${mftMirrorLcn}) lies outside the ${clusterCount} clusters`);
  }

  // Positive: clusters per record; negative: the record is 2^-n bytes.
  const rawPerRecord = view.getInt8(BPB_CLUSTERS_PER_RECORD);
  const recordBytes = rawPerRecord > 0 ? rawPerRecord * clusterBytes : 2 ** -rawPerRecord;
  if (!isPowerOfTwo(recordBytes) || recordBytes < 512 || recordBytes > 65536) {
    unsupported(`bad MFT record size ${recordBytes}`);
  }

  const serial = view.getBigUint64(BPB_VOLUME_SERIAL, true).toString(16).toUpperCase().padStart(16, "0");
  return { sectorBytes, clusterBytes, totalSectors, clusterCount, mftLcn, recordBytes, serial };
}

/**
 * Checks and undoes the update sequence protection of a record in place: the last two bytes of every
 * 512-byte stride must hold the sequence number, and the real bytes come from the array.
 */
export function applyFixups(record: Uint8Array, usaOffset: number, usaCount: number, what: string): void {
  const strides = record.length / FIXUP_STRIDE_BYTES;
  assert(Number.isInteger(strides) && strides > 0, "record is a whole number of fixup strides");
  if (usaCount !== strides + 1) unsupported(`${what}: update sequence array has ${usaCount} entries, expected ${strides + 1}`);
  if (usaOffset % 2 !== 0 || usaOffset + usaCount * 2 > FIXUP_STRIDE_BYTES - 2) {
    unsupported(`${what}: update sequence array at ${usaOffset} is out of place`);
  }
  const view = viewOf(record);
  const sequence = view.getUint16(usaOffset, true);
  for (let i = 1; i <= strides; i++) {
    const at = i * FIXUP_STRIDE_BYTES - 2;
    if (view.getUint16(at, true) !== sequence) unsupported(`${what}: torn write (update sequence mismatch in sector ${i - 1})`);
    view.setUint16(at, view.getUint16(usaOffset + i * 2, true), true);
  }
}

/** Decodes a mapping-pairs array (the runlist) starting at `at`, bounded by `end`. */
export function decodeRunlist(bytes: Uint8Array, at: number, end: number, firstVcn: number): Run[] {
  const runs: Run[] = [];
  let vcn = firstVcn;
  let lcn = 0;
  for (;;) {
    if (at >= end) unsupported("runlist runs past the end of its attribute");
    const header = bytes[at]!;
    if (header === 0) break;
    const lengthSize = header & 0x0f;
    const offsetSize = header >>> 4;
    if (lengthSize === 0 || lengthSize > 8 || offsetSize > 8 || at + 1 + lengthSize + offsetSize > end) {
      unsupported(`malformed runlist header 0x${header.toString(16)}`);
    }
    const length = signedLittleEndian(bytes, at + 1, lengthSize);
    if (length <= 0) unsupported(`runlist has a run of length ${length}`);
    let runLcn: number | null = null;
    if (offsetSize > 0) {
      lcn += signedLittleEndian(bytes, at + 1 + lengthSize, offsetSize);
      if (lcn < 0 || !Number.isSafeInteger(lcn)) unsupported(`runlist points at cluster ${lcn}`);
      runLcn = lcn;
    }
    runs.push({ vcn, lcn: runLcn, length });
    vcn += length;
    at += 1 + lengthSize + offsetSize;
  }
  return runs;
}

function signedLittleEndian(bytes: Uint8Array, at: number, size: number): number {
  let value = 0n;
  for (let i = size - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i]!);
  if ((bytes[at + size - 1]! & 0x80) !== 0) value -= 1n << BigInt(size * 8);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) unsupported("runlist value is too large");
  return n;
}

/** Reads `lengthBytes` at stream offset `offsetBytes` of a non-resident attribute. Holes are refused. */
function readRuns(reader: BlockReader, geo: NtfsGeometry, runs: readonly Run[], offsetBytes: number, lengthBytes: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  let done = 0;
  while (done < lengthBytes) {
    const position = offsetBytes + done;
    const vcn = Math.floor(position / geo.clusterBytes);
    const run = runs.find((r) => vcn >= r.vcn && vcn < r.vcn + r.length);
    if (run === undefined) unsupported(`stream offset ${position} is not mapped by its runlist`);
    if (run.lcn === null) unsupported(`stream offset ${position} lies in a sparse run`);
    const runEndBytes = (run.vcn + run.length) * geo.clusterBytes;
    const count = Math.min(lengthBytes - done, runEndBytes - position);
    const diskBytes = (run.lcn + (vcn - run.vcn)) * geo.clusterBytes + (position % geo.clusterBytes);
    out.set(reader.read(diskBytes, count), done);
    done += count;
  }
  return out;
}

/** Reads MFT record `index` through the $MFT runlist, verifies its header and removes its fixups. */
function readMftRecord(reader: BlockReader, geo: NtfsGeometry, mftRuns: readonly Run[], index: number): Uint8Array {
  const what = `MFT record ${index}`;
  const record = readRuns(reader, geo, mftRuns, index * geo.recordBytes, geo.recordBytes);
  const view = viewOf(record);
  const magic = latin1(record.subarray(REC_MAGIC, REC_MAGIC + 4));
  if (magic !== "FILE") unsupported(`${what} has magic "${magic}" instead of "FILE"`);
  const usaOffset = view.getUint16(REC_USA_OFFSET, true);
  applyFixups(record, usaOffset, view.getUint16(REC_USA_COUNT, true), what);
  if ((view.getUint16(REC_FLAGS, true) & REC_FLAG_IN_USE) === 0) unsupported(`${what} is not in use`);
  if (view.getUint32(REC_BYTES_ALLOCATED, true) !== geo.recordBytes) unsupported(`${what} has the wrong allocated size`);
  const bytesInUse = view.getUint32(REC_BYTES_IN_USE, true);
  const attrsOffset = view.getUint16(REC_ATTRS_OFFSET, true);
  if (bytesInUse > geo.recordBytes || attrsOffset >= bytesInUse) unsupported(`${what} has inconsistent sizes`);
  if (view.getBigUint64(REC_BASE_RECORD, true) !== 0n) unsupported(`${what} is an extension record`);
  if (usaOffset >= REC_HEADER_WITH_NUMBER_BYTES && view.getUint32(REC_RECORD_NUMBER, true) !== index) {
    unsupported(`${what} says it is record ${view.getUint32(REC_RECORD_NUMBER, true)}`);
  }
  return record.subarray(0, bytesInUse);
}

/** The attribute records of a fixed-up MFT record, bounds-checked. */
function attributes(record: Uint8Array, what: string): Attribute[] {
  const view = viewOf(record);
  const out: Attribute[] = [];
  let at = view.getUint16(REC_ATTRS_OFFSET, true);
  for (;;) {
    if (at + 4 > record.length) unsupported(`${what}: attributes run past the record`);
    const type = view.getUint32(at + ATTR_TYPE, true);
    if (type === TYPE_END) break;
    if (at + ATTR_RESIDENT_HEADER_BYTES > record.length) unsupported(`${what}: attribute header runs past the record`);
    const length = view.getUint32(at + ATTR_LENGTH, true);
    if (length < ATTR_RESIDENT_HEADER_BYTES || length % 8 !== 0 || at + length > record.length) {
      unsupported(`${what}: attribute 0x${type.toString(16)} has bad length ${length}`);
    }
    out.push({
      type,
      nonResident: record[at + ATTR_NON_RESIDENT] !== 0,
      nameLength: record[at + ATTR_NAME_LENGTH]!,
      flags: view.getUint16(at + ATTR_FLAGS, true),
      record: record.subarray(at, at + length),
    });
    at += length;
  }
  return out;
}

function residentValue(attr: Attribute, what: string): Uint8Array {
  assert(!attr.nonResident, "resident attribute");
  const view = viewOf(attr.record);
  const length = view.getUint32(ATTR_RESIDENT_VALUE_LENGTH, true);
  const offset = view.getUint16(ATTR_RESIDENT_VALUE_OFFSET, true);
  if (offset < ATTR_RESIDENT_HEADER_BYTES || offset + length > attr.record.length) unsupported(`${what}: resident value out of bounds`);
  return attr.record.subarray(offset, offset + length);
}

interface NonResident {
  lowestVcn: number;
  highestVcn: number;
  allocatedBytes: number;
  dataBytes: number;
  initializedBytes: number;
  runs: Run[];
}

function nonResidentInfo(attr: Attribute, what: string): NonResident {
  assert(attr.nonResident, "non-resident attribute");
  if (attr.record.length < ATTR_NON_RESIDENT_HEADER_BYTES) unsupported(`${what}: non-resident header is truncated`);
  const view = viewOf(attr.record);
  const lowestVcn = u64(view, ATTR_LOWEST_VCN, `${what} lowest VCN`);
  const highestVcn = Number(view.getBigInt64(ATTR_HIGHEST_VCN, true));
  const pairsOffset = view.getUint16(ATTR_MAPPING_PAIRS_OFFSET, true);
  if (pairsOffset < ATTR_NON_RESIDENT_HEADER_BYTES || pairsOffset >= attr.record.length) unsupported(`${what}: runlist out of bounds`);
  const runs = decodeRunlist(attr.record, pairsOffset, attr.record.length, lowestVcn);
  const mappedEnd = runs.length === 0 ? lowestVcn : runs[runs.length - 1]!.vcn + runs[runs.length - 1]!.length;
  if (!Number.isSafeInteger(highestVcn) || mappedEnd !== highestVcn + 1) {
    unsupported(`${what}: runlist maps VCNs up to ${mappedEnd}, header says ${highestVcn + 1}`);
  }
  return {
    lowestVcn,
    highestVcn,
    allocatedBytes: u64(view, ATTR_ALLOCATED_BYTES, `${what} allocated size`),
    dataBytes: u64(view, ATTR_DATA_BYTES, `${what} data size`),
    initializedBytes: u64(view, ATTR_INITIALIZED_BYTES, `${what} initialized size`),
    runs,
  };
}

/** The one unnamed $DATA attribute of a record, refusing compressed, encrypted or sparse data. */
function unnamedData(attrs: readonly Attribute[], what: string): Attribute {
  const candidates = attrs.filter((a) => a.type === TYPE_DATA && a.nameLength === 0);
  if (candidates.length !== 1) unsupported(`${what}: expected one unnamed $DATA attribute, found ${candidates.length}`);
  const data = candidates[0]!;
  if ((data.flags & (ATTR_FLAG_COMPRESSED | ATTR_FLAG_ENCRYPTED | ATTR_FLAG_SPARSE)) !== 0) {
    unsupported(`${what}: $DATA is compressed, encrypted or sparse (flags 0x${data.flags.toString(16)})`);
  }
  return data;
}

/** Every run must be allocated and lie inside the volume. */
function checkRunsInVolume(runs: readonly Run[], geo: NtfsGeometry, what: string): void {
  for (const run of runs) {
    if (run.lcn === null) unsupported(`${what}: has a sparse run`);
    if (run.lcn + run.length > geo.clusterCount) unsupported(`${what}: run at cluster ${run.lcn} lies outside the volume`);
  }
}

/** The $MFT runlist from record 0, enough to reach the system records we read. */
function mftRuns(reader: BlockReader, geo: NtfsGeometry): Run[] {
  const bootstrap: Run[] = [{ vcn: 0, lcn: geo.mftLcn, length: Math.ceil(geo.recordBytes / geo.clusterBytes) }];
  const record = readMftRecord(reader, geo, bootstrap, MFT_RECORD_MFT);
  const data = unnamedData(attributes(record, "$MFT"), "$MFT");
  if (!data.nonResident) unsupported("$MFT data is resident");
  // A very fragmented $MFT has an attribute list; its first extent still lives in record 0.
  const info = nonResidentInfo(data, "$MFT");
  if (info.lowestVcn !== 0) unsupported("$MFT record 0 does not hold the first extent of $MFT");
  checkRunsInVolume(info.runs, geo, "$MFT");
  if (info.runs[0]!.lcn !== geo.mftLcn) unsupported("$MFT runlist disagrees with the boot sector's MFT location");
  const neededBytes = (MFT_RECORD_BITMAP + 1) * geo.recordBytes;
  if ((info.highestVcn + 1) * geo.clusterBytes < neededBytes || info.initializedBytes < neededBytes) {
    unsupported("$MFT is too short to hold the system files");
  }
  return info.runs;
}

interface VolumeInfo {
  label: string | null;
}

/** Label from $VOLUME_NAME; refuses a volume marked dirty or of an unknown version. */
function volumeInfo(reader: BlockReader, geo: NtfsGeometry, runs: readonly Run[]): VolumeInfo {
  const attrs = attributes(readMftRecord(reader, geo, runs, MFT_RECORD_VOLUME), "$Volume");
  const info = attrs.find((a) => a.type === TYPE_VOLUME_INFORMATION);
  if (info === undefined || info.nonResident) unsupported("$Volume has no resident $VOLUME_INFORMATION");
  const value = residentValue(info, "$VOLUME_INFORMATION");
  if (value.length < VOLINFO_MIN_BYTES) unsupported("$VOLUME_INFORMATION is truncated");
  const major = value[VOLINFO_MAJOR]!;
  const minor = value[VOLINFO_MINOR]!;
  if (!(major === 3 && (minor === 0 || minor === 1)) && !(major === 1 && minor === 2)) {
    unsupported(`unknown NTFS version ${major}.${minor}`);
  }
  const flags = viewOf(value).getUint16(VOLINFO_FLAGS, true);
  if ((flags & VOLUME_IS_DIRTY) !== 0) unsupported("volume is marked dirty (its bitmap may be stale; run chkdsk)");

  const name = attrs.find((a) => a.type === TYPE_VOLUME_NAME && !a.nonResident);
  if (name === undefined) return { label: null };
  const raw = residentValue(name, "$VOLUME_NAME");
  const label = new TextDecoder("utf-16le").decode(raw);
  return { label: label === "" ? null : label };
}

interface RestartPage {
  lsn: bigint;
  majorVersion: number;
  minorVersion: number;
  clean: boolean;
}

/** Parses a restart page header found at `position` of $LogFile; null if it is not a valid one. */
function restartPage(head: Uint8Array, position: number): RestartPage | null {
  const magic = latin1(head.subarray(RP_MAGIC, RP_MAGIC + 4));
  if (magic !== "RSTR" && magic !== "CHKD") return null;
  const view = viewOf(head);
  const systemPageBytes = view.getUint32(RP_SYSTEM_PAGE_BYTES, true);
  const logPageBytes = view.getUint32(RP_LOG_PAGE_BYTES, true);
  if (!isPowerOfTwo(systemPageBytes) || systemPageBytes < 512 || !isPowerOfTwo(logPageBytes) || logPageBytes < 512) return null;
  if (position !== 0 && position !== systemPageBytes) return null;
  const usaCount = view.getUint16(RP_USA_COUNT, true);
  const usaOffset = view.getUint16(RP_USA_OFFSET, true);
  const hasUsa = !(magic === "CHKD" && usaCount === 0);
  const usaEnd = usaOffset + usaCount * 2;
  if (hasUsa && (usaCount !== 1 + systemPageBytes / 512 || usaOffset < RP_HEADER_BYTES || usaEnd > 510)) return null;
  const areaOffset = view.getUint16(RP_RESTART_AREA_OFFSET, true);
  if (areaOffset % 8 !== 0 || areaOffset < (hasUsa ? usaEnd : RP_HEADER_BYTES)) return null;
  if (areaOffset + RA_FIELDS_WE_READ_BYTES > 510) return null;
  const clientsInUse = view.getUint16(areaOffset + RA_CLIENT_IN_USE_LIST, true);
  const flags = view.getUint16(areaOffset + RA_FLAGS, true);
  return {
    lsn: magic === "RSTR" ? view.getBigInt64(areaOffset + RA_CURRENT_LSN, true) : view.getBigInt64(RP_CHKDSK_LSN, true),
    majorVersion: view.getInt16(RP_MAJOR_VERSION, true),
    minorVersion: view.getInt16(RP_MINOR_VERSION, true),
    // No open log client, or Windows marked it clean at dismount.
    clean: clientsInUse === RA_NO_CLIENT || (flags & RA_VOLUME_IS_CLEAN) !== 0,
  };
}

/**
 * Refuses a volume whose journal holds changes not yet in the maps (unclean shutdown) or whose
 * metadata Windows keeps cached (Fast Startup / hibernation writes log version 2.0).
 * An all-0xFF $LogFile is an emptied journal (mkntfs and ntfs-3g leave it so): clean.
 */
function checkLogFile(reader: BlockReader, geo: NtfsGeometry, runs: readonly Run[]): void {
  const attrs = attributes(readMftRecord(reader, geo, runs, MFT_RECORD_LOGFILE), "$LogFile");
  const data = unnamedData(attrs, "$LogFile");
  if (!data.nonResident) unsupported("$LogFile data is resident");
  const info = nonResidentInfo(data, "$LogFile");
  if (info.lowestVcn !== 0) unsupported("$LogFile first extent is not in its base record");
  const logBytes = Math.min(info.initializedBytes, (info.highestVcn + 1) * geo.clusterBytes);

  const pages: RestartPage[] = [];
  let allEmpty = true;
  for (let position = 0; position + 512 <= Math.min(logBytes, LOG_PROBE_MAX_BYTES); position = position === 0 ? 512 : position * 2) {
    const head = readRuns(reader, geo, info.runs, position, 512);
    if (viewOf(head).getUint32(0, true) !== 0xffffffff) allEmpty = false;
    const page = restartPage(head, position);
    if (page !== null) pages.push(page);
  }
  if (pages.length === 0) {
    if (allEmpty) return;
    unsupported("$LogFile has no valid restart page; cannot tell whether the volume is clean");
  }
  const current = pages.reduce((a, b) => (b.lsn > a.lsn ? b : a));
  if (current.majorVersion === 2 && current.minorVersion === 0) {
    unsupported("$LogFile version 2.0: Windows keeps metadata cached (Fast Startup or hibernation); shut Windows down fully");
  }
  if (current.majorVersion !== 1 || current.minorVersion !== 1) {
    unsupported(`unknown $LogFile version ${current.majorVersion}.${current.minorVersion}`);
  }
  if (!current.clean) unsupported("$LogFile shows an unclean shutdown (its bitmap may be stale; mount it in Windows or run chkdsk)");
}

/** The cluster bitmap from $Bitmap's unnamed $DATA: bit i set = cluster i in use. */
function clusterBitmap(reader: BlockReader, geo: NtfsGeometry, runs: readonly Run[]): Uint8Array {
  const attrs = attributes(readMftRecord(reader, geo, runs, MFT_RECORD_BITMAP), "$Bitmap");
  if (attrs.some((a) => a.type === TYPE_ATTRIBUTE_LIST)) unsupported("$Bitmap has an attribute list");
  const data = unnamedData(attrs, "$Bitmap");
  const neededBytes = Math.ceil(geo.clusterCount / 8);
  if (!data.nonResident) {
    const value = residentValue(data, "$Bitmap");
    if (value.length < neededBytes) unsupported(`$Bitmap holds ${value.length * 8} bits for ${geo.clusterCount} clusters`);
    return value.slice(0, neededBytes);
  }
  const info = nonResidentInfo(data, "$Bitmap");
  if (info.lowestVcn !== 0) unsupported("$Bitmap data does not start at VCN 0");
  checkRunsInVolume(info.runs, geo, "$Bitmap");
  // Bytes past the initialized size read as zeros ("free") without being stored: refuse that.
  const mappedBytes = (info.highestVcn + 1) * geo.clusterBytes;
  if (Math.min(info.dataBytes, info.initializedBytes, mappedBytes) < neededBytes) {
    unsupported(`$Bitmap is shorter than the ${geo.clusterCount} clusters it must describe`);
  }
  return readRuns(reader, geo, info.runs, 0, neededBytes);
}

function sameVolumeFields(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = BS_OEM_NAME; i < VOLUME_FIELDS_END; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The backup boot sector follows the counted sectors (mkntfs, Windows and ntfsresize all put it
 * there). A sector count shrunk by damage makes that spot fall inside the volume's data, and leaves
 * the real backup at the partition's end describing a larger volume: either way the size is in
 * doubt, and trusting it would drop every cluster past it.
 */
function checkBackupBootSector(reader: BlockReader, geo: NtfsGeometry, boot: Uint8Array): void {
  const volumeBytes = geo.totalSectors * geo.sectorBytes;
  if (volumeBytes + geo.sectorBytes <= reader.sizeBytes) {
    const backup = reader.read(volumeBytes, BOOT_SECTOR_BYTES);
    if (!sameVolumeFields(boot, backup)) {
      unsupported(`the sector after the volume's ${geo.totalSectors} sectors is not a matching backup boot sector (damaged sector count? run chkdsk)`);
    }
  }
  const lastSectorBytes = Math.floor(reader.sizeBytes / geo.sectorBytes) * geo.sectorBytes - geo.sectorBytes;
  if (lastSectorBytes > volumeBytes) {
    const last = reader.read(lastSectorBytes, BOOT_SECTOR_BYTES);
    if (looksLikeNtfsBootSector(last) && !sameVolumeFields(boot, last)) {
      const claimed = viewOf(last).getBigUint64(BPB_TOTAL_SECTORS, true);
      unsupported(`the backup boot sector at the partition's end describes ${claimed} sectors, the boot sector ${geo.totalSectors}`);
    }
  }
}

/** The runlist of a system file's unnamed $DATA (record 0 = $MFT itself); for tools and tests. */
export function systemFileRuns(reader: BlockReader, recordNumber: number): Run[] {
  const geo = parseNtfsBootSector(reader.read(0, BOOT_SECTOR_BYTES));
  const runs = mftRuns(reader, geo);
  if (recordNumber === MFT_RECORD_MFT) return runs;
  const what = `MFT record ${recordNumber}`;
  const data = unnamedData(attributes(readMftRecord(reader, geo, runs, recordNumber), what), what);
  if (!data.nonResident) unsupported(`${what}: $DATA is resident`);
  return nonResidentInfo(data, what).runs;
}

function allocation(reader: BlockReader): FsAllocation {
  if (reader.sizeBytes < BOOT_SECTOR_BYTES) unsupported("area is smaller than a boot sector");
  const boot = reader.read(0, BOOT_SECTOR_BYTES);
  const geo = parseNtfsBootSector(boot);
  const volumeBytes = geo.totalSectors * geo.sectorBytes;
  if (volumeBytes > reader.sizeBytes) {
    unsupported(`volume of ${volumeBytes} bytes is larger than its ${reader.sizeBytes}-byte partition`);
  }
  checkBackupBootSector(reader, geo, boot);
  const runs = mftRuns(reader, geo);
  const volume = volumeInfo(reader, geo, runs);
  checkLogFile(reader, geo, runs);
  const bitmap = clusterBitmap(reader, geo, runs);
  if (!bitSet(bitmap, 0) || !bitSet(bitmap, geo.mftLcn)) unsupported("$Bitmap marks $Boot or $MFT free: it is corrupt");

  const allocated: Range[] = [{ start: 0, length: geo.sectorBytes }];
  for (const run of bitmapRuns(bitmap, geo.clusterCount)) {
    allocated.push({ start: run.start * geo.clusterBytes, length: run.length * geo.clusterBytes });
  }
  // The backup boot sector follows the counted sectors (normally the partition's last sector).
  const backupEnd = volumeBytes + geo.sectorBytes;
  if (backupEnd <= reader.sizeBytes) allocated.push({ start: volumeBytes, length: geo.sectorBytes });
  const fsBytes = Math.min(backupEnd, reader.sizeBytes);

  return {
    kind: "ntfs",
    label: volume.label,
    uuid: geo.serial,
    blockBytes: geo.clusterBytes,
    fsBytes,
    allocated: normalizeRanges(allocated),
  };
}

export const ntfsParser: FsParser = {
  name: "ntfs",
  detect(reader: BlockReader): boolean {
    if (reader.sizeBytes < BOOT_SECTOR_BYTES) return false;
    return looksLikeNtfsBootSector(reader.read(0, BOOT_SECTOR_BYTES));
  },
  allocation,
};
