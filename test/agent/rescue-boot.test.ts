// The USB rescue stick, for real: scripts/build-rescue puts dist/vmlinuz, dist/initramfs.img
// and a signed image onto a stick image; QEMU boots it as a USB disk with no network, once with
// SeaBIOS (syslinux) and once with OVMF without Secure Boot (the same signed shim -> GRUB chain
// that test/agent/secureboot-stick.test.ts boots with it), and the agent restores the image onto
// the machine's virtio disk. The host then checks that disk and boots it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { bootedLine, makeBootDisk, type BootDisk } from "../fixtures/bootdisk.ts";
import { repoRoot } from "../fixtures/common.ts";
import { FIXTURE_TIMEOUT_MS, discusOk, tmpDir } from "../helpers.ts";
import { bootQemu, type BootResult } from "./qemu.ts";
import { agentLines, checkBootDisk, ensureNetbootBuild, GUEST_TIMEOUT_MS, guestArgs, INITRAMFS, plainUefiFirmware, VMLINUZ, virtioDisk } from "./netboot-env.ts";

const DISK_BYTES = 128 << 20;
const IMAGE_NAME = "new-os.dsc";

let work = "";
let stick = "";
let newOs: BootDisk;
let oldDisk = "";

function buildStick(out: string, args: string[]): { exitCode: number; stderr: string } {
  const r = Bun.spawnSync(["bash", "scripts/build-rescue", "--kernel", VMLINUZ, "--initramfs", INITRAMFS, "--out", out, ...args], { cwd: repoRoot });
  return { exitCode: r.exitCode, stderr: r.stderr.toString() };
}

beforeAll(async () => {
  await ensureNetbootBuild();
  work = await tmpDir();
  const source = join(work, "new-os.img");
  newOs = await makeBootDisk({ path: source, sizeBytes: DISK_BYTES, marker: "new-1", kernelPath: VMLINUZ });
  oldDisk = join(work, "old-os.img");
  await makeBootDisk({ path: oldDisk, sizeBytes: DISK_BYTES, marker: "old-1", kernelPath: VMLINUZ });
  await discusOk(["keygen", join(work, "site")]);
  await discusOk(["create", "--quiet", "--sign", join(work, "site.key"), source, join(work, IMAGE_NAME)]);
  const keyHex = /discus\.key=([0-9a-f]{64})/.exec(await discusOk(["key", join(work, "site.pub")]))![1]!;
  stick = join(work, "rescue.img");
  // `only`: the one fixed disk; the stick itself (removable, labelled) is never a candidate.
  const built = buildStick(stick, ["--image", join(work, IMAGE_NAME), "--append", `discus.disk=only discus.key=${keyHex} discus.after=poweroff discus.onfail=poweroff`]);
  if (built.exitCode !== 0) throw new Error(`build-rescue failed: ${built.stderr}`);
}, FIXTURE_TIMEOUT_MS);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Boots the stick (USB, first) with a fresh copy of the old-OS disk; no network at all. */
async function bootStick(name: string, firmware: string[]): Promise<{ r: BootResult; disk: string }> {
  const disk = join(work, `${name}.img`);
  copyFileSync(oldDisk, disk);
  const r = await bootQemu({
    args: [
      ...firmware,
      ...guestArgs(),
      "-nic", "none",
      "-device", "qemu-xhci",
      "-drive", `if=none,id=stick,format=raw,file=${stick}`,
      "-device", "usb-storage,drive=stick,bootindex=0",
      ...virtioDisk(disk, "TARGET", 1),
    ],
    timeoutMs: GUEST_TIMEOUT_MS,
    marks: { agent: /discus \S+ agent started/, written: /disk written/ },
  });
  return { r, disk };
}

async function expectRestored(name: string, r: BootResult, disk: string): Promise<void> {
  const lines = agentLines(r.console);
  expect(r.timedOut, `${name} timed out:\n${lines}`).toBe(false);
  expect(lines).toContain(`image file ${IMAGE_NAME} on /dev/sd`);
  expect(lines).toMatch(/\/dev\/sd\w+ .*\[removable, usb, discus boot medium\]/);
  expect(lines).toMatch(/target \/dev\/vda .*serial "TARGET" \(rule only\)/);
  expect(lines).toMatch(/disk written: \/dev\/vda, .* signature verified/);
  expect(lines).toContain("powering off");
  expect(r.exitCode).toBe(0);
  console.log(`${name}: power-on to agent start ${r.marks.agent} s, to disk written ${r.marks.written} s`);
  const check = await checkBootDisk(disk, Object.keys(newOs.files));
  expect(check.fsckCode, check.fsckOutput).toBe(0);
  expect(check.files).toEqual(newOs.files);
  const boot = await bootQemu({ args: [...guestArgs(512), "-nic", "none", ...virtioDisk(disk, "TARGET", 1)], timeoutMs: GUEST_TIMEOUT_MS });
  expect(boot.console).toContain(bootedLine("new-1"));
}

test("build-rescue names a missing kernel and how to fix it", () => {
  const never = join(work, "never.img");
  const r = Bun.spawnSync(["bash", "scripts/build-rescue", "--kernel", join(work, "no-such-vmlinuz"), "--initramfs", INITRAMFS, "--out", never], { cwd: repoRoot });
  expect(r.exitCode).toBe(1);
  expect(r.stderr.toString()).toContain(`kernel '${join(work, "no-such-vmlinuz")}' not found: pass --kernel`);
  expect(existsSync(never)).toBe(false);
});

test("the stick restores the machine's disk under BIOS (SeaBIOS, syslinux)", async () => {
  const { r, disk } = await bootStick("bios", []);
  await expectRestored("BIOS", r, disk);
}, GUEST_TIMEOUT_MS * 2);

test("the stick restores the machine's disk under UEFI without Secure Boot (OVMF, shim, signed GRUB)", async () => {
  const { r, disk } = await bootStick("uefi", plainUefiFirmware(work));
  expect(r.console).toContain("Secure boot disabled");
  await expectRestored("UEFI", r, disk);
}, GUEST_TIMEOUT_MS * 2);
