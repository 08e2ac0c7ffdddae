// A hostile host on the test LAN (issue 9): it replays valid requests, floods garbage and
// valid-CRC packets, forges announcements and loss reports. The legit clients must still write
// exactly the disk a local restore writes, within 1.5x the time they take undisturbed (measured
// here, on the same LAN), and the server's memory must stay bounded. Also: a client that adopts a
// forged announcement must drop it, and either adopt the real server or give up (exit 7).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab, type Host, type Lab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT, runClient, startServer, type ClientResult } from "../../scripts/lib/mcast.ts";
import { gptComposite } from "../fixtures/composite.ts";
import { discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";

const LINK_MBIT = 100;
const CLIENTS = 3;
/** The bound: a hostile host may cost a legit client at most half again its time. */
const MAX_SLOWDOWN = 1.5;
/** The server's peak memory under attack: at most this much above its peak undisturbed. */
const MAX_EXTRA_SERVER_RSS_BYTES = 64 << 20;
/** Well-formed requests the hostile host replays per millisecond (the captured first request). */
const REPLAY_PER_MS = 2;
const TEST_TIMEOUT_MS = 180_000;

let dir = "";
let image = "";
let imageId = "";
let sourceBytes = 0;
let referenceSha = "";
let publicKey = "";

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  await discusOk(["keygen", join(dir, "site")]);
  publicKey = join(dir, "site.pub");
  image = join(dir, "gpt.dsc");
  await discusOk(["create", (await gptComposite()).path, image, "--quiet", "--sign", join(dir, "site.key")]);
  ({ imageId, sourceBytes } = JSON.parse(await discusOk(["info", image, "--json"])) as { imageId: string; sourceBytes: number });
  const reference = join(dir, "reference.img");
  await discusOk(["restore", image, reference, "--quiet"]);
  referenceSha = await sha256File(reference);
  await $`rm -f ${reference}`;
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

const forgerPath = join(import.meta.dir, "forger.ts");
function forge(lab: Lab, host: Host, group: string, mode: string, durationMs: number, perMs: number): Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe"> {
  return lab.spawn(host, ["bun", forgerPath, group, String(MCAST_PORT), host.address, imageId, mode, String(durationMs), String(perMs), image]);
}

/** Legit clients: two name the image and check its signature, one trusts whatever the group serves. */
function clientArgs(i: number): string[] {
  return i === 0 ? ["--give-up", "30s"] : ["--image-id", imageId, "--key", publicKey, "--give-up", "30s"];
}

interface Run {
  seconds: number[];
  serverPeakRssBytes: number;
  serverLog: string;
  results: ClientResult[];
}

/** One server, CLIENTS clients at once; every disk must equal the local restore. */
async function loadAll(lab: Lab, group: string, prefix: string): Promise<Run> {
  const server = startServer(lab, image, group, ["--rate", `${LINK_MBIT}mbit`]);
  const results = await Promise.all(lab.clients.map((c, i) => runClient(lab, c, group, join(dir, `${prefix}-${i}.img`), clientArgs(i), 120_000)));
  const serverPeakRssBytes = server.peakRssBytes();
  await Bun.sleep(300);
  const serverLog = server.log();
  await server.stop();
  for (const r of results) if (r.exitCode !== 0) throw new Error(`${prefix}: client ${r.host.name} exited ${r.exitCode}: ${r.stderr}`);
  const shas = await Promise.all(results.map((r) => sha256File(r.target)));
  expect(shas).toEqual(results.map(() => referenceSha));
  await $`rm -f ${results.map((r) => r.target)}`;
  return { seconds: results.map((r) => (r.endedMs - r.startedMs) / 1000), serverPeakRssBytes, serverLog, results };
}

describe("a hostile host on the LAN", () => {
  test(
    "replays, floods, forged announces and loss reports: every client finishes correctly within 1.5x its undisturbed time, server memory bounded",
    async () => {
      await withLab({ clients: CLIENTS, extras: 1, linkMbit: LINK_MBIT }, async (lab) => {
        const group = lab.group(0);
        const calm = await loadAll(lab, group, "calm");
        const hostile = forge(lab, lab.extras[0]!, group, "hostile", 120_000, REPLAY_PER_MS);
        await Bun.sleep(500);
        const attacked = await loadAll(lab, group, "attacked");
        hostile.kill();
        const figures = { calmSeconds: calm.seconds, attackedSeconds: attacked.seconds, calmServerMiB: calm.serverPeakRssBytes / 2 ** 20, attackedServerMiB: attacked.serverPeakRssBytes / 2 ** 20 };
        console.log(`hostile host: ${JSON.stringify(figures)}`);
        for (let i = 0; i < CLIENTS; i++) {
          if (attacked.seconds[i]! > MAX_SLOWDOWN * calm.seconds[i]!) throw new Error(`client ${i} took ${attacked.seconds[i]!.toFixed(1)} s under attack, ${calm.seconds[i]!.toFixed(1)} s undisturbed`);
        }
        expect(attacked.serverPeakRssBytes).toBeLessThan(calm.serverPeakRssBytes + MAX_EXTRA_SERVER_RSS_BYTES);
        // The attack was real: the replayed requests and the forged announces reached the clients.
        const stats = attacked.results.map((r) => r.stats!);
        expect(stats.reduce((n, s) => n + s.packetsDropped.foreignSource + s.packetsDropped.field + s.packetsDropped.otherImage, 0)).toBeGreaterThan(0);
        expect(stats.reduce((n, s) => n + s.packetsDropped.crc + s.packetsDropped.magic + s.packetsDropped.short, 0)).toBeGreaterThan(0);
        for (const s of stats) expect(s.peakRssBytes).toBeLessThan(256 * 2 ** 20);
        // Forged loss reports never pulled the rate below half the ceiling.
        const rates = [...attacked.serverLog.matchAll(/-> ([\d.]+) Mbit\/s/g)].map((m) => Number(m[1]));
        for (const r of rates) expect(r).toBeGreaterThanOrEqual(LINK_MBIT / 2);
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a forged announce with the wrong manifest digest and no real server: the client gives up with exit 7, writing nothing",
    async () => {
      await withLab({ clients: 1, extras: 1 }, async (lab) => {
        const group = lab.group(0);
        const forger = forge(lab, lab.extras[0]!, group, "announce", 30_000, 0.01);
        const target = join(dir, "forged-only.img");
        const r = await runClient(lab, lab.clients[0]!, group, target, ["--image-id", imageId, "--give-up", "4s"], 30_000);
        forger.kill();
        expect(r.exitCode).toBe(7);
        expect(r.stderr).toContain("no server delivered a manifest matching its announcement");
        expect(r.endedMs - r.startedMs).toBeLessThan(15_000);
        expect(existsSync(target)).toBe(false);
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a forged announce first, the real server 3 s later: the client drops the forger, adopts the real one and finishes",
    async () => {
      await withLab({ clients: 1, extras: 1, linkMbit: LINK_MBIT }, async (lab) => {
        const group = lab.group(0);
        const forger = forge(lab, lab.extras[0]!, group, "announce", 60_000, 0.01);
        // An existing target of the image's size: a forged announce of a larger disk must not make
        // the client refuse it before the real server's manifest says how large the disk is.
        const target = join(dir, "forged-first.img");
        await $`truncate -s ${sourceBytes} ${target}`;
        const running = runClient(lab, lab.clients[0]!, group, target, ["--give-up", "20s"], 60_000);
        await Bun.sleep(3000);
        const server = startServer(lab, image, group, ["--rate", `${LINK_MBIT}mbit`]);
        const r = await running;
        forger.kill();
        await server.stop();
        if (r.exitCode !== 0) throw new Error(`client exited ${r.exitCode}: ${r.stderr}`);
        expect(await sha256File(target)).toBe(referenceSha);
        const s = r.stats!;
        expect(s.imageId).toBe(imageId);
        expect(s.serversDropped).toBeGreaterThanOrEqual(1);
        console.log(`forged announce first: client done in ${((r.endedMs - r.startedMs) / 1000).toFixed(1)} s, ${s.serversDropped} servers dropped, peak ${(s.peakRssBytes / 2 ** 20).toFixed(0)} MiB, image ${statSync(target).size} bytes`);
        expect(s.peakRssBytes).toBeLessThan(256 * 2 ** 20);
        await $`rm -f ${target}`;
      });
    },
    TEST_TIMEOUT_MS,
  );
});
