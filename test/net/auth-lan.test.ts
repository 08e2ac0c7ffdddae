// Authenticated control packets on a real LAN (issue 11): multicast between network namespaces.
// A forger without the session key sends what stalls the queue and steers the rate of an open
// server (requests for every block of every chunk, 100 %-loss reports, replays of a client's
// request); an open server obeys it, a keyed server changes nothing and counts the drops. Clients
// with the key load correctly under the attack; clients with another key or none give up in time,
// saying why.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab, type Host, type Lab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT, runClient, startServer, type RunningServer } from "../../scripts/lib/mcast.ts";
import { discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";

const LINK_MBIT = 100;
/** How long the forger runs against a server with no client: several control steps and transfers. */
const ATTACK_ALONE_MS = 5000;
/** Full requests the forger sends per millisecond (one chunk each, in turn). */
const REQUESTS_PER_MS = 0.2;
/** Slack for a client under attack against its calm time (timing on 2 shared cores). */
const MAX_SLOWDOWN = 1.5;
const GIVE_UP = "5s";
const TEST_TIMEOUT_MS = 240_000;

let dir = "";
let image = "";
let imageId = "";
let referenceSha = "";
let keyFile = "";
let wrongKeyFile = "";

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  // 24 MiB of random data: 24 one-MiB chunks, a couple of seconds at 100 Mbit/s.
  writeFileSync(join(dir, "source.img"), randomBytes(24 << 20));
  image = join(dir, "disk.dsc");
  await discusOk(["create", join(dir, "source.img"), image, "--raw", "--quiet"]);
  ({ imageId } = JSON.parse(await discusOk(["info", image, "--json"])) as { imageId: string });
  await discusOk(["restore", image, join(dir, "reference.img"), "--quiet"]);
  referenceSha = await sha256File(join(dir, "reference.img"));
  keyFile = join(dir, "session.key");
  wrongKeyFile = join(dir, "wrong.key");
  writeFileSync(keyFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
  writeFileSync(wrongKeyFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

const forgerPath = join(import.meta.dir, "forger.ts");
function steer(lab: Lab, host: Host, group: string, durationMs: number): Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe"> {
  return lab.spawn(host, ["bun", forgerPath, group, String(MCAST_PORT), host.address, imageId, "steer", String(durationMs), String(REQUESTS_PER_MS), image]);
}

/** What the server's log says it did: blocks sent over all transfers, rate changes, drops told. */
function figures(log: string): { blocksSent: number; lowestMbit: number; rateChanges: number; unauthenticated: number; replayed: number } {
  const blocksSent = [...log.matchAll(/MB in (\d+) blocks/g)].reduce((n, m) => n + Number(m[1]), 0);
  const rates = [...log.matchAll(/-> ([\d.]+) Mbit\/s/g)].map((m) => Number(m[1]));
  const drops = [...log.matchAll(/dropped control packets: (\d+) unauthenticated, (\d+) bad tag, (\d+) stale epoch, (\d+) replayed/g)];
  return {
    blocksSent,
    lowestMbit: Math.min(LINK_MBIT, ...rates),
    rateChanges: rates.length,
    unauthenticated: drops.reduce((n, m) => n + Number(m[1]), 0),
    replayed: drops.reduce((n, m) => n + Number(m[4]), 0),
  };
}

async function attackAlone(lab: Lab, group: string, serverArgs: string[]): Promise<ReturnType<typeof figures> & { forged: number }> {
  const server = startServer(lab, image, group, ["--rate", `${LINK_MBIT}mbit`, ...serverArgs]);
  await Bun.sleep(300);
  const forger = steer(lab, lab.extras[0]!, group, ATTACK_ALONE_MS);
  const sent = JSON.parse(await new Response(forger.stdout).text()) as Record<string, number>;
  await forger.exited;
  await Bun.sleep(300);
  await server.stop(); // tells the drops not yet told
  return { ...figures(server.log()), forged: (sent.fullRequest ?? 0) + (sent.lossReport ?? 0) };
}

async function loadWithKey(lab: Lab, group: string, prefix: string): Promise<number[]> {
  const rs = await Promise.all([0, 1].map((i) => runClient(lab, lab.clients[i]!, group, join(dir, `${prefix}-${i}.img`), ["--image-id", imageId, "--auth-key-file", keyFile, "--give-up", "30s"], 120_000)));
  for (const r of rs) if (r.exitCode !== 0) throw new Error(`${prefix}: client ${r.host.name} exited ${r.exitCode}: ${r.stderr}`);
  for (const r of rs) expect(await sha256File(r.target)).toBe(referenceSha);
  await $`rm -f ${rs.map((r) => r.target)}`;
  return rs.map((r) => (r.endedMs - r.startedMs) / 1000);
}

describe("authenticated control packets on a LAN", () => {
  test(
    "a forger without the key steers an open server, and changes nothing on a keyed one, which counts its packets",
    async () => {
      await withLab({ clients: 0, extras: 1, linkMbit: LINK_MBIT }, async (lab) => {
        const group = lab.group(0);
        const open = await attackAlone(lab, group, []);
        const keyed = await attackAlone(lab, group, ["--auth-key-file", keyFile]);
        console.log(`forger alone for ${ATTACK_ALONE_MS} ms: open ${JSON.stringify(open)}, keyed ${JSON.stringify(keyed)}`);
        // Open: the forged requests made it send, and the forged reports pulled the rate down.
        expect(open.blocksSent).toBeGreaterThan(1000);
        expect(open.lowestMbit).toBeLessThan(LINK_MBIT / 2);
        // Keyed: not one block, not one rate step; every forged packet dropped and counted.
        expect(keyed.blocksSent).toBe(0);
        expect(keyed.rateChanges).toBe(0);
        // Every forged request and report that reached it was counted (a few may be lost on the way).
        expect(keyed.forged).toBeGreaterThan(500);
        expect(keyed.unauthenticated).toBeGreaterThanOrEqual(0.9 * keyed.forged);
        expect(keyed.unauthenticated).toBeLessThanOrEqual(keyed.forged);
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "under the same attack, clients with the key load correctly; another key or none gives up in time, naming the key",
    async () => {
      await withLab({ clients: 4, extras: 1, linkMbit: LINK_MBIT }, async (lab) => {
        const group = lab.group(0);
        const server: RunningServer = startServer(lab, image, group, ["--rate", `${LINK_MBIT}mbit`, "--auth-key-file", keyFile]);
        try {
          const calm = await loadWithKey(lab, group, "calm");
          const forger = steer(lab, lab.extras[0]!, group, 120_000);
          await Bun.sleep(500);
          const [attacked, wrong, none] = await Promise.all([
            loadWithKey(lab, group, "attacked"),
            runClient(lab, lab.clients[2]!, group, join(dir, "wrong.img"), ["--auth-key-file", wrongKeyFile, "--give-up", GIVE_UP], 60_000),
            runClient(lab, lab.clients[3]!, group, join(dir, "none.img"), ["--give-up", GIVE_UP], 60_000),
          ]);
          forger.kill();
          console.log(`keyed server: calm ${JSON.stringify(calm)} s, under attack ${JSON.stringify(attacked)} s; wrong key ${((wrong.endedMs - wrong.startedMs) / 1000).toFixed(1)} s, none ${((none.endedMs - none.startedMs) / 1000).toFixed(1)} s`);
          for (let i = 0; i < calm.length; i++) expect(attacked[i]!).toBeLessThan(MAX_SLOWDOWN * calm[i]! + 1);
          expect(wrong.exitCode).toBe(7);
          expect(wrong.stderr).toContain("with another session key");
          expect(wrong.stderr).toContain("--auth-key-file");
          expect(none.exitCode).toBe(7);
          expect(none.stderr).toContain("only to clients with its session key");
          for (const r of [wrong, none]) expect(r.endedMs - r.startedMs).toBeLessThan(20_000);
        } finally {
          await server.stop();
        }
        const f = figures(server.log());
        console.log(`keyed server under attack: ${JSON.stringify(f)}`);
        expect(f.lowestMbit).toBeGreaterThanOrEqual(LINK_MBIT / 2);
        expect(f.unauthenticated).toBeGreaterThan(0);
        // The captured (genuine, tagged) request replayed: refused every time but the first.
        expect(f.replayed).toBeGreaterThan(0);
      });
    },
    TEST_TIMEOUT_MS,
  );
});
