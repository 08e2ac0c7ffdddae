// The simulator (scripts/sim) held honest: it runs the real ServeSession and Loader, so these
// check that a run is reproducible, that every simulated disk gets every chunk exactly once (and
// only chunks that pass the real worker's digest checks), that loss costs re-requests, and that
// the hostile host's traffic does not stop a load. Small image, few clients: a few seconds each.
import { describe, expect, test } from "bun:test";
import { simImage, loadChunks } from "../scripts/lib/sim/image.ts";
import { simulate, type SimConfig } from "../scripts/lib/sim/run.ts";
import { summarize } from "../scripts/lib/sim/summary.ts";
import { Scheduler } from "../scripts/lib/sim/scheduler.ts";
import { CorePool, hostClock, Lan } from "../scripts/lib/sim/lan.ts";
import { MEASURED_CPU } from "../scripts/lib/sim/cpu.ts";
import { applyChunk, applyJobFor } from "../src/target/apply.ts";

const spec = { diskMiB: 8, chunkKiB: 64, seed: 1 };
const img = loadChunks((await simImage(spec)).imagePath);
const t = img.image.trailer;
const imageBytes = (t.dataChunkCount + t.manifestPartCount) * t.chunkBytes;

const base: SimConfig = {
  seed: 7, clients: 3, linkBitsPerSecond: 100e6, mtuBytes: 1500, lossProbability: 0, latencyMs: 0.05, latencySpreadMs: 0.2,
  slowClientBitsPerSecond: null, skew: "simultaneous", skewWindowMs: 0, restart: null, hostile: false,
  diskBytesPerSecond: 200e6, dirtyBackgroundBytes: 256 << 20, clientCores: 2, cpu: MEASURED_CPU, sharedCores: null, hostReceiveMs: 0, hostSendMs: 0,
  bufferBytes: 2 << 20, windowChunks: 4, giveUpMs: 60_000, limitMs: 120_000,
};
const run = async (c: Partial<SimConfig>) => summarize(await simulate({ ...base, ...c }, img.image, img.chunks, img.allChunks), imageBytes);

describe("sim", () => {
  test("the same seed gives the same JSON; another seed another run", async () => {
    const a = JSON.stringify(await run({ clients: 4, lossProbability: 0.02 }));
    const b = JSON.stringify(await run({ clients: 4, lossProbability: 0.02 }));
    const c = JSON.stringify(await run({ clients: 4, lossProbability: 0.02, seed: 8 }));
    expect(b).toBe(a);
    expect(c).not.toBe(a);
  });

  test("10 clients: every disk gets every chunk exactly once, and the chunks pass the real digest checks", async () => {
    const r = await simulate({ ...base, clients: 10, lossProbability: 0.01 }, img.image, img.chunks, img.allChunks);
    expect(r.clients.map((o) => o.error)).toEqual(Array(10).fill(null));
    for (const o of r.clients) {
      expect([...o.sink.applied]).toEqual(Array(t.dataChunkCount).fill(1));
      expect(o.sink.finished).toBe(true);
      expect(o.sink.closedFailed).toBe(false);
    }
    // What the sinks compare against is the image itself, valid by the worker's own checks.
    const m = img.image.manifest;
    for (let i = 0; i < t.dataChunkCount; i++) {
      const job = applyJobFor(m, i, img.chunks.containers[i]!, "sim", { fd: -1, isBlockDevice: false, freeMode: "skip", dryRun: true });
      expect(() => applyChunk(job)).not.toThrow();
    }
    const s = summarize(r, imageBytes);
    expect(s.everyChunkOnce).toBe(true);
    expect(s.sentOverImage).toBeGreaterThanOrEqual(1);
  });

  test("loss costs re-requests; no loss and one client costs none", async () => {
    const lossy = await run({ clients: 3, lossProbability: 0.05 });
    expect(lossy.clientsDone).toBe(3);
    expect(lossy.rerequestsPerClient).toBeGreaterThan(0);
    expect(lossy.sentOverImage).toBeGreaterThan(1);
    const clean = await run({ clients: 1 });
    expect(clean.clientsDone).toBe(1);
    expect(clean.rerequestsPerClient).toBe(0);
    expect(clean.duplicateFraction).toBe(0);
  });

  test("a hostile host (replays, forged announces, blocks and loss reports) does not stop a load", async () => {
    const r = await simulate({ ...base, clients: 3, hostile: true }, img.image, img.chunks, img.allChunks);
    const s = summarize(r, imageBytes);
    expect(s.failures).toEqual([]);
    expect(s.clientsDone).toBe(3);
    expect(s.everyChunkOnce).toBe(true);
    for (const kind of ["announce", "replay", "block", "lossReport", "badChunk", "garbage"]) expect(r.hostileSent?.[kind] ?? 0).toBeGreaterThan(0);
  });

  test("heavy loss with 1 MiB chunks (four FEC groups): every client finishes, in seconds", async () => {
    // A group that lost more blocks than there are repair indices (64) once stalled a load for
    // good: the client kept asking for repairs it already held (netboot test, 30 % loss here).
    const big = loadChunks((await simImage({ diskMiB: 16, chunkKiB: 1024, seed: 1 })).imagePath);
    const bt = big.image.trailer;
    for (const seed of [2, 3]) {
      const r = await simulate({ ...base, seed, clients: 2, lossProbability: 0.3, bufferBytes: 8 << 20, giveUpMs: 20_000 }, big.image, big.chunks, big.allChunks);
      const s = summarize(r, (bt.dataChunkCount + bt.manifestPartCount) * bt.chunkBytes);
      expect({ seed, done: s.clientsDone, failures: s.failures }).toEqual({ seed, done: 2, failures: [] });
      expect(s.seconds).toBeLessThan(10);
    }
  });

  test("a server restart mid-load: every client still finishes", async () => {
    const r = await simulate({ ...base, clients: 3, restart: { atMs: 200, downMs: 500 } }, img.image, img.chunks, img.allChunks);
    const s = summarize(r, imageBytes);
    expect(s.clientsDone).toBe(3);
    expect(s.everyChunkOnce).toBe(true);
    // Two server lives, both sent blocks; every client saw the new epoch and waited out the gap.
    expect(r.serverStats.map((x) => x.sessions.reduce((a, y) => a + y.blocksSent, 0) > 0)).toEqual([true, true]);
    for (const o of r.clients) expect(o.stats!.serverRestarts).toBeGreaterThanOrEqual(1);
    expect(s.seconds).toBeGreaterThan(0.7);
  });

  test("a link serializes at its rate, adds its latency, and drops at the tail of a full queue", async () => {
    const clock = new Scheduler();
    const lan = new Lan(clock);
    const spec = { rateBitsPerSecond: 8e6, latencyMs: 1, queueBytes: 3000 };
    const a = lan.addHost({ address: "198.18.0.1", cpu: null, up: spec, down: spec, lossProbability: 0, seed: 1 });
    const b = lan.addHost({ address: "198.18.0.2", cpu: null, up: spec, down: spec, lossProbability: 0, seed: 2 });
    const heard: number[] = [];
    const ta = await lan.transport(a)(() => {});
    await lan.transport(b)(() => heard.push(clock.nowMs()));
    // 958 payload bytes are 1000 on the wire: 1 ms at 8 Mbit/s. The uplink holds three, not four.
    for (let i = 0; i < 4; i++) ta.send(new Uint8Array(958));
    await clock.run(() => false, 1000);
    expect(heard.length).toBe(3);
    expect(heard[0]).toBeCloseTo(1 + 1 + 1 + 1, 6); // up: 1 ms + 1 ms latency; down: 1 ms + 1 ms
    expect(heard[2]! - heard[0]!).toBeCloseTo(2, 6);
  });

  test("on a shared machine, packets queue for a core and a host's timers wait for its thread and a free core", async () => {
    const clock = new Scheduler();
    const lan = new Lan(clock);
    const fast = { rateBitsPerSecond: 8e9, latencyMs: 0, queueBytes: 1 << 20 };
    const cpu = { pool: new CorePool(1), receiveMs: 5, sendMs: 0 };
    const a = lan.addHost({ address: "198.18.0.1", cpu: null, up: fast, down: fast, lossProbability: 0, seed: 1 });
    const hosts = [2, 3].map((n) => lan.addHost({ address: `198.18.0.${n}`, cpu, up: fast, down: fast, lossProbability: 0, seed: n }));
    const heard: number[] = [];
    const ta = await lan.transport(a)(() => {});
    for (const h of hosts) await lan.transport(h)(() => heard.push(clock.nowMs()));
    ta.send(new Uint8Array(100));
    ta.send(new Uint8Array(100));
    let fired = -1;
    hostClock(clock, hosts[0]!).setTimer(1, () => (fired = clock.nowMs()));
    await clock.run(() => false, 1000);
    // Four packets on one 5 ms core, in arrival order; host 0's thread is busy until 15 ms with
    // its own two, and the one core until 20 ms with host 1's: its 1 ms timer runs at 20 ms.
    expect(heard.map((t) => Math.round(t))).toEqual([5, 10, 15, 20]);
    expect(Math.round(fired)).toBe(20);
  });
});
