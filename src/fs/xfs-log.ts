// XFS internal log: is it clean? Only if the record just before the log head is a lone unmount
// record; otherwise the free-space trees may be stale until the log is replayed by a mount.
// XFS is big-endian on disk.
import { assert } from "../util/assert.ts";
import { view } from "../util/bytes.ts";
import { FsUnsupportedError } from "../util/errors.ts";
import type { BlockReader } from "./types.ts";

/** XFS "BB", the unit of disk addresses and of the log. */
export const BASIC_BLOCK_BYTES = 512;

export function unsupported(why: string): never {
  throw new FsUnsupportedError(`xfs: ${why}`);
}

// Log records (xlog_rec_header) and operation headers.

const LOG_HEADER_MAGIC = 0xfeedbabe;
const LOG_H_CYCLE_OFF = 4;
const LOG_H_VERSION_OFF = 8;
const LOG_H_LEN_OFF = 12;
const LOG_H_NUM_LOGOPS_OFF = 40;
const LOG_H_SIZE_OFF = 320;
const LOG_VERSION_2 = 2;
const LOG_HEADER_CYCLE_BYTES = 32 * 1024; // cycle data one header block covers
const LOG_MAX_RECORD_BYTES = 256 * 1024;
/** In-flight writes at a crash span at most 8 iclogs of 256 KiB: torn writes hide within this. */
const LOG_HEAD_WINDOW_BBS = (8 * LOG_MAX_RECORD_BYTES) / BASIC_BLOCK_BYTES;
const LOG_OP_CLIENTID_OFF = 8;
const LOG_OP_FLAGS_OFF = 9;
const LOG_CLIENT_XFS_LOG = 0xaa;
const LOG_UNMOUNT_TRANS = 0x20;

/** Where the internal log lies, in 512-byte basic blocks. */
export interface LogArea {
  startBytes: number;
  bbCount: number;
}

function readLogBb(reader: BlockReader, log: LogArea, bb: number): DataView {
  assert(bb >= 0 && bb < log.bbCount, "log block index in range");
  return view(reader.read(log.startBytes + bb * BASIC_BLOCK_BYTES, BASIC_BLOCK_BYTES));
}

/** Every log BB starts with its write cycle, except record headers, which keep it at h_cycle. */
function cycleOf(dv: DataView): number {
  const first = dv.getUint32(0, false);
  return first === LOG_HEADER_MAGIC ? dv.getUint32(LOG_H_CYCLE_OFF, false) : first;
}

/** Requires every BB in [fromBb, toBb) to carry `cycle`. */
function expectCycles(reader: BlockReader, log: LogArea, fromBb: number, toBb: number, cycle: number): void {
  if (toBb <= fromBb) return;
  const bytes = reader.read(log.startBytes + fromBb * BASIC_BLOCK_BYTES, (toBb - fromBb) * BASIC_BLOCK_BYTES);
  for (let bb = 0; bb < toBb - fromBb; bb++) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset + bb * BASIC_BLOCK_BYTES, BASIC_BLOCK_BYTES);
    if (cycleOf(dv) !== cycle) unsupported("the log has torn writes near its head: replay it by mounting first");
  }
}

/**
 * The log head: the first BB of the older cycle. A log reads [cycle c ...][cycle c-1 ...]
 * from its physical start; all-c means the head wrapped to BB 0.
 */
function findLogHead(reader: BlockReader, log: LogArea): number {
  const firstCycle = cycleOf(readLogBb(reader, log, 0));
  const lastCycle = cycleOf(readLogBb(reader, log, log.bbCount - 1));
  const window = Math.min(LOG_HEAD_WINDOW_BBS, log.bbCount);
  if (firstCycle === lastCycle) {
    expectCycles(reader, log, 0, window, firstCycle);
    expectCycles(reader, log, log.bbCount - window, log.bbCount, firstCycle);
    return 0;
  }
  if (lastCycle !== firstCycle - 1) unsupported("the log's cycle numbers are not understood");
  let lo = 0; // cycle firstCycle
  let hi = log.bbCount - 1; // not firstCycle
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (cycleOf(readLogBb(reader, log, mid)) === firstCycle) lo = mid;
    else hi = mid;
  }
  expectCycles(reader, log, Math.max(0, hi - window), hi, firstCycle);
  expectCycles(reader, log, hi, Math.min(log.bbCount, hi + window), lastCycle);
  return hi;
}

/** Number of header BBs of a record: v2 records larger than 32 KiB carry extension headers. */
function headerBbCount(dv: DataView): number {
  const version = dv.getUint32(LOG_H_VERSION_OFF, false);
  const sizeBytes = dv.getUint32(LOG_H_SIZE_OFF, false);
  if ((version & LOG_VERSION_2) !== 0 && sizeBytes > LOG_HEADER_CYCLE_BYTES) {
    if (sizeBytes > LOG_MAX_RECORD_BYTES) unsupported("a log record header claims an impossible size");
    return Math.ceil(sizeBytes / LOG_HEADER_CYCLE_BYTES);
  }
  return 1;
}

/** Throws unless the internal log ends in an unmount record (nothing to replay). */
export function checkLogClean(reader: BlockReader, log: LogArea): void {
  const firstCycle = cycleOf(readLogBb(reader, log, 0));
  const lastCycle = cycleOf(readLogBb(reader, log, log.bbCount - 1));
  if (firstCycle === 0 && lastCycle === 0) {
    // A zeroed log holds no records and so nothing to replay.
    expectCycles(reader, log, 0, Math.min(LOG_HEAD_WINDOW_BBS, log.bbCount), 0);
    return;
  }
  const head = findLogHead(reader, log);
  const wrap = (bb: number) => ((bb % log.bbCount) + log.bbCount) % log.bbCount;
  const maxScanBbs = Math.min(log.bbCount, LOG_HEAD_WINDOW_BBS);
  for (let back = 1; back <= maxScanBbs; back++) {
    const headerBb = wrap(head - back);
    const dv = readLogBb(reader, log, headerBb);
    if (dv.getUint32(0, false) !== LOG_HEADER_MAGIC) continue;
    const lenBytes = dv.getUint32(LOG_H_LEN_OFF, false);
    if (lenBytes > LOG_MAX_RECORD_BYTES) unsupported("the last log record has an impossible length");
    const dataBb = wrap(headerBb + headerBbCount(dv));
    const endBb = wrap(dataBb + Math.ceil(lenBytes / BASIC_BLOCK_BYTES));
    const opCount = dv.getUint32(LOG_H_NUM_LOGOPS_OFF, false);
    if (endBb !== head || opCount !== 1) unsupported("the log is dirty (last record is not an unmount record): mount and unmount it first");
    const op = readLogBb(reader, log, dataBb);
    const isUnmount =
      op.getUint8(LOG_OP_CLIENTID_OFF) === LOG_CLIENT_XFS_LOG && (op.getUint8(LOG_OP_FLAGS_OFF) & LOG_UNMOUNT_TRANS) !== 0;
    if (!isUnmount) unsupported("the log is dirty (last record is not an unmount record): mount and unmount it first");
    return;
  }
  unsupported("no log record header found before the log head");
}
