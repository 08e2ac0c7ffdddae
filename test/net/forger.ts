// A hostile neighbour for tests: multicasts garbage and forged block packets for a served image.
// Usage: bun forger.ts GROUP PORT IFACE IMAGE_ID_HEX garbage|forged DURATION_MS PACKETS_PER_MS (may be fractional)
// "forged" packets are well-formed (right magic, version, image id and CRC) with random data, so
// only the chunk digests can catch them. Bound to the served port with SO_REUSEADDR, so from the
// server's own host they carry the server's address and port.
import { encodeBlock } from "../../src/net/wire.ts";
import { openGroupSocket } from "../../src/net/socket.ts";
import { fromHex } from "../../src/util/bytes.ts";

const [group, portText, iface, imageHex, mode, durationText, rateText] = process.argv.slice(2);
if (!group || !portText || !iface || !imageHex || (mode !== "garbage" && mode !== "forged") || !durationText || !rateText) {
  throw new Error("usage: forger.ts GROUP PORT IFACE IMAGE_ID_HEX garbage|forged DURATION_MS PACKETS_PER_MS");
}
const port = Number(portText);
const imageId = fromHex(imageHex);
const sock = await openGroupSocket({ group, port, iface, ttl: 1, receiveBufferBytes: 1 << 20, sendBufferBytes: 1 << 20 }, () => {});
const endMs = performance.now() + Number(durationText);
const packetsPerMs = Number(rateText);
let sent = 0;
let credit = 0;
const random = (n: number) => Math.floor(Math.random() * n);
const timer = setInterval(() => {
  if (performance.now() > endMs) {
    clearInterval(timer);
    sock.close();
    process.stdout.write(`${sent}\n`);
    return;
  }
  // Fractional rates (0.2 packets per ms) accumulate credit across ticks.
  credit += packetsPerMs;
  for (; credit >= 1; credit--) {
    const packet =
      mode === "garbage"
        ? crypto.getRandomValues(new Uint8Array(1 + random(1400)))
        : // Blocks 0..9 of chunks 0..63 at full block length: they land in real chunk buffers.
          encodeBlock({ imageId, sender: 12345 }, random(64), random(1 << 30), random(10), crypto.getRandomValues(new Uint8Array(1424)));
    sock.send(packet);
    sent++;
  }
}, 1);
