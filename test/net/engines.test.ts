// The server and the loader as engines (issue 10): driven in one process on virtual time over an
// in-memory LAN, they must write exactly the disk a local restore writes, report what happens
// through events (the server's client progress comes from the clients' reports), give the same
// events for the same seeds, and keep a long-running server's statistics bounded.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { $ } from "bun";
import { closeImage, openImage } from "../../src/image/reader.ts";
import { MAX_SESSION_SUMMARIES, type ServeEvent } from "../../src/server/session.ts";
import { Loader, type LoadEvent } from "../../src/client/loader.ts";
import { TargetSink } from "../../src/client/sink.ts";
import { blockBytesForMtu, blocksPerChunk, encodeReport, encodeRequest, peekType, PacketType, ReportState } from "../../src/net/wire.ts";
import { FIXTURE_TIMEOUT_MS, fileChunks, rawImageFixture, sha256File, tmpDir } from "../helpers.ts";
import { MemoryLan, VIRTUAL_GROUP, VIRTUAL_PORT, VIRTUAL_SERVER_ADDRESS, VirtualClock, virtualServer } from "./virtual.ts";
import { rng } from "../rng.ts";
import { generateKeyPair, loadPublicKey } from "../../src/image/signing.ts";
import { DiscusError } from "../../src/util/errors.ts";

const PORT = VIRTUAL_PORT;
const GROUP = VIRTUAL_GROUP;
const LATENCY_MS = 0.2;
const CLIENTS = 3;
/** Virtual time allowed for a load: the image takes about a second at the server's 100 Mbit/s. */
const LOAD_LIMIT_MS = 120_000;

let dir = "";
let imagePath = "";
let referenceSha = "";

beforeAll(async () => {
  dir = await tmpDir();
  // A 12 MiB source: random data with runs of zeros, in 256 KiB chunks (dozens of chunks).
  ({ image: imagePath, referenceSha } = await rawImageFixture(dir, 12, 512, ["--chunk-size", "256K"]));
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

interface Scenario {
  serverEvents: ServeEvent[];
  loadEvents: LoadEvent[][];
  targets: string[];
  endMs: number;
}

/** One ServeSession and `clients` loaders on one virtual LAN, until every load settles. */
async function runScenario(name: string, seed: number, o: { clients?: number; lossFraction?: number } = {}): Promise<Scenario> {
  const image = openImage(imagePath);
  const clock = new VirtualClock();
  const clients = o.clients ?? CLIENTS;
  const random = rng(seed);
  // Every client loses its own packets; the server hears everything.
  const lan = new MemoryLan(clock, LATENCY_MS, (address) => address !== VIRTUAL_SERVER_ADDRESS && random.next() < (o.lossFraction ?? 0));
  try {
    const server = virtualServer(image, clock, lan, { seed, readChunk: fileChunks(image) });
    const serverEvents: ServeEvent[] = [];
    server.on((e) => serverEvents.push(e));
    await server.start();
    const targets = Array.from({ length: clients }, (_, i) => join(dir, `${name}-${i}.img`));
    const loadEvents: LoadEvent[][] = targets.map(() => []);
    let settled = 0;
    const runs = targets.map((target, i) => {
      const loader = new Loader(
        { group: GROUP, port: PORT, publicKey: null, keyPath: null, imageId: null, giveUpMs: 30_000, bufferBytes: 2 << 20, requestWindowChunks: 4, seed: seed + 1 + i },
        { clock, openTransport: lan.transport(`198.18.0.${10 + i}`, PORT), sink: new TargetSink({ target, freeMode: "skip", workers: 0 }) },
      );
      loader.on((e) => loadEvents[i]!.push(e));
      return loader.run().finally(() => settled++);
    });
    await clock.runUntil(() => settled === clients, LOAD_LIMIT_MS);
    await Promise.all(runs);
    // The clients' final reports reach the server before it stops.
    await clock.runUntil(() => false, clock.nowMs() + 200);
    await server.stop();
    return { serverEvents, loadEvents, targets, endMs: clock.nowMs() };
  } finally {
    closeImage(image);
  }
}

describe("engines on virtual time", () => {
  test("one ServeSession, three Loaders: identical disks, and events from both sides", async () => {
    const s = await runScenario("virtual", 7);
    for (const t of s.targets) expect(await sha256File(t)).toBe(referenceSha);
    const kinds = s.serverEvents.map((e) => e.kind);
    expect(kinds[0]).toBe("started");
    expect(kinds.at(-1)).toBe("ended");
    // The clients' progress reports reach the server's face; each client is done exactly once.
    const progress = s.serverEvents.filter((e) => e.kind === "client-progress");
    expect(progress.length).toBeGreaterThan(0);
    const done = s.serverEvents.filter((e) => e.kind === "client-done").map((e) => e.client);
    expect(new Set(done).size).toBe(CLIENTS);
    expect(done.length).toBe(CLIENTS);
    for (const events of s.loadEvents) {
      expect(events[0]!.kind).toBe("server");
      const last = events.at(-1)!;
      expect(last.kind).toBe("done");
      const steps = events.filter((e) => e.kind === "progress");
      const total = steps[0]!.kind === "progress" ? steps[0]!.chunksTotal : 0;
      expect(steps.map((e) => (e.kind === "progress" ? e.chunksDone : -1))).toEqual(Array.from({ length: total + 1 }, (_, k) => k));
    }
    // Virtual time, not the wall clock: the whole load took simulated seconds.
    expect(s.endMs).toBeGreaterThan(500);
    expect(s.endMs).toBeLessThan(LOAD_LIMIT_MS);
    await $`rm -f ${s.targets}`;
  }, 120_000);

  test("independent loss: one repair fills a different hole at each client (FEC)", async () => {
    const clients = 8;
    const s = await runScenario("lossy", 5, { clients, lossFraction: 0.03 });
    for (const t of s.targets) expect(await sha256File(t)).toBe(referenceSha);
    const summaries = s.serverEvents.flatMap((e) => (e.kind === "transfer-ended" ? [e.summary] : []));
    const repairsSent = summaries.reduce((n, x) => n + x.repairsSent, 0);
    const stats = s.loadEvents.map((events) => events.flatMap((e) => (e.kind === "done" ? [e.stats] : []))[0]!);
    const recovered = stats.reduce((n, x) => n + x.blocksRecovered, 0);
    expect(repairsSent).toBeGreaterThan(0);
    // The point of repairs: together the clients rebuilt more blocks than the server sent repairs
    // (a retransmitted block fills the same hole everywhere; a repair fills a different one).
    expect(recovered).toBeGreaterThan(repairsSent);
    expect(stats.every((x) => x.chunksRejected === 0)).toBe(true);
    await $`rm -f ${s.targets}`;
  }, 120_000);

  test("the same seeds give the same events at the same virtual times", async () => {
    const trace = (s: Scenario) => [
      ...s.serverEvents.map((e) => `${e.atMs.toFixed(3)} ${e.kind} ${"client" in e ? e.client : ""}`),
      ...s.loadEvents.flatMap((events, i) => events.map((e) => `${i} ${e.atMs.toFixed(3)} ${e.kind}`)),
    ];
    const a = await runScenario("seed-a", 11);
    const b = await runScenario("seed-b", 11);
    expect(trace(b)).toEqual(trace(a));
    expect(a.serverEvents.length).toBeGreaterThan(CLIENTS * 2);
    await $`rm -f ${a.targets} ${b.targets}`;
  }, 120_000);

  test("the sender leaves room on the group's links for the clients' packets, up to half its rate", async () => {
    /** Data bytes a listener hears in 300 ms while a chatty host sends `reportsPerMs` reports a millisecond. */
    async function dataBytes(reportsPerMs: number): Promise<number> {
      const image = openImage(imagePath);
      const clock = new VirtualClock();
      const lan = new MemoryLan(clock, LATENCY_MS);
      try {
        const server = virtualServer(image, clock, lan, { seed: 3, adaptiveRate: false, readChunk: fileChunks(image) });
        await server.start();
        let heard = 0;
        const listener = await lan.transport("198.18.0.9", PORT)((bytes) => {
          const t = peekType(bytes);
          if ((t === PacketType.block || t === PacketType.repair) && clock.nowMs() >= 50 && clock.nowMs() < 350) heard += bytes.length;
        });
        const blockCount = blocksPerChunk(image.trailer.chunkBytes, blockBytesForMtu(1500));
        const all = new Uint8Array(Math.ceil(blockCount / 8)).fill(0xff);
        all[all.length - 1] = blockCount % 8 === 0 ? 0xff : (1 << (blockCount % 8)) - 1;
        for (let c = 0; c < image.trailer.dataChunkCount; c++) listener.send(encodeRequest({ imageId: image.manifest.imageId, sender: 0x1001 }, c, blockCount, all));
        const chatty = await lan.transport("198.18.0.8", PORT)(() => {});
        const report = encodeReport({ imageId: image.manifest.imageId, sender: 0x2001 }, { state: ReportState.progress, elapsedMs: 1, chunksDone: 0, chunksTotal: 1, bytesWritten: 0, blocksReceived: 0, duplicateBlocks: 0, requestsSent: 0, rerequests: 0, chunksRejected: 0, intervalReceived: 0, intervalSeqSpan: 0, message: "" });
        for (let ms = 0; ms < 400 && reportsPerMs > 0; ms++) clock.setTimer(ms, () => { for (let k = 0; k < reportsPerMs; k++) chatty.send(report); });
        await clock.runUntil(() => false, 400);
        await server.stop();
        return heard;
      } finally {
        closeImage(image);
      }
    }
    const quiet = await dataBytes(0);
    // 20 reports a millisecond: 138 wire bytes each, 22 Mbit/s of a 100 Mbit/s group.
    const chatter = await dataBytes(20);
    // 100 a millisecond is 110 Mbit/s: only half the rate is given up to it.
    const flood = await dataBytes(100);
    expect(quiet).toBeGreaterThan(3e6);
    expect(chatter / quiet).toBeGreaterThan(0.7);
    expect(chatter / quiet).toBeLessThan(0.85);
    expect(flood / quiet).toBeGreaterThan(0.45);
    expect(flood / quiet).toBeLessThan(0.6);
  }, 120_000);

  test("a server through many transfers keeps the last MAX_SESSION_SUMMARIES of them, and counts them all", async () => {
    const image = openImage(imagePath);
    const clock = new VirtualClock();
    const lan = new MemoryLan(clock, LATENCY_MS);
    try {
      const server = virtualServer(image, clock, lan, { seed: 3, adaptiveRate: false, readChunk: fileChunks(image) });
      let ended = 0;
      server.on((e) => void (e.kind === "transfer-ended" && ended++));
      await server.start();
      const client = await lan.transport("198.18.0.9", PORT)(() => {});
      const transfers = MAX_SESSION_SUMMARIES + 6;
      const blockCount = blocksPerChunk(image.trailer.chunkBytes, blockBytesForMtu(1500));
      const bitmap = new Uint8Array(Math.ceil(blockCount / 8)).fill(0);
      bitmap[0] = 1;
      for (let k = 0; k < transfers; k++) {
        client.send(encodeRequest({ imageId: image.manifest.imageId, sender: 0x1001 + k }, k % image.trailer.dataChunkCount, blockCount, bitmap));
        // Longer than a transfer's idle time: the next request opens a new transfer.
        await clock.runUntil(() => false, clock.nowMs() + 5000);
      }
      expect(server.snapshot().blocksSent).toBe(transfers);
      const stats = await server.stop();
      expect(ended).toBe(transfers);
      expect(stats.sessionsEnded).toBe(transfers);
      expect(stats.sessions.length).toBe(MAX_SESSION_SUMMARIES);
      expect(stats.sessions.every((s) => s.blocksSent === 1 && s.clients === 1)).toBe(true);
    } finally {
      closeImage(image);
    }
  }, 60_000);

  test("a manifest refused for its signature is not fetched again: --give-up ends the load with exit 5's error", async () => {
    const image = openImage(imagePath);
    const clock = new VirtualClock();
    const lan = new MemoryLan(clock, LATENCY_MS);
    const giveUpMs = 60_000;
    try {
      const server = virtualServer(image, clock, lan, { seed: 5, readChunk: fileChunks(image) });
      let manifestFetches = 0;
      const failures: string[] = [];
      server.on((e) => {
        // A transfer that sent blocks is a fetch of the manifest (the only thing this client asks for).
        if (e.kind === "transfer-ended" && e.summary.blocksSent > 0) manifestFetches++;
        if (e.kind === "client-failed") failures.push(e.message);
      });
      await server.start();
      const key = loadPublicKey(generateKeyPair().publicPem, "other.pub");
      const loader = new Loader(
        { group: GROUP, port: PORT, publicKey: key, keyPath: "other.pub", imageId: null, giveUpMs, bufferBytes: 2 << 20, requestWindowChunks: 4, seed: 9 },
        { clock, openTransport: lan.transport("198.18.0.20", PORT), sink: new TargetSink({ target: join(dir, "refused.img"), freeMode: "skip", workers: 0 }) },
      );
      let failure: unknown = null;
      const run = loader.run().catch((e) => void (failure = e));
      await clock.runUntil(() => failure !== null, 4 * giveUpMs);
      await run;
      // The failure report reaches the server although the client had dropped it.
      await clock.runUntil(() => failures.length > 0, clock.nowMs() + 1000);
      await server.stop();
      expect(failures.length).toBe(1);
      expect(failures[0]).toContain("is not signed, but a key was given");
      // Before: each refusal set the server aside for a while, then fetched its manifest again,
      // which counted as progress, so a wrong key never ended the load.
      expect(failure).toBeInstanceOf(DiscusError);
      expect((failure as DiscusError).kind).toBe("signature");
      expect((failure as DiscusError).message).toContain("no other server offered a usable image");
      expect(clock.nowMs()).toBeGreaterThanOrEqual(giveUpMs);
      expect(clock.nowMs()).toBeLessThan(2 * giveUpMs);
      expect(manifestFetches).toBe(1);
    } finally {
      closeImage(image);
    }
  }, 120_000);
});
