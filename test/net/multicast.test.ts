// `discus serve` / `discus load` for real: multicast across network namespaces joined by a bridge,
// 100 Mbit/s links (tc tbf), loss from nftables, a server killed mid-transfer, forgers. Every disk
// a client writes must equal the disk a local `discus restore` writes from the same image.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, rmSync, statSync, writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT, runClient, startServer, type ClientResult } from "../../scripts/lib/mcast.ts";
import { gptComposite, mbrComposite } from "../fixtures/composite.ts";
import { checkPartition, discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";

const LINK_MBIT = 100;
const TEST_TIMEOUT_MS = 240_000;

interface Served {
  image: string;
  imageId: string;
  imageBytes: number;
  referenceSha: string;
}

let dir = "";
let gpt: Served;
let mbr: Served;
let publicKey = "";
let otherKey = "";
let gptDisk: Awaited<ReturnType<typeof gptComposite>>;

async function prepare(source: string, name: string, sign: string | null): Promise<Served> {
  const image = join(dir, `${name}.dsc`);
  await discusOk(["create", source, image, "--quiet", ...(sign ? ["--sign", sign] : [])]);
  const info = JSON.parse(await discusOk(["info", image, "--json"])) as { imageId: string };
  const reference = join(dir, `${name}.reference.img`);
  await discusOk(["restore", image, reference, "--quiet"]);
  const served = { image, imageId: info.imageId, imageBytes: statSync(image).size, referenceSha: await sha256File(reference) };
  await $`rm -f ${reference}`;
  return served;
}

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  await discusOk(["keygen", join(dir, "site")]);
  await discusOk(["keygen", join(dir, "other")]);
  publicKey = join(dir, "site.pub");
  otherKey = join(dir, "other.pub");
  gptDisk = await gptComposite();
  gpt = await prepare(gptDisk.path, "gpt", join(dir, "site.key"));
  mbr = await prepare((await mbrComposite()).path, "mbr", null);
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

/** Each client's target path in this test's own folder. */
function targets(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => join(dir, `${prefix}-${i}.img`));
}

/** Every client succeeded and wrote exactly the reference disk; returns their statistics. */
async function expectIdentical(results: ClientResult[], served: Served): Promise<NonNullable<ClientResult["stats"]>[]> {
  for (const r of results) {
    if (r.exitCode !== 0) throw new Error(`client ${r.host.name} exited ${r.exitCode}: ${r.stderr}`);
  }
  const shas = await Promise.all(results.map((r) => sha256File(r.target)));
  expect(shas).toEqual(results.map(() => served.referenceSha));
  const stats = results.map((r) => r.stats!);
  for (const s of stats) expect(s.imageId).toBe(served.imageId);
  await $`rm -f ${results.map((r) => r.target)}`;
  return stats;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

describe("multicast", () => {
  test(
    "1 server and 8 clients at 100 Mbit/s: every disk equals the local restore, signature verified, memory bounded",
    async () => {
      await withLab({ clients: 8, linkMbit: LINK_MBIT }, async (lab) => {
        const group = lab.group(0);
        const server = startServer(lab, gpt.image, group, ["--rate", `${LINK_MBIT}mbit`]);
        const paths = targets("eight", 8);
        // One target kept for the filesystem checkers below.
        const keep = join(dir, "eight-checked.img");
        const results = await Promise.all(lab.clients.map((c, i) => runClient(lab, c, group, i === 0 ? keep : paths[i]!, ["--key", publicKey, "--give-up", "30s"])));
        for (const p of gptDisk.partitions) {
          const check = await checkPartition(keep, p);
          expect({ fs: p.fs, code: check.checkerCode }).toEqual({ fs: p.fs, code: 0 });
        }
        const stats = await expectIdentical(results, gpt);
        for (const s of stats) {
          expect(s.signature).toBe("verified");
          expect(s.chunksRejected).toBe(0);
          expect(s.peakRssBytes).toBeLessThan(256 * 2 ** 20);
          expect(s.writtenBytes).toBeGreaterThan(0);
        }
        await Bun.sleep(500);
        const log = server.log();
        await server.stop();
        // One line per client, and the session's summary once it ends.
        expect(log.match(/ done: /g)?.length).toBe(8);
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "5% random loss towards every client: all finish with identical disks",
    async () => {
      await withLab({ clients: 8, linkMbit: LINK_MBIT, lossPercent: Array(8).fill(5) }, async (lab) => {
        const group = lab.group(0);
        const server = startServer(lab, gpt.image, group, ["--rate", `${LINK_MBIT}mbit`]);
        const results = await Promise.all(lab.clients.map((c, i) => runClient(lab, c, group, targets("lossy", 8)[i]!, ["--give-up", "30s"])));
        await server.stop();
        const stats = await expectIdentical(results, gpt);
        // The loss was real: every client had to ask again.
        for (const s of stats) expect(s.rerequests).toBeGreaterThan(0);
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a late joiner that starts while the others are under way finishes correctly",
    async () => {
      await withLab({ clients: 4, linkMbit: LINK_MBIT }, async (lab) => {
        const group = lab.group(0);
        const server = startServer(lab, gpt.image, group);
        const paths = targets("late", 4);
        const early = lab.clients.slice(0, 3).map((c, i) => runClient(lab, c, group, paths[i]!));
        // About half of the link time of the image (64 MiB at 100 Mbit/s: ~5.4 s).
        const linkSeconds = (gpt.imageBytes * 8) / (LINK_MBIT * 1e6);
        await Bun.sleep((linkSeconds / 2) * 1000);
        const late = runClient(lab, lab.clients[3]!, group, paths[3]!);
        const results = await Promise.all([...early, late]);
        await server.stop();
        const lateResult = results[3]!;
        // It really joined mid-transfer: it started before any early client had finished.
        for (const r of results.slice(0, 3)) expect(r.endedMs).toBeGreaterThan(lateResult.startedMs);
        await expectIdentical(results, gpt);
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "the server killed mid-transfer and started again: every client finishes correctly",
    async () => {
      await withLab({ clients: 4, linkMbit: LINK_MBIT }, async (lab) => {
        const group = lab.group(0);
        const first = startServer(lab, gpt.image, group);
        const files = targets("restart", 4);
        for (const f of files) rmSync(f, { force: true });
        const running = lab.clients.map((c, i) => runClient(lab, c, group, files[i]!, ["--give-up", "30s"]));
        // Kill it mid-transfer: once every client has proven the manifest (it then creates its
        // target file) and has had a moment to write, however slow a busy machine makes the start.
        for (let waitedMs = 0; !files.every((f) => existsSync(f)); waitedMs += 100) {
          if (waitedMs > 60_000) throw new Error("the clients never started writing");
          await Bun.sleep(100);
        }
        await Bun.sleep(1000);
        const killedMs = performance.now();
        await first.stop("SIGKILL");
        await Bun.sleep(1500);
        const second = startServer(lab, gpt.image, group);
        const results = await Promise.all(running);
        await second.stop();
        for (const r of results) expect(r.endedMs).toBeGreaterThan(killedMs);
        const stats = await expectIdentical(results, gpt);
        for (const s of stats) expect(s.serverRestarts).toBeGreaterThanOrEqual(1);
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "garbage and forged blocks on the group: nothing wrong reaches a disk, and the rejections are counted",
    async () => {
      await withLab({ clients: 4, extras: 1, linkMbit: LINK_MBIT }, async (lab) => {
        const group = lab.group(0);
        const server = startServer(lab, gpt.image, group);
        const forger = join(import.meta.dir, "forger.ts");
        const forge = (host: typeof lab.server, mode: string, rate: string) =>
          lab.spawn(host, ["bun", forger, group, String(MCAST_PORT), host.address, gpt.imageId, mode, "15000", rate]);
        // From a foreign host: garbage, and well-formed blocks with the right image id.
        const forgers = [forge(lab.extras[0]!, "garbage", "1"), forge(lab.extras[0]!, "forged", "1"),
          // From the server's own address and port: only the chunk digests can catch these.
          forge(lab.server, "forged", "0.2")];
        const results = await Promise.all(lab.clients.map((c, i) => runClient(lab, c, group, targets("forged", 4)[i]!, ["--give-up", "30s"])));
        for (const f of forgers) f.kill();
        await server.stop();
        const stats = await expectIdentical(results, gpt);
        expect(sum(stats.map((s) => s.chunksRejected + s.manifestRejected))).toBeGreaterThan(0);
        expect(sum(stats.map((s) => s.packetsDropped.foreignSource))).toBeGreaterThan(0);
        expect(sum(stats.map((s) => s.packetsDropped.crc + s.packetsDropped.magic + s.packetsDropped.short))).toBeGreaterThan(0);
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "two images on two groups at once: each client gets its own",
    async () => {
      await withLab({ clients: 4, linkMbit: LINK_MBIT }, async (lab) => {
        const servers = [startServer(lab, gpt.image, lab.group(0)), startServer(lab, mbr.image, lab.group(1))];
        const plan = lab.clients.map((c, i) => ({ c, served: i % 2 === 0 ? gpt : mbr, group: lab.group(i % 2) }));
        const results = await Promise.all(plan.map((p, i) => runClient(lab, p.c, p.group, join(dir, `two-${i}.img`))));
        for (const s of servers) await s.stop();
        await expectIdentical(results.filter((_, i) => i % 2 === 0), gpt);
        await expectIdentical(results.filter((_, i) => i % 2 === 1), mbr);
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "refusals: no server (exit 7), a target too small (exit 4) or a wrong key (exit 5) write nothing",
    async () => {
      await withLab({ clients: 1 }, async (lab) => {
        const c = lab.clients[0]!;
        const group = lab.group(0);
        const absent = join(dir, "no-server.img");
        const silent = await runClient(lab, c, group, absent, ["--give-up", "2s"]);
        expect(silent.exitCode).toBe(7);
        expect(silent.stderr).toContain("no discus server answered");
        expect(existsSync(absent)).toBe(false);

        const server = startServer(lab, gpt.image, group);
        const small = join(dir, "small.img");
        writeFileSync(small, new Uint8Array(1 << 20).fill(0x5a));
        const tooSmall = await runClient(lab, c, group, small, ["--give-up", "10s"]);
        expect(tooSmall.exitCode).toBe(4);
        expect(tooSmall.stderr).toContain("the image needs");
        expect(readFileSync(small).every((b) => b === 0x5a)).toBe(true);

        const wrongKey = join(dir, "wrong-key.img");
        const refused = await runClient(lab, c, group, wrongKey, ["--key", otherKey, "--give-up", "10s"]);
        expect(refused.exitCode).toBe(5);
        expect(existsSync(wrongKey)).toBe(false);
        await server.stop();
      });
    },
    TEST_TIMEOUT_MS,
  );
});
