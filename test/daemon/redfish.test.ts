// The `redfish` power driver against a Redfish service (issue 12): scripts/lib/redfish-bmc.ts, in
// its own namespace on a 198.18/15 address, serves DMTF's resources over HTTPS with a self-signed
// certificate and owns the power of a QEMU guest through QMP. A real `discus server` in the lab's
// server namespace drives it: a reload powers the guest on (SeaBIOS prints its banner on the
// console), a second reload restarts it (a QMP system_reset, a second banner), each after
// PATCHing the boot override to Pxe/Once with the ETag. Debian's redfishtool drives the same
// service. A wrong password and a certificate the CA file does not vouch for fail the job with a
// one-line reason; the password appears in nothing the daemon says.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab, type Host, type Lab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT } from "../../scripts/lib/mcast.ts";
import { startRedfishBmc, SYSTEM_ID, type RedfishBmc } from "../../scripts/lib/redfish-bmc.ts";
import { POWER_TIMEOUT_MS } from "../../src/daemon/power.ts";
import { startLabDaemon, type LabDaemon } from "../../scripts/lib/lab-daemon.ts";
import { cli, discusOk, FIXTURE_TIMEOUT_MS, tmpDir } from "../helpers.ts";

/** SeaBIOS's first line: once per power-on and once per reset. */
const FIRMWARE_BANNER = "SeaBIOS (version";
/** Firmware under TCG reaches its banner in about a second; generous for 2 shared cores. */
const BOOT_TIMEOUT_MS = 30_000;
const POWER_EVENT_TIMEOUT_MS = 40_000;
const TEST_TIMEOUT_MS = 240_000;
const POLL_MS = 250;
const USER = "discus";
const PASSWORD = "Redfish-pw-5e1b7c";
const WRONG_PASSWORD = "Not-it-8c02fa";
const MAC_GOOD = "52:54:00:4e:d0:01";
const MAC_BADPW = "52:54:00:4e:d0:02";
const MAC_BADCA = "52:54:00:4e:d0:03";
/** No disk, no NIC: SeaBIOS finds nothing to boot and waits (no reboot-timeout retries). */
const GUEST_ARGS = ["-accel", "tcg", "-m", "64", "-nic", "none", "-boot", "reboot-timeout=-1"];

let dir = "";

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  // The catalog needs an image to reload with; the guest never PXE-boots, so any image will do.
  mkdirSync(join(dir, "images"));
  await $`head -c 1M /dev/urandom > ${join(dir, "os.img")}`;
  await discusOk(["create", join(dir, "os.img"), join(dir, "images", "lab-os.dsc"), "--raw", "--quiet"]);
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`.quiet().nothrow();
});

async function fleet(lab: Lab, state: string, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return lab.exec(lab.clients[0]!, ["bun", cli, ...args, "--state", state]);
}

interface EventView { action: string; subject: string; detail: string }

async function waitEvents(lab: Lab, state: string, action: string, node: string, count: number): Promise<EventView[]> {
  const deadline = Date.now() + POWER_EVENT_TIMEOUT_MS;
  for (;;) {
    const all = JSON.parse((await fleet(lab, state, ["events", "--json"])).stdout) as EventView[];
    const mine = all.filter((e) => e.subject === node && e.action === action);
    if (mine.length >= count) return mine;
    if (Date.now() > deadline) throw new Error(`no ${count} ${action} events for ${node}: ${JSON.stringify(all.filter((e) => e.subject === node))}`);
    await Bun.sleep(POLL_MS);
  }
}

/** Waits until the guest's console shows `count` firmware starts; returns the count then. */
async function waitBanners(bmc: RedfishBmc, count: number): Promise<number> {
  const deadline = Date.now() + BOOT_TIMEOUT_MS;
  for (;;) {
    const text = existsSync(bmc.consolePath) ? readFileSync(bmc.consolePath, "latin1") : "";
    const seen = text.split(FIRMWARE_BANNER).length - 1;
    if (seen >= count) return seen;
    if (Date.now() > deadline) throw new Error(`the guest did not start ${count} times (QEMU starts ${bmc.guestStarts()}, resets ${bmc.resets()}): ${text.slice(-1000)}`);
    await Bun.sleep(POLL_MS);
  }
}

/** Reloads `node` and waits for its job to fail; returns the job's one-line reason. */
async function failedReload(lab: Lab, state: string, node: string): Promise<string> {
  const r = await fleet(lab, state, ["reload", node]);
  expect(r.exitCode, r.stderr).toBe(0);
  const [failed] = await waitEvents(lab, state, "job.failed", node, 1);
  const shown = JSON.parse((await fleet(lab, state, ["node", "show", node, "--json"])).stdout) as { job: { state: string; error: string } };
  expect(shown.job.state).toBe("failed");
  const why = shown.job.error;
  expect(failed!.detail).toContain(why);
  expect(why).toContain(node);
  expect(why).not.toContain("\n");
  expect(why).not.toMatch(/\bat .*\.ts:\d+|internal error/i);
  return why;
}

async function redfishtool(lab: Lab, from: Host, bmc: RedfishBmc, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return lab.exec(from, ["redfishtool", "-r", bmc.hostPort, "-u", USER, "-p", PASSWORD, "-S", "Always", ...args]);
}

/** GET of the daemon's API with the admin token, from a client's namespace. */
async function apiGet(lab: Lab, daemon: LabDaemon, path: string): Promise<string> {
  const r = await lab.exec(lab.clients[0]!, ["curl", "-sS", "-f", "-H", `Authorization: Bearer ${daemon.adminToken()}`, `${daemon.url}${path}`]);
  expect(r.exitCode, r.stderr).toBe(0);
  return r.stdout;
}

async function addNode(lab: Lab, state: string, name: string, mac: string, power: string): Promise<void> {
  const added = await fleet(lab, state, ["node", "add", name, "--mac", mac, "--disk", "serial:RF-DISK", "--image", "lab-os", "--power", power]);
  expect(added.exitCode, added.stderr).toBe(0);
}

describe("the redfish power driver against a Redfish service powering a QEMU guest", () => {
  test("reload powers on, a second reload restarts (PXE once each time); redfishtool drives it too; bad password and bad certificate fail the job", async () => {
    await withLab({ clients: 1, extras: 1 }, async (lab) => {
      const bmc = await startRedfishBmc({ lab, host: lab.extras[0]!, dir: join(dir, "bmc"), user: USER, password: PASSWORD, guestArgs: GUEST_ARGS });
      const state = join(dir, "state");
      const daemon = await startLabDaemon(lab, { state, images: join(dir, "images"), args: ["--port", String(MCAST_PORT)] });
      try {
        expect(bmc.guestStarts()).toBe(0);
        const wrongFile = join(dir, "wrong-password");
        writeFileSync(wrongFile, `${WRONG_PASSWORD}\n`, { mode: 0o600 });
        // A certificate of its own, for the same address: not the one the BMC shows.
        const otherCa = join(dir, "other-ca.pem");
        await $`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=other -addext ${`subjectAltName=IP:${bmc.address}`} -keyout ${join(dir, "other-key.pem")} -out ${otherCa}`.quiet();
        await addNode(lab, state, "node-rf", MAC_GOOD, `redfish:${bmc.hostPort}:${USER}:${bmc.passwordFile},ca=${bmc.certFile}`);
        await addNode(lab, state, "node-rf-badpw", MAC_BADPW, `redfish:${bmc.hostPort}:${USER}:${wrongFile},ca=${bmc.certFile}`);
        await addNode(lab, state, "node-rf-badca", MAC_BADCA, `redfish:${bmc.hostPort}:${USER}:${bmc.passwordFile},ca=${otherCa}`);

        // First reload: the system is Off, so the daemon sets PXE once and resets it On; QEMU starts.
        const first = await fleet(lab, state, ["reload", "node-rf"]);
        expect(first.exitCode, first.stderr).toBe(0);
        const [on] = await waitEvents(lab, state, "power.cycle", "node-rf", 1);
        expect(on!.detail).toContain(`redfish On (was Off), next boot Pxe once, system /redfish/v1/Systems/${SYSTEM_ID}`);
        expect(await waitBanners(bmc, 1)).toBe(1);
        expect(bmc.guestStarts()).toBe(1);
        expect(bmc.resets()).toBe(0);
        expect(bmc.bootOverrides()).toEqual([{ target: "Pxe", enabled: "Once", ifMatch: 'W/"1"' }]);

        // Second reload: it is On, so ForceRestart: a QMP reset, the firmware starts again, same QEMU.
        const second = await fleet(lab, state, ["reload", "node-rf"]);
        expect(second.exitCode, second.stderr).toBe(0);
        const cycles = await waitEvents(lab, state, "power.cycle", "node-rf", 2);
        expect(cycles[0]!.detail).toContain("redfish ForceRestart (was On)"); // newest first
        expect(await waitBanners(bmc, 2)).toBe(2);
        expect(bmc.resets()).toBe(1);
        expect(bmc.guestStarts()).toBe(1);
        expect(bmc.bootOverrides()[1]).toEqual({ target: "Pxe", enabled: "Once", ifMatch: 'W/"2"' });

        // Debian's redfishtool speaks to the same service: lists the system, sets the override, resets it.
        const listed = await redfishtool(lab, lab.clients[0]!, bmc, ["Systems"]);
        expect(listed.exitCode, listed.stderr).toBe(0);
        expect(listed.stdout).toContain(`/redfish/v1/Systems/${SYSTEM_ID}`);
        const got = await redfishtool(lab, lab.clients[0]!, bmc, ["Systems", "-I", SYSTEM_ID]);
        expect(got.exitCode, got.stderr).toBe(0);
        expect(JSON.parse(got.stdout)).toMatchObject({ Id: SYSTEM_ID, PowerState: "On" });
        const override = await redfishtool(lab, lab.clients[0]!, bmc, ["Systems", "-I", SYSTEM_ID, "setBootOverride", "Once", "Pxe"]);
        expect(override.exitCode, override.stderr).toBe(0);
        expect(bmc.bootOverrides()).toHaveLength(3);
        const reset = await redfishtool(lab, lab.clients[0]!, bmc, ["Systems", "-I", SYSTEM_ID, "reset", "ForceRestart"]);
        expect(reset.exitCode, reset.stderr).toBe(0);
        expect(bmc.resets()).toBe(2);
        expect(await waitBanners(bmc, 3)).toBe(3);
        const refused = await lab.exec(lab.clients[0]!, ["redfishtool", "-r", bmc.hostPort, "-u", USER, "-p", WRONG_PASSWORD, "-S", "Always", "Systems"]);
        expect(refused.exitCode).not.toBe(0);

        // A wrong password: HTTP 401, said in one line naming the node and the BMC.
        const badpw = await failedReload(lab, state, "node-rf-badpw");
        expect(badpw).toContain(`BMC ${bmc.hostPort}`);
        expect(badpw).toContain(`the BMC refused user ${USER} (HTTP 401`);
        expect(badpw).toContain("There is no valid session established with the implementation");
        // A CA file that does not vouch for the BMC's certificate: refused before any credentials go.
        const badca = await failedReload(lab, state, "node-rf-badca");
        expect(badca).toContain("its TLS certificate was refused");
        expect(badca).toContain(otherCa);
        // Neither touched the guest.
        expect(bmc.resets()).toBe(2);
        expect(bmc.guestStarts()).toBe(1);
        expect(bmc.bootOverrides()).toHaveLength(3);
        expect(daemon.proc.exitCode).toBeNull();
        // A BMC answering within milliseconds leaves the action well inside its time budget.
        expect(POWER_TIMEOUT_MS).toBeGreaterThan(BOOT_TIMEOUT_MS / 2);

        // No password in anything the daemon says: API answers, job reasons, events, its log.
        const nodes = JSON.parse(await apiGet(lab, daemon, "/api/nodes")) as { job: { id: number } | null }[];
        const said = [JSON.stringify(nodes), await apiGet(lab, daemon, "/api/events?limit=1000")];
        for (const n of nodes) if (n.job !== null) said.push(await apiGet(lab, daemon, `/api/jobs/${n.job.id}`));
        expect(said.length).toBe(2 + 3);
        await daemon.stop();
        said.push(daemon.log());
        for (const text of said) {
          expect(text).not.toContain(PASSWORD);
          expect(text).not.toContain(WRONG_PASSWORD);
        }
      } finally {
        daemon.proc.kill("SIGKILL");
        await bmc.stop();
      }
    });
  }, TEST_TIMEOUT_MS);
});
