// The signed UEFI network-boot chain (issue 14), on OVMF with Microsoft's keys and Secure Boot
// enforced: the firmware's own PXE loads shim from dnsmasq's TFTP, shim loads Debian's signed
// GRUB (as grubx64.efi), GRUB reads the documented static grub.cfg, which sources the daemon's
// per-MAC answer over TFTP (`discus server --tftp`; that GRUB has no http), and loads the signed
// kernel and the initramfs from dnsmasq's TFTP. A reloaded guest's agent writes its disk (a GPT
// disk whose ESP holds shim and signed GRUB); at its next boot the daemon's answer has GRUB chain
// to that disk's shim, which boots the new OS through the same signed chain, Secure Boot still on.
// (A bare `exit` would leave OVMF at its boot menu, not at its next boot option.)
// A GRUB with one flipped code byte is refused by shim; the disk untouched.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { bootedLine } from "../fixtures/bootdisk.ts";
import { makeUefiBootDisk, type UefiBootDisk } from "../fixtures/uefi-bootdisk.ts";
import { cli, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";
import { createLab, destroyStaleLabs, type Lab } from "../../scripts/lib/netlab.ts";
import { GRUB_TFTP_PORT, startPxeServer, type PxeServer, type SecureBootFiles } from "../../scripts/lib/pxe.ts";
import { startLabDaemon, type LabDaemon } from "../../scripts/lib/lab-daemon.ts";
import { bootQemu, type BootResult } from "./qemu.ts";
import { GRUB_LOCAL_DISK } from "../../src/daemon/boot-script.ts";
import { agentLines, checkBootDisk, daemonFiles, ensureNetbootBuild, GUEST_TIMEOUT_MS, guestArgs, secureBootFirmware, VMLINUZ, virtioDisk } from "./netboot-env.ts";
import type { JobRecord, NodeRecord } from "../../src/daemon/model.ts";

const DISK_BYTES = 128 << 20;
const SIGNED_GRUB = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed";
/** A byte inside GRUB's .text section (it starts at file offset 0x1000): code, covered by the signature. */
const TAMPER_OFFSET = 0x1000 + 0x200;
/** Inside the kernel's .text section (file offsets 0x5000..0x7dc000 in the pinned kernel): covered by its signature. */
const KERNEL_TAMPER_OFFSET = 0x10000;
const FILE_TIMEOUT_MS = 4 * GUEST_TIMEOUT_MS;
const mac = (n: number) => `52:54:00:5b:00:${n.toString(16).padStart(2, "0")}`;
/** The kernel's own word that the firmware enforced Secure Boot. */
const SECURE_BOOT_LINE = /secureboot: Secure boot enabled/;
/** What shim prints (in a box on the console) when the second stage's signature does not verify. */
const SHIM_REFUSED = /Verification failed: \(0x1A\) Security Violation/;
const NEW_MARKER = "new-sb";
const OLD_MARKER = "old-sb";
/** The tiny OS's last word, or OVMF giving up (its boot menu, or no option left): each ends the run at once. */
const OS_BOOTED_OR_NONE = /discus-test-os: \S+ booted|starting Boot\w+ "UiApp"|No bootable option or device was found/;

let dir = "";
let lab: Lab;
let pxe: PxeServer | undefined;
let daemon: LabDaemon | undefined;
let state = "";
let newOs: UefiBootDisk;
let oldDisk = "";
let taps = 0;

interface Guest {
  name: string;
  mac: string;
  disk: string;
  serial: string;
  /** Its own firmware variable store, as a machine has. */
  firmware: string[];
}

function guest(name: string, n: number, secureBoot = true): Guest {
  const disk = join(dir, `${name}.img`);
  copyFileSync(oldDisk, disk);
  const nvram = join(dir, `${name}-nvram`);
  mkdirSync(nvram);
  return { name, mac: mac(n), disk, serial: `DISK-${name.toUpperCase()}`, firmware: secureBoot ? secureBootFirmware(nvram) : [] };
}

/** Flips one byte of a signed binary, inside what its signature covers. */
function tampered(from: string, offset: number, name: string): string {
  const bytes = readFileSync(from);
  bytes[offset] = bytes[offset]! ^ 0xff;
  const out = join(dir, name);
  writeFileSync(out, bytes);
  return out;
}

const reloadAgent = /discus init \[.*\]: (rebooting|halted)/;
let sbTimes = "";

/**
 * Powers a guest on: network first, then its disk. Secure Boot guests get `romfile=`: the
 * firmware's own PXE, not iPXE's unsigned ROM. BIOS guests (no firmware arguments) boot QEMU's iPXE.
 */
async function netBoot(g: Guest, until: RegExp, exitGraceMs = 1000): Promise<BootResult> {
  const tap = await lab.addTap(++taps);
  return bootQemu({
    prefix: ["ip", "netns", "exec", lab.switchNs],
    args: [
      ...guestArgs(),
      ...g.firmware,
      "-netdev", `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      "-device", `virtio-net-pci,netdev=n0,mac=${g.mac},bootindex=1${g.firmware.length > 0 ? ",romfile=" : ""}`,
      ...virtioDisk(g.disk, g.serial, 2),
    ],
    timeoutMs: GUEST_TIMEOUT_MS,
    consolePath: join(dir, `${g.name}-${taps}.console`),
    marks: { agent: /discus agent \[.*\]: discus \S+ agent started/, written: /disk written/ },
    until,
    exitGraceMs,
  });
}

async function fleet(args: string[]): Promise<string> {
  const r = await lab.exec(lab.server, ["bun", cli, ...args, "--state", state]);
  if (r.exitCode !== 0) throw new Error(`discus ${args.join(" ")} exited ${r.exitCode}: ${r.stderr}\ndaemon log:\n${daemon?.log().slice(-3000)}`);
  return r.stdout;
}

async function nodeStatus(name: string): Promise<{ node: NodeRecord; job: JobRecord | null }> {
  return JSON.parse(await fleet(["node", "show", name, "--json"])) as { node: NodeRecord; job: JobRecord | null };
}

async function startPxe(sb: SecureBootFiles): Promise<void> {
  await pxe?.stop();
  pxe = await startPxeServer(lab, { dir: join(dir, "pxe"), siteArgs: "", reload: new Map(), chainTo: daemon!.url, secureBoot: sb });
}

/** The console's last lines and the servers' logs, for a failing expectation. */
function why(r: BootResult): string {
  return `${r.console.slice(-4000)}\n--- dnsmasq:\n${pxe?.log().slice(-2000)}\n--- daemon:\n${daemon?.log().slice(-2000)}`;
}

beforeAll(async () => {
  await ensureNetbootBuild();
  await destroyStaleLabs();
  dir = await tmpDir();
  const source = join(dir, "new-os.img");
  newOs = await makeUefiBootDisk({ path: source, sizeBytes: DISK_BYTES, marker: NEW_MARKER, kernelPath: VMLINUZ });
  // The old OS boots under Secure Boot too: a guest whose disk was not rewritten would show its marker.
  oldDisk = join(dir, "old-os.img");
  await makeUefiBootDisk({ path: oldDisk, sizeBytes: DISK_BYTES, marker: OLD_MARKER, kernelPath: VMLINUZ });
  const { images, bootDir, publicKey } = await daemonFiles(dir, source);
  lab = await createLab({ clients: 0, linkMbit: 100 });
  state = join(dir, "state");
  daemon = await startLabDaemon(lab, { state, images, args: ["--boot-dir", bootDir, "--key", publicKey, "--tftp", `${lab.server.address}:${GRUB_TFTP_PORT}`] });
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  await daemon?.stop();
  await pxe?.stop();
  await lab?.destroy();
  if (dir) await $`rm -rf ${dir}`.quiet().nothrow();
}, FIXTURE_TIMEOUT_MS);

describe("UEFI Secure Boot network boot: shim -> signed GRUB -> signed kernel -> agent", () => {
  test("a reloaded guest loads its disk with Secure Boot on; its next boot chains to the disk's shim and boots the new OS", async () => {
    await startPxe({});
    const a = guest("a", 1);
    await fleet(["node", "add", "a", "--mac", a.mac, "--disk", `serial:${a.serial}`]);
    await fleet(["reload", "a", "--image", "new-os"]);

    // -no-reboot: QEMU ends when the agent reboots after writing.
    const a1 = await netBoot(a, reloadAgent, 10_000);
    const lines = agentLines(a1.console);
    expect(a1.timedOut, why(a1)).toBe(false);
    expect(a1.console, why(a1)).toMatch(SECURE_BOOT_LINE);
    expect(a1.console).toContain(`discus: load for ${a.mac}`);
    expect(lines).toContain("target /dev/vda");
    expect(lines).toContain("signature verified");
    expect(lines).toContain("reported written to the control server");
    const check = await checkBootDisk(a.disk, Object.keys(newOs.files));
    expect(check.fsckCode, check.fsckOutput).toBe(0);
    expect(check.files).toEqual(newOs.files);
    expect((await nodeStatus("a")).job?.state).toBe("written");
    sbTimes = `Secure Boot (OVMF, shim, GRUB over TFTP): power-on to agent ${a1.marks.agent} s, to disk written ${a1.marks.written} s`;
    console.log(sbTimes);

    // Next power-on: the daemon answers GRUB with the local disk: chain to the written disk's
    // shim, then its GRUB, its signed kernel, the new OS (which powers off).
    const a2 = await netBoot(a, OS_BOOTED_OR_NONE);
    expect(a2.matched, why(a2)).toBe(true);
    expect(a2.console, why(a2)).toContain("discus: reloaded: booting the new system");
    expect(a2.console).not.toContain("discus agent");
    expect(a2.console, why(a2)).toContain(bootedLine(NEW_MARKER));
    expect(a2.console.slice(a2.console.indexOf("discus: reloaded")), why(a2)).toMatch(SECURE_BOOT_LINE);
    console.log(`Secure Boot, after the write: power-on to the new OS booted from its disk ${a2.seconds} s`);
    const s = await nodeStatus("a");
    expect(`${s.node.state}/${s.job?.state}`).toBe("booted/booted");
    // The same answer over HTTP, for a GRUB that has http: nothing asked now, so the local disk.
    const overHttp = await lab.exec(lab.server, ["curl", "-sf", `${daemon!.url}/boot.grub?mac=${a.mac}`]);
    expect(overHttp.stdout).toBe(`echo 'discus: no reload asked: booting the local disk'\n${GRUB_LOCAL_DISK}\n`);
  }, FILE_TIMEOUT_MS);

  test("a BIOS guest on the same DHCP set-up keeps the iPXE path (timed next to the Secure Boot one)", async () => {
    const b = guest("b", 3, false);
    await fleet(["node", "add", "b", "--mac", b.mac, "--disk", `serial:${b.serial}`]);
    await fleet(["reload", "b", "--image", "new-os"]);
    const b1 = await netBoot(b, reloadAgent, 10_000);
    expect(b1.timedOut, why(b1)).toBe(false);
    // Only boot.ipxe's kernel line passes initrd= (iPXE's name for the initramfs); GRUB's does not.
    expect(b1.console).toContain("Command line: initrd=initramfs ");
    expect(b1.console).not.toMatch(SECURE_BOOT_LINE);
    expect(agentLines(b1.console)).toContain("reported written to the control server");
    const check = await checkBootDisk(b.disk, Object.keys(newOs.files));
    expect(check.files).toEqual(newOs.files);
    console.log(`${sbTimes}\niPXE (SeaBIOS, iPXE, HTTP from the daemon): power-on to agent ${b1.marks.agent} s, to disk written ${b1.marks.written} s (load average ${loadavg().map((x) => x.toFixed(2)).join(" ")})`);
  }, FILE_TIMEOUT_MS);

  test("a GRUB with one flipped code byte is refused by shim; no agent, the disk untouched", async () => {
    await startPxe({ grubEfi: tampered(SIGNED_GRUB, TAMPER_OFFSET, "grubx64-tampered.efi") });
    const t = guest("t", 2);
    const before = await sha256File(t.disk);
    await fleet(["node", "add", "t", "--mac", t.mac, "--disk", `serial:${t.serial}`]);
    await fleet(["reload", "t", "--image", "new-os"]);

    const r = await netBoot(t, SHIM_REFUSED);
    expect(r.matched, why(r)).toBe(true);
    expect(r.console).not.toContain("Welcome to GRUB");
    expect(r.console).not.toContain("discus agent");
    expect(await sha256File(t.disk)).toBe(before);
    expect((await nodeStatus("t")).job?.state).toBe("queued");
  }, FILE_TIMEOUT_MS);

  test("a kernel with one flipped code byte is refused at GRUB's linux; GRUB boots the local disk, no agent, the disk untouched", async () => {
    await startPxe({ kernel: tampered(VMLINUZ, KERNEL_TAMPER_OFFSET, "vmlinuz-tampered") });
    const k = guest("k", 4);
    const before = await sha256File(k.disk);
    await fleet(["node", "add", "k", "--mac", k.mac, "--disk", `serial:${k.serial}`]);
    await fleet(["reload", "k", "--image", "new-os"]);

    // GRUB then chains to the disk's own loader: the old OS boots, as it would without a reload.
    const r = await netBoot(k, new RegExp(bootedLine(OLD_MARKER)));
    expect(r.matched, why(r)).toBe(true);
    const refusedAt = r.console.indexOf("error: bad shim signature");
    expect(refusedAt, why(r)).toBeGreaterThan(r.console.indexOf(`discus: load for ${k.mac}`));
    expect(r.console.indexOf("discus: could not load the netboot kernel")).toBeGreaterThan(refusedAt);
    expect(r.console).not.toContain("discus agent");
    expect(await sha256File(k.disk)).toBe(before);
  }, FILE_TIMEOUT_MS);
});
