// The `ipmi` power driver against a real BMC (issue 11): OpenIPMI's ipmi_sim in its own namespace
// answers IPMI over LAN, and powers its host, a QEMU guest wired to it by ipmi-bmc-extern, as a
// real BMC does (scripts/lib/bmc.ts). A real `discus server` in the lab's server namespace runs
// `ipmitool -I lanplus` against it: a reload powers the node on and it boots; a second reload
// power-cycles it and it boots again. A node with a wrong password ends failed with a reason that
// names the node and the BMC, and no password appears in the daemon's log or API answers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab, type Lab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT } from "../../scripts/lib/mcast.ts";
import { startBmc, type Bmc } from "../../scripts/lib/bmc.ts";
import { bootedLine, makeBootDisk } from "../fixtures/bootdisk.ts";
import { ensureNetbootBuild, virtioDisk, VMLINUZ } from "../agent/netboot-env.ts";
import { POWER_TIMEOUT_MS } from "../../src/daemon/power.ts";
import { startLabDaemon, type LabDaemon } from "../../scripts/lib/lab-daemon.ts";
import { cli, discusOk, FIXTURE_TIMEOUT_MS, tmpDir } from "../helpers.ts";

const MiB = 1 << 20;
const DISK_BYTES = 64 * MiB;
const MARKER = "bmc-1";
const DISK_SERIAL = "BMC-DISK";
const GUEST_MEMORY_MIB = 512;
/** One boot under TCG on 2 shared cores, from power-on to the marker line. */
const BOOT_TIMEOUT_MS = 150_000;
/** The daemon's power action runs after `discus reload` returns; a wrong password fails fast. */
const POWER_EVENT_TIMEOUT_MS = 40_000;
const TEST_TIMEOUT_MS = 420_000;
const POLL_MS = 250;
const USER = "discus";
const PASSWORD = "Bmc-pw-7f3a9c";
const WRONG_PASSWORD = "Not-it-41d2e8";
const MAC_GOOD = "52:54:00:b3:c0:01";
const MAC_BAD = "52:54:00:b3:c0:02";
const MAC_GONE = "52:54:00:b3:c0:03";

let dir = "";
let disk = "";

beforeAll(async () => {
  if (!existsSync(VMLINUZ)) await ensureNetbootBuild();
  await destroyStaleLabs();
  dir = await tmpDir();
  disk = join(dir, "node.img");
  await makeBootDisk({ path: disk, sizeBytes: DISK_BYTES, marker: MARKER, kernelPath: VMLINUZ });
  // The catalog needs an image to reload with; the guest never PXE-boots, so any image will do.
  mkdirSync(join(dir, "images"));
  await $`head -c 4M /dev/urandom > ${join(dir, "os.img")}`;
  await discusOk(["create", join(dir, "os.img"), join(dir, "images", "lab-os.dsc"), "--raw", "--quiet"]);
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`.quiet().nothrow();
});

function startDaemon(lab: Lab, state: string): Promise<LabDaemon> {
  return startLabDaemon(lab, { state, images: join(dir, "images"), args: ["--port", String(MCAST_PORT)] });
}

/** The CLI, run in the client's namespace against the daemon (token from the state dir). */
async function fleet(lab: Lab, state: string, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return lab.exec(lab.clients[0]!, ["bun", cli, ...args, "--state", state]);
}

interface EventView { action: string; subject: string; detail: string; atMs: number }

async function eventsOf(lab: Lab, state: string, node: string): Promise<EventView[]> {
  const r = await fleet(lab, state, ["events", "--json"]);
  return (JSON.parse(r.stdout) as EventView[]).filter((e) => e.subject === node);
}

/** Waits for the daemon's `count`-th event of `action` about `node`; returns those, newest first. */
async function waitEvents(lab: Lab, state: string, action: string, node: string, count: number): Promise<EventView[]> {
  const deadline = Date.now() + POWER_EVENT_TIMEOUT_MS;
  for (;;) {
    const mine = (await eventsOf(lab, state, node)).filter((e) => e.action === action);
    if (mine.length >= count) return mine;
    if (Date.now() > deadline) throw new Error(`no ${count} ${action} events for ${node}: ${JSON.stringify(await eventsOf(lab, state, node))}`);
    await Bun.sleep(POLL_MS);
  }
}

/** Waits until the guest's console shows `count` boots of the test OS. */
async function waitBoots(bmc: Bmc, count: number): Promise<string> {
  const deadline = Date.now() + BOOT_TIMEOUT_MS;
  for (;;) {
    const text = existsSync(bmc.consolePath) ? readFileSync(bmc.consolePath, "latin1") : "";
    if (text.split(bootedLine(MARKER)).length - 1 >= count) return text;
    if (Date.now() > deadline) throw new Error(`the guest did not boot ${count} times (started ${bmc.guestStarts()}): ${text.slice(-2000)}`);
    await Bun.sleep(POLL_MS);
  }
}

/** How long the daemon's power action took: from the reload's job.create to its power event. */
async function powerActionMs(lab: Lab, state: string, node: string): Promise<number> {
  const events = await eventsOf(lab, state, node);
  const created = events.find((e) => e.action === "job.create")!;
  const powered = events.find((e) => e.action === "power.cycle" || e.action === "job.failed")!;
  return powered.atMs - created.atMs;
}

/** Reloads `node` and waits for its job to fail; returns the job's reason. */
async function failedReload(lab: Lab, state: string, node: string): Promise<string> {
  const r = await fleet(lab, state, ["reload", node]);
  expect(r.exitCode, r.stderr).toBe(0);
  const [failed] = await waitEvents(lab, state, "job.failed", node, 1);
  const job = await jobOf(lab, state, node);
  expect(job?.state).toBe("failed");
  const why = job!.error!;
  expect(failed!.detail).toContain(why);
  // One line naming the node and its BMC, as the status table shows it: no stack, no tool noise.
  expect(why).toContain(node);
  expect(why).not.toContain("\n");
  expect(why).not.toMatch(/\bat .*\.ts:\d+|internal error/i);
  return why;
}

async function jobOf(lab: Lab, state: string, node: string): Promise<{ state: string; error: string | null } | null> {
  const r = await fleet(lab, state, ["node", "show", node, "--json"]);
  return (JSON.parse(r.stdout) as { job: { state: string; error: string | null } | null }).job;
}

describe("the ipmi power driver against ipmi_sim", () => {
  test("reload powers the node on, a second reload power-cycles it; a wrong password fails the job, not the daemon", async () => {
    await withLab({ clients: 1, extras: 1 }, async (lab) => {
      const bmc = await startBmc({
        lab, host: lab.extras[0]!, dir: join(dir, "bmc"), user: USER, password: PASSWORD,
        guestArgs: ["-accel", "tcg", "-cpu", "max", "-m", String(GUEST_MEMORY_MIB), "-nic", "none", ...virtioDisk(disk, DISK_SERIAL, 1)],
      });
      const state = join(dir, "state");
      const daemon = await startDaemon(lab, state);
      try {
        // The machine is off, and nothing has started it.
        expect(await bmc.powerStatus(lab.server)).toBe("off");
        expect(bmc.guestStarts()).toBe(0);
        const wrongFile = join(dir, "wrong-password");
        writeFileSync(wrongFile, `${WRONG_PASSWORD}\n`, { mode: 0o600 });
        const goneFile = join(dir, "gone-password");
        writeFileSync(goneFile, `${PASSWORD}\n`, { mode: 0o600 });
        for (const [name, mac, file] of [["node-ipmi", MAC_GOOD, bmc.passwordFile], ["node-badpw", MAC_BAD, wrongFile], ["node-gone", MAC_GONE, goneFile]] as const) {
          const added = await fleet(lab, state, ["node", "add", name, "--mac", mac, "--disk", `serial:${DISK_SERIAL}`, "--image", "lab-os", "--power", `ipmi:${bmc.address}:${USER}:${file}`]);
          expect(added.exitCode, added.stderr).toBe(0);
        }

        // First reload: the daemon finds the power off and turns it on; the BMC starts the guest.
        const first = await fleet(lab, state, ["reload", "node-ipmi"]);
        expect(first.exitCode, first.stderr).toBe(0);
        const [on] = await waitEvents(lab, state, "power.cycle", "node-ipmi", 1);
        expect(on!.detail).toContain("chassis power on (was off");
        // A BMC answering within milliseconds must not eat the action's time budget.
        expect(await powerActionMs(lab, state, "node-ipmi")).toBeLessThan(POWER_TIMEOUT_MS / 2);
        await waitBoots(bmc, 1);
        expect(await bmc.powerStatus(lab.server)).toBe("on");
        expect(bmc.guestStarts()).toBe(1);

        // Second reload: the power is on, so the daemon cycles it; the guest boots a second time.
        const second = await fleet(lab, state, ["reload", "node-ipmi"]);
        expect(second.exitCode, second.stderr).toBe(0);
        const cycles = await waitEvents(lab, state, "power.cycle", "node-ipmi", 2);
        expect(cycles[0]!.detail).toContain("chassis power cycle (was on"); // newest first
        const consoleText = await waitBoots(bmc, 2);
        expect(consoleText.split(bootedLine(MARKER)).length - 1).toBe(2);
        expect(bmc.guestStarts()).toBe(2);
        expect(await bmc.powerStatus(lab.server)).toBe("on");

        // A wrong password: the job fails with a reason naming the node and the BMC.
        const why = await failedReload(lab, state, "node-badpw");
        expect(why).toContain(`BMC ${bmc.address}`);
        expect(why).toContain("Unable to establish IPMI v2 / RMCP+ session");
        // A password file gone since the node was added: said so, and no login is tried without it.
        rmSync(goneFile);
        const gone = await failedReload(lab, state, "node-gone");
        expect(gone).toContain(`password file ${goneFile} cannot be read`);
        expect(gone).not.toContain("ipmitool");
        // The daemon keeps running and answering; the good node's power is untouched.
        expect(daemon.proc.exitCode).toBeNull();
        const status = await fleet(lab, state, ["status", "--json"]);
        expect(status.exitCode).toBe(0);
        expect(bmc.guestStarts()).toBe(2);

        // No password in anything the daemon says: API answers, events, its log.
        const said = [status.stdout, (await fleet(lab, state, ["events", "--json"])).stdout];
        for (const n of ["node-ipmi", "node-badpw", "node-gone"]) said.push((await fleet(lab, state, ["node", "show", n, "--json"])).stdout);
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
