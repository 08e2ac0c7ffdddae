// The server's batched sending on virtual time (issue 13): every burst it hands the network stays
// within the token bucket's burst bound (MAX_BURST_BYTES) at 100 Mbit/s and 1 Gbit/s, and bytes in
// any window never exceed one burst plus the window at the rate; a network that takes only part
// of each burst (a short sendmmsg, EAGAIN) loses nothing: every sequence number goes out exactly
// once, in order, and lossy clients still write exactly the disk a local restore writes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { $ } from "bun";
import { closeImage, openImage } from "../../src/image/reader.ts";
import { ServeSession, type ServeStats } from "../../src/server/session.ts";
import { MAX_BURST_BYTES } from "../../src/server/pacer.ts";
import { Loader } from "../../src/client/loader.ts";
import { TargetSink } from "../../src/client/sink.ts";
import { decodePacket, PacketType, wireBytes } from "../../src/net/wire.ts";
import type { GroupTransport, OpenTransport } from "../../src/net/transport.ts";
import { FIXTURE_TIMEOUT_MS, fileChunks, rawImageFixture, sha256File, tmpDir } from "../helpers.ts";
import { MemoryLan, VIRTUAL_GROUP, VIRTUAL_PORT, VIRTUAL_SERVER_ADDRESS, VirtualClock } from "../net/virtual.ts";
import { rng } from "../rng.ts";

const LATENCY_MS = 0.05;
const LOAD_LIMIT_MS = 120_000;

let dir = "";
let imagePath = "";
let referenceSha = "";

beforeAll(async () => {
  dir = await tmpDir();
  ({ image: imagePath, referenceSha } = await rawImageFixture(dir, 8, 640, ["--chunk-size", "256K"]));
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

interface Burst {
  atMs: number;
  wireBytes: number;
  offered: number;
  taken: number;
}

/**
 * The server's transport on the LAN, with a sendMany that records each burst and lets
 * `accept(n, call)` decide how many of n datagrams the "kernel" takes.
 */
function recordingTransport(open: OpenTransport, clock: VirtualClock, bursts: Burst[], seqs: number[], accept: (n: number, call: number) => number): OpenTransport {
  return async (onMessage) => {
    const inner = await open(onMessage);
    const t: GroupTransport = {
      send: (bytes) => inner.send(bytes),
      sendMany: (packets) => {
        const taken = accept(packets.length, bursts.length);
        const sent = packets.slice(0, taken);
        bursts.push({ atMs: clock.nowMs(), wireBytes: sent.reduce((n, p) => n + wireBytes(p.length), 0), offered: packets.length, taken });
        for (const p of sent) {
          const d = decodePacket(p);
          if (d.ok && (d.packet.type === PacketType.block || d.packet.type === PacketType.repair)) seqs.push(d.packet.seq);
          inner.send(p);
        }
        return taken;
      },
      close: () => inner.close(),
    };
    return t;
  };
}

async function run(name: string, o: { rateBitsPerSecond: number; clients: number; lossFraction: number; accept: (n: number, call: number) => number }) {
  const image = openImage(imagePath);
  const clock = new VirtualClock();
  const random = rng(11);
  const lan = new MemoryLan(clock, LATENCY_MS, (address) => address !== VIRTUAL_SERVER_ADDRESS && random.next() < o.lossFraction);
  const bursts: Burst[] = [];
  const seqs: number[] = [];
  try {
    const server = new ServeSession(
      image,
      { imageName: image.path, group: VIRTUAL_GROUP, port: VIRTUAL_PORT, rateBitsPerSecond: o.rateBitsPerSecond, adaptiveRate: false, mtuBytes: 1500, idleMs: null, seed: 3 },
      { clock, openTransport: recordingTransport(lan.transport(VIRTUAL_SERVER_ADDRESS, VIRTUAL_PORT), clock, bursts, seqs, o.accept), readChunk: fileChunks(image) },
    );
    await server.start();
    const targets = Array.from({ length: o.clients }, (_, i) => join(dir, `${name}-${i}.img`));
    let settled = 0;
    const runs = targets.map((target, i) =>
      new Loader(
        { group: VIRTUAL_GROUP, port: VIRTUAL_PORT, publicKey: null, keyPath: null, imageId: null, giveUpMs: 30_000, bufferBytes: 2 << 20, requestWindowChunks: 4, seed: 20 + i },
        { clock, openTransport: lan.transport(`198.18.0.${10 + i}`, VIRTUAL_PORT), sink: new TargetSink({ target, freeMode: "skip", workers: 0 }) },
      )
        .run()
        .finally(() => settled++),
    );
    await clock.runUntil(() => settled === o.clients, LOAD_LIMIT_MS);
    await Promise.all(runs);
    const stats: ServeStats = await server.stop();
    const shas = await Promise.all(targets.map((t) => sha256File(t)));
    await $`rm -f ${targets}`;
    return { bursts, seqs, stats, shas };
  } finally {
    closeImage(image);
  }
}

/** The most wire bytes taken in any window of `windowMs` starting at a burst. */
function maxInWindow(bursts: Burst[], windowMs: number): number {
  let best = 0;
  for (let i = 0; i < bursts.length; i++) {
    let sum = 0;
    for (let j = i; j < bursts.length && bursts[j]!.atMs < bursts[i]!.atMs + windowMs; j++) sum += bursts[j]!.wireBytes;
    best = Math.max(best, sum);
  }
  return best;
}

describe("batched sending", () => {
  for (const rateBitsPerSecond of [100e6, 1e9]) {
    test(`at ${rateBitsPerSecond / 1e6} Mbit/s every burst is within the bucket's bound, and each window within a burst plus the rate`, async () => {
      const r = await run(`rate${rateBitsPerSecond}`, { rateBitsPerSecond, clients: 2, lossFraction: 0.02, accept: (n) => n });
      expect(r.shas).toEqual([referenceSha, referenceSha]);
      expect(r.bursts.length).toBeGreaterThan(10);
      for (const b of r.bursts) expect(b.wireBytes).toBeLessThanOrEqual(MAX_BURST_BYTES);
      // Batching is real: bursts carry many blocks, not one each.
      expect(r.stats.sends.blocks / r.stats.sends.bursts).toBeGreaterThan(8);
      for (const windowMs of [0.1, 1, 10]) {
        expect(maxInWindow(r.bursts, windowMs)).toBeLessThanOrEqual(MAX_BURST_BYTES + (rateBitsPerSecond / 8) * (windowMs / 1000));
      }
    }, 120_000);
  }

  test("a network that takes half of each burst, and none of every third: nothing lost, nothing twice, disks identical", async () => {
    const r = await run("partial", { rateBitsPerSecond: 1e9, clients: 2, lossFraction: 0.03, accept: (n, call) => (call % 3 === 2 ? 0 : Math.ceil(n / 2)) });
    expect(r.shas).toEqual([referenceSha, referenceSha]);
    expect(r.stats.sends.deferred).toBeGreaterThan(10);
    expect(r.bursts.some((b) => b.taken < b.offered)).toBe(true);
    // Every datagram made was sent exactly once, in sequence order: the untaken rest went out later.
    expect(r.seqs).toEqual(Array.from({ length: r.seqs.length }, (_, i) => i));
    expect(r.stats.sends.blocks).toBe(r.seqs.length);
  }, 120_000);
});
