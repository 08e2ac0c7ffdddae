// XFS allocation from the per-AG free-space B+trees (bnobt, cross-checked against cntbt).
//
// XFS is big-endian on disk. The data device is split into allocation groups (AGs) of
// sb_agblocks blocks each (the last may be shorter), laid out linearly: AG a starts at byte
// a * agblocks * blockBytes. Each AG begins with four sectors (superblock copy, AGF, AGI,
// AGFL); the AGF names the roots of two B+trees that index the AG's free extents, one by
// start block (bnobt) and one by length (cntbt). Everything not in those trees is in use:
// headers, btree blocks, AGFL-held blocks, inodes, file data and the internal log.
//
// The free-space trees are only authoritative when the log is clean, so for an internal log
// we find the log head and require the last record to be an unmount record. For an external
// log (sb_logstart == 0) the log lives on another device that we neither image nor can see;
// we accept such a filesystem but cannot prove it was unmounted cleanly.
import { assert } from "../util/assert.ts";
import { invertRanges, normalizeRanges, type Range } from "../util/ranges.ts";
import type { BlockReader, FsAllocation, FsParser } from "./types.ts";
import { decodeLabel, formatUuid } from "./names.ts";
import { crc32cUpdate } from "../util/crc32c.ts";
import { equalBytes, isPowerOfTwo, tryGetU64, view } from "../util/bytes.ts";
import { BASIC_BLOCK_BYTES, checkLogClean, unsupported, type LogArea } from "./xfs-log.ts";

// ---------------------------------------------------------------------------------------------
// Superblock (xfs_dsb), at byte 0 of the device (and of every AG).

const SB_MAGIC = 0x58465342; // "XFSB"
const SB_MAGIC_OFF = 0;
const SB_BLOCKSIZE_OFF = 4;
const SB_DBLOCKS_OFF = 8;
const SB_RBLOCKS_OFF = 16;
const SB_REXTENTS_OFF = 24;
const SB_UUID_OFF = 32;
const SB_LOGSTART_OFF = 48;
const SB_AGBLOCKS_OFF = 84;
const SB_AGCOUNT_OFF = 88;
const SB_LOGBLOCKS_OFF = 96;
const SB_VERSIONNUM_OFF = 100;
const SB_SECTSIZE_OFF = 102;
const SB_FNAME_OFF = 108;
const SB_FNAME_BYTES = 12;
const SB_BLOCKLOG_OFF = 120;
const SB_SECTLOG_OFF = 121;
const SB_AGBLKLOG_OFF = 124;
const SB_INPROGRESS_OFF = 126;
const SB_FDBLOCKS_OFF = 144;
const SB_FEATURES2_OFF = 200;
const SB_BAD_FEATURES2_OFF = 204;
const SB_FEATURES_RO_COMPAT_OFF = 212;
const SB_FEATURES_INCOMPAT_OFF = 216;
const SB_CRC_OFF = 224;
const SB_META_UUID_OFF = 248;
/** Every field we read lies in the first 512 bytes, the smallest sector. */
const SB_READ_BYTES = 512;

const VERSION_NUMBITS = 0x000f;
const VERSION_SHAREDBIT = 0x0200; // never implemented; the kernel refuses it
const VERSION_DIRV2BIT = 0x2000; // the kernel supports no v4 filesystem without it
const VERSION_MOREBITSBIT = 0x8000; // sb_features2 is valid
// v4 sb_features2: lazy superblock counters (always on in v5), which keep agf_btreeblks.
const VERSION2_LAZYSBCOUNTBIT = 0x2;
const VERSION_OKBITS = 0xffff & ~VERSION_SHAREDBIT;
// v4 sb_features2 bits the kernel knows: lazy sb counters, attr2, 32-bit project ids, ftype.
const VERSION2_OKBITS = 0x2 | 0x8 | 0x80 | 0x200;

// v5 incompatible features. None of these changes the AGF or free-space btree format.
const INCOMPAT_FTYPE = 1 << 0;
const INCOMPAT_SPINODES = 1 << 1;
const INCOMPAT_META_UUID = 1 << 2;
const INCOMPAT_BIGTIME = 1 << 3;
const INCOMPAT_NEEDSREPAIR = 1 << 4;
const INCOMPAT_NREXT64 = 1 << 5;
const INCOMPAT_EXCHRANGE = 1 << 6;
const INCOMPAT_PARENT = 1 << 7;
// Metadir (1 << 8) and zoned realtime (1 << 9, 1 << 10) bring realtime groups and an
// internal RT section on the data device: deliberately not in the known set.
const INCOMPAT_KNOWN =
  INCOMPAT_FTYPE |
  INCOMPAT_SPINODES |
  INCOMPAT_META_UUID |
  INCOMPAT_BIGTIME |
  INCOMPAT_NREXT64 |
  INCOMPAT_EXCHRANGE |
  INCOMPAT_PARENT;
// v5 read-only-compatible features: free inode btree, reverse map, reflink, inode btree
// counters. Their btree blocks are simply absent from the free-space trees. Unknown ones
// are refused too, to stay conservative.
const RO_COMPAT_KNOWN = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3);

const MIN_BLOCK_BYTES = 512;
const MAX_BLOCK_BYTES = 65536;
const MIN_SECTOR_BYTES = 512;
const MAX_SECTOR_BYTES = 32768;
/** mkfs refuses smaller AGs; far smaller values only come from garbage. */
const MIN_AG_BLOCKS = 64;

// ---------------------------------------------------------------------------------------------
// AGF, at sector 1 of each AG.

const AGF_MAGIC = 0x58414746; // "XAGF"
const AGF_VERSION = 1;
const AGF_MAGIC_OFF = 0;
const AGF_VERSIONNUM_OFF = 4;
const AGF_SEQNO_OFF = 8;
const AGF_LENGTH_OFF = 12;
const AGF_BNO_ROOT_OFF = 16;
const AGF_CNT_ROOT_OFF = 20;
const AGF_BNO_LEVEL_OFF = 28;
const AGF_CNT_LEVEL_OFF = 32;
const AGF_FLCOUNT_OFF = 48;
const AGF_FREEBLKS_OFF = 52;
const AGF_LONGEST_OFF = 56;
const AGF_BTREEBLKS_OFF = 60;
const AGF_UUID_OFF = 64;
const AGF_CRC_OFF = 216;
const AGF_SECTOR_INDEX = 1;
/** Superblock, AGF, AGI and AGFL sectors open every AG and are never free. */
const AG_HEADER_SECTORS = 4;

// ---------------------------------------------------------------------------------------------
// Short-form (AG-relative) btree blocks of the free-space trees.

const BNOBT_MAGIC_V4 = 0x41425442; // "ABTB"
const BNOBT_MAGIC_V5 = 0x41423342; // "AB3B"
const CNTBT_MAGIC_V4 = 0x41425443; // "ABTC"
const CNTBT_MAGIC_V5 = 0x41423343; // "AB3C"
const BT_MAGIC_OFF = 0;
const BT_LEVEL_OFF = 4;
const BT_NUMRECS_OFF = 6;
const BT_LEFTSIB_OFF = 8;
const BT_RIGHTSIB_OFF = 12;
const BT_BLKNO_OFF = 16; // v5: the block's own disk address in BBs
const BT_UUID_OFF = 32; // v5
const BT_OWNER_OFF = 48; // v5: AG number
const BT_CRC_OFF = 52; // v5
const BT_HEADER_BYTES_V4 = 16;
const BT_HEADER_BYTES_V5 = 56;
const ALLOC_REC_BYTES = 8; // startblock u32, blockcount u32
const ALLOC_KEY_BYTES = 8;
const AG_PTR_BYTES = 4;
const NULL_AG_BLOCK = 0xffffffff;
/** The kernel's compile-time ceiling for any btree height. */
const MAX_BTREE_LEVELS = 9;

// ---------------------------------------------------------------------------------------------

interface Superblock {
  blockBytes: number;
  dblocks: number;
  /** sb_fdblocks: free data blocks as the superblock counts them. */
  fdblocks: number;
  rblocks: number;
  rextents: number;
  uuid: Uint8Array;
  metaUuid: Uint8Array;
  logStartFsb: number;
  agBlocks: number;
  agCount: number;
  logBlocks: number;
  versionNum: number;
  sectorBytes: number;
  label: string | null;
  blockLog: number;
  sectorLog: number;
  agBlockLog: number;
  inProgress: number;
  features2: number;
  badFeatures2: number;
  roCompat: number;
  incompat: number;
  isV5: boolean;
}

interface Agf {
  lengthBlocks: number;
  bnoRoot: number;
  cntRoot: number;
  bnoLevels: number;
  cntLevels: number;
  freeBlocks: number;
  longestBlocks: number;
  /** Blocks held on the AGFL, and (lazy counters) in the free-space and rmap btrees beyond their roots. */
  flBlocks: number;
  btreeBlocks: number;
}

/** A free extent in AG blocks. */
interface FreeExtent {
  start: number;
  count: number;
}

/** A 64-bit big-endian count that must fit a JavaScript number exactly. */
function readU64(dv: DataView, offset: number, what: string): number {
  const value = tryGetU64(dv, offset, false);
  if (value === null) unsupported(`${what} ${dv.getBigUint64(offset, false)} is too large`);
  return value;
}


// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli), as XFS v5 metadata uses: seed ~0, final inversion, stored little-endian.

/** Checks the CRC stored at `crcOffset`, computed with that field taken as zero. */
function verifyCrc(buf: Uint8Array, crcOffset: number, what: string): void {
  assert(crcOffset + 4 <= buf.length, "crc field lies inside the buffer");
  let c = 0xffffffff;
  c = crc32cUpdate(c, buf.subarray(0, crcOffset));
  c = crc32cUpdate(c, new Uint8Array(4));
  c = crc32cUpdate(c, buf.subarray(crcOffset + 4));
  const computed = (c ^ 0xffffffff) >>> 0;
  const stored = view(buf).getUint32(crcOffset, true);
  if (computed !== stored) unsupported(`${what} fails its CRC check`);
}

// ---------------------------------------------------------------------------------------------
// Superblock decoding and validation.

function decodeSuperblock(bytes: Uint8Array): Superblock {
  assert(bytes.length >= SB_READ_BYTES, "superblock buffer holds the fields we read");
  const dv = view(bytes);
  const versionNum = dv.getUint16(SB_VERSIONNUM_OFF, false);
  return {
    blockBytes: dv.getUint32(SB_BLOCKSIZE_OFF, false),
    dblocks: readU64(dv, SB_DBLOCKS_OFF, "sb_dblocks"),
    fdblocks: readU64(dv, SB_FDBLOCKS_OFF, "sb_fdblocks"),
    rblocks: readU64(dv, SB_RBLOCKS_OFF, "sb_rblocks"),
    rextents: readU64(dv, SB_REXTENTS_OFF, "sb_rextents"),
    uuid: bytes.slice(SB_UUID_OFF, SB_UUID_OFF + 16),
    metaUuid: bytes.slice(SB_META_UUID_OFF, SB_META_UUID_OFF + 16),
    logStartFsb: readU64(dv, SB_LOGSTART_OFF, "sb_logstart"),
    agBlocks: dv.getUint32(SB_AGBLOCKS_OFF, false),
    agCount: dv.getUint32(SB_AGCOUNT_OFF, false),
    logBlocks: dv.getUint32(SB_LOGBLOCKS_OFF, false),
    versionNum,
    sectorBytes: dv.getUint16(SB_SECTSIZE_OFF, false),
    label: decodeLabel(bytes.subarray(SB_FNAME_OFF, SB_FNAME_OFF + SB_FNAME_BYTES)),
    blockLog: dv.getUint8(SB_BLOCKLOG_OFF),
    sectorLog: dv.getUint8(SB_SECTLOG_OFF),
    agBlockLog: dv.getUint8(SB_AGBLKLOG_OFF),
    inProgress: dv.getUint8(SB_INPROGRESS_OFF),
    features2: dv.getUint32(SB_FEATURES2_OFF, false),
    badFeatures2: dv.getUint32(SB_BAD_FEATURES2_OFF, false),
    roCompat: dv.getUint32(SB_FEATURES_RO_COMPAT_OFF, false),
    incompat: dv.getUint32(SB_FEATURES_INCOMPAT_OFF, false),
    isV5: (versionNum & VERSION_NUMBITS) === 5,
  };
}

/** Why the geometry is not self-consistent, or null when it is. */
function geometryProblem(sb: Superblock): string | null {
  const { blockBytes, sectorBytes, agBlocks, agCount, dblocks } = sb;
  if (!isPowerOfTwo(blockBytes) || blockBytes < MIN_BLOCK_BYTES || blockBytes > MAX_BLOCK_BYTES) {
    return `block size ${blockBytes} is not a power of two in ${MIN_BLOCK_BYTES}..${MAX_BLOCK_BYTES}`;
  }
  if (2 ** sb.blockLog !== blockBytes) return `sb_blocklog ${sb.blockLog} does not match block size ${blockBytes}`;
  if (!isPowerOfTwo(sectorBytes) || sectorBytes < MIN_SECTOR_BYTES || sectorBytes > MAX_SECTOR_BYTES) {
    return `sector size ${sectorBytes} is not a power of two in ${MIN_SECTOR_BYTES}..${MAX_SECTOR_BYTES}`;
  }
  if (2 ** sb.sectorLog !== sectorBytes) return `sb_sectlog ${sb.sectorLog} does not match sector size ${sectorBytes}`;
  if (sectorBytes > blockBytes) return `sector size ${sectorBytes} exceeds block size ${blockBytes}`;
  if (agBlocks < MIN_AG_BLOCKS) return `AG size ${agBlocks} blocks is below ${MIN_AG_BLOCKS}`;
  if (agCount < 1) return "AG count is zero";
  // sb_agblklog is log2 of agblocks rounded up: AG-relative block numbers fit in it.
  if (sb.agBlockLog > 31 || agBlocks > 2 ** sb.agBlockLog || agBlocks <= 2 ** (sb.agBlockLog - 1)) {
    return `sb_agblklog ${sb.agBlockLog} does not match AG size ${agBlocks}`;
  }
  if (dblocks > agCount * agBlocks || dblocks <= (agCount - 1) * agBlocks) {
    return `${dblocks} data blocks do not fill ${agCount} AGs of ${agBlocks} blocks`;
  }
  if (!Number.isSafeInteger(dblocks * blockBytes)) return "filesystem size overflows";
  if (AG_HEADER_SECTORS * sectorBytes > blockBytes * MIN_AG_BLOCKS) return "AG headers do not fit an AG";
  return null;
}

/** Throws for any feature whose effect on allocation we do not know. */
function checkFeatures(sb: Superblock): void {
  const version = sb.versionNum & VERSION_NUMBITS;
  if (version !== 4 && version !== 5) unsupported(`superblock version ${version} (only 4 and 5 exist in Linux)`);
  if (sb.inProgress !== 0) unsupported("sb_inprogress is set: mkfs did not finish");
  // A realtime device holds file data outside the data device; we image only the data device.
  if (sb.rblocks > 0 || sb.rextents > 0) unsupported("has a realtime section, which is not supported");
  if (version === 4) {
    if ((sb.versionNum & VERSION_DIRV2BIT) === 0) unsupported("v4 superblock without v2 directories");
    if ((sb.versionNum & ~VERSION_OKBITS) !== 0) unsupported(`unknown v4 version bits 0x${sb.versionNum.toString(16)}`);
    if ((sb.versionNum & VERSION_MOREBITSBIT) !== 0) {
      // Old kernels wrote features2 into the "bad" slot; the kernel merges both.
      const features2 = sb.features2 | sb.badFeatures2;
      if ((features2 & ~VERSION2_OKBITS) !== 0) unsupported(`unknown v4 features2 bits 0x${features2.toString(16)}`);
    }
    return;
  }
  if ((sb.incompat & INCOMPAT_NEEDSREPAIR) !== 0) unsupported("the needsrepair flag is set: run xfs_repair first");
  const unknownIncompat = sb.incompat & ~INCOMPAT_KNOWN;
  if (unknownIncompat !== 0) unsupported(`unknown incompatible features 0x${(unknownIncompat >>> 0).toString(16)}`);
  const unknownRoCompat = sb.roCompat & ~RO_COMPAT_KNOWN;
  if (unknownRoCompat !== 0) unsupported(`unknown read-only-compatible features 0x${(unknownRoCompat >>> 0).toString(16)}`);
  // Compat features change nothing we read. Log-incompat features only describe log items,
  // and checkLogClean insists there is nothing in the log left to replay.
}

/** The UUID stamped into v5 metadata blocks. */
function metadataUuid(sb: Superblock): Uint8Array {
  return sb.isV5 && (sb.incompat & INCOMPAT_META_UUID) !== 0 ? sb.metaUuid : sb.uuid;
}

function agStartBytes(sb: Superblock, agNo: number): number {
  return agNo * sb.agBlocks * sb.blockBytes;
}

/** Blocks in AG `agNo`: all but the last AG are full size. */
function agLengthBlocks(sb: Superblock, agNo: number): number {
  return agNo < sb.agCount - 1 ? sb.agBlocks : sb.dblocks - (sb.agCount - 1) * sb.agBlocks;
}

// ---------------------------------------------------------------------------------------------
// AGF.

function readAgf(reader: BlockReader, sb: Superblock, agNo: number): Agf {
  const bytes = reader.read(agStartBytes(sb, agNo) + AGF_SECTOR_INDEX * sb.sectorBytes, sb.sectorBytes);
  const dv = view(bytes);
  const where = `AG ${agNo} AGF`;
  if (dv.getUint32(AGF_MAGIC_OFF, false) !== AGF_MAGIC) unsupported(`${where} has a bad magic number`);
  if (sb.isV5) {
    verifyCrc(bytes, AGF_CRC_OFF, where);
    if (!equalBytes(bytes.subarray(AGF_UUID_OFF, AGF_UUID_OFF + 16), metadataUuid(sb))) {
      unsupported(`${where} belongs to another filesystem (UUID mismatch)`);
    }
  }
  if (dv.getUint32(AGF_VERSIONNUM_OFF, false) !== AGF_VERSION) unsupported(`${where} has an unknown version`);
  if (dv.getUint32(AGF_SEQNO_OFF, false) !== agNo) unsupported(`${where} has the wrong sequence number`);
  const agf: Agf = {
    lengthBlocks: dv.getUint32(AGF_LENGTH_OFF, false),
    bnoRoot: dv.getUint32(AGF_BNO_ROOT_OFF, false),
    cntRoot: dv.getUint32(AGF_CNT_ROOT_OFF, false),
    bnoLevels: dv.getUint32(AGF_BNO_LEVEL_OFF, false),
    cntLevels: dv.getUint32(AGF_CNT_LEVEL_OFF, false),
    freeBlocks: dv.getUint32(AGF_FREEBLKS_OFF, false),
    longestBlocks: dv.getUint32(AGF_LONGEST_OFF, false),
    flBlocks: dv.getUint32(AGF_FLCOUNT_OFF, false),
    btreeBlocks: dv.getUint32(AGF_BTREEBLKS_OFF, false),
  };
  if (agf.lengthBlocks !== agLengthBlocks(sb, agNo)) {
    unsupported(`${where} length ${agf.lengthBlocks} disagrees with the superblock (${agLengthBlocks(sb, agNo)})`);
  }
  for (const levels of [agf.bnoLevels, agf.cntLevels]) {
    if (levels < 1 || levels > MAX_BTREE_LEVELS) unsupported(`${where} has a free-space btree of ${levels} levels`);
  }
  if (agf.freeBlocks + agf.flBlocks + agf.btreeBlocks > agf.lengthBlocks || agf.longestBlocks > agf.freeBlocks) {
    unsupported(`${where} free block counts are impossible`);
  }
  return agf;
}

// ---------------------------------------------------------------------------------------------
// Free-space btree walk.

type TreeKind = "bno" | "cnt";

interface TreeWalk {
  agNo: number;
  kind: TreeKind;
  root: number;
  levels: number;
  lengthBlocks: number;
}

interface BtreeBlock {
  agBlock: number;
  level: number;
  numRecs: number;
  leftSib: number;
  rightSib: number;
  bytes: Uint8Array;
}

function treeMagic(sb: Superblock, kind: TreeKind): number {
  if (kind === "bno") return sb.isV5 ? BNOBT_MAGIC_V5 : BNOBT_MAGIC_V4;
  return sb.isV5 ? CNTBT_MAGIC_V5 : CNTBT_MAGIC_V4;
}

function btHeaderBytes(sb: Superblock): number {
  return sb.isV5 ? BT_HEADER_BYTES_V5 : BT_HEADER_BYTES_V4;
}

function readBtreeBlock(reader: BlockReader, sb: Superblock, walk: TreeWalk, agBlock: number): BtreeBlock {
  const where = `AG ${walk.agNo} ${walk.kind}bt block ${agBlock}`;
  const offsetBytes = agStartBytes(sb, walk.agNo) + agBlock * sb.blockBytes;
  const bytes = reader.read(offsetBytes, sb.blockBytes);
  const dv = view(bytes);
  if (dv.getUint32(BT_MAGIC_OFF, false) !== treeMagic(sb, walk.kind)) unsupported(`${where} has a bad magic number`);
  if (sb.isV5) {
    verifyCrc(bytes, BT_CRC_OFF, where);
    if (readU64(dv, BT_BLKNO_OFF, "bb_blkno") !== offsetBytes / BASIC_BLOCK_BYTES) {
      unsupported(`${where} records a different disk address`);
    }
    if (!equalBytes(bytes.subarray(BT_UUID_OFF, BT_UUID_OFF + 16), metadataUuid(sb))) {
      unsupported(`${where} belongs to another filesystem (UUID mismatch)`);
    }
    if (dv.getUint32(BT_OWNER_OFF, false) !== walk.agNo) unsupported(`${where} is owned by another AG`);
  }
  return {
    agBlock,
    level: dv.getUint16(BT_LEVEL_OFF, false),
    numRecs: dv.getUint16(BT_NUMRECS_OFF, false),
    leftSib: dv.getUint32(BT_LEFTSIB_OFF, false),
    rightSib: dv.getUint32(BT_RIGHTSIB_OFF, false),
    bytes,
  };
}

/** Checks that each level's blocks, in key order, are linked to each other and to nothing else. */
function checkSiblings(levelBlocks: readonly BtreeBlock[], where: string): void {
  for (let i = 0; i < levelBlocks.length; i++) {
    const left = i > 0 ? levelBlocks[i - 1]!.agBlock : NULL_AG_BLOCK;
    const right = i + 1 < levelBlocks.length ? levelBlocks[i + 1]!.agBlock : NULL_AG_BLOCK;
    const block = levelBlocks[i]!;
    if (block.leftSib !== left || block.rightSib !== right) unsupported(`${where} has broken sibling links`);
  }
}

/**
 * Every record of one free-space btree, in tree order. Depth-first from the root, bounded by
 * the AG size in blocks visited and by the recorded height, so a corrupt tree cannot loop.
 */
function walkFreeTree(reader: BlockReader, sb: Superblock, walk: TreeWalk): FreeExtent[] {
  const where = `AG ${walk.agNo} ${walk.kind}bt`;
  const headerBytes = btHeaderBytes(sb);
  const leafMaxRecs = Math.floor((sb.blockBytes - headerBytes) / ALLOC_REC_BYTES);
  const nodeMaxRecs = Math.floor((sb.blockBytes - headerBytes) / (ALLOC_KEY_BYTES + AG_PTR_BYTES));
  const firstDataBlock = Math.ceil((AG_HEADER_SECTORS * sb.sectorBytes) / sb.blockBytes);
  const visited = new Set<number>();
  const byLevel: BtreeBlock[][] = Array.from({ length: walk.levels }, () => []);
  const records: FreeExtent[] = [];
  // Stack of [agBlock, expected level]; children pushed right-to-left so they pop in key order.
  const stack: Array<[number, number]> = [[walk.root, walk.levels - 1]];
  while (stack.length > 0) {
    const [agBlock, expectedLevel] = stack.pop()!;
    if (agBlock < firstDataBlock || agBlock >= walk.lengthBlocks) unsupported(`${where} points outside the AG`);
    if (visited.has(agBlock)) unsupported(`${where} visits block ${agBlock} twice`);
    visited.add(agBlock);
    if (visited.size > walk.lengthBlocks) unsupported(`${where} has more blocks than the AG`);
    const block = readBtreeBlock(reader, sb, walk, agBlock);
    if (block.level !== expectedLevel) unsupported(`${where} block ${agBlock} is at the wrong level`);
    const isRoot = agBlock === walk.root;
    const maxRecs = block.level === 0 ? leafMaxRecs : nodeMaxRecs;
    if (block.numRecs > maxRecs || (block.numRecs === 0 && !(isRoot && block.level === 0))) {
      unsupported(`${where} block ${agBlock} holds ${block.numRecs} records`);
    }
    byLevel[block.level]!.push(block);
    const dv = view(block.bytes);
    if (block.level === 0) {
      for (let i = 0; i < block.numRecs; i++) {
        const at = headerBytes + i * ALLOC_REC_BYTES;
        records.push({ start: dv.getUint32(at, false), count: dv.getUint32(at + 4, false) });
      }
      continue;
    }
    const ptrBase = headerBytes + nodeMaxRecs * ALLOC_KEY_BYTES;
    for (let i = block.numRecs - 1; i >= 0; i--) {
      stack.push([dv.getUint32(ptrBase + i * AG_PTR_BYTES, false), block.level - 1]);
    }
  }
  for (const levelBlocks of byLevel) checkSiblings(levelBlocks, where);
  for (const r of records) {
    if (r.count === 0 || r.start < firstDataBlock || r.start + r.count > walk.lengthBlocks) {
      unsupported(`${where} has a free extent outside the AG's data blocks`);
    }
  }
  return records;
}

/** The bnobt's records: ascending and disjoint. */
function checkBnoOrder(records: readonly FreeExtent[], where: string): void {
  for (let i = 1; i < records.length; i++) {
    const prev = records[i - 1]!;
    if (records[i]!.start < prev.start + prev.count) unsupported(`${where} bnobt records overlap or are out of order`);
  }
}

/** The cntbt's records: ascending by (length, start). */
function checkCntOrder(records: readonly FreeExtent[], where: string): void {
  for (let i = 1; i < records.length; i++) {
    const a = records[i - 1]!;
    const b = records[i]!;
    if (a.count > b.count || (a.count === b.count && a.start >= b.start)) {
      unsupported(`${where} cntbt records are out of order`);
    }
  }
}

interface AgFree {
  extents: FreeExtent[];
  /** What this AG adds to sb_fdblocks: free extents, AGFL blocks and btree blocks. */
  fdBlocks: number;
}

/** Free extents of one AG, after the two trees and the AGF counters agree. */
function agFreeExtents(reader: BlockReader, sb: Superblock, agNo: number): AgFree {
  const where = `AG ${agNo}`;
  const agf = readAgf(reader, sb, agNo);
  const common = { agNo, lengthBlocks: agf.lengthBlocks };
  const bno = walkFreeTree(reader, sb, { ...common, kind: "bno", root: agf.bnoRoot, levels: agf.bnoLevels });
  const cnt = walkFreeTree(reader, sb, { ...common, kind: "cnt", root: agf.cntRoot, levels: agf.cntLevels });
  checkBnoOrder(bno, where);
  checkCntOrder(cnt, where);
  const byStart = [...cnt].sort((a, b) => a.start - b.start);
  if (byStart.length !== bno.length || byStart.some((r, i) => r.start !== bno[i]!.start || r.count !== bno[i]!.count)) {
    unsupported(`${where} bnobt and cntbt disagree`);
  }
  let totalBlocks = 0;
  for (const r of bno) totalBlocks += r.count;
  if (totalBlocks !== agf.freeBlocks) {
    unsupported(`${where} free extents sum to ${totalBlocks} blocks but the AGF says ${agf.freeBlocks}`);
  }
  const longest = cnt.length > 0 ? cnt[cnt.length - 1]!.count : 0;
  if (longest !== agf.longestBlocks) unsupported(`${where} longest free extent disagrees with the AGF`);
  return { extents: bno, fdBlocks: agf.freeBlocks + agf.flBlocks + agf.btreeBlocks };
}

/**
 * With lazy counters a clean unmount writes sb_fdblocks as the sum the AGFs give (the kernel then
 * trusts it at mount); xfs_repair calls any difference an error ("sb_fdblocks N, counted M").
 * Without them agf_btreeblks is not kept, so there is nothing exact to compare.
 */
function checkSuperblockFreeCount(sb: Superblock, countedBlocks: number): void {
  const lazy = sb.isV5 || ((sb.versionNum & VERSION_MOREBITSBIT) !== 0 && ((sb.features2 | sb.badFeatures2) & VERSION2_LAZYSBCOUNTBIT) !== 0);
  if (lazy && sb.fdblocks !== countedBlocks) {
    unsupported(`the superblock counts ${sb.fdblocks} free blocks but the AGFs ${countedBlocks}; run xfs_repair`);
  }
}

// ---------------------------------------------------------------------------------------------
// Internal log: clean only if the record just before the head is a lone unmount record.

function internalLogArea(sb: Superblock): LogArea {
  // sb_logstart is an FSB number: AG number in the high bits, AG block below sb_agblklog.
  const agFactor = 2 ** sb.agBlockLog;
  const agNo = Math.floor(sb.logStartFsb / agFactor);
  const agBlock = sb.logStartFsb % agFactor;
  if (agNo >= sb.agCount || sb.logBlocks === 0 || agBlock + sb.logBlocks > agLengthBlocks(sb, agNo)) {
    unsupported("the internal log lies outside its AG");
  }
  return {
    startBytes: agStartBytes(sb, agNo) + agBlock * sb.blockBytes,
    bbCount: (sb.logBlocks * sb.blockBytes) / BASIC_BLOCK_BYTES,
  };
}

/** The log is never free space; a tree saying otherwise is corrupt. */
function checkLogNotFree(free: readonly Range[], log: LogArea): void {
  const logEnd = log.startBytes + log.bbCount * BASIC_BLOCK_BYTES;
  for (const r of free) {
    if (r.start < logEnd && r.start + r.length > log.startBytes) unsupported("a free extent overlaps the internal log");
  }
}

// ---------------------------------------------------------------------------------------------

function hasValidCrc(reader: BlockReader, sb: Superblock): boolean {
  const sane = sb.isV5 && isPowerOfTwo(sb.sectorBytes) && sb.sectorBytes >= MIN_SECTOR_BYTES && sb.sectorBytes <= MAX_SECTOR_BYTES;
  if (!sane || sb.sectorBytes > reader.sizeBytes) return false;
  try {
    verifyCrc(reader.read(0, sb.sectorBytes), SB_CRC_OFF, "primary superblock");
    return true;
  } catch {
    return false;
  }
}

function readSuperblock(reader: BlockReader): Superblock | null {
  if (reader.sizeBytes < SB_READ_BYTES) return null;
  const bytes = reader.read(0, SB_READ_BYTES);
  if (view(bytes).getUint32(SB_MAGIC_OFF, false) !== SB_MAGIC) return null;
  return decodeSuperblock(bytes);
}

export const xfsParser: FsParser = {
  name: "xfs",

  detect(reader: BlockReader): boolean {
    const sb = readSuperblock(reader);
    if (sb === null) return false;
    // A v5 superblock whose CRC holds is XFS even when its geometry is damaged: claiming it lets
    // allocation() refuse it with a reason, so the raw capture comes with a warning.
    return geometryProblem(sb) === null || hasValidCrc(reader, sb);
  },

  allocation(reader: BlockReader): FsAllocation {
    const sb = readSuperblock(reader);
    if (sb === null) unsupported("no XFS superblock at offset 0");
    const problem = geometryProblem(sb);
    if (problem !== null) unsupported(problem);
    checkFeatures(sb);
    const fsBytes = sb.dblocks * sb.blockBytes;
    if (fsBytes > reader.sizeBytes) {
      unsupported(`filesystem spans ${fsBytes} bytes but the partition holds only ${reader.sizeBytes}`);
    }
    // Every read below lies inside fsBytes, so a short device cannot surface as a RangeError.
    if (sb.isV5) verifyCrc(reader.read(0, sb.sectorBytes), SB_CRC_OFF, "primary superblock");
    // An external log (sb_logstart 0) lives on another device that we neither image nor see,
    // so we cannot prove it clean: such a filesystem is trusted to have been unmounted cleanly.
    const log = sb.logStartFsb !== 0 ? internalLogArea(sb) : null;
    if (log !== null) checkLogClean(reader, log);

    const free: Range[] = [];
    let countedBlocks = 0;
    for (let agNo = 0; agNo < sb.agCount; agNo++) {
      const base = agStartBytes(sb, agNo);
      const ag = agFreeExtents(reader, sb, agNo);
      countedBlocks += ag.fdBlocks;
      for (const r of ag.extents) {
        free.push({ start: base + r.start * sb.blockBytes, length: r.count * sb.blockBytes });
      }
    }
    checkSuperblockFreeCount(sb, countedBlocks);
    const freeRanges = normalizeRanges(free);
    if (log !== null) checkLogNotFree(freeRanges, log);
    const allocated = invertRanges(freeRanges, fsBytes);
    assert(allocated.length === 0 || allocated[0]!.start === 0, "the primary superblock is always allocated");
    return {
      kind: "xfs",
      label: sb.label,
      uuid: formatUuid(sb.uuid),
      blockBytes: sb.blockBytes,
      fsBytes,
      allocated,
    };
  },
};
