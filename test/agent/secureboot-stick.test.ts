// The rescue stick under UEFI Secure Boot, for real: OVMF's Secure Boot build with Microsoft's keys
// enrolled boots the stick's Microsoft-signed shim, which loads Debian-signed GRUB, which loads the
// Debian-signed kernel; the kernel then runs locked down (integrity). The agent restores a signed
// image with every --free mode, pieces with a flipped byte are refused before anything runs, and
// kexec of an unsigned installed kernel is refused, so the agent reboots into the disk via BootNext.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bootedLine, makeBootDisk, type BootDisk } from "../fixtures/bootdisk.ts";
import { repoRoot } from "../fixtures/common.ts";
import { FIXTURE_TIMEOUT_MS, discusOk, sha256File, tmpDir } from "../helpers.ts";
import { bootQemu, type BootResult } from "./qemu.ts";
import { agentLines, checkBootDisk, ensureNetbootBuild, GUEST_TIMEOUT_MS, guestArgs, INITRAMFS, secureBootFirmware, VMLINUZ } from "./netboot-env.ts";

const DISK_BYTES = 128 << 20;
const IMAGE_NAME = "new-os.dsc";
const FREE_MODES = ["skip", "zero", "discard"] as const;
/** What the target holds before a restore: free ranges keep it only with --free skip. */
const FILL_BYTE = 0xa5;
/** Where the stick's FAT partition starts (scripts/build-rescue), for mtools. */
const STICK_FAT = "@@1M";
/** Seconds a refused boot may take before the refusal shows; the guest is killed right after. */
const REFUSAL_TIMEOUT_MS = 180_000;
const SECURE_BOOT_ON = /secureboot: Secure boot enabled/;
const LOCKED_DOWN = /Kernel is locked down from EFI Secure Boot/;

let work = "";
let newOs: BootDisk;
let image = "";
let keyHex = "";
let filled = "";
const sticks: Record<string, string> = {};

function buildStick(name: string, args: string[]): string {
  const out = join(work, `${name}.img`);
  const r = Bun.spawnSync(["bash", "scripts/build-rescue", "--kernel", VMLINUZ, "--initramfs", INITRAMFS, "--out", out, ...args], { cwd: repoRoot });
  if (r.exitCode !== 0) throw new Error(`build-rescue failed: ${r.stderr.toString()}`);
  return out;
}

/** A copy of `stick` whose FAT file `path` has one byte flipped halfway in: its signature no longer matches. */
async function tampered(stick: string, path: string, name: string): Promise<string> {
  const copy = join(work, `${name}.img`);
  const piece = join(work, `${name}.piece`);
  copyFileSync(stick, copy);
  const env = { ...process.env, MTOOLS_SKIP_CHECK: "1" };
  await $`mcopy -n -i ${copy + STICK_FAT} ${`::${path}`} ${piece}`.env(env).quiet();
  const bytes = readFileSync(piece);
  const at = bytes.length >> 1;
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(piece, bytes);
  await $`mcopy -o -i ${copy + STICK_FAT} ${piece} ${`::${path}`}`.env(env).quiet();
  return copy;
}

beforeAll(async () => {
  await ensureNetbootBuild();
  work = await tmpDir();
  const source = join(work, "new-os.img");
  newOs = await makeBootDisk({ path: source, sizeBytes: DISK_BYTES, marker: "new-1", kernelPath: VMLINUZ });
  await discusOk(["keygen", join(work, "site")]);
  image = join(work, IMAGE_NAME);
  await discusOk(["create", "--quiet", "--sign", join(work, "site.key"), source, image]);
  keyHex = /discus\.key=([0-9a-f]{64})/.exec(await discusOk(["key", join(work, "site.pub")]))![1]!;
  filled = join(work, "filled.img");
  writeFileSync(filled, new Uint8Array(DISK_BYTES).fill(FILL_BYTE));
  for (const mode of FREE_MODES) {
    sticks[mode] = buildStick(`stick-${mode}`, ["--image", image, "--append", `discus.disk=only discus.key=${keyHex} discus.free=${mode} discus.after=poweroff discus.onfail=poweroff`]);
  }
}, FIXTURE_TIMEOUT_MS);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A stick without an image: no reload order, so the agent boots the installed OS. Built once. */
let bootStick = "";
function stickBoot(): string {
  bootStick ||= buildStick("stick-boot", ["--append", "discus.net=off discus.onfail=poweroff"]);
  return bootStick;
}

/** Boots `stick` (USB, first) on Secure Boot firmware with `disk` as the one fixed disk; no network. */
async function bootSecure(name: string, stick: string, disk: string, opts: { until?: RegExp; timeoutMs?: number; reboot?: boolean } = {}): Promise<BootResult> {
  const dir = join(work, `fw-${name}`);
  mkdirSync(dir, { recursive: true });
  // discard=unmap: the guest's BLKDISCARD reaches the host file as a hole (reads as zeros).
  return await bootQemu({
    args: [
      ...secureBootFirmware(dir),
      ...guestArgs().filter((a) => opts.reboot !== true || a !== "-no-reboot"),
      "-nic", "none",
      "-device", "qemu-xhci",
      "-drive", `if=none,id=stick,format=raw,file=${stick}`,
      "-device", "usb-storage,drive=stick,bootindex=0",
      "-drive", `file=${disk},format=raw,if=none,id=target,discard=unmap`,
      "-device", "virtio-blk-pci,drive=target,serial=TARGET,bootindex=1",
    ],
    timeoutMs: opts.timeoutMs ?? GUEST_TIMEOUT_MS,
    until: opts.until,
    exitGraceMs: 0,
    marks: { agent: /discus \S+ agent started/, written: /disk written/ },
  });
}

/** The host's own restore of the image onto a filled disk with `mode`: what the guest must produce. */
async function expectedDisk(mode: string): Promise<string> {
  const out = join(work, `expected-${mode}.img`);
  copyFileSync(filled, out);
  await discusOk(["restore", "--quiet", "--free", mode, image, out]);
  return await sha256File(out);
}

describe("under Secure Boot (OVMF with Microsoft's keys), the signed stick", () => {
  for (const mode of FREE_MODES) {
    test(`restores the disk with --free ${mode} while the kernel is locked down`, async () => {
      const disk = join(work, `target-${mode}.img`);
      copyFileSync(filled, disk);
      const r = await bootSecure(mode, sticks[mode]!, disk);
      const lines = agentLines(r.console);
      expect(r.timedOut, `timed out:\n${lines}`).toBe(false);
      expect(r.console).toMatch(SECURE_BOOT_ON);
      expect(r.console).toMatch(LOCKED_DOWN);
      expect(lines).toContain(`image file ${IMAGE_NAME} on /dev/sd`);
      expect(lines).toContain(`free = ${mode}`);
      expect(lines).toMatch(/disk written: \/dev\/vda, .* signature verified/);
      expect(lines).toContain("powering off");
      console.log(`Secure Boot stick, --free ${mode}: power-on to agent start ${r.marks.agent} s, to disk written ${r.marks.written} s`);
      // Byte for byte what the host's restore makes with the same mode: free ranges keep the fill
      // byte only with skip, read as zeros after zero-out or discard.
      expect(await sha256File(disk)).toBe(await expectedDisk(mode));
      const check = await checkBootDisk(disk, Object.keys(newOs.files));
      expect(check.fsckCode, check.fsckOutput).toBe(0);
      expect(check.files).toEqual(newOs.files);
      // The host file's allocation tells discard from a fallback to zero-out: only a discard that
      // reached QEMU (discard=unmap) leaves holes where the free ranges were.
      const allocatedBytes = statSync(disk).blocks * 512;
      console.log(`  --free ${mode}: target file has ${(allocatedBytes / 2 ** 20).toFixed(1)} of ${DISK_BYTES / 2 ** 20} MiB allocated`);
      if (mode === "discard") expect(allocatedBytes).toBeLessThan(DISK_BYTES / 2);
    }, GUEST_TIMEOUT_MS * 2);
  }

  test("the free modes differ on this disk (the fill byte survives only --free skip)", async () => {
    expect(await expectedDisk("skip")).not.toBe(await expectedDisk("zero"));
    expect(await expectedDisk("discard")).toBe(await expectedDisk("zero"));
  }, FIXTURE_TIMEOUT_MS);

  test("with a tampered GRUB is refused by shim, and the disk is untouched", async () => {
    const stick = await tampered(sticks.zero!, "/EFI/BOOT/grubx64.efi", "bad-grub");
    const disk = join(work, "target-bad-grub.img");
    copyFileSync(filled, disk);
    const before = await sha256File(disk);
    const r = await bootSecure("bad-grub", stick, disk, { until: /Verification failed|Security Violation/, timeoutMs: REFUSAL_TIMEOUT_MS });
    expect(r.matched, r.console.slice(-2000)).toBe(true);
    // shim draws its error in a box: keep the words, not the escape codes around them.
    console.log(`tampered GRUB: ${/(?:Verification failed|Security Violation)[^\x1b\r\n³]*/.exec(r.console)![0].trim()}`);
    expect(r.console).not.toContain("Booting `discus'");
    expect(r.console).not.toContain("agent started");
    expect(await sha256File(disk)).toBe(before);
  }, REFUSAL_TIMEOUT_MS * 2);

  test("with a tampered kernel is refused by GRUB (shim's verifier), and the disk is untouched", async () => {
    const stick = await tampered(sticks.zero!, "/vmlinuz", "bad-kernel");
    const disk = join(work, "target-bad-kernel.img");
    copyFileSync(filled, disk);
    const before = await sha256File(disk);
    const r = await bootSecure("bad-kernel", stick, disk, { until: /bad shim signature|prohibited by secure boot policy|Security Violation/i, timeoutMs: REFUSAL_TIMEOUT_MS });
    expect(r.matched, r.console.slice(-2000)).toBe(true);
    console.log(`tampered kernel: ${/[^\n]*(?:bad shim signature|prohibited by secure boot policy|Security Violation)[^\n]*/i.exec(r.console)![0]}`);
    expect(r.console).toContain("Booting `discus'");
    expect(r.console).not.toMatch(SECURE_BOOT_ON);
    expect(r.console).not.toContain("agent started");
    expect(await sha256File(disk)).toBe(before);
  }, REFUSAL_TIMEOUT_MS * 2);

  test("without a reload order, a signed installed kernel is still kexec'd (kexec_file_load checks its signature)", async () => {
    const disk = join(work, "installed-signed.img");
    await makeBootDisk({ path: disk, sizeBytes: DISK_BYTES, marker: "signed-1", kernelPath: VMLINUZ });
    const before = await sha256File(disk);
    const r = await bootSecure("kexec-signed", stickBoot(), disk, { until: new RegExp(bootedLine("signed-1")) });
    const lines = agentLines(r.console);
    expect(r.matched, `${lines}\n${r.console.slice(-1500)}`).toBe(true);
    expect(r.console).toMatch(LOCKED_DOWN);
    expect(lines).toMatch(/booting the installed OS from \/dev\/vda1 \(boot\/extlinux\/extlinux.conf\)/);
    expect(lines).not.toContain("kexec refused");
    expect(await sha256File(disk)).toBe(before);
  }, GUEST_TIMEOUT_MS * 2);

  test("without a reload order, kexec of an unsigned installed kernel is refused: the agent says why and reboots into the disk through BootNext", async () => {
    // The installed OS's kernel with its Authenticode signature stripped: kexec_file_load refuses it.
    const unsigned = join(work, "vmlinuz-unsigned");
    copyFileSync(VMLINUZ, unsigned);
    await $`sbattach --remove ${unsigned}`.quiet();
    const disk = join(work, "installed.img");
    await makeBootDisk({ path: disk, sizeBytes: DISK_BYTES, marker: "installed-1", kernelPath: unsigned });
    const before = await sha256File(disk);
    const stick = stickBoot();
    // The firmware's first words after the agent's reboot: it loads the one-time entry.
    const refused = /kexec refused: [^\n]*rebooting into the installed OS on \/dev\/vda1[^\n]*UEFI BootNext = (Boot[0-9A-F]{4})/;
    const r = await bootSecure("kexec", stick, disk, { reboot: true, until: new RegExp(`${refused.source}[\\s\\S]*BdsDxe: (?:loading|failed to load) Boot`) });
    const lines = agentLines(r.console);
    expect(r.matched, `${lines}\n${r.console.slice(-1500)}`).toBe(true);
    expect(r.console).toMatch(SECURE_BOOT_ON);
    expect(lines).toContain("no reload asked: no disk will be written");
    const m = refused.exec(lines)!;
    expect(m[0]).toContain("the kernel is locked down (integrity, as under Secure Boot)");
    expect(lines).toContain("rebooting");
    // After the reset the firmware starts the entry the agent chose (the virtio disk), not the stick.
    const afterReboot = r.console.slice(r.console.indexOf(m[0]));
    const firmware = new RegExp(`BdsDxe: (?:loading|failed to load) ${m[1]} "[^"]*" from PciRoot\\(0x0\\)/Pci\\([^\n]*`);
    expect(afterReboot).toMatch(firmware);
    console.log(`${m[0]}\nthen the firmware: ${firmware.exec(afterReboot)![0]}`);
    expect(await sha256File(disk)).toBe(before);
  }, GUEST_TIMEOUT_MS * 2);
});
