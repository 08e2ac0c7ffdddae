// Two ServeSessions in one process (issue 10): serves two images on two groups over real UDP
// multicast on the wall clock, printing every event of both as one JSON line each on stdout,
// until SIGTERM; then stops both and prints their statistics.
//   bun test/net/serve-two.ts PORT IFACE IMAGE1 GROUP1 IMAGE2 GROUP2
import { closeImage, openImage } from "../../src/image/reader.ts";
import { ServeSession } from "../../src/server/session.ts";
import { groupTransport } from "../../src/net/socket.ts";
import { wallClock } from "../../src/util/clock.ts";

const [portText, iface, image1, group1, image2, group2] = process.argv.slice(2);
if (iface === undefined || image1 === undefined || group1 === undefined || image2 === undefined || group2 === undefined) {
  throw new Error("usage: serve-two.ts PORT IFACE IMAGE1 GROUP1 IMAGE2 GROUP2");
}
const port = Number(portText);
const BUFFER_BYTES = 8 << 20;

const sessions = [
  [image1, group1],
  [image2, group2],
].map(([path, group], i) => {
  const image = openImage(path!);
  const session = new ServeSession(
    image,
    { imageName: path!, group: group!, port, rateBitsPerSecond: 100e6, adaptiveRate: true, mtuBytes: 1500, idleMs: null, seed: 100 + i },
    { clock: wallClock, openTransport: groupTransport({ group: group!, port, iface, ttl: 1, receiveBufferBytes: BUFFER_BYTES, sendBufferBytes: BUFFER_BYTES }) },
  );
  session.on((e) => process.stdout.write(`${JSON.stringify({ session: i, ...e })}\n`));
  return { image, session };
});
await Promise.all(sessions.map((s) => s.session.start()));
process.stderr.write("serving\n");
process.once("SIGTERM", async () => {
  const stats = await Promise.all(sessions.map((s) => s.session.stop()));
  for (const s of sessions) closeImage(s.image);
  process.stdout.write(`${JSON.stringify({ stats })}\n`);
  process.exit(0);
});
