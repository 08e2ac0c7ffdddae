// `discus server` with real firmware (issue 11): QEMU guests PXE-boot through dnsmasq, configured
// once to chain iPXE to the daemon's boot.ipxe with the node's MAC (scripts/lib/pxe.ts, chain
// mode), and the daemon alone decides what each boots. Node A is reloaded: it loads over the
// daemon's session, reboots, and on its next power-on the daemon answers `exit` and A boots the
// new OS from its own disk. Node B is known and not reloaded: `exit`, its old OS, disk unchanged.
// Guest C is unknown: it is inventoried (state new, its disk's serial in the API), powers off, and
// is never written. Node D's disk rule matches nothing: its job ends failed with the agent's reason.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { bootedLine, makeBootDisk, type BootDisk } from "../fixtures/bootdisk.ts";
import { cli, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";
import { createLab, destroyStaleLabs, type Lab } from "../../scripts/lib/netlab.ts";
import { startPxeServer, type PxeServer } from "../../scripts/lib/pxe.ts";
import { bootQemu, type BootResult } from "../agent/qemu.ts";
import { agentLines, checkBootDisk, daemonFiles, ensureNetbootBuild, GUEST_TIMEOUT_MS, guestArgs, INITRAMFS, VMLINUZ, virtioDisk } from "../agent/netboot-env.ts";
import type { JobRecord, NodeRecord } from "../../src/daemon/model.ts";
import { startLabDaemon, type LabDaemon } from "../../scripts/lib/lab-daemon.ts";

const DISK_BYTES = 128 << 20;
/** Every guest of this file, at most two at a time, each bounded by GUEST_TIMEOUT_MS. */
const FILE_TIMEOUT_MS = 3 * GUEST_TIMEOUT_MS;
const mac = (n: number) => `52:54:00:da:e0:${n.toString(16).padStart(2, "0")}`;
const agentCall = join(import.meta.dir, "agent-call.ts");
const firstBlock = join(import.meta.dir, "first-block.ts");

let dir = "";
let lab: Lab;
let pxe: PxeServer;
let daemon: LabDaemon | undefined;
let url = "";
let state = "";
let newOs: BootDisk;
let oldDisk = "";

interface Guest {
  name: string;
  mac: string;
  disk: string;
  serial: string;
}

function guest(name: string, n: number): Guest {
  const disk = join(dir, `${name}.img`);
  copyFileSync(oldDisk, disk);
  return { name, mac: mac(n), disk, serial: `DISK-${name.toUpperCase()}` };
}

let taps = 0;
/** Powers a guest on, network first then its disk, on a fresh tap (a tap outlives its QEMU). */
async function pxeBoot(g: Guest, until?: RegExp): Promise<BootResult> {
  const tap = await lab.addTap(++taps);
  return bootQemu({
    prefix: ["ip", "netns", "exec", lab.switchNs],
    args: [
      ...guestArgs(),
      "-netdev", `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      "-device", `virtio-net-pci,netdev=n0,mac=${g.mac},bootindex=1`,
      ...virtioDisk(g.disk, g.serial, 2),
    ],
    timeoutMs: GUEST_TIMEOUT_MS,
    consolePath: join(dir, `${g.name}-${taps}.console`),
    marks: { agent: /discus agent \[.*\]: discus \S+ agent started/, written: /disk written/ },
    ...(until ? { until, exitGraceMs: 1000 } : {}),
  });
}

/** The CLI in the server's namespace, against the daemon (token and URL from the state dir). */
async function fleet(args: string[]): Promise<string> {
  const r = await lab.exec(lab.server, ["bun", cli, ...args, "--state", state]);
  if (r.exitCode !== 0) throw new Error(`discus ${args.join(" ")} exited ${r.exitCode}: ${r.stderr}\ndaemon log:\n${daemon?.log().slice(-3000)}`);
  return r.stdout;
}

/** One HTTP call from the server's namespace; `STATUS BODY`. */
async function http(method: string, path: string, token: string): Promise<{ status: number; body: string }> {
  const r = await lab.exec(lab.server, ["bun", agentCall, method, `${url}${path}`, token, ""]);
  const space = r.stdout.indexOf(" ");
  return { status: Number(r.stdout.slice(0, space)), body: r.stdout.slice(space + 1) };
}

async function nodeStatus(name: string): Promise<{ node: NodeRecord; job: JobRecord | null }> {
  return JSON.parse(await fleet(["node", "show", name, "--json"])) as { node: NodeRecord; job: JobRecord | null };
}

async function startDaemon(images: string, bootDir: string, pub: string): Promise<void> {
  daemon = await startLabDaemon(lab, { state, images, args: ["--boot-dir", bootDir, "--key", pub] });
  url = daemon.url;
}

beforeAll(async () => {
  await ensureNetbootBuild();
  await destroyStaleLabs();
  dir = await tmpDir();
  const source = join(dir, "new-os.img");
  newOs = await makeBootDisk({ path: source, sizeBytes: DISK_BYTES, marker: "new-2", kernelPath: VMLINUZ });
  oldDisk = join(dir, "old-os.img");
  await makeBootDisk({ path: oldDisk, sizeBytes: DISK_BYTES, marker: "old-2", kernelPath: VMLINUZ });
  const { images, bootDir, publicKey } = await daemonFiles(dir, source);

  lab = await createLab({ clients: 0, linkMbit: 100 });
  state = join(dir, "state");
  await startDaemon(images, bootDir, publicKey);
  pxe = await startPxeServer(lab, { dir: join(dir, "pxe"), siteArgs: "", reload: new Map(), chainTo: url });
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  await daemon?.stop();
  await pxe?.stop();
  await lab?.destroy();
  if (dir) await $`rm -rf ${dir}`.quiet().nothrow();
}, FIXTURE_TIMEOUT_MS);

/** Runs the tasks two at a time (two guests at once at most on a 2-core machine). */
async function twoAtATime(tasks: (() => Promise<void>)[]): Promise<void> {
  const queue = [...tasks];
  const worker = async () => {
    for (let t = queue.shift(); t !== undefined; t = queue.shift()) await t();
  };
  await Promise.all([worker(), worker()]);
}

describe("PXE through dnsmasq chaining to discus server", () => {
  test("the daemon serves the boot files it names", async () => {
    for (const [name, path] of [["vmlinuz", VMLINUZ], ["initramfs", INITRAMFS]] as const) {
      const r = await lab.exec(lab.server, ["sh", "-c", `curl -sf ${url}/boot/${name} | sha256sum`]);
      expect(r.stdout.split(" ")[0]).toBe(await sha256File(path));
    }
    expect(readFileSync(join(dir, "pxe", "tftp", "chain.ipxe"), "utf8")).toBe(`#!ipxe\nchain ${url}/boot.ipxe?mac=\${net0/mac}\n`);
    expect(readFileSync(join(dir, "pxe", "dnsmasq.conf"), "utf8")).not.toContain("dhcp-host");
  }, GUEST_TIMEOUT_MS);

  test("reload A, B untouched, C unknown and inventoried, D's rule matches nothing", async () => {
    const [a, b, c, d] = [guest("a", 1), guest("b", 2), guest("c", 3), guest("d", 4)];
    const before = { b: await sha256File(b.disk), c: await sha256File(c.disk), d: await sha256File(d.disk) };
    await fleet(["node", "add", "a", "--mac", a.mac, "--disk", `serial:${a.serial}`]);
    await fleet(["node", "add", "b", "--mac", b.mac, "--disk", `serial:${b.serial}`, "--image", "new-os"]);
    await fleet(["node", "add", "d", "--mac", d.mac, "--disk", "serial:NO-SUCH-DISK", "--image", "new-os"]);
    const poller = lab.spawn(lab.server, ["bun", firstBlock, url, daemon!.adminToken(), "new-os"]);
    const reloadMs = Date.now();
    await fleet(["reload", "a", "--image", "new-os"]);
    const [dJob] = JSON.parse(await fleet(["reload", "d", "--json"])) as JobRecord[];

    const results: Record<string, BootResult> = {};
    await twoAtATime([
      async () => {
        results.a1 = await pxeBoot(a);
        results.a2 = await pxeBoot(a, new RegExp(bootedLine("new-2")));
      },
      async () => void (results.c = await pxeBoot(c)),
      async () => void (results.d = await pxeBoot(d, /halted; the reason is above/)),
      async () => void (results.b = await pxeBoot(b, new RegExp(bootedLine("old-2")))),
    ]);

    // A: loaded, rebooted (-no-reboot ends QEMU), then the daemon said exit and the new OS booted.
    const a1 = agentLines(results.a1!.console);
    expect(results.a1!.timedOut, a1).toBe(false);
    expect(a1).toContain(`target /dev/vda`);
    expect(a1).toContain("signature verified");
    expect(a1).toContain("reported written to the control server");
    expect(a1).toMatch(/rebooting/);
    expect(results.a1!.exitCode).toBe(0);
    expect(results.a2!.matched, results.a2!.console.slice(-3000)).toBe(true);
    expect(results.a2!.console).not.toContain("discus agent");
    const check = await checkBootDisk(a.disk, Object.keys(newOs.files));
    expect(check.fsckCode, check.fsckOutput).toBe(0);
    expect(check.files).toEqual(newOs.files);
    const sA = await nodeStatus("a");
    expect(`${sA.node.state}/${sA.job?.state}`).toBe("booted/booted");
    const firstBlockMs = Number((await new Response(poller.stdout).text()) || NaN);
    console.log(`guest a: power-on to agent ${results.a1!.marks.agent} s, to disk written ${results.a1!.marks.written} s, to reboot ${results.a1!.seconds} s`);
    console.log(`discus reload to the first block on the wire: ${((firstBlockMs - reloadMs) / 1000).toFixed(1)} s (includes the guest's PXE boot; power driver none)`);

    // B: known, nothing asked: exit, its old OS, its disk untouched.
    expect(results.b!.matched, results.b!.console.slice(-3000)).toBe(true);
    expect(results.b!.console).not.toContain("discus agent");
    expect(await sha256File(b.disk)).toBe(before.b);
    const sB = await nodeStatus("b");
    expect(`${sB.node.state}/${sB.job?.state ?? "-"}`).toBe("ready/-");

    // C: unknown, inventoried, powered off, never written; its next boot is an exit.
    const cl = agentLines(results.c!.console);
    expect(results.c!.timedOut, cl).toBe(false);
    expect(cl).toContain(`serial "${c.serial}"`);
    expect(cl).toContain("inventory reported to the control server");
    expect(cl).toContain("powering off");
    expect(results.c!.exitCode).toBe(0);
    expect(await sha256File(c.disk)).toBe(before.c);
    const sC = await nodeStatus(c.mac);
    expect(sC.node.state).toBe("new");
    expect(sC.node.hardware?.disks.map((x) => x.serial)).toEqual([c.serial]);
    expect(sC.node.hardware?.nics.map((x) => x.mac)).toContain(c.mac);
    expect(sC.node.hardware?.memoryBytes).toBeGreaterThan(512 << 20);
    expect(`${sC.job?.kind}/${sC.job?.state}`).toBe("inventory/done");
    const next = await http("GET", `/boot.ipxe?mac=${c.mac}`, "");
    expect(next.body).toContain("exit");
    expect(next.body).not.toContain("kernel");

    // D: the agent's reason, through the API; nothing written.
    const dl = agentLines(results.d!.console);
    expect(results.d!.matched, dl).toBe(true);
    expect(dl).toContain("FAILED: discus.disk=serial:NO-SUCH-DISK: matches no disk");
    expect(dl).toContain("reported failed to the control server");
    expect(await sha256File(d.disk)).toBe(before.d);
    const dShown = JSON.parse(await fleet(["job", "show", String(dJob!.id), "--json"])) as JobRecord;
    expect(dShown.state).toBe("failed");
    expect(dShown.error).toContain("discus.disk=serial:NO-SUCH-DISK: matches no disk");
    expect(dShown.error).toContain(`serial "${d.serial}"`);
  }, FILE_TIMEOUT_MS);
});
