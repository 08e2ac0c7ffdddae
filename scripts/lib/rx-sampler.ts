// Counts the bytes a lab host's interface receives, every SAMPLE_MS, from the kernel's own counter
// (/sys/class/net/IFACE/statistics/rx_bytes, as seen in the namespace `ip netns exec` runs it in):
// no socket, so a busy machine can delay a sample but never lose a packet from the count. Run it
// on a host that only listens, and its count is what the sender put on the wire. Stops on SIGTERM
// and prints one JSON line: [[ms since start, rx bytes], ...].
// Usage: bun rx-sampler.ts IFACE
import { readFileSync } from "node:fs";

export const SAMPLE_MS = 100;
/** Samples kept at most (an hour at SAMPLE_MS). */
const MAX_SAMPLES = 36_000;

const iface = process.argv[2] ?? "eth0";
const counter = `/sys/class/net/${iface}/statistics/rx_bytes`;
const samples: [number, number][] = [];
const t0 = performance.now();
const take = () => {
  if (samples.length < MAX_SAMPLES) samples.push([performance.now() - t0, Number(readFileSync(counter, "utf8"))]);
};
take();
const timer = setInterval(take, SAMPLE_MS);
process.once("SIGTERM", () => {
  clearInterval(timer);
  take();
  process.stdout.write(`${JSON.stringify(samples)}\n`, () => process.exit(0));
});
