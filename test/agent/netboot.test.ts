// The whole PXE path, for real: dnsmasq (DHCP + TFTP) and an HTTP server in the server's network
// namespace, `discus serve` beside them, and QEMU guests on the lab bridge whose iPXE ROMs
// PXE-boot the discus kernel and initramfs. Guests with the discus DHCP option reload their
// virtio disk over multicast and reboot; the host then checks each disk (e2fsck, file digests)
// and boots it to see the new OS. A guest without the option boots its installed OS untouched;
// a guest whose rule matches no disk writes nothing and the server logs its report.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { bootedLine, makeBootDisk, type BootDisk } from "../fixtures/bootdisk.ts";
import { FIXTURE_TIMEOUT_MS, discusOk, sha256File, tmpDir } from "../helpers.ts";
import { createLab, destroyStaleLabs, type Lab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT, startServer, type RunningServer } from "../../scripts/lib/mcast.ts";
import { startPxeServer, type PxeServer } from "../../scripts/lib/pxe.ts";
import { bootQemu, type BootResult } from "./qemu.ts";
import { agentLines, checkBootDisk, ensureNetbootBuild, GUEST_TIMEOUT_MS, guestArgs, INITRAMFS, VMLINUZ, virtioDisk } from "./netboot-env.ts";

const DISK_BYTES = 128 << 20;
const mac = (n: number) => `52:54:00:d1:5c:${n.toString(16).padStart(2, "0")}`;

let dir = "";
let lab: Lab;
let server: RunningServer;
let pxe: PxeServer;
let newOs: BootDisk;
let oldOs: BootDisk;
let oldDisk = "";
let group = "";
let keyHex = "";

interface Guest {
  name: string;
  n: number;
  disk: string;
  serial: string;
}

async function guest(name: string, n: number): Promise<Guest> {
  const disk = join(dir, `${name}.img`);
  copyFileSync(oldDisk, disk);
  return { name, n, disk, serial: `DISK-${name.toUpperCase()}` };
}

/** PXE-boots a guest on tap<n>: network first, then its disk. */
async function pxeBoot(g: Guest, until?: RegExp): Promise<BootResult> {
  const tap = await lab.addTap(g.n);
  return bootQemu({
    prefix: ["ip", "netns", "exec", lab.switchNs],
    args: [
      ...guestArgs(),
      "-netdev", `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      "-device", `virtio-net-pci,netdev=n0,mac=${mac(g.n)},bootindex=1`,
      ...virtioDisk(g.disk, g.serial, 2),
    ],
    timeoutMs: GUEST_TIMEOUT_MS,
    consolePath: join(dir, `${g.name}.console`),
    marks: { agent: /discus agent \[.*\]: discus \S+ agent started/, written: /disk written/ },
    ...(until ? { until } : {}),
  });
}

/** Boots a guest's disk alone (no network): what the machine runs after its reboot. */
function diskBoot(g: Guest): Promise<BootResult> {
  return bootQemu({ args: [...guestArgs(512), "-nic", "none", ...virtioDisk(g.disk, g.serial, 1)], timeoutMs: GUEST_TIMEOUT_MS });
}

beforeAll(async () => {
  await ensureNetbootBuild();
  await destroyStaleLabs();
  dir = await tmpDir();
  const source = join(dir, "new-os.img");
  newOs = await makeBootDisk({ path: source, sizeBytes: DISK_BYTES, marker: "new-1", kernelPath: VMLINUZ });
  oldDisk = join(dir, "old-os.img");
  oldOs = await makeBootDisk({ path: oldDisk, sizeBytes: DISK_BYTES, marker: "old-1", kernelPath: VMLINUZ });
  await discusOk(["keygen", join(dir, "site")]);
  const image = join(dir, "new-os.dsc");
  await discusOk(["create", "--quiet", "--sign", join(dir, "site.key"), source, image]);
  keyHex = /discus\.key=([0-9a-f]{64})/.exec(await discusOk(["key", join(dir, "site.pub")]))![1]!;

  lab = await createLab({ clients: 0, linkMbit: 100 });
  group = lab.group(0);
  server = startServer(lab, image, group, ["--rate", "100mbit"]);
  pxe = await startPxeServer(lab, {
    dir: join(dir, "pxe"),
    // Site-wide settings on the kernel command line; per machine, the DHCP option says what to do.
    siteArgs: `discus.group=${group} discus.port=${MCAST_PORT} discus.key=${keyHex} discus.onfail=poweroff`,
    reload: new Map([
      [mac(1), "action=load disk=serial:DISK-A"],
      [mac(2), "action=load disk=serial:DISK-B"],
      [mac(4), "action=load disk=serial:NO-SUCH-DISK"],
    ]),
  });
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  await pxe?.stop();
  await server?.stop();
  await lab?.destroy();
  if (dir) await $`rm -rf ${dir}`.quiet().nothrow();
}, FIXTURE_TIMEOUT_MS);

describe("PXE boot into the agent", () => {
  test("two guests reload their disks over multicast at once, reboot, and boot the new OS", async () => {
    const [a, b] = [await guest("a", 1), await guest("b", 2)];
    const runs = await Promise.all([pxeBoot(a), pxeBoot(b)]);
    for (const [g, r] of [[a, runs[0]!], [b, runs[1]!]] as const) {
      const lines = agentLines(r.console);
      expect(r.timedOut, `${g.name} timed out:\n${lines}`).toBe(false);
      expect(lines).toContain(`target /dev/vda`);
      expect(lines).toContain(`serial "${g.serial}"`);
      expect(lines).toMatch(/disk written: \/dev\/vda/);
      expect(lines).toContain("signature verified");
      expect(lines).toContain("discus init");
      expect(lines).toMatch(/rebooting/);
      // -no-reboot: QEMU exits when the guest reboots.
      expect(r.exitCode).toBe(0);
      expect(r.marks.agent, lines).toBeGreaterThan(0);
      expect(r.marks.written!).toBeGreaterThan(r.marks.agent!);
      console.log(`guest ${g.name}: power-on to agent start ${r.marks.agent!.toFixed(1)} s, to disk written ${r.marks.written!.toFixed(1)} s, to reboot ${r.seconds.toFixed(1)} s`);

      const check = await checkBootDisk(g.disk, Object.keys(newOs.files));
      expect(check.fsckCode, check.fsckOutput).toBe(0);
      expect(check.files).toEqual(newOs.files);
      const reboot = await diskBoot(g);
      expect(reboot.console).toContain(bootedLine("new-1"));
    }
    const log = server.log();
    expect(log.match(/client [\d.]+ \(\w+\) done/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
  }, GUEST_TIMEOUT_MS * 3);

  test("a guest without the DHCP option boots its installed OS, its disk untouched", async () => {
    const c = await guest("c", 3);
    const before = await sha256File(c.disk);
    const r = await pxeBoot(c, new RegExp(bootedLine("old-1")));
    expect(r.timedOut, r.console.slice(-3000)).toBe(false);
    expect(r.console).toContain(bootedLine("old-1"));
    expect(r.console).not.toContain("discus agent");
    expect(await sha256File(c.disk)).toBe(before);
    expect(oldOs.files["/data/a.bin"]).toBeDefined();
  }, GUEST_TIMEOUT_MS);

  test("a guest whose rule matches no disk writes nothing and the server logs why", async () => {
    const d = await guest("d", 4);
    const before = await sha256File(d.disk);
    const r = await pxeBoot(d);
    const lines = agentLines(r.console);
    expect(r.timedOut, lines).toBe(false);
    expect(lines).toContain('FAILED: discus.disk=serial:NO-SUCH-DISK: matches no disk. This machine has: /dev/vda 134.2 MB model "" serial "DISK-D"');
    expect(lines).toContain("failure reported to server");
    expect(lines).toMatch(/powering off/);
    expect(await sha256File(d.disk)).toBe(before);
    expect(server.log()).toMatch(/client [\d.]+ \(\w+\) failed after .*discus\.disk=serial:NO-SUCH-DISK: matches no disk/);
  }, GUEST_TIMEOUT_MS);
});

/**
 * Boots the netboot kernel directly (as PXE would, minus the download) with `args` on its
 * command line, on tap<n>: `attached` false leaves the tap off the bridge, so DHCP gets no answer.
 */
async function directBoot(g: Guest, args: string, attached = true): Promise<BootResult> {
  let tap = `tap${g.n}`;
  if (attached) tap = await lab.addTap(g.n);
  else {
    await $`ip -n ${lab.switchNs} tuntap add dev ${tap} mode tap`.quiet();
    await $`ip -n ${lab.switchNs} link set ${tap} up`.quiet();
  }
  return bootQemu({
    prefix: ["ip", "netns", "exec", lab.switchNs],
    args: [
      ...guestArgs(),
      "-netdev", `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      "-device", `virtio-net-pci,netdev=n0,mac=${mac(g.n)}`,
      ...virtioDisk(g.disk, g.serial),
      "-kernel", VMLINUZ, "-initrd", INITRAMFS,
      "-append", `console=ttyS0,115200 discus.onfail=poweroff ${args}`,
    ],
    timeoutMs: GUEST_TIMEOUT_MS,
  });
}

describe("without a reload order the agent boots the installed OS", () => {
  test("kexec into the disk's own kernel, nothing written", async () => {
    const g = await guest("k", 10);
    const before = await sha256File(g.disk);
    const r = await directBoot(g, "discus.net=off");
    const lines = agentLines(r.console);
    expect(r.timedOut, lines).toBe(false);
    expect(lines).toContain("no reload asked: no disk will be written");
    expect(lines).toMatch(/booting the installed OS from \/dev\/vda1 \(boot\/extlinux\/extlinux.conf\)/);
    expect(r.console).toContain(bootedLine("old-1"));
    expect(await sha256File(g.disk)).toBe(before);
  }, GUEST_TIMEOUT_MS);
});

describe("every failure: a console message, a report when the server answers, no write", () => {
  const load = (rule: string) => `discus.action=load discus.group=${group} discus.port=${MCAST_PORT} discus.disk=${rule}`;

  async function expectFailure(g: Guest, r: BootResult, message: RegExp, reported: boolean, before: string): Promise<void> {
    const lines = agentLines(r.console);
    expect(r.timedOut, lines).toBe(false);
    expect(lines).toMatch(message);
    expect(lines).toContain("nothing more will be written to any disk by this boot");
    expect(lines).toContain("powering off");
    expect(r.exitCode).toBe(0);
    if (reported) expect(server.log()).toMatch(new RegExp(`client [\\d.]+ \\(\\w+\\) failed after .*${message.source.replace(/^FAILED: /, "")}`));
    expect(await sha256File(g.disk), `${g.name}'s disk changed`).toBe(before);
  }

  test("a wrong signing key and a disk too small for the image", async () => {
    const wrongKey = await guest("w", 11);
    const small = { name: "s", n: 12, disk: join(dir, "small.img"), serial: "DISK-S" };
    await $`truncate -s ${64 << 20} ${small.disk}`;
    const before = [await sha256File(wrongKey.disk), await sha256File(small.disk)];
    const [r1, r2] = await Promise.all([
      directBoot(wrongKey, `${load("serial:DISK-W")} discus.key=${"ab".repeat(32)}`),
      directBoot(small, `${load("serial:DISK-S")} discus.key=${keyHex}`),
    ]);
    await expectFailure(wrongKey, r1, /FAILED: .*signature/, true, before[0]!);
    await expectFailure(small, r2, /FAILED: \/dev\/vda: is 64.0 MiB, the image needs 128.0 MiB/, true, before[1]!);
  }, GUEST_TIMEOUT_MS);

  test("no DHCP answer, and no image server on the group", async () => {
    const noDhcp = await guest("n", 13);
    const noServer = await guest("q", 14);
    const before = [await sha256File(noDhcp.disk), await sha256File(noServer.disk)];
    const [r1, r2] = await Promise.all([
      directBoot(noDhcp, load("only"), false),
      directBoot(noServer, `discus.action=load discus.group=${lab.group(9)} discus.disk=only discus.giveup=5s`),
    ]);
    await expectFailure(noDhcp, r1, /FAILED: DHCP: no answer on eth0/, false, before[0]!);
    await expectFailure(noServer, r2, /FAILED: .*(no server|silent|answered)/i, false, before[1]!);
  }, GUEST_TIMEOUT_MS);
});
