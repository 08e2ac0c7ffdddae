// ext2/ext3/ext4: allocated blocks from the block-group bitmaps (plus computed metadata for BLOCK_UNINIT groups).
import { assert } from "../util/assert.ts";
import { bitSet, isPowerOfTwo, u64FromHalves } from "../util/bytes.ts";
import { FsUnsupportedError } from "../util/errors.ts";
import { bitmapRuns, clipRanges, normalizeRanges, rangeEnd, totalLength, type Range } from "../util/ranges.ts";
import type { BlockReader, FsAllocation, FsKind, FsParser } from "./types.ts";
import { decodeLabel, formatUuid } from "./names.ts";
import { crc32cUpdate } from "../util/crc32c.ts";

// ---- Superblock layout (offsets inside the 1024-byte superblock at byte 1024) ----

const superblockOffsetBytes = 1024;
const superblockBytes = 1024;
const extMagic = 0xef53;

const sbInodesCount = 0x00;
const sbBlocksCountLo = 0x04;
const sbFirstDataBlock = 0x14;
const sbLogBlockSize = 0x18;
const sbLogClusterSize = 0x1c;
const sbBlocksPerGroup = 0x20;
const sbClustersPerGroup = 0x24;
const sbInodesPerGroup = 0x28;
const sbMagic = 0x38;
const sbState = 0x3a;
const sbRevLevel = 0x4c;
const sbInodeSize = 0x58;
const sbFeatureCompat = 0x5c;
const sbFeatureIncompat = 0x60;
const sbFeatureRoCompat = 0x64;
const sbUuid = 0x68;
const sbVolumeName = 0x78;
const sbReservedGdtBlocks = 0xce;
const sbJournalInum = 0xe0;
const sbJournalDev = 0xe4;
const sbDescSize = 0xfe;
const sbFirstMetaBg = 0x104;
const sbBlocksCountHi = 0x150;
const sbChecksumType = 0x175;
const sbBackupBgs = 0x24c;
const sbChecksumSeed = 0x270;
const sbChecksum = 0x3fc;

const uuidBytes = 16;
const volumeNameBytes = 16;

// s_state bits.
const stateValidFs = 0x1;
const stateErrorFs = 0x2;

// s_rev_level values: revision 0 has fixed 128-byte inodes; revision 1 added the feature words.
const revGoodOld = 0;
const revDynamic = 1;
const goodOldInodeBytes = 128;

// ---- Feature bits ----

const compatHasJournal = 0x4;
const compatLazyBg = 0x40;
const compatSparseSuper2 = 0x200;

const incompatCompression = 0x1;
const incompatFiletype = 0x2;
const incompatRecover = 0x4;
const incompatJournalDev = 0x8;
const incompatMetaBg = 0x10;
const incompatExtents = 0x40;
const incompat64bit = 0x80;
const incompatMmp = 0x100;
const incompatFlexBg = 0x200;
const incompatEaInode = 0x400;
const incompatDirdata = 0x1000;
const incompatCsumSeed = 0x2000;
const incompatLargedir = 0x4000;
const incompatInlineData = 0x8000;
const incompatEncrypt = 0x10000;
const incompatCasefold = 0x20000;

/**
 * Incompatible features whose meaning for the block bitmaps we know. Compression, journal_dev and
 * recover are known but refused below; everything else changes only how files are stored inside
 * blocks the bitmaps already mark (extents, inline data, EA inodes, dirdata, encryption, casefold).
 */
const incompatUnderstood =
  incompatFiletype | incompatMetaBg | incompatExtents | incompat64bit | incompatMmp | incompatFlexBg |
  incompatEaInode | incompatDirdata | incompatCsumSeed | incompatLargedir | incompatInlineData |
  incompatEncrypt | incompatCasefold;

const roCompatSparseSuper = 0x1;
const roCompatLargeFile = 0x2;
const roCompatBtreeDir = 0x4;
const roCompatHugeFile = 0x8;
const roCompatGdtCsum = 0x10;
const roCompatDirNlink = 0x20;
const roCompatExtraIsize = 0x40;
const roCompatQuota = 0x100;
const roCompatBigalloc = 0x200;
const roCompatMetadataCsum = 0x400;
const roCompatReadonly = 0x1000;
const roCompatProject = 0x2000;
const roCompatSharedBlocks = 0x4000;
const roCompatVerity = 0x8000;
const roCompatOrphanPresent = 0x10000;

/**
 * Read-only-compatible features we understand. Not here, so refused: btree_dir (never implemented),
 * has_snapshot and replica (out-of-tree), bigalloc (bitmaps count clusters, not blocks).
 */
const roCompatUnderstood =
  roCompatSparseSuper | roCompatLargeFile | roCompatHugeFile | roCompatGdtCsum | roCompatDirNlink |
  roCompatExtraIsize | roCompatQuota | roCompatMetadataCsum | roCompatReadonly | roCompatProject |
  roCompatSharedBlocks | roCompatVerity | roCompatOrphanPresent;

// What ext3 knew; anything beyond makes the filesystem ext4 (the rule blkid uses).
const incompatExt3 = incompatFiletype | incompatRecover | incompatMetaBg;
const roCompatExt3 = roCompatSparseSuper | roCompatLargeFile | roCompatBtreeDir;

// s_checksum_type value for crc32c, the only metadata checksum ext4 defines.
const checksumTypeCrc32c = 1;

// ---- Group descriptor layout ----

const gdBlockBitmapLo = 0x00;
const gdInodeBitmapLo = 0x04;
const gdInodeTableLo = 0x08;
const gdFreeBlocksLo = 0x0c;
const gdFlags = 0x12;
const gdBlockBitmapCsumLo = 0x18;
const gdChecksum = 0x1e;
const gdBlockBitmapHi = 0x20;
const gdInodeBitmapHi = 0x24;
const gdInodeTableHi = 0x28;
const gdFreeBlocksHi = 0x2c;
const gdBlockBitmapCsumHi = 0x38;

const descBytesSmall = 32;
const descBytesMax = 1024;
// A descriptor at least this long stores all 32 bits of the block bitmap checksum.
const descBytesBitmapCsumHiEnd = gdBlockBitmapCsumHi + 2;

const bgFlagBlockUninit = 0x2;

// ---- Limits ----

const minLogBlockSize = 0; // 1 KiB
const maxLogBlockSize = 6; // 64 KiB, the largest the kernel mounts
/**
 * Largest single metadata read. Neighbouring groups' bitmaps are adjacent under flex_bg and the
 * descriptor table is contiguous outside meta_bg, so batching saves many small reads.
 */
const maxReadBytes = 1 << 20;
/** Pending block ranges before they are merged, to keep memory bounded on fragmented filesystems. */
const maxPendingRanges = 1 << 20;

// ---- Decoding helpers ----

function u16(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint16(offset, true);
}

function u32(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset, true);
}

/** A 64-bit block number from lo/hi halves; must be exact in a JS number. */
function u64Parts(lo: number, hi: number, what: string): number {
  const value = u64FromHalves(lo, hi);
  if (value === null) throw new FsUnsupportedError(`ext: ${what} ${hi * 2 ** 32 + lo} is too large`);
  return value;
}


// ---- Checksums (ext4's crc32c has no final inversion; the seed is passed in: src/util/crc32c.ts) ----

const crc16Table = makeReflectedTable(0xa001);

function makeReflectedTable(polynomial: number): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ polynomial : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}


function crc16(seed: number, bytes: Uint8Array): number {
  let crc = seed & 0xffff;
  for (let i = 0; i < bytes.length; i++) crc = (crc16Table[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8)) & 0xffff;
  return crc;
}

function le32Bytes(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
}

// ---- Superblock and geometry ----

type DescChecksum = "none" | "crc16" | "crc32c";

interface ExtGeometry extends BlockLayout {
  kind: FsKind;
  label: string | null;
  uuid: string | null;
  uuidRaw: Uint8Array;
  descBytes: number;
  descPerBlock: number;
  descBlockCount: number;
  reservedGdtBlocks: number;
  inodeTableBlocks: number;
  firstMetaBg: number;
  sparseSuper: boolean;
  /** sparse_super2's two backup groups (0 = none), or null without sparse_super2. */
  backupGroups: [number, number] | null;
  metaBg: boolean;
  flexBg: boolean;
  descChecksum: DescChecksum;
  /** crc32c seed for metadata_csum (0 when unused). */
  csumSeed: number;
}

/** Refuses features that change what the bitmaps mean or that leave them possibly stale. */
function checkFeatures(sb: Uint8Array): void {
  const compat = u32(sb, sbFeatureCompat);
  const incompat = u32(sb, sbFeatureIncompat);
  const roCompat = u32(sb, sbFeatureRoCompat);
  const hex = (n: number) => `0x${n.toString(16)}`;
  if (incompat & incompatRecover) {
    throw new FsUnsupportedError("ext: the journal needs recovery (needs_recovery set); the bitmaps may be stale, run e2fsck");
  }
  if (incompat & incompatJournalDev) {
    throw new FsUnsupportedError("ext: this is an external journal device, not a filesystem");
  }
  if (incompat & incompatCompression) throw new FsUnsupportedError("ext: the compression feature is not supported");
  const unknownIncompat = incompat & ~incompatUnderstood;
  if (unknownIncompat !== 0) throw new FsUnsupportedError(`ext: unknown incompat feature bits ${hex(unknownIncompat)}`);
  if (roCompat & roCompatBigalloc) throw new FsUnsupportedError("ext: bigalloc (cluster bitmaps) is not supported");
  const unknownRoCompat = roCompat & ~roCompatUnderstood;
  if (unknownRoCompat !== 0) throw new FsUnsupportedError(`ext: unknown ro_compat feature bits ${hex(unknownRoCompat)}`);
  // Unknown compat features are safe by definition: a kernel unaware of them still allocates from
  // the bitmaps, so the bitmaps must cover everything. lazy_bg is the exception: it let early
  // e2fsprogs leave bitmaps uninitialised without the checksums that make BLOCK_UNINIT trustworthy.
  if (compat & compatLazyBg) throw new FsUnsupportedError("ext: the obsolete lazy_bg feature is not supported");
  if ((compat & compatHasJournal) && u32(sb, sbJournalInum) === 0) {
    const dev = u32(sb, sbJournalDev);
    throw new FsUnsupportedError(`ext: the journal is on an external device (dev 0x${dev.toString(16)}), not supported`);
  }
}

function kindOf(sb: Uint8Array): FsKind {
  const incompat = u32(sb, sbFeatureIncompat);
  const roCompat = u32(sb, sbFeatureRoCompat);
  if ((incompat & ~incompatExt3) !== 0 || (roCompat & ~roCompatExt3) !== 0) return "ext4";
  if (u32(sb, sbFeatureCompat) & compatHasJournal) return "ext3";
  return "ext2";
}

function verifySuperblockChecksum(sb: Uint8Array): void {
  if (sb[sbChecksumType] !== checksumTypeCrc32c) {
    throw new FsUnsupportedError(`ext: unknown metadata checksum type ${sb[sbChecksumType]}`);
  }
  const stored = u32(sb, sbChecksum);
  const computed = crc32cUpdate(0xffffffff, sb.subarray(0, sbChecksum));
  if (stored !== computed) throw new FsUnsupportedError("ext: superblock checksum mismatch");
}

/** Reads the superblock and refuses it unless it is ext, understood, intact and cleanly unmounted. */
function readSuperblock(reader: BlockReader): Uint8Array {
  if (reader.sizeBytes < superblockOffsetBytes + superblockBytes) {
    throw new FsUnsupportedError("ext: too small for a superblock");
  }
  const sb = reader.read(superblockOffsetBytes, superblockBytes);
  if (u16(sb, sbMagic) !== extMagic) throw new FsUnsupportedError("ext: no superblock magic");
  const revLevel = u32(sb, sbRevLevel);
  if (revLevel !== revGoodOld && revLevel !== revDynamic) throw new FsUnsupportedError(`ext: unknown revision ${revLevel}`);
  checkFeatures(sb);
  if (u32(sb, sbFeatureRoCompat) & roCompatMetadataCsum) verifySuperblockChecksum(sb);
  const state = u16(sb, sbState);
  if ((state & stateValidFs) === 0) {
    throw new FsUnsupportedError("ext: not cleanly unmounted (mounted or crashed); the bitmaps may be stale, run e2fsck");
  }
  if (state & stateErrorFs) throw new FsUnsupportedError("ext: the filesystem has recorded errors; run e2fsck first");
  return sb;
}

interface BlockLayout {
  blockBytes: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  groupCount: number;
}

/** Block size, block count and group size, checked against each other and the partition. */
function blockLayout(sb: Uint8Array, partitionBytes: number): BlockLayout {
  const logBlockSize = u32(sb, sbLogBlockSize);
  if (logBlockSize < minLogBlockSize || logBlockSize > maxLogBlockSize) {
    throw new FsUnsupportedError(`ext: bad block size exponent ${logBlockSize}`);
  }
  const blockBytes = 1024 << logBlockSize;
  // Without bigalloc a cluster is a block; anything else means the bitmaps count something else.
  if (u32(sb, sbLogClusterSize) !== logBlockSize) throw new FsUnsupportedError("ext: cluster size differs from block size");

  const is64bit = (u32(sb, sbFeatureIncompat) & incompat64bit) !== 0;
  const blocksCount = u64Parts(u32(sb, sbBlocksCountLo), is64bit ? u32(sb, sbBlocksCountHi) : 0, "block count");
  const fsBytes = blocksCount * blockBytes;
  if (!Number.isSafeInteger(fsBytes)) throw new FsUnsupportedError("ext: filesystem too large");
  if (fsBytes > partitionBytes) {
    throw new FsUnsupportedError(`ext: filesystem claims ${fsBytes} bytes but the partition has ${partitionBytes}`);
  }

  // The superblock always lives at byte 1024, so the first group starts at the block holding it.
  const firstDataBlock = u32(sb, sbFirstDataBlock);
  if (firstDataBlock !== (blockBytes === 1024 ? 1 : 0)) {
    throw new FsUnsupportedError(`ext: unexpected first data block ${firstDataBlock}`);
  }
  if (blocksCount <= firstDataBlock) throw new FsUnsupportedError("ext: block count too small");

  const blocksPerGroup = u32(sb, sbBlocksPerGroup);
  if (blocksPerGroup === 0 || blocksPerGroup > blockBytes * 8 || blocksPerGroup % 8 !== 0) {
    throw new FsUnsupportedError(`ext: bad blocks per group ${blocksPerGroup}`);
  }
  if (u32(sb, sbClustersPerGroup) !== blocksPerGroup) {
    throw new FsUnsupportedError("ext: clusters per group differs from blocks per group");
  }
  const groupCount = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  return { blockBytes, blocksCount, firstDataBlock, blocksPerGroup, groupCount };
}

/** Blocks of one group's inode table, after checking the inode geometry. */
function inodeTableBlocksOf(sb: Uint8Array, layout: BlockLayout): number {
  const inodesPerGroup = u32(sb, sbInodesPerGroup);
  if (inodesPerGroup === 0 || inodesPerGroup > layout.blockBytes * 8) {
    throw new FsUnsupportedError(`ext: bad inodes per group ${inodesPerGroup}`);
  }
  if (u32(sb, sbInodesCount) !== inodesPerGroup * layout.groupCount) {
    throw new FsUnsupportedError("ext: inode count does not match groups x inodes per group");
  }
  const inodeBytes = u32(sb, sbRevLevel) === revGoodOld ? goodOldInodeBytes : u16(sb, sbInodeSize);
  if (!isPowerOfTwo(inodeBytes) || inodeBytes < goodOldInodeBytes || inodeBytes > layout.blockBytes) {
    throw new FsUnsupportedError(`ext: bad inode size ${inodeBytes}`);
  }
  return Math.ceil((inodesPerGroup * inodeBytes) / layout.blockBytes);
}

/** Group descriptor size: 32 bytes, or s_desc_size (at least 64) with the 64bit feature. */
function descriptorBytesOf(sb: Uint8Array, blockBytes: number): number {
  if ((u32(sb, sbFeatureIncompat) & incompat64bit) === 0) return descBytesSmall;
  const descBytes = u16(sb, sbDescSize);
  if (!isPowerOfTwo(descBytes) || descBytes < 64 || descBytes > descBytesMax || descBytes > blockBytes) {
    throw new FsUnsupportedError(`ext: bad group descriptor size ${descBytes}`);
  }
  return descBytes;
}

/** Decodes and validates the superblock; throws FsUnsupportedError for anything inconsistent. */
function readGeometry(reader: BlockReader): ExtGeometry {
  const sb = readSuperblock(reader);
  const compat = u32(sb, sbFeatureCompat);
  const incompat = u32(sb, sbFeatureIncompat);
  const roCompat = u32(sb, sbFeatureRoCompat);
  const layout = blockLayout(sb, reader.sizeBytes);
  const { blockBytes, groupCount } = layout;

  const descBytes = descriptorBytesOf(sb, blockBytes);
  const descPerBlock = blockBytes / descBytes;
  const descBlockCount = Math.ceil(groupCount / descPerBlock);
  const metaBg = (incompat & incompatMetaBg) !== 0;
  // Outside meta_bg the whole table is in the "old" layout, as if meta_bg started after it.
  const firstMetaBg = metaBg ? u32(sb, sbFirstMetaBg) : descBlockCount;
  if (firstMetaBg > descBlockCount) {
    throw new FsUnsupportedError(`ext: first meta_bg ${firstMetaBg} beyond ${descBlockCount} descriptor blocks`);
  }
  const reservedGdtBlocks = u16(sb, sbReservedGdtBlocks);
  if (reservedGdtBlocks > blockBytes / 4) {
    throw new FsUnsupportedError(`ext: too many reserved GDT blocks ${reservedGdtBlocks}`);
  }

  const metadataCsum = (roCompat & roCompatMetadataCsum) !== 0;
  let descChecksum: DescChecksum = "none";
  if (metadataCsum) descChecksum = "crc32c";
  else if (roCompat & roCompatGdtCsum) descChecksum = "crc16";
  const uuidRaw = sb.slice(sbUuid, sbUuid + uuidBytes);
  let csumSeed = 0;
  if (metadataCsum) csumSeed = incompat & incompatCsumSeed ? u32(sb, sbChecksumSeed) : crc32cUpdate(0xffffffff, uuidRaw);

  return {
    ...layout,
    kind: kindOf(sb),
    label: decodeLabel(sb.subarray(sbVolumeName, sbVolumeName + volumeNameBytes)),
    uuid: formatUuid(uuidRaw),
    uuidRaw,
    descBytes,
    descPerBlock,
    descBlockCount,
    reservedGdtBlocks,
    inodeTableBlocks: inodeTableBlocksOf(sb, layout),
    firstMetaBg,
    sparseSuper: (roCompat & roCompatSparseSuper) !== 0,
    backupGroups: compat & compatSparseSuper2 ? [u32(sb, sbBackupBgs), u32(sb, sbBackupBgs + 4)] : null,
    metaBg,
    flexBg: (incompat & incompatFlexBg) !== 0,
    descChecksum,
    csumSeed,
  };
}

// ---- Group layout rules ----

function groupFirstBlock(geo: ExtGeometry, group: number): number {
  return geo.firstDataBlock + group * geo.blocksPerGroup;
}

function groupBlockCount(geo: ExtGeometry, group: number): number {
  return Math.min(geo.blocksPerGroup, geo.blocksCount - groupFirstBlock(geo, group));
}

/** True when `n` is a power of `base` (1 counts as base^0). */
function isPowerOf(n: number, base: number): boolean {
  let x = n;
  while (x % base === 0) x /= base;
  return x === 1;
}

/** Whether the group holds a superblock copy (and, outside meta_bg, a descriptor table copy). */
function groupHasSuper(geo: ExtGeometry, group: number): boolean {
  if (group === 0) return true;
  if (geo.backupGroups !== null) return group === geo.backupGroups[0] || group === geo.backupGroups[1];
  if (group <= 1 || !geo.sparseSuper) return true;
  if (group % 2 === 0) return false;
  return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
}

/**
 * Blocks at the start of a group taken by the superblock copy, descriptor blocks and reserved
 * descriptor blocks. This is exactly what a BLOCK_UNINIT group's bitmap would mark at its start.
 */
function groupBaseMetaBlocks(geo: ExtGeometry, group: number): number {
  const hasSuper = groupHasSuper(geo, group) ? 1 : 0;
  if (!geo.metaBg || group < geo.firstMetaBg * geo.descPerBlock) {
    // Old layout: the whole table (only the first firstMetaBg blocks of it under meta_bg).
    return hasSuper === 0 ? 0 : 1 + geo.firstMetaBg + geo.reservedGdtBlocks;
  }
  // meta_bg: one descriptor block in the first, second and last group of each meta group.
  const indexInMetaGroup = group % geo.descPerBlock;
  const holdsDescriptor = indexInMetaGroup === 0 || indexInMetaGroup === 1 || indexInMetaGroup === geo.descPerBlock - 1;
  return hasSuper + (holdsDescriptor ? 1 : 0);
}

/** Block number of descriptor block `index`: after the superblock, or at the start of its meta group. */
function descriptorBlock(geo: ExtGeometry, index: number): number {
  if (index < geo.firstMetaBg) return geo.firstDataBlock + 1 + index;
  const group = index * geo.descPerBlock;
  return groupFirstBlock(geo, group) + (groupHasSuper(geo, group) ? 1 : 0);
}

// ---- Group descriptors ----

interface GroupDesc {
  group: number;
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  flags: number;
  /** bg_free_blocks_count: what the group's bitmap must leave clear. */
  freeBlocks: number;
  /** Stored block bitmap checksum (low 16 bits only when the descriptor is short). */
  bitmapCsum: number;
}

function descriptorChecksum(geo: ExtGeometry, group: number, desc: Uint8Array): number {
  const before = desc.subarray(0, gdChecksum);
  const after = desc.subarray(gdChecksum + 2, geo.descBytes);
  if (geo.descChecksum === "crc32c") {
    let crc = crc32cUpdate(geo.csumSeed, le32Bytes(group));
    crc = crc32cUpdate(crc, before);
    crc = crc32cUpdate(crc, new Uint8Array(2)); // the checksum field counts as zero
    crc = crc32cUpdate(crc, after);
    return crc & 0xffff;
  }
  let crc = crc16(0xffff, geo.uuidRaw);
  crc = crc16(crc, le32Bytes(group));
  crc = crc16(crc, before);
  return after.length > 0 ? crc16(crc, after) : crc;
}

function decodeDescriptor(geo: ExtGeometry, group: number, desc: Uint8Array): GroupDesc {
  assert(desc.length === geo.descBytes, "descriptor slice has the descriptor size");
  if (geo.descChecksum !== "none" && u16(desc, gdChecksum) !== descriptorChecksum(geo, group, desc)) {
    throw new FsUnsupportedError(`ext: group ${group} descriptor checksum mismatch`);
  }
  const wide = geo.descBytes > descBytesSmall;
  const block = (lo: number, hi: number, what: string) =>
    u64Parts(u32(desc, lo), wide ? u32(desc, hi) : 0, `group ${group} ${what}`);
  let bitmapCsum = u16(desc, gdBlockBitmapCsumLo);
  if (geo.descBytes >= descBytesBitmapCsumHiEnd) bitmapCsum = (bitmapCsum | (u16(desc, gdBlockBitmapCsumHi) << 16)) >>> 0;
  return {
    group,
    blockBitmap: block(gdBlockBitmapLo, gdBlockBitmapHi, "block bitmap"),
    inodeBitmap: block(gdInodeBitmapLo, gdInodeBitmapHi, "inode bitmap"),
    inodeTable: block(gdInodeTableLo, gdInodeTableHi, "inode table"),
    flags: u16(desc, gdFlags),
    freeBlocks: u16(desc, gdFreeBlocksLo) + (wide ? u16(desc, gdFreeBlocksHi) * 0x10000 : 0),
    bitmapCsum,
  };
}

/** Bitmaps and inode table must lie inside the filesystem (and inside their own group without flex_bg). */
function checkDescriptorPlacement(geo: ExtGeometry, d: GroupDesc): void {
  let low = geo.firstDataBlock;
  let high = geo.blocksCount;
  if (!geo.flexBg) {
    low = groupFirstBlock(geo, d.group);
    high = low + groupBlockCount(geo, d.group);
  }
  const inside = (start: number, length: number) => start >= low && start + length <= high;
  if (!inside(d.blockBitmap, 1) || !inside(d.inodeBitmap, 1) || !inside(d.inodeTable, geo.inodeTableBlocks)) {
    throw new FsUnsupportedError(`ext: group ${d.group} metadata lies outside its allowed area`);
  }
}

/** Groups whose BLOCK_UNINIT flag is honoured: only checksummed descriptors make the flag trustworthy. */
function isBlockUninit(geo: ExtGeometry, d: GroupDesc): boolean {
  return geo.descChecksum !== "none" && (d.flags & bgFlagBlockUninit) !== 0;
}

/** Reads consecutive blocks [first, first + count) in one request. */
function readBlocks(reader: BlockReader, geo: ExtGeometry, first: number, count: number): Uint8Array {
  assert(count > 0, "at least one block is read");
  if (first + count > geo.blocksCount) {
    throw new FsUnsupportedError(`ext: metadata block ${first + count - 1} lies beyond the filesystem`);
  }
  return reader.read(first * geo.blockBytes, count * geo.blockBytes);
}

/** Visits every group descriptor, reading descriptor blocks in batches of adjacent blocks. */
function forEachDescriptorBatch(reader: BlockReader, geo: ExtGeometry, visit: (batch: GroupDesc[]) => void): void {
  let index = 0;
  while (index < geo.descBlockCount) {
    const first = descriptorBlock(geo, index);
    let count = 1;
    while (
      index + count < geo.descBlockCount &&
      (count + 1) * geo.blockBytes <= maxReadBytes &&
      descriptorBlock(geo, index + count) === first + count
    ) {
      count++;
    }
    const bytes = readBlocks(reader, geo, first, count);
    const batch: GroupDesc[] = [];
    const firstGroup = index * geo.descPerBlock;
    const groupsInBatch = Math.min(count * geo.descPerBlock, geo.groupCount - firstGroup);
    for (let i = 0; i < groupsInBatch; i++) {
      const offset = i * geo.descBytes;
      const desc = decodeDescriptor(geo, firstGroup + i, bytes.subarray(offset, offset + geo.descBytes));
      checkDescriptorPlacement(geo, desc);
      batch.push(desc);
    }
    visit(batch);
    index += count;
  }
}

// ---- Block bitmaps ----

function verifyBitmapChecksum(geo: ExtGeometry, d: GroupDesc, bitmap: Uint8Array): void {
  if (geo.descChecksum !== "crc32c") return;
  let computed = crc32cUpdate(geo.csumSeed, bitmap.subarray(0, geo.blocksPerGroup / 8));
  if (geo.descBytes < descBytesBitmapCsumHiEnd) computed &= 0xffff;
  if (computed >>> 0 !== d.bitmapCsum) throw new FsUnsupportedError(`ext: group ${d.group} block bitmap checksum mismatch`);
}

/**
 * Without flex_bg a group's own bitmaps and inode table sit inside it, so its bitmap must mark them;
 * if not, the bitmap is not what we think it is (the kernel applies the same test).
 */
function checkBitmapMarksOwnMetadata(geo: ExtGeometry, d: GroupDesc, bitmap: Uint8Array): void {
  if (geo.flexBg) return;
  const first = groupFirstBlock(geo, d.group);
  const marked =
    bitSet(bitmap, d.blockBitmap - first) &&
    bitSet(bitmap, d.inodeBitmap - first) &&
    bitSet(bitmap, d.inodeTable - first) &&
    bitSet(bitmap, d.inodeTable + geo.inodeTableBlocks - 1 - first);
  if (!marked) throw new FsUnsupportedError(`ext: group ${d.group} block bitmap does not mark the group's own metadata`);
}

/**
 * The descriptor's free count must leave exactly the blocks the group's map marks in use. Without
 * bitmap checksums this is what catches a damaged bitmap; e2fsck calls a mismatch an error ("Free
 * blocks count wrong for group"), unlike a stale superblock total, which it quietly recomputes.
 */
function checkGroupFreeCount(geo: ExtGeometry, d: GroupDesc, usedBlocks: number, source: string): void {
  const blocks = groupBlockCount(geo, d.group);
  if (d.freeBlocks + usedBlocks !== blocks) {
    throw new FsUnsupportedError(
      `ext: group ${d.group} descriptor counts ${d.freeBlocks} free of ${blocks} blocks but ${source} marks ${usedBlocks} in use; run e2fsck`,
    );
  }
}

/** Reads the bitmaps of initialised groups (sorted by location, adjacent ones together) and adds their runs. */
function addBitmapRuns(reader: BlockReader, geo: ExtGeometry, groups: GroupDesc[], out: Range[]): void {
  const sorted = [...groups].sort((a, b) => a.blockBitmap - b.blockBitmap);
  let i = 0;
  while (i < sorted.length) {
    const first = sorted[i]!.blockBitmap;
    let count = 1;
    while (
      i + count < sorted.length &&
      (count + 1) * geo.blockBytes <= maxReadBytes &&
      sorted[i + count]!.blockBitmap === first + count
    ) {
      count++;
    }
    const bytes = readBlocks(reader, geo, first, count);
    for (let k = 0; k < count; k++) {
      const d = sorted[i + k]!;
      const bitmap = bytes.subarray(k * geo.blockBytes, (k + 1) * geo.blockBytes);
      verifyBitmapChecksum(geo, d, bitmap);
      checkBitmapMarksOwnMetadata(geo, d, bitmap);
      const runs = bitmapRuns(bitmap, groupBlockCount(geo, d.group), groupFirstBlock(geo, d.group));
      checkGroupFreeCount(geo, d, totalLength(runs), "its block bitmap");
      for (const run of runs) out.push(run);
    }
    i += count;
  }
}

/**
 * Metadata that is in use whatever the bitmaps say: every group's bitmaps and inode table, and the
 * superblock/descriptor copies at group starts. For a BLOCK_UNINIT group this is all it holds,
 * including other groups' flex_bg metadata placed inside it.
 */
function addGroupMetadata(geo: ExtGeometry, d: GroupDesc, out: Range[]): void {
  out.push({ start: d.blockBitmap, length: 1 });
  out.push({ start: d.inodeBitmap, length: 1 });
  out.push({ start: d.inodeTable, length: geo.inodeTableBlocks });
  out.push({ start: groupFirstBlock(geo, d.group), length: groupBaseMetaBlocks(geo, d.group) });
}

/**
 * A BLOCK_UNINIT group holds nothing but metadata: its free count must leave exactly the metadata
 * blocks (its own and other groups' flex_bg tables) that lie inside it. `blocks` is normalized and
 * holds, inside such groups, only metadata, since bitmap runs never cross their own group.
 */
function checkUninitFreeCounts(geo: ExtGeometry, uninit: readonly GroupDesc[], blocks: readonly Range[]): void {
  let i = 0;
  for (const d of uninit) {
    const start = groupFirstBlock(geo, d.group);
    const end = start + groupBlockCount(geo, d.group);
    while (i < blocks.length && rangeEnd(blocks[i]!) <= start) i++;
    let used = 0;
    for (let k = i; k < blocks.length && blocks[k]!.start < end; k++) {
      used += Math.min(end, rangeEnd(blocks[k]!)) - Math.max(start, blocks[k]!.start);
    }
    checkGroupFreeCount(geo, d, used, "the metadata inside it");
  }
}

/** All allocated blocks as normalized block-number ranges. */
function allocatedBlocks(reader: BlockReader, geo: ExtGeometry): Range[] {
  // Blocks before the first group (the 1 KiB boot block on 1 KiB-block filesystems) belong to no bitmap.
  let blocks: Range[] = [{ start: 0, length: geo.firstDataBlock }];
  const uninit: GroupDesc[] = [];
  let groupsSeen = 0;
  forEachDescriptorBatch(reader, geo, (batch) => {
    const initialised: GroupDesc[] = [];
    for (const d of batch) {
      assert(d.group === groupsSeen, "descriptors are visited in group order");
      groupsSeen++;
      addGroupMetadata(geo, d, blocks);
      if (isBlockUninit(geo, d)) uninit.push(d);
      else initialised.push(d);
    }
    addBitmapRuns(reader, geo, initialised, blocks);
    if (blocks.length > maxPendingRanges) blocks = normalizeRanges(blocks);
  });
  assert(groupsSeen === geo.groupCount, "every group descriptor was visited");
  const all = clipRanges(normalizeRanges(blocks), geo.blocksCount);
  checkUninitFreeCounts(geo, uninit, all);
  return all;
}

export const extParser: FsParser = {
  name: "ext",

  detect(reader: BlockReader): boolean {
    if (reader.sizeBytes < superblockOffsetBytes + superblockBytes) return false;
    const sb = reader.read(superblockOffsetBytes, superblockBytes);
    return u16(sb, sbMagic) === extMagic && u32(sb, sbLogBlockSize) <= maxLogBlockSize;
  },

  allocation(reader: BlockReader): FsAllocation {
    const geo = readGeometry(reader);
    const blocks = allocatedBlocks(reader, geo);
    const allocated = blocks.map((r) => ({ start: r.start * geo.blockBytes, length: r.length * geo.blockBytes }));
    for (const r of allocated) assert(Number.isSafeInteger(r.start + r.length), "byte range is exact");
    return {
      kind: geo.kind,
      label: geo.label,
      uuid: geo.uuid,
      blockBytes: geo.blockBytes,
      fsBytes: geo.blocksCount * geo.blockBytes,
      allocated,
    };
  },
};
