// Batched sending and link awareness for real (issue 13): `discus serve` in a network namespace
// sends its blocks with sendmmsg and UDP GSO over veth links with jumbo frames, and two clients
// that lose 3 % of what arrives (nftables numgen) still write exactly the disk a local restore
// writes: each GSO message reached them as ordinary datagrams. Without --mtu the server takes the
// link's MTU (9000 here), and on a virtual link it says the speed is unknown and starts at 100 Mbit/s.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab, type Host, type Lab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT, runClient } from "../../scripts/lib/mcast.ts";
import type { ServeStats } from "../../src/server/session.ts";
import { cli, FIXTURE_TIMEOUT_MS, rawImageFixture, sha256File, tmpDir } from "../helpers.ts";

const JUMBO_MTU = 9000;
const TEST_TIMEOUT_MS = 240_000;

let dir = "";
let image = "";
let referenceSha = "";

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  ({ image, referenceSha } = await rawImageFixture(dir, 24, 768));
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

/** Jumbo frames on every host's link and its switch port (the bridge follows its ports). */
async function setJumbo(lab: Lab): Promise<void> {
  const hosts: Host[] = [lab.server, ...lab.clients];
  for (const h of hosts) {
    const port = `p${h.ns.slice(lab.id.length)}`;
    await $`ip -n ${lab.switchNs} link set ${port} mtu ${JUMBO_MTU}`;
    await $`ip -n ${h.ns} link set ${h.iface} mtu ${JUMBO_MTU}`;
  }
}

describe("batched sends on a lab LAN", () => {
  test(
    "jumbo-frame link, 2 clients with 3 % loss: identical disks, blocks sized from the link MTU, bursts batched",
    async () => {
      await withLab({ clients: 2, linkMbit: null, lossPercent: [3, 3] }, async (lab) => {
        await setJumbo(lab);
        const group = lab.group(0);
        const server = lab.spawn(lab.server, ["bun", cli, "serve", image, "--group", group, "--port", String(MCAST_PORT), "--iface", lab.server.address, "--rate", "300mbit", "--idle-exit", "3s", "--json"]);
        const serverOut = Promise.all([new Response(server.stdout).text(), new Response(server.stderr).text()]);
        await Bun.sleep(300);
        const targets = lab.clients.map((_, i) => join(dir, `lab-${i}.img`));
        const results = await Promise.all(lab.clients.map((c, i) => runClient(lab, c, group, targets[i]!, ["--give-up", "60s"], 180_000)));
        for (const r of results) if (r.exitCode !== 0) throw new Error(`${r.host.name} exited ${r.exitCode}: ${r.stderr}`);
        expect(await Promise.all(targets.map((t) => sha256File(t)))).toEqual([referenceSha, referenceSha]);
        expect(await server.exited).toBe(0);
        const [stdout, stderr] = await serverOut;
        // The MTU came from the link; the speed of a veth is not believed.
        expect(stderr).toContain(`MTU ${JUMBO_MTU} (the link's)`);
        expect(stderr).toMatch(/link speed unknown \(a virtual link\): --rate/);
        const blockBytes = Number(/(\d+)-byte blocks/.exec(stderr)?.[1]);
        expect(blockBytes).toBeGreaterThan(8800);
        // Bursts went out as batches of blocks, and the clients lost some (so repairs were asked for).
        const stats = JSON.parse(stdout) as ServeStats;
        expect(stats.sends.blocks / stats.sends.bursts).toBeGreaterThan(3);
        expect(results.every((r) => r.stats!.rerequests > 0)).toBe(true);
        await $`rm -f ${targets}`;
      });
    },
    TEST_TIMEOUT_MS,
  );
});
