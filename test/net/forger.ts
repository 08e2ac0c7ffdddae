// A hostile neighbour for tests: multicasts garbage and forged packets for a served image.
// Usage: bun forger.ts GROUP PORT IFACE IMAGE_ID_HEX MODE DURATION_MS PACKETS_PER_MS [IMAGE_PATH]
//   garbage   random datagrams
//   forged    well-formed blocks (right magic, version, image id and CRC) with random data, so only
//             the chunk digests can catch them
//   announce  forged announcements of the image (needs IMAGE_PATH for its real layout): a wrong
//             manifest digest, a huge dataChunkCount, another image id; sent at PACKETS_PER_MS and
//             at once in answer to every query, so they race the real server's
//   hostile   everything at once (needs IMAGE_PATH): the forged announcements; a valid request for
//             all of chunk 0 three times a second; the first request heard from a client replayed
//             at PACKETS_PER_MS; 200/s each of garbage, valid-CRC requests for chunks that do not
//             exist, forged blocks, and reports claiming 100 % loss under random sender ids
//   steer     without the session key, what would stall the queue and steer the rate of an open
//             server (needs IMAGE_PATH): requests for every block of every chunk in turn at
//             PACKETS_PER_MS, 100 %-loss reports from one sender at 50/s, and the first request
//             heard from a client (authenticated, if the clients have the key) replayed at 0.5/ms
// PACKETS_PER_MS may be fractional. Bound to the served port with SO_REUSEADDR, so from the
// server's own host the packets carry the server's address and port. Prints what it sent as JSON.
import { openImage } from "../../src/image/reader.ts";
import { openGroupSocket } from "../../src/net/socket.ts";
import {
  blockBytesForMtu,
  blocksPerChunk,
  decodePacket,
  encodeAnnounce,
  encodeBlock,
  encodeReport,
  encodeRequest,
  PacketType,
  ReportState,
  type AnnounceBody,
} from "../../src/net/wire.ts";
import { fillBits, bitmapFor } from "../../src/util/bitmap.ts";
import { equalBytes, fromHex } from "../../src/util/bytes.ts";

const MODES = ["garbage", "forged", "announce", "hostile", "steer"] as const;
type Mode = (typeof MODES)[number];
const [group, portText, iface, imageHex, modeText, durationText, rateText, imagePath] = process.argv.slice(2);
const mode = MODES.find((m) => m === modeText);
if (!group || !portText || !iface || !imageHex || mode === undefined || !durationText || !rateText || (mode !== "garbage" && mode !== "forged" && !imagePath)) {
  throw new Error("usage: forger.ts GROUP PORT IFACE IMAGE_ID_HEX garbage|forged|announce|hostile|steer DURATION_MS PACKETS_PER_MS [IMAGE_PATH]");
}
const port = Number(portText);
const imageId = fromHex(imageHex);
const random = (n: number) => Math.floor(Math.random() * n);
const randomBytes = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const sent: Record<string, number> = {};
let captured: Uint8Array | null = null;

/** The image's real layout as a 1500-byte-MTU server announces it, for forgeries that look right. */
function realAnnounce(path: string): AnnounceBody {
  const image = openImage(path);
  const t = image.trailer;
  const blockBytes = blockBytesForMtu(1500);
  return { chunkBytes: t.chunkBytes, blockBytes, dataChunkCount: t.dataChunkCount, manifestPartCount: t.manifestPartCount, manifestBytes: t.manifestBytes, sourceBytes: image.manifest.sourceBytes, rateBitsPerSecond: 100e6, manifestSha256: t.manifestSha256 };
}
const real = imagePath ? realAnnounce(imagePath) : null;
const blockCount = real ? blocksPerChunk(real.chunkBytes, real.blockBytes) : 737;
const me = { imageId, sender: (random(2 ** 31) * 2 + 1) >>> 0 };

function forgedAnnounces(): Uint8Array[] {
  if (real === null) return [];
  const sender = me.sender;
  return [
    // A disk far larger than any target: a client must not refuse its target on an unproven word.
    encodeAnnounce({ imageId, sender }, { ...real, sourceBytes: real.sourceBytes * 1024, manifestSha256: randomBytes(32) }),
    encodeAnnounce({ imageId, sender }, { ...real, manifestSha256: randomBytes(32) }),
    encodeAnnounce({ imageId, sender }, { ...real, dataChunkCount: 2 ** 32 - 1 }),
    encodeAnnounce({ imageId: randomBytes(16), sender }, { ...real, manifestSha256: randomBytes(32) }),
  ];
}

function fullRequest(chunk: number): Uint8Array {
  const all = bitmapFor(blockCount);
  fillBits(all, blockCount);
  return encodeRequest(me, chunk, blockCount, all);
}

function lossReport(sender = (random(2 ** 31) * 2 + 1) >>> 0): Uint8Array {
  const body = { state: ReportState.progress, elapsedMs: 1000, chunksDone: 0, chunksTotal: 1, bytesWritten: 0, blocksReceived: 0, duplicateBlocks: 0, requestsSent: 1, rerequests: 0, chunksRejected: 0, intervalReceived: 0, intervalSeqSpan: 1000, message: "" };
  return encodeReport({ imageId, sender }, body);
}

/** Every chunk the image has, data and manifest parts, in turn: an open server sends them all. */
const totalChunks = real ? real.dataChunkCount + real.manifestPartCount : 1;
let nextChunk = 0;
function everyChunk(): [string, Uint8Array] {
  nextChunk = (nextChunk + 1) % totalChunks;
  return ["fullRequest", fullRequest(nextChunk)];
}

const sock = await openGroupSocket({ group, port, iface, ttl: 1, receiveBufferBytes: 1 << 20, sendBufferBytes: 4 << 20 }, (bytes) => {
  const d = decodePacket(bytes);
  if (!d.ok) return;
  // Answer every query with forgeries, at once: they race the real server's answer.
  if (d.packet.type === PacketType.query && (mode === "announce" || mode === "hostile")) for (const a of forgedAnnounces()) send("announce", a);
  if (d.packet.type === PacketType.request && captured === null && d.packet.sender !== me.sender && equalBytes(d.packet.imageId, imageId)) captured = bytes.slice();
});

function send(kind: string, bytes: Uint8Array): void {
  sock.send(bytes);
  sent[kind] = (sent[kind] ?? 0) + 1;
}

/** Sends `perMs` packets a millisecond on average (fractional rates carry credit across ticks). */
function every(perMs: number, make: () => [string, Uint8Array] | null): () => void {
  let credit = 0;
  return () => {
    for (credit += perMs; credit >= 1; credit--) {
      const p = make();
      if (p !== null) send(p[0], p[1]);
    }
  };
}

const packetsPerMs = Number(rateText);
const garbage = (): [string, Uint8Array] => ["garbage", randomBytes(1 + random(1400))];
// Blocks 0..9 of chunks 0..63 at full block length: they land in real chunk buffers.
const forgedBlock = (): [string, Uint8Array] => ["block", encodeBlock({ imageId, sender: random(2 ** 32) }, random(64), random(1 << 30), random(10), randomBytes(1424))];
const plans: Record<Mode, (() => void)[]> = {
  garbage: [every(packetsPerMs, garbage)],
  forged: [every(packetsPerMs, forgedBlock)],
  announce: [every(packetsPerMs, () => ["announce", forgedAnnounces()[random(4)]!])],
  hostile: [
    every(0.01, () => ["announce", forgedAnnounces()[random(4)]!]),
    every(0.003, () => ["chunk0", fullRequest(0)]),
    every(packetsPerMs, () => (captured === null ? null : ["replay", captured])),
    every(0.2, garbage),
    every(0.2, () => ["badChunk", fullRequest(1_000_000 + random(1000))]),
    every(0.2, forgedBlock),
    every(0.2, () => ["lossReport", lossReport()]),
  ],
  steer: [
    every(packetsPerMs, everyChunk),
    every(0.05, () => ["lossReport", lossReport(me.sender)]),
    every(0.5, () => (captured === null ? null : ["replay", captured])),
  ],
};

const endMs = performance.now() + Number(durationText);
const timer = setInterval(() => {
  if (performance.now() > endMs) {
    clearInterval(timer);
    sock.close();
    process.stdout.write(`${JSON.stringify(sent)}\n`);
    return;
  }
  for (const step of plans[mode]) step();
}, 1);
