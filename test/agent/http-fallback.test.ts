// The agent's HTTP fallback on a real LAN of namespaces: multicast to the node is dropped by
// nftables (as a switch with IGMP snooping and no querier drops it), so no announce arrives; the
// agent's load (src/agent/fallback.ts) waits ANNOUNCE_WAIT_MS, says so, and loads over HTTP:
// from `discus serve --http`, and from the control daemon's image route with the job's token
// (the URL from the boot script's discus.http word). Every disk must equal a local restore.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab, type Host, type Lab } from "../../scripts/lib/netlab.ts";
import { bootWords, startLabDaemon } from "../../scripts/lib/lab-daemon.ts";
import { MCAST_PORT } from "../../scripts/lib/mcast.ts";
import { ANNOUNCE_WAIT_MS } from "../../src/agent/fallback.ts";
import { cli, discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";

const TEST_TIMEOUT_MS = 180_000;
const HTTP_PORT = 8090;
const MAC = "52:54:00:aa:13:01";
const node = join(import.meta.dir, "fallback-node.ts");
const agentCall = join(import.meta.dir, "..", "daemon", "agent-call.ts");

interface NodeResult {
  via: string;
  note: string;
  said: string[];
  imageId: string;
  heard: boolean | null;
}

let dir = "";
let image = "";
let imageId = "";
let referenceSha = "";

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  mkdirSync(join(dir, "images"));
  const source = join(dir, "source.img");
  await $`head -c 24M /dev/urandom > ${source}`;
  image = join(dir, "images", "lab-os.dsc");
  await discusOk(["create", source, image, "--raw", "--chunk-size", "256K", "--quiet"]);
  imageId = (JSON.parse(await discusOk(["info", image, "--json"])) as { imageId: string }).imageId;
  await discusOk(["restore", image, join(dir, "reference.img"), "--quiet"]);
  referenceSha = await sha256File(join(dir, "reference.img"));
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

/** Drops every UDP datagram to `group` arriving at `host`: multicast never reaches it. */
async function dropGroup(lab: Lab, host: Host, group: string): Promise<void> {
  const script = `table inet fallbacktest {\n chain input {\n  type filter hook input priority -10; policy accept;\n  ip daddr ${group} meta l4proto udp counter drop\n }\n}\n`;
  const p = Bun.spawn(["ip", "netns", "exec", host.ns, "nft", "-f", "-"], { stdin: Buffer.from(script), stdout: "pipe", stderr: "pipe" });
  expect(await p.exited).toBe(0);
}

async function runNode(lab: Lab, host: Host, args: string[]): Promise<{ r: NodeResult; seconds: number }> {
  const started = performance.now();
  const out = await lab.exec(host, ["bun", node, ...args]);
  if (out.exitCode !== 0) throw new Error(`fallback node exited ${out.exitCode}: ${out.stderr}`);
  return { r: JSON.parse(out.stdout.trim().split("\n").pop()!) as NodeResult, seconds: (performance.now() - started) / 1000 };
}

/** Waits until `url` answers in `host`'s namespace. */
async function waitHttp(lab: Lab, host: Host, url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await lab.exec(host, ["curl", "-s", "-o", "/dev/null", "-r", "0-0", url])).exitCode === 0) return;
    await Bun.sleep(100);
  }
  throw new Error(`${url} never answered`);
}

describe("the agent's HTTP fallback", () => {
  test(
    "multicast dropped: no announce, the load says so after the wait and completes over HTTP from `discus serve --http`; undropped, it stays on multicast",
    async () => {
      await withLab({ clients: 1 }, async (lab) => {
        const client = lab.clients[0]!;
        const group = lab.group(0);
        const server = lab.spawn(lab.server, ["bun", cli, "serve", image, "--group", group, "--port", String(MCAST_PORT), "--iface", lab.server.address, "--http", String(HTTP_PORT)]);
        try {
          const url = `http://${lab.server.address}:${HTTP_PORT}/lab-os.dsc`;
          await waitHttp(lab, client, url);
          const args = (target: string) => ["direct", group, String(MCAST_PORT), client.address, url, target];

          const control = await runNode(lab, client, args(join(dir, "multicast.img")));
          expect(control.r.via).toBe("multicast");
          expect(await sha256File(join(dir, "multicast.img"))).toBe(referenceSha);

          await dropGroup(lab, client, group);
          const target = join(dir, "fallback.img");
          const { r, seconds } = await runNode(lab, client, args(target));
          expect(r.via).toBe("http");
          expect(r.said.join("\n")).toContain(`no multicast announce from group ${group}:${MCAST_PORT} within ${ANNOUNCE_WAIT_MS / 1000} s: falling back to HTTP`);
          expect(r.note).toContain("loaded over HTTP");
          expect(seconds).toBeGreaterThanOrEqual(ANNOUNCE_WAIT_MS / 1000);
          expect(r.imageId).toBe(imageId);
          expect(await sha256File(target)).toBe(referenceSha);
        } finally {
          server.kill("SIGTERM");
          await server.exited;
          await $`rm -f ${join(dir, "multicast.img")} ${join(dir, "fallback.img")}`;
        }
      });
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "from the control daemon: the boot script names discus.http, the image route serves the job's node with its token only, and the daemon's log says the node loaded over HTTP",
    async () => {
      await withLab({ clients: 2 }, async (lab) => {
        const [a, b] = lab.clients as [Host, Host];
        const state = join(dir, "state");
        const daemon = await startLabDaemon(lab, { state, images: join(dir, "images"), args: ["--port", String(MCAST_PORT)] });
        try {
          const fleet = (args: string[]) => lab.exec(a, ["bun", cli, ...args, "--state", state]);
          expect((await fleet(["node", "add", "node-a", "--mac", MAC, "--disk", "only", "--image", "lab-os"])).exitCode).toBe(0);
          expect((await fleet(["reload", "node-a"])).exitCode).toBe(0);
          const words = bootWords((await lab.exec(a, ["curl", "-s", `${daemon.url}/boot.ipxe?mac=${MAC}`])).stdout);
          const imageUrl = `${daemon.url}/images/lab-os.dsc`;
          expect(words.http).toBe(imageUrl);

          // Without a token, with another's, or for another image: refused before a byte is read.
          const get = async (url: string, token: string) => (await lab.exec(b, ["bun", agentCall, "GET", url, token])).stdout;
          expect(await get(`${imageUrl}?mac=${MAC}`, "")).toStartWith("401 ");
          expect(await get(`${imageUrl}?mac=${MAC}`, "x".repeat(43))).toStartWith("403 ");
          const other = await get(`${daemon.url}/images/other.dsc?mac=${MAC}`, words.token!);
          expect(other).toStartWith("403 ");
          expect(other).toContain("this job loads image lab-os, not other");

          // The booting node (the one whose boot script it was) cannot hear the session: HTTP.
          await dropGroup(lab, a, words.group!);
          const target = join(dir, "daemon.img");
          // The boot script above was this boot's; the node script asks again as a node would after a retry.
          const { r } = await runNode(lab, a, ["daemon", daemon.url, MAC, a.address, target]);
          expect(r.via).toBe("http");
          expect(r.heard).toBe(true);
          expect(await sha256File(target)).toBe(referenceSha);
          const events = (await fleet(["events", "--json"])).stdout;
          expect(events).toContain("written (loaded over HTTP");
        } finally {
          await daemon.stop();
          await $`rm -rf ${state} ${join(dir, "daemon.img")}`;
        }
      });
    },
    TEST_TIMEOUT_MS,
  );
});
