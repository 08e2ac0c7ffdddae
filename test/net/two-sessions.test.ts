// Several images served by one process (issue 10): two ServeSessions in one server process on two
// groups, real multicast between network namespaces; each client writes exactly its image's disk,
// and each session's events name its own clients (done once each, with progress reports before).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT, runClient } from "../../scripts/lib/mcast.ts";
import { discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";

const LINK_MBIT = 100;
const CLIENTS = 4;
const TEST_TIMEOUT_MS = 180_000;

let dir = "";
const images: { path: string; imageId: string; referenceSha: string }[] = [];

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  for (const [name, mib] of [["a", 24], ["b", 16]] as const) {
    const source = join(dir, `${name}.raw`);
    writeFileSync(source, randomBytes(mib << 20));
    const path = join(dir, `${name}.dsc`);
    await discusOk(["create", source, path, "--raw", "--quiet"]);
    const { imageId } = JSON.parse(await discusOk(["info", path, "--json"])) as { imageId: string };
    const reference = join(dir, `${name}.reference.img`);
    await discusOk(["restore", path, reference, "--quiet"]);
    images.push({ path, imageId, referenceSha: await sha256File(reference) });
  }
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

test(
  "two ServeSessions in one process, two groups: every client gets its own image, and each session tells of its own clients",
  async () => {
    await withLab({ clients: CLIENTS, linkMbit: LINK_MBIT }, async (lab) => {
      const groups = [lab.group(0), lab.group(1)];
      const helper = join(import.meta.dir, "serve-two.ts");
      const server = lab.spawn(lab.server, ["bun", helper, String(MCAST_PORT), lab.server.address, images[0]!.path, groups[0]!, images[1]!.path, groups[1]!]);
      const stdout = new Response(server.stdout).text();
      // Both sessions listen before any client starts.
      const reader = server.stderr.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toContain("serving");
      const results = await Promise.all(lab.clients.map((c, i) => runClient(lab, c, groups[i % 2]!, join(dir, `two-${i}.img`), ["--give-up", "30s"])));
      await Bun.sleep(500);
      server.kill("SIGTERM");
      expect(await server.exited).toBe(0);
      for (const r of results) expect({ host: r.host.name, code: r.exitCode, stderr: r.exitCode === 0 ? "" : r.stderr }).toEqual({ host: r.host.name, code: 0, stderr: "" });
      const shas = await Promise.all(results.map((r) => sha256File(r.target)));
      expect(shas).toEqual(results.map((_, i) => images[i % 2]!.referenceSha));
      const lines = (await stdout).trim().split("\n").map((l) => JSON.parse(l) as { session?: number; kind?: string; client?: string; imageId?: string });
      for (const session of [0, 1]) {
        const events = lines.filter((e) => e.session === session);
        expect(events[0]).toMatchObject({ kind: "started", imageId: images[session]!.imageId });
        const mine = lab.clients.filter((_, i) => i % 2 === session).map((c) => c.address).sort();
        const done = events.filter((e) => e.kind === "client-done").map((e) => e.client!.split(" ")[0]!);
        expect(done.sort()).toEqual(mine);
        const progressFrom = new Set(events.filter((e) => e.kind === "client-progress").map((e) => e.client!.split(" ")[0]!));
        expect([...progressFrom].sort()).toEqual(mine);
        expect(events.at(-1)).toMatchObject({ kind: "ended" });
      }
      await $`rm -f ${results.map((r) => r.target)}`;
    });
  },
  TEST_TIMEOUT_MS,
);
