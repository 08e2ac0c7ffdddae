// The daemon's sessions as child processes (issue 11, "choose by measurement"): one daemon serves
// two images at once as two `discus serve` children on two groups, and two nodes load their own
// image over them (sha256 against a local restore). Each child reads its session key from a 0600
// file under STATE/sessions/, removed when the session stops. A child killed while a job needs
// its image is started again, a bounded number of times a minute; after that the next boot of a
// node that needs it starts it again. A daemon that stops leaves no child and no key file, and
// one that starts removes the keys a killed one left.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab, type Host, type Lab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT, runClient } from "../../scripts/lib/mcast.ts";
import { bootWords, startLabDaemon, type LabDaemon } from "../../scripts/lib/lab-daemon.ts";
import { MAX_RESTARTS_PER_WINDOW } from "../../src/daemon/sessions.ts";
import { cli, discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";
import { alive, groupOf, serveChildren, waitUntil, type ServeChild } from "./serve-children.ts";

const TEST_TIMEOUT_MS = 300_000;
/** A child starts, or stops, within this (generously: 2 shared cores). */
const CHILD_BOUND_MS = 15_000;
const agentCall = join(import.meta.dir, "agent-call.ts");
const IMAGES = ["os-one", "os-two"] as const;
const MACS = ["52:54:00:5e:55:01", "52:54:00:5e:55:02"] as const;

let dir = "";
const referenceSha: Record<string, string> = {};

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  mkdirSync(join(dir, "images"));
  for (const [i, name] of IMAGES.entries()) {
    const source = join(dir, `${name}.img`);
    await $`head -c ${12 + 4 * i}M /dev/urandom > ${source}`;
    await discusOk(["create", source, join(dir, "images", `${name}.dsc`), "--raw", "--chunk-size", "256K", "--quiet"]);
    await discusOk(["restore", join(dir, "images", `${name}.dsc`), join(dir, `${name}.ref`), "--quiet"]);
    referenceSha[name] = await sha256File(join(dir, `${name}.ref`));
  }
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

async function call(lab: Lab, host: Host, url: string): Promise<string> {
  const r = await lab.exec(host, ["bun", agentCall, "GET", url, ""]);
  return r.stdout.slice(r.stdout.indexOf(" ") + 1);
}

function startDaemon(lab: Lab, state: string): Promise<LabDaemon> {
  return startLabDaemon(lab, { state, images: join(dir, "images"), args: ["--port", String(MCAST_PORT)] });
}

const childOn = (pid: number, group: string): ServeChild | undefined => serveChildren(pid).find((c) => groupOf(c) === group);

describe("the daemon's sessions", () => {
  test("two images at once as two children; a killed child is served again (bounded); stop leaves no child and no key", async () => {
    await withLab({ clients: 2, linkMbit: 100 }, async (lab) => {
      const state = join(dir, "state");
      // A key left by a daemon killed before it could remove it: the next daemon removes it.
      mkdirSync(join(state, "sessions"), { recursive: true, mode: 0o700 });
      writeFileSync(join(state, "sessions", "stale.key"), "00\n", { mode: 0o600 });
      const daemon = await startDaemon(lab, state);
      expect(existsSync(join(state, "sessions", "stale.key"))).toBe(false);
      const pid = daemon.proc.pid;
      try {
        const fleet = (args: string[]) => lab.exec(lab.clients[0]!, ["bun", cli, ...args, "--state", state]);
        for (const [i, name] of IMAGES.entries()) {
          expect((await fleet(["node", "add", `node-${i}`, "--mac", MACS[i]!, "--disk", "serial:QM00001", "--image", name])).exitCode).toBe(0);
        }
        expect((await fleet(["reload", "node-0", "node-1"])).exitCode).toBe(0);
        const words = await Promise.all(lab.clients.map(async (h, i) => bootWords(await call(lab, h, `${daemon.url}/boot.ipxe?mac=${MACS[i]}`))));
        const groups = words.map((w) => w.group!);
        expect(new Set(groups).size).toBe(2);
        // One child per image, on its group, each with its own 0600 key file.
        expect(serveChildren(pid).map(groupOf).sort()).toEqual([...groups].sort());
        const keys = readdirSync(join(state, "sessions"));
        expect(keys.length).toBe(2);
        for (const k of keys) expect(statSync(join(state, "sessions", k)).mode & 0o777).toBe(0o600);

        // A child killed while its job needs it is served again, on the same group.
        const first = childOn(pid, groups[0]!)!;
        process.kill(first.pid, "SIGKILL");
        expect(await waitUntil(() => (childOn(pid, groups[0]!)?.pid ?? first.pid) !== first.pid, CHILD_BOUND_MS)).toBe(true);
        expect(await waitUntil(() => daemon.log().includes("served again"), CHILD_BOUND_MS)).toBe(true);

        // Both nodes load their own image at once, from the two children.
        const loads = await Promise.all(
          lab.clients.map((h, i) => {
            const keyFile = join(dir, `node-${i}.key`);
            writeFileSync(keyFile, `${words[i]!.auth!}\n`, { mode: 0o600 });
            return runClient(lab, h, groups[i]!, join(dir, `node-${i}.img`), ["--image-id", words[i]!.image!, "--give-up", "60s", "--auth-key-file", keyFile]);
          }),
        );
        for (const [i, name] of IMAGES.entries()) {
          expect(loads[i]!.exitCode).toBe(0);
          expect(await sha256File(join(dir, `node-${i}.img`))).toBe(referenceSha[name]!);
        }

        // Restarts are bounded: the second child, killed once more than allowed, stays down...
        const servedAgain = () => daemon.log().split(`session ${IMAGES[1]} on ${groups[1]}:${MCAST_PORT}: served again`).length - 1;
        for (let n = 0; n <= MAX_RESTARTS_PER_WINDOW; n++) {
          const c = childOn(pid, groups[1]!);
          expect(c).toBeDefined();
          process.kill(c!.pid, "SIGKILL");
          // Each restart is waited for until its child has started serving, so the next kill hits a running one.
          if (n < MAX_RESTARTS_PER_WINDOW) expect(await waitUntil(() => servedAgain() === n + 1, CHILD_BOUND_MS)).toBe(true);
        }
        expect(await waitUntil(() => daemon.log().includes("not again until a node needs it"), CHILD_BOUND_MS)).toBe(true);
        expect(childOn(pid, groups[1]!)).toBeUndefined();
        expect(readdirSync(join(state, "sessions")).length).toBe(1);
        // ...until the node boots again and the daemon serves its image for it.
        expect(bootWords(await call(lab, lab.clients[1]!, `${daemon.url}/boot.ipxe?mac=${MACS[1]}`)).group).toBe(groups[1]!);
        expect(childOn(pid, groups[1]!)).toBeDefined();

        // A daemon that stops stops its children and removes their keys.
        const children = serveChildren(pid);
        daemon.proc.kill("SIGTERM");
        expect(await daemon.proc.exited).toBe(0);
        expect(children.every((c) => !alive(c.pid))).toBe(true);
        expect(readdirSync(join(state, "sessions"))).toEqual([]);
        expect(daemon.log()).not.toContain(words[0]!.auth!);
      } finally {
        daemon.proc.kill("SIGKILL");
      }
    });
  }, TEST_TIMEOUT_MS);
});
