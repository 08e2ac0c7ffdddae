// The discus multicast wire protocol v2 (docs/PROTOCOL.md): packet layouts, encoders and a
// decoder that never throws on bad input. Little-endian throughout. Pure: no sockets here.
import { utf8, fromUtf8, view } from "../util/bytes.ts";
import { assert } from "../util/assert.ts";
import { Layout } from "../util/layout.ts";
import { DIGEST_BYTES, IMAGE_ID_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from "../image/constants.ts";
import { DIGEST_ENTRY_BYTES, MAX_DATA_CHUNKS, MAX_INFO_BYTES } from "../image/manifest.ts";

export const PROTOCOL_MAGIC = 0x50435344; // "DSCP" as little-endian bytes
/** 2: repair packets (FEC); a v1 client would never finish on a v2 server, so they drop each other. */
export const PROTOCOL_VERSION = 2;
/** The UDP port of a discus group unless told otherwise (serve, load and the agent agree on it). */
export const DEFAULT_PORT = 4520;
export const HEADER_BYTES = 32;
/** Bytes before a block's data: chunk u32, seq u32, block u16, reserved u16. */
export const BLOCK_PREFIX_BYTES = 12;
/** Bytes before a repair's data: chunk u32, seq u32, group u16, index u8, reserved u8. */
export const REPAIR_PREFIX_BYTES = 12;
export const ANNOUNCE_BODY_BYTES = 72;
/** A request's chunk u32, block count u16, reserved u16; the bitmap follows. */
export const REQUEST_FIXED_BYTES = 8;
export const REPORT_FIXED_BYTES = 64;
/** Header flag: the packet carries an authentication trailer (docs/PROTOCOL.md, "Authentication"). */
export const FLAG_AUTH = 0x0001;
/** After a query, request or report with FLAG_AUTH: server epoch u32, reserved u32, counter u64, tag[16]. */
export const AUTH_TRAILER_BYTES = 32;
/** The truncated HMAC-SHA256 at the end of the trailer. */
export const AUTH_TAG_BYTES = 16;
/** After an announce with FLAG_AUTH: the session key's id (src/net/auth.ts keyId). */
export const KEY_ID_BYTES = 8;
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
  repair = 6,
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

/** The authentication trailer of a client's packet (the tag itself is checked by net/auth.ts). */
export interface AuthTrailer {
  /** The epoch of the server the client follows (0 in a query before it has one). */
  epoch: number;
  /** Per sender, increasing with every packet it sends: what the replay window checks. */
  counter: number;
  tag: Uint8Array;
}

/** A client's packet: with FLAG_AUTH, its trailer (absent or undefined: sent in the open). */
export interface ClientPacket extends Common {
  auth?: AuthTrailer | null;
}

export interface QueryPacket extends ClientPacket {
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
  /** Set (KEY_ID_BYTES) when the server takes only authenticated queries, requests and reports. */
  keyId?: Uint8Array | null;
}

export interface RequestPacket extends ClientPacket {
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

/** A parity block of one FEC group of a chunk (src/net/fec.ts): always blockBytes long. */
export interface RepairPacket extends Common {
  type: PacketType.repair;
  chunk: number;
  seq: number;
  group: number;
  index: number;
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
export interface ReportPacket extends ClientPacket, ReportBody {
  type: PacketType.report;
}

export type Packet = QueryPacket | AnnouncePacket | RequestPacket | BlockPacket | ReportPacket | RepairPacket;

export type DropReason = "short" | "magic" | "version" | "type" | "crc" | "length" | "field";
export type Decoded = { ok: true; packet: Packet } | { ok: false; reason: DropReason };

// Every layout once: the header and each body's fixed part, offsets by field order, sizes asserted.
const HEADER = new Layout("packet header", HEADER_BYTES, [
  { name: "magic", kind: "u32" },
  { name: "version", kind: "u8" },
  { name: "type", kind: "u8" },
  { name: "flags", kind: "u16" },
  { name: "imageId", kind: "bytes", width: IMAGE_ID_BYTES },
  { name: "sender", kind: "u32" },
  { name: "crc", kind: "u32" },
] as const);
const OFF_TYPE = HEADER.offset("type");
const OFF_CRC = HEADER.offset("crc");
const OFF_FLAGS = HEADER.offset("flags");

/** Follows a client's packet with FLAG_AUTH; the tag covers every byte before it but the CRC. */
const AUTH_TRAILER = new Layout("auth trailer", AUTH_TRAILER_BYTES, [
  { name: "epoch", kind: "u32" },
  { name: "reserved", kind: "reserved", width: 4 },
  { name: "counter", kind: "u64" },
  { name: "tag", kind: "bytes", width: AUTH_TAG_BYTES },
] as const);

const ANNOUNCE = new Layout("announce body", ANNOUNCE_BODY_BYTES, [
  { name: "chunkBytes", kind: "u32" },
  { name: "blockBytes", kind: "u16" },
  { name: "reserved", kind: "reserved", width: 2 },
  { name: "dataChunkCount", kind: "u32" },
  { name: "manifestPartCount", kind: "u32" },
  { name: "manifestBytes", kind: "u64" },
  { name: "sourceBytes", kind: "u64" },
  { name: "rateBitsPerSecond", kind: "u64" },
  { name: "manifestSha256", kind: "bytes", width: DIGEST_BYTES },
] as const);

/** A request's fixed part; its bitmap follows. */
const REQUEST = new Layout("request body", REQUEST_FIXED_BYTES, [
  { name: "chunk", kind: "u32" },
  { name: "blockCount", kind: "u16" },
  { name: "reserved", kind: "reserved", width: 2 },
] as const);

/** A block's prefix; its data follows. */
const BLOCK = new Layout("block prefix", BLOCK_PREFIX_BYTES, [
  { name: "chunk", kind: "u32" },
  { name: "seq", kind: "u32" },
  { name: "block", kind: "u16" },
  { name: "reserved", kind: "reserved", width: 2 },
] as const);

/** A repair's prefix; its data follows. */
const REPAIR = new Layout("repair prefix", REPAIR_PREFIX_BYTES, [
  { name: "chunk", kind: "u32" },
  { name: "seq", kind: "u32" },
  { name: "group", kind: "u16" },
  { name: "index", kind: "u8" },
  { name: "reserved", kind: "reserved", width: 1 },
] as const);

/** A report's fixed part; its UTF-8 message follows. */
const REPORT = new Layout("report body", REPORT_FIXED_BYTES, [
  { name: "state", kind: "u8" },
  { name: "reserved1", kind: "reserved", width: 3 },
  { name: "elapsedMs", kind: "u32" },
  { name: "chunksDone", kind: "u32" },
  { name: "chunksTotal", kind: "u32" },
  { name: "bytesWritten", kind: "u64" },
  { name: "blocksReceived", kind: "u64" },
  { name: "duplicateBlocks", kind: "u64" },
  { name: "requestsSent", kind: "u32" },
  { name: "rerequests", kind: "u32" },
  { name: "chunksRejected", kind: "u32" },
  { name: "intervalReceived", kind: "u32" },
  { name: "intervalSeqSpan", kind: "u32" },
  { name: "messageBytes", kind: "u16" },
  { name: "reserved2", kind: "reserved", width: 2 },
] as const);

/** CRC-32 of the header before the CRC field: the same for every packet one writer makes. */
function headCrcOf(bytes: Uint8Array): number {
  return Number(Bun.hash.crc32(bytes.subarray(0, OFF_CRC)));
}

function packetCrc(bytes: Uint8Array, headCrc = headCrcOf(bytes)): number {
  // The header's CRC (before the CRC field), chained with everything after the header.
  return Number(Bun.hash.crc32(bytes.subarray(HEADER_BYTES), headCrc)) >>> 0;
}

/** A packet of `type` with room for `bodyBytes`; the CRC is filled in by seal. */
function frame(type: PacketType, c: Common, bodyBytes: number): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES + bodyBytes);
  HEADER.write(bytes, 0, { magic: PROTOCOL_MAGIC, version: PROTOCOL_VERSION, type, flags: 0, imageId: c.imageId, sender: c.sender >>> 0, crc: 0 });
  return bytes;
}

function seal(bytes: Uint8Array): Uint8Array {
  view(bytes).setUint32(OFF_CRC, packetCrc(bytes), true);
  return bytes;
}

export function encodeQuery(c: Common): Uint8Array {
  return seal(frame(PacketType.query, c, 0));
}

/** `keyId`: the server takes only authenticated control packets, made with the key of this id. */
export function encodeAnnounce(c: Common, a: AnnounceBody, keyId: Uint8Array | null = null): Uint8Array {
  assert(keyId === null || keyId.length === KEY_ID_BYTES, "a key id is KEY_ID_BYTES long");
  const bytes = frame(PacketType.announce, c, ANNOUNCE_BODY_BYTES + (keyId === null ? 0 : KEY_ID_BYTES));
  ANNOUNCE.write(bytes, HEADER_BYTES, { ...a, rateBitsPerSecond: Math.round(a.rateBitsPerSecond) });
  if (keyId !== null) {
    view(bytes).setUint16(OFF_FLAGS, FLAG_AUTH, true);
    bytes.set(keyId, HEADER_BYTES + ANNOUNCE_BODY_BYTES);
  }
  return seal(bytes);
}

/**
 * A client's packet (query, request, report) made authenticated: a copy with FLAG_AUTH and the
 * trailer, its tag left for `sealTag` once `taggedParts` of it have been MACed (net/auth.ts).
 */
export function withAuthTrailer(packet: Uint8Array, epoch: number, counter: number): Uint8Array {
  const type = packet[OFF_TYPE];
  assert(type === PacketType.query || type === PacketType.request || type === PacketType.report, "only a client's packets are authenticated");
  assert(view(packet).getUint16(OFF_FLAGS, true) === 0, "a packet is authenticated once");
  const bytes = new Uint8Array(packet.length + AUTH_TRAILER_BYTES);
  bytes.set(packet);
  view(bytes).setUint16(OFF_FLAGS, FLAG_AUTH, true);
  AUTH_TRAILER.write(bytes, packet.length, { epoch: epoch >>> 0, counter, tag: new Uint8Array(AUTH_TAG_BYTES) });
  return bytes;
}

/** What the tag covers: the header before the CRC, and everything after it up to the tag. */
export function taggedParts(bytes: Uint8Array): [Uint8Array, Uint8Array] {
  return [bytes.subarray(0, OFF_CRC), bytes.subarray(HEADER_BYTES, bytes.length - AUTH_TAG_BYTES)];
}

/** Writes the tag into an authenticated packet's trailer and seals it (the CRC covers the tag). */
export function sealTag(bytes: Uint8Array, tag: Uint8Array): Uint8Array {
  assert(tag.length === AUTH_TAG_BYTES, "a tag is AUTH_TAG_BYTES long");
  bytes.set(tag, bytes.length - AUTH_TAG_BYTES);
  return seal(bytes);
}

export function encodeRequest(c: Common, chunk: number, blockCount: number, bitmap: Uint8Array): Uint8Array {
  assert(blockCount >= 1 && blockCount <= MAX_BLOCKS_PER_CHUNK, "request block count within bounds");
  assert(bitmap.length === bitmapBytes(blockCount), "bitmap length matches block count");
  const bytes = frame(PacketType.request, c, REQUEST_FIXED_BYTES + bitmap.length);
  REQUEST.write(bytes, HEADER_BYTES, { chunk, blockCount });
  bytes.set(bitmap, HEADER_BYTES + REQUEST_FIXED_BYTES);
  return seal(bytes);
}

/** A block packet: a fresh buffer each time, since a datagram send may read it after returning. */
export function encodeBlock(c: Common, chunk: number, seq: number, block: number, data: Uint8Array): Uint8Array {
  const bytes = frame(PacketType.block, c, BLOCK_PREFIX_BYTES + data.length);
  BLOCK.write(bytes, HEADER_BYTES, { chunk, seq: seq >>> 0, block });
  bytes.set(data, HEADER_BYTES + BLOCK_PREFIX_BYTES);
  return seal(bytes);
}

const OFF_BLOCK_CHUNK = HEADER_BYTES + BLOCK.offset("chunk");
const OFF_BLOCK_SEQ = HEADER_BYTES + BLOCK.offset("seq");
const OFF_BLOCK_INDEX = HEADER_BYTES + BLOCK.offset("block");
const OFF_BLOCK_RESERVED = HEADER_BYTES + BLOCK.offset("reserved");

/**
 * Block packets of one sender written straight into a burst's buffer, the bytes encodeBlock makes
 * (test/net/wire.test.ts): the header is laid out once, each packet patches its prefix and CRC.
 * The server's hot path: no buffer, object or layout walk per block.
 */
export class BlockWriter {
  private readonly header: Uint8Array;
  /** CRC-32 of the header before its CRC field: the same for every block, so computed once. */
  private readonly headCrc: number;

  constructor(c: Common) {
    this.header = frame(PacketType.block, c, 0);
    this.headCrc = headCrcOf(this.header);
  }

  /** Writes the packet at `at` of `out` (`dv` views `out`); returns its length. */
  write(out: Uint8Array, dv: DataView, at: number, chunk: number, seq: number, block: number, data: Uint8Array): number {
    const length = HEADER_BYTES + BLOCK_PREFIX_BYTES + data.length;
    assert(at >= 0 && at + length <= out.length && block >= 0 && block <= 0xffff && chunk >= 0 && chunk <= 0xffffffff, "a block packet fits its buffer and its fields");
    out.set(this.header, at);
    dv.setUint32(at + OFF_BLOCK_CHUNK, chunk, true);
    dv.setUint32(at + OFF_BLOCK_SEQ, seq >>> 0, true);
    dv.setUint16(at + OFF_BLOCK_INDEX, block, true);
    dv.setUint16(at + OFF_BLOCK_RESERVED, 0, true);
    out.set(data, at + HEADER_BYTES + BLOCK_PREFIX_BYTES);
    dv.setUint32(at + OFF_CRC, packetCrc(out.subarray(at, at + length), this.headCrc), true);
    return length;
  }
}

/** A repair packet: a fresh buffer each time, as for blocks. */
export function encodeRepairPacket(c: Common, chunk: number, seq: number, group: number, index: number, data: Uint8Array): Uint8Array {
  assert(index >= 0 && index <= 0xff && group >= 0 && group <= 0xffff, "repair group and index fit their fields");
  const bytes = frame(PacketType.repair, c, REPAIR_PREFIX_BYTES + data.length);
  REPAIR.write(bytes, HEADER_BYTES, { chunk, seq: seq >>> 0, group, index });
  bytes.set(data, HEADER_BYTES + REPAIR_PREFIX_BYTES);
  return seal(bytes);
}

export function encodeReport(c: Common, r: ReportBody): Uint8Array {
  let message = utf8(r.message);
  if (message.length > MAX_REPORT_MESSAGE_BYTES) message = message.subarray(0, MAX_REPORT_MESSAGE_BYTES);
  const bytes = frame(PacketType.report, c, REPORT_FIXED_BYTES + message.length);
  REPORT.write(bytes, HEADER_BYTES, {
    ...r,
    elapsedMs: r.elapsedMs >>> 0,
    requestsSent: r.requestsSent >>> 0,
    rerequests: r.rerequests >>> 0,
    chunksRejected: r.chunksRejected >>> 0,
    intervalReceived: r.intervalReceived >>> 0,
    intervalSeqSpan: r.intervalSeqSpan >>> 0,
    messageBytes: message.length,
  });
  bytes.set(message, HEADER_BYTES + REPORT_FIXED_BYTES);
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
assert(REPAIR_PREFIX_BYTES === BLOCK_PREFIX_BYTES, "a repair is exactly as long as a full block packet, so pacing counts both alike");
assert(blockBytesForMtu(MIN_MTU_BYTES) >= MIN_BLOCK_BYTES, "the smallest MTU gives blocks of the minimum size");
assert(blockBytesForMtu(MIN_MTU_BYTES - 1) < MIN_BLOCK_BYTES, "MIN_MTU_BYTES is the smallest such MTU");
assert(blockBytesForMtu(MAX_MTU_BYTES) <= MAX_BLOCK_BYTES && MAX_BLOCK_BYTES <= 0xffff, "the largest MTU gives blocks within bounds");
assert(MIN_BLOCK_BYTES % 8 === 0 && MIN_BLOCK_BYTES <= MIN_CHUNK_BYTES, "a chunk holds at least one block");
assert(MAX_BLOCKS_PER_CHUNK - 1 <= 0xffff, "a block index fits the u16 field");
assert(IP_UDP_HEADER_BYTES + HEADER_BYTES + REQUEST_FIXED_BYTES + bitmapBytes(MAX_BLOCKS_PER_CHUNK) <= 1500, "a full request bitmap fits one 1500-byte datagram");
assert(IP_UDP_HEADER_BYTES + HEADER_BYTES + REQUEST_FIXED_BYTES + bitmapBytes(MAX_BLOCKS_PER_CHUNK) + AUTH_TRAILER_BYTES <= 1500, "an authenticated full request fits one 1500-byte datagram");
assert(HEADER_BYTES + Math.max(ANNOUNCE_BODY_BYTES + KEY_ID_BYTES, REPORT_FIXED_BYTES + MAX_REPORT_MESSAGE_BYTES + AUTH_TRAILER_BYTES) + IP_UDP_HEADER_BYTES <= MIN_MTU_BYTES, "control packets, authenticated too, fit the smallest MTU");
assert(AUTH_TRAILER.bytes === AUTH_TRAILER_BYTES && AUTH_TAG_BYTES >= 16, "the trailer is as documented and the tag at least 128 bits");

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
  if (dv.getUint32(HEADER.offset("magic"), true) !== PROTOCOL_MAGIC) return { ok: false, reason: "magic" };
  if (bytes[HEADER.offset("version")] !== PROTOCOL_VERSION) return { ok: false, reason: "version" };
  const header = HEADER.read(bytes, 0);
  if (!header.ok) return { ok: false, reason: "field" };
  if (header.values.crc !== packetCrc(bytes)) return { ok: false, reason: "crc" };
  const { type, flags } = header.values;
  if (flags !== 0 && flags !== FLAG_AUTH) return { ok: false, reason: "field" };
  const common: Common = { imageId: header.values.imageId, sender: header.values.sender };
  const authed = flags === FLAG_AUTH;
  if (type === PacketType.announce) return decodeAnnounce(common, bytes.subarray(HEADER_BYTES), authed);
  if (type === PacketType.block || type === PacketType.repair) {
    if (authed) return { ok: false, reason: "field" }; // the chunk digests protect data, not tags
    return type === PacketType.block ? decodeBlock(common, bytes.subarray(HEADER_BYTES)) : decodeRepair(common, bytes.subarray(HEADER_BYTES));
  }
  if (type !== PacketType.query && type !== PacketType.request && type !== PacketType.report) return { ok: false, reason: "type" };
  // A client's packet: its body ends where the trailer begins.
  let end = bytes.length;
  let auth: AuthTrailer | null = null;
  if (authed) {
    end -= AUTH_TRAILER_BYTES;
    if (end < HEADER_BYTES) return { ok: false, reason: "length" };
    const t = AUTH_TRAILER.read(bytes, end);
    if (!t.ok) return { ok: false, reason: "field" };
    auth = t.values;
  }
  const body = bytes.subarray(HEADER_BYTES, end);
  const decoded: Decoded =
    type === PacketType.query
      ? body.length === 0
        ? { ok: true, packet: { type: PacketType.query, ...common } }
        : { ok: false, reason: "length" }
      : type === PacketType.request
        ? decodeRequest(common, body)
        : decodeReport(common, body);
  if (decoded.ok) (decoded.packet as ClientPacket).auth = auth;
  return decoded;
}

function decodeAnnounce(common: Common, body: Uint8Array, authed: boolean): Decoded {
  if (body.length !== ANNOUNCE_BODY_BYTES + (authed ? KEY_ID_BYTES : 0)) return { ok: false, reason: "length" };
  const r = ANNOUNCE.read(body, 0);
  if (!r.ok) return { ok: false, reason: "field" };
  const keyId = authed ? body.slice(ANNOUNCE_BODY_BYTES) : null;
  const packet: AnnouncePacket = { type: PacketType.announce, ...common, ...r.values, keyId };
  return announceFieldsValid(packet) ? { ok: true, packet } : { ok: false, reason: "field" };
}

function decodeRequest(common: Common, body: Uint8Array): Decoded {
  if (body.length < REQUEST_FIXED_BYTES) return { ok: false, reason: "length" };
  const r = REQUEST.read(body, 0);
  if (!r.ok) return { ok: false, reason: "field" };
  const { chunk, blockCount } = r.values;
  if (blockCount < 1 || blockCount > MAX_BLOCKS_PER_CHUNK) return { ok: false, reason: "field" };
  if (body.length !== REQUEST_FIXED_BYTES + bitmapBytes(blockCount)) return { ok: false, reason: "length" };
  return { ok: true, packet: { type: PacketType.request, ...common, chunk, blockCount, bitmap: body.subarray(REQUEST_FIXED_BYTES) } };
}

function decodeBlock(common: Common, body: Uint8Array): Decoded {
  if (body.length < BLOCK_PREFIX_BYTES + 1) return { ok: false, reason: "length" };
  const r = BLOCK.read(body, 0);
  if (!r.ok) return { ok: false, reason: "field" };
  return { ok: true, packet: { type: PacketType.block, ...common, ...r.values, data: body.subarray(BLOCK_PREFIX_BYTES) } };
}

function decodeRepair(common: Common, body: Uint8Array): Decoded {
  if (body.length < REPAIR_PREFIX_BYTES + 1) return { ok: false, reason: "length" };
  const r = REPAIR.read(body, 0);
  if (!r.ok) return { ok: false, reason: "field" };
  return { ok: true, packet: { type: PacketType.repair, ...common, ...r.values, data: body.subarray(REPAIR_PREFIX_BYTES) } };
}

function decodeReport(common: Common, body: Uint8Array): Decoded {
  if (body.length < REPORT_FIXED_BYTES) return { ok: false, reason: "length" };
  const r = REPORT.read(body, 0);
  if (!r.ok) return { ok: false, reason: "field" };
  const { messageBytes, state, ...counts } = r.values;
  if (messageBytes > MAX_REPORT_MESSAGE_BYTES || body.length !== REPORT_FIXED_BYTES + messageBytes) return { ok: false, reason: "length" };
  if (state < ReportState.progress || state > ReportState.failed) return { ok: false, reason: "field" };
  const message = fromUtf8(body.subarray(REPORT_FIXED_BYTES));
  return { ok: true, packet: { type: PacketType.report, ...common, ...counts, state, message } };
}

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
