// What the boot tests share: the netboot build (once per test run), the guests' QEMU arguments,
// the files a test's `discus server` serves, and checks of a guest's disk from the host.
import { $ } from "bun";
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { BOOT_PART_START_BYTES } from "../fixtures/bootdisk.ts";
import { repoRoot } from "../fixtures/common.ts";
import { discusOk } from "../helpers.ts";

export const DIST = join(repoRoot, "dist");
export const VMLINUZ = join(DIST, "vmlinuz");
export const INITRAMFS = join(DIST, "initramfs.img");
/** Guests boot under software emulation: every QEMU run gets a hard bound. */
export const GUEST_TIMEOUT_MS = 300_000;
/** Tests build the same initramfs with faster compression: the contents are what is tested. */
const TEST_ZSTD_LEVEL = "9";

let built: Promise<void> | null = null;

/** Builds dist/discus, dist/vmlinuz and dist/initramfs.img once per test process. */
export function ensureNetbootBuild(): Promise<void> {
  built ??= (async () => {
    await $`bash scripts/build`.cwd(repoRoot).quiet();
    await $`bun scripts/build-initramfs.ts`.cwd(repoRoot).env({ ...process.env, DISCUS_ZSTD_LEVEL: TEST_ZSTD_LEVEL }).quiet();
    for (const f of [VMLINUZ, INITRAMFS]) if (!existsSync(f)) throw new Error(`netboot build made no ${f}`);
  })();
  return built;
}

/** QEMU arguments common to every guest: software emulation with the CPU model Bun needs. */
export function guestArgs(memoryMiB = 1024): string[] {
  return ["-accel", "tcg", "-cpu", "max", "-m", String(memoryMiB), "-no-reboot"];
}

/** A virtio disk with a serial number, so the agent's rule can name it. */
export function virtioDisk(path: string, serial: string, bootIndex?: number): string[] {
  const id = `d${serial.replace(/[^A-Za-z0-9]/g, "")}`;
  return ["-drive", `file=${path},format=raw,if=none,id=${id}`, "-device", `virtio-blk-pci,drive=${id},serial=${serial}${bootIndex !== undefined ? `,bootindex=${bootIndex}` : ""}`];
}

export interface DiskCheck {
  fsckCode: number;
  fsckOutput: string;
  /** sha256 of each requested file, read back with debugfs (no mount). */
  files: Record<string, string>;
}

/** e2fsck -fn and file digests of the boot disk fixture's ext4 partition, read-only. */
export async function checkBootDisk(disk: string, paths: string[]): Promise<DiskCheck> {
  const dev = (await $`losetup --find --show --read-only --offset ${BOOT_PART_START_BYTES} ${disk}`.text()).trim();
  try {
    const fsck = await $`e2fsck -fn ${dev}`.quiet().nothrow();
    const files: Record<string, string> = {};
    for (const p of paths) {
      const bytes = await $`debugfs -R ${`cat ${p}`} ${dev}`.quiet().arrayBuffer();
      files[p] = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
    }
    return { fsckCode: fsck.exitCode, fsckOutput: fsck.stdout.toString() + fsck.stderr.toString(), files };
  } finally {
    await $`losetup -d ${dev}`.quiet().nothrow();
  }
}

/** The agent's console lines (for failure messages). */
export function agentLines(console: string): string {
  return console.split("\n").filter((l) => /discus (agent|init)/.test(l)).join("\n");
}

const OVMF_PLAIN_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_PLAIN_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/** QEMU arguments for UEFI without Secure Boot: OVMF and a private copy of its variable store in `dir`. */
export function plainUefiFirmware(dir: string): string[] {
  const vars = join(dir, "OVMF_VARS.plain.fd");
  copyFileSync(OVMF_PLAIN_VARS, vars);
  return ["-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_PLAIN_CODE}`, "-drive", `if=pflash,format=raw,unit=1,file=${vars}`];
}

const OVMF_SECBOOT_CODE = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd";
/** OVMF's variable store with Microsoft's KEK and db enrolled and Secure Boot on (Debian's `ovmf`). */
const OVMF_MS_VARS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/**
 * QEMU arguments for UEFI with Secure Boot enforced: OVMF's Secure Boot build (it needs SMM on
 * q35, and a flash only SMM code may write, or a guest could rewrite its own keys) and a private
 * copy of the Microsoft-keys variable store in `dir` (the guest writes its boot variables there).
 */
export function secureBootFirmware(dir: string): string[] {
  for (const f of [OVMF_SECBOOT_CODE, OVMF_MS_VARS]) if (!existsSync(f)) throw new Error(`no ${f}: install Debian's ovmf package (scripts/setup)`);
  const vars = join(dir, "OVMF_VARS.secboot.fd");
  copyFileSync(OVMF_MS_VARS, vars);
  return [
    "-machine", "q35,smm=on",
    "-global", "driver=cfi.pflash01,property=secure,value=on",
    "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_SECBOOT_CODE}`,
    "-drive", `if=pflash,format=raw,unit=1,file=${vars}`,
  ];
}

/**
 * What a test's `discus server` serves: `source` captured and signed with a fresh site key into
 * DIR/images/new-os.dsc, and the agent's kernel and initramfs in DIR/boot (the names its boot
 * scripts fetch from /boot/). Returns the folders and the public key for `--key`.
 */
export async function daemonFiles(dir: string, source: string): Promise<{ images: string; bootDir: string; publicKey: string }> {
  const images = join(dir, "images");
  mkdirSync(images);
  await discusOk(["keygen", join(dir, "site")]);
  await discusOk(["create", "--quiet", "--sign", join(dir, "site.key"), source, join(images, "new-os.dsc")]);
  const bootDir = join(dir, "boot");
  mkdirSync(bootDir);
  copyFileSync(VMLINUZ, join(bootDir, "vmlinuz"));
  copyFileSync(INITRAMFS, join(bootDir, "initramfs"));
  return { images, bootDir, publicKey: join(dir, "site.pub") };
}
