// The discus multicast wire protocol v1 (docs/PROTOCOL.md): packet layouts, encoders and a
// decoder that never throws on bad input. Little-endian throughout. Pure: no sockets here.
import { getU64, setU64, utf8, fromUtf8, view } from "../util/bytes.ts";
import { assert } from "../util/assert.ts";
import { IMAGE_ID_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from "../image/constants.ts";
import { DIGEST_ENTRY_BYTES, MAX_DATA_CHUNKS, MAX_INFO_BYTES } from "../image/manifest.ts";

export const PROTOCOL_MAGIC = 0x50435344; // "DSCP" as little-endian bytes
export const PROTOCOL_VERSION = 1;
/** The UDP port of a discus group unless told otherwise (serve, load and the agent agree on it). */
export const DEFAULT_PORT = 4520;
export const HEADER_BYTES = 32;
/** Bytes before a block's data: chunk u32, seq u32, block u16, reserved u16. */
export const BLOCK_PREFIX_BYTES = 12;
export const ANNOUNCE_BODY_BYTES = 72;
export const REPORT_FIXED_BYTES = 64;
export const MAX_REPORT_MESSAGE_BYTES = 256;
/** Bound on blocks per chunk, so a request's bitmap (1 KiB at most) fits one 1500-byte datagram. */
export const MAX_BLOCKS_PER_CHUNK = 8192;
export const MIN_BLOCK_BYTES = 512;
/** IPv4 + UDP headers: what a datagram adds to its payload inside the MTU. */
export const IP_UDP_HEADER_BYTES = 28;
/** Ethernet header: counted by pacing, because it is on the wire (and tc counts it). */
export const ETHERNET_HEADER_BYTES = 14;
/** Bytes a block packet adds around its data inside the MTU. */
const BLOCK_OVERHEAD_BYTES = IP_UDP_HEADER_BYTES + HEADER_BYTES + BLOCK_PREFIX_BYTES;
/** The smallest MTU whose blocks are still MIN_BLOCK_BYTES long (576, the IPv4 minimum, is not). */
export const MIN_MTU_BYTES = MIN_BLOCK_BYTES + BLOCK_OVERHEAD_BYTES;
export const MAX_MTU_BYTES = 9000;
export const MAX_BLOCK_BYTES = MAX_MTU_BYTES - BLOCK_OVERHEAD_BYTES;
export const MAX_PACKET_BYTES = MAX_MTU_BYTES - IP_UDP_HEADER_BYTES;
/** A manifest beyond its digest entries: fixed part, info JSON, padding and signature block, at most. */
const MAX_MANIFEST_EXTRA_BYTES = MAX_INFO_BYTES + 1024;

export enum PacketType {
  query = 1,
  announce = 2,
  request = 3,
  block = 4,
  report = 5,
}

export enum ReportState {
  progress = 1,
  done = 2,
  failed = 3,
}

export interface Common {
  imageId: Uint8Array;
  /** Client: its random id. Server: its epoch, random per start. */
  sender: number;
}

export interface QueryPacket extends Common {
  type: PacketType.query;
}

export interface AnnounceBody {
  chunkBytes: number;
  blockBytes: number;
  dataChunkCount: number;
  manifestPartCount: number;
  manifestBytes: number;
  sourceBytes: number;
  rateBitsPerSecond: number;
  manifestSha256: Uint8Array;
}
export interface AnnouncePacket extends Common, AnnounceBody {
  type: PacketType.announce;
}

export interface RequestPacket extends Common {
  type: PacketType.request;
  chunk: number;
  blockCount: number;
  /** Bit b (LSB first) set: block b is wanted. */
  bitmap: Uint8Array;
}

export interface BlockPacket extends Common {
  type: PacketType.block;
  chunk: number;
  seq: number;
  block: number;
  data: Uint8Array;
}

export interface ReportBody {
  state: ReportState;
  elapsedMs: number;
  chunksDone: number;
  chunksTotal: number;
  bytesWritten: number;
  blocksReceived: number;
  duplicateBlocks: number;
  requestsSent: number;
  rerequests: number;
  chunksRejected: number;
  /** Blocks of the current server epoch received since the previous report. */
  intervalReceived: number;
  /** Sequence numbers those blocks spanned: 1 - received/span is the loss this client saw. */
  intervalSeqSpan: number;
  message: string;
}
export interface ReportPacket extends Common, ReportBody {
  type: PacketType.report;
}

export type Packet = QueryPacket | AnnouncePacket | RequestPacket | BlockPacket | ReportPacket;

export type DropReason = "short" | "magic" | "version" | "type" | "crc" | "length" | "field";
export type Decoded = { ok: true; packet: Packet } | { ok: false; reason: DropReason };

const OFF_VERSION = 4;
const OFF_TYPE = 5;
const OFF_FLAGS = 6;
const OFF_IMAGE_ID = 8;
const OFF_SENDER = 24;
const OFF_CRC = 28;

function packetCrc(bytes: Uint8Array): number {
  // CRC-32 of the header before the CRC field, chained with everything after it.
  const head = Bun.hash.crc32(bytes.subarray(0, OFF_CRC));
  return Number(Bun.hash.crc32(bytes.subarray(HEADER_BYTES), head)) >>> 0;
}

function frame(type: PacketType, c: Common, bodyBytes: number): { bytes: Uint8Array; dv: DataView } {
  assert(c.imageId.length === IMAGE_ID_BYTES, "image id is 16 bytes");
  const bytes = new Uint8Array(HEADER_BYTES + bodyBytes);
  const dv = view(bytes);
  dv.setUint32(0, PROTOCOL_MAGIC, true);
  bytes[OFF_VERSION] = PROTOCOL_VERSION;
  bytes[OFF_TYPE] = type;
  bytes.set(c.imageId, OFF_IMAGE_ID);
  dv.setUint32(OFF_SENDER, c.sender >>> 0, true);
  return { bytes, dv };
}

function seal(bytes: Uint8Array): Uint8Array {
  view(bytes).setUint32(OFF_CRC, packetCrc(bytes), true);
  return bytes;
}

export function encodeQuery(c: Common): Uint8Array {
  return seal(frame(PacketType.query, c, 0).bytes);
}

export function encodeAnnounce(c: Common, a: AnnounceBody): Uint8Array {
  const { bytes, dv } = frame(PacketType.announce, c, ANNOUNCE_BODY_BYTES);
  const b = HEADER_BYTES;
  dv.setUint32(b + 0, a.chunkBytes, true);
  dv.setUint16(b + 4, a.blockBytes, true);
  dv.setUint32(b + 8, a.dataChunkCount, true);
  dv.setUint32(b + 12, a.manifestPartCount, true);
  setU64(dv, b + 16, a.manifestBytes);
  setU64(dv, b + 24, a.sourceBytes);
  setU64(dv, b + 32, Math.round(a.rateBitsPerSecond));
  bytes.set(a.manifestSha256, b + 40);
  return seal(bytes);
}

export function encodeRequest(c: Common, chunk: number, blockCount: number, bitmap: Uint8Array): Uint8Array {
  assert(blockCount >= 1 && blockCount <= MAX_BLOCKS_PER_CHUNK, "request block count within bounds");
  assert(bitmap.length === bitmapBytes(blockCount), "bitmap length matches block count");
  const { bytes, dv } = frame(PacketType.request, c, 8 + bitmap.length);
  dv.setUint32(HEADER_BYTES, chunk, true);
  dv.setUint16(HEADER_BYTES + 4, blockCount, true);
  bytes.set(bitmap, HEADER_BYTES + 8);
  return seal(bytes);
}

/** A block packet: a fresh buffer each time, since a datagram send may read it after returning. */
export function encodeBlock(c: Common, chunk: number, seq: number, block: number, data: Uint8Array): Uint8Array {
  const { bytes, dv } = frame(PacketType.block, c, BLOCK_PREFIX_BYTES + data.length);
  dv.setUint32(HEADER_BYTES, chunk, true);
  dv.setUint32(HEADER_BYTES + 4, seq >>> 0, true);
  dv.setUint16(HEADER_BYTES + 8, block, true);
  bytes.set(data, HEADER_BYTES + BLOCK_PREFIX_BYTES);
  return seal(bytes);
}

export function encodeReport(c: Common, r: ReportBody): Uint8Array {
  let message = utf8(r.message);
  if (message.length > MAX_REPORT_MESSAGE_BYTES) message = message.subarray(0, MAX_REPORT_MESSAGE_BYTES);
  const { bytes, dv } = frame(PacketType.report, c, REPORT_FIXED_BYTES + message.length);
  const b = HEADER_BYTES;
  bytes[b] = r.state;
  dv.setUint32(b + 4, r.elapsedMs >>> 0, true);
  dv.setUint32(b + 8, r.chunksDone, true);
  dv.setUint32(b + 12, r.chunksTotal, true);
  setU64(dv, b + 16, r.bytesWritten);
  setU64(dv, b + 24, r.blocksReceived);
  setU64(dv, b + 32, r.duplicateBlocks);
  dv.setUint32(b + 40, r.requestsSent >>> 0, true);
  dv.setUint32(b + 44, r.rerequests >>> 0, true);
  dv.setUint32(b + 48, r.chunksRejected >>> 0, true);
  dv.setUint32(b + 52, r.intervalReceived >>> 0, true);
  dv.setUint32(b + 56, r.intervalSeqSpan >>> 0, true);
  dv.setUint16(b + 60, message.length, true);
  bytes.set(message, b + REPORT_FIXED_BYTES);
  return seal(bytes);
}

export function bitmapBytes(blockCount: number): number {
  return (blockCount + 7) >>> 3;
}

/** Blocks in a chunk of `chunkBytes` cut into `blockBytes` pieces (the last may be shorter). */
export function blocksPerChunk(chunkBytes: number, blockBytes: number): number {
  return Math.ceil(chunkBytes / blockBytes);
}

/** Block data size for an MTU: the largest multiple of 8 that fits one unfragmented datagram. */
export function blockBytesForMtu(mtuBytes: number): number {
  return (mtuBytes - IP_UDP_HEADER_BYTES - HEADER_BYTES - BLOCK_PREFIX_BYTES) & ~7;
}

// What the rest of the protocol relies on, checked once at import: every MTU the server accepts
// gives blocks within the announced bounds, a block index fits its u16 field, and the largest
// request bitmap fits one 1500-byte datagram.
assert(blockBytesForMtu(MIN_MTU_BYTES) >= MIN_BLOCK_BYTES, "the smallest MTU gives blocks of the minimum size");
assert(blockBytesForMtu(MIN_MTU_BYTES - 1) < MIN_BLOCK_BYTES, "MIN_MTU_BYTES is the smallest such MTU");
assert(blockBytesForMtu(MAX_MTU_BYTES) <= MAX_BLOCK_BYTES && MAX_BLOCK_BYTES <= 0xffff, "the largest MTU gives blocks within bounds");
assert(MIN_BLOCK_BYTES % 8 === 0 && MIN_BLOCK_BYTES <= MIN_CHUNK_BYTES, "a chunk holds at least one block");
assert(MAX_BLOCKS_PER_CHUNK - 1 <= 0xffff, "a block index fits the u16 field");
assert(IP_UDP_HEADER_BYTES + HEADER_BYTES + 8 + bitmapBytes(MAX_BLOCKS_PER_CHUNK) <= 1500, "a full request bitmap fits one 1500-byte datagram");
assert(HEADER_BYTES + Math.max(ANNOUNCE_BODY_BYTES, REPORT_FIXED_BYTES + MAX_REPORT_MESSAGE_BYTES) + IP_UDP_HEADER_BYTES <= MIN_MTU_BYTES, "control packets fit the smallest MTU");

/** Bytes a packet of `payloadBytes` occupies on an Ethernet link (what pacing counts). */
export function wireBytes(payloadBytes: number): number {
  return payloadBytes + IP_UDP_HEADER_BYTES + ETHERNET_HEADER_BYTES;
}

/** The type byte of a datagram, unchecked: lets a receiver skip traffic it never reads. */
export function peekType(bytes: Uint8Array): number {
  return bytes.length >= HEADER_BYTES ? bytes[OFF_TYPE]! : 0;
}

/** Decodes one datagram. Never throws: anything malformed comes back as a drop reason. */
export function decodePacket(bytes: Uint8Array): Decoded {
  if (bytes.length < HEADER_BYTES) return { ok: false, reason: "short" };
  const dv = view(bytes);
  if (dv.getUint32(0, true) !== PROTOCOL_MAGIC) return { ok: false, reason: "magic" };
  if (bytes[OFF_VERSION] !== PROTOCOL_VERSION) return { ok: false, reason: "version" };
  if (dv.getUint16(OFF_FLAGS, true) !== 0) return { ok: false, reason: "field" };
  if (dv.getUint32(OFF_CRC, true) !== packetCrc(bytes)) return { ok: false, reason: "crc" };
  const common: Common = {
    imageId: bytes.subarray(OFF_IMAGE_ID, OFF_IMAGE_ID + IMAGE_ID_BYTES),
    sender: dv.getUint32(OFF_SENDER, true),
  };
  const bodyBytes = bytes.length - HEADER_BYTES;
  const b = HEADER_BYTES;
  switch (bytes[OFF_TYPE]) {
    case PacketType.query:
      return bodyBytes === 0 ? { ok: true, packet: { type: PacketType.query, ...common } } : { ok: false, reason: "length" };
    case PacketType.announce: {
      if (bodyBytes !== ANNOUNCE_BODY_BYTES) return { ok: false, reason: "length" };
      if (!u64sSafe(dv, [b + 16, b + 24, b + 32])) return { ok: false, reason: "field" };
      const packet: AnnouncePacket = {
        type: PacketType.announce,
        ...common,
        chunkBytes: dv.getUint32(b, true),
        blockBytes: dv.getUint16(b + 4, true),
        dataChunkCount: dv.getUint32(b + 8, true),
        manifestPartCount: dv.getUint32(b + 12, true),
        manifestBytes: getU64(dv, b + 16),
        sourceBytes: getU64(dv, b + 24),
        rateBitsPerSecond: getU64(dv, b + 32),
        manifestSha256: bytes.subarray(b + 40, b + 72),
      };
      return announceFieldsValid(packet) ? { ok: true, packet } : { ok: false, reason: "field" };
    }
    case PacketType.request: {
      if (bodyBytes < 8) return { ok: false, reason: "length" };
      const blockCount = dv.getUint16(b + 4, true);
      if (blockCount < 1 || blockCount > MAX_BLOCKS_PER_CHUNK) return { ok: false, reason: "field" };
      if (bodyBytes !== 8 + bitmapBytes(blockCount)) return { ok: false, reason: "length" };
      const packet: RequestPacket = { type: PacketType.request, ...common, chunk: dv.getUint32(b, true), blockCount, bitmap: bytes.subarray(b + 8) };
      return { ok: true, packet };
    }
    case PacketType.block: {
      if (bodyBytes < BLOCK_PREFIX_BYTES + 1) return { ok: false, reason: "length" };
      if (dv.getUint16(b + 10, true) !== 0) return { ok: false, reason: "field" };
      const packet: BlockPacket = {
        type: PacketType.block,
        ...common,
        chunk: dv.getUint32(b, true),
        seq: dv.getUint32(b + 4, true),
        block: dv.getUint16(b + 8, true),
        data: bytes.subarray(b + BLOCK_PREFIX_BYTES),
      };
      return { ok: true, packet };
    }
    case PacketType.report: {
      if (bodyBytes < REPORT_FIXED_BYTES) return { ok: false, reason: "length" };
      const messageBytes = dv.getUint16(b + 60, true);
      if (messageBytes > MAX_REPORT_MESSAGE_BYTES || bodyBytes !== REPORT_FIXED_BYTES + messageBytes) return { ok: false, reason: "length" };
      const state = bytes[b]!;
      if (state < ReportState.progress || state > ReportState.failed) return { ok: false, reason: "field" };
      if (!u64sSafe(dv, [b + 16, b + 24, b + 32])) return { ok: false, reason: "field" };
      const packet: ReportPacket = {
        type: PacketType.report,
        ...common,
        state,
        elapsedMs: dv.getUint32(b + 4, true),
        chunksDone: dv.getUint32(b + 8, true),
        chunksTotal: dv.getUint32(b + 12, true),
        bytesWritten: getU64(dv, b + 16),
        blocksReceived: getU64(dv, b + 24),
        duplicateBlocks: getU64(dv, b + 32),
        requestsSent: dv.getUint32(b + 40, true),
        rerequests: dv.getUint32(b + 44, true),
        chunksRejected: dv.getUint32(b + 48, true),
        intervalReceived: dv.getUint32(b + 52, true),
        intervalSeqSpan: dv.getUint32(b + 56, true),
        message: fromUtf8(bytes.subarray(b + REPORT_FIXED_BYTES)),
      };
      return { ok: true, packet };
    }
    default:
      return { ok: false, reason: "type" };
  }
}

/** True when every u64 at these offsets fits a JavaScript number (getU64 would assert otherwise). */
function u64sSafe(dv: DataView, offsets: number[]): boolean {
  return offsets.every((o) => dv.getBigUint64(o, true) <= MAX_SAFE_U64);
}
const MAX_SAFE_U64 = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Bounds a client relies on before it sizes anything from an announcement: the image format's own
 * limits, and the counts agreeing with each other as the image writer makes them (a manifest holds
 * one 64-byte digest entry per data chunk and fills exactly its parts), so no announced count can
 * make a client allocate more than its manifest bound implies.
 */
export function announceFieldsValid(a: AnnounceBody): boolean {
  if (a.blockBytes < MIN_BLOCK_BYTES || a.blockBytes > MAX_BLOCK_BYTES) return false;
  if (a.chunkBytes < MIN_CHUNK_BYTES || a.chunkBytes > MAX_CHUNK_BYTES) return false;
  if (blocksPerChunk(a.chunkBytes, a.blockBytes) > MAX_BLOCKS_PER_CHUNK) return false;
  if (a.dataChunkCount < 1 || a.dataChunkCount > MAX_DATA_CHUNKS || a.sourceBytes < 1) return false;
  const digestBytes = a.dataChunkCount * DIGEST_ENTRY_BYTES;
  if (a.manifestBytes <= digestBytes || a.manifestBytes > digestBytes + MAX_MANIFEST_EXTRA_BYTES) return false;
  return a.manifestPartCount === Math.ceil(a.manifestBytes / a.chunkBytes);
}
