// Times the rescue stick's UEFI boot, one run, three ways: the stick as it was before Secure Boot
// support (a standalone unsigned GRUB as EFI/BOOT/BOOTX64.EFI), today's signed chain (shim ->
// Debian-signed GRUB -> signed kernel) with Secure Boot off, and the same with Secure Boot on.
// Each guest restores the same signed 128 MiB image from the stick onto its virtio disk; printed:
// power-on -> agent started and power-on -> "disk written" (bootQemu marks; TCG, so only the
// differences between the rows mean much; all on q35). Usage: bun scripts/bench-stick-boot.ts
import { $ } from "bun";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { makeBootDisk } from "../test/fixtures/bootdisk.ts";
import { discusOk, tmpDir } from "../test/helpers.ts";
import { bootQemu } from "../test/agent/qemu.ts";
import { ensureNetbootBuild, GUEST_TIMEOUT_MS, guestArgs, INITRAMFS, plainUefiFirmware, secureBootFirmware, VMLINUZ, virtioDisk } from "../test/agent/netboot-env.ts";

const DISK_BYTES = 128 << 20;
const STICK_FAT = "@@1M";
/** The modules the unsigned standalone GRUB carried (scripts/build-rescue before issue 14). */
const STANDALONE_GRUB_MODULES = "part_msdos fat search search_label linux normal all_video";

const repo = join(import.meta.dir, "..");
const mtoolsEnv = { ...process.env, MTOOLS_SKIP_CHECK: "1" };

/** A copy of `stick` with the old UEFI loader: standalone GRUB holding the stick's own grub.cfg. */
async function legacyStick(stick: string, dir: string): Promise<string> {
  const out = join(dir, "legacy-stick.img");
  copyFileSync(stick, out);
  const cfg = join(dir, "grub.cfg");
  await $`mcopy -n -i ${out + STICK_FAT} ::/EFI/debian/grub.cfg ${cfg}`.env(mtoolsEnv).quiet();
  const efi = join(dir, "BOOTX64.EFI");
  await $`grub-mkstandalone -O x86_64-efi -o ${efi} --modules=${STANDALONE_GRUB_MODULES} --install-modules=${STANDALONE_GRUB_MODULES} --locales= --fonts= --themes= ${`boot/grub/grub.cfg=${cfg}`}`.quiet();
  await $`mcopy -o -i ${out + STICK_FAT} ${efi} ::/EFI/BOOT/BOOTX64.EFI`.env(mtoolsEnv).quiet();
  return out;
}

function plainFirmware(dir: string): string[] {
  // q35 as for Secure Boot (which needs it for SMM), so the rows differ only in firmware and loader.
  return ["-machine", "q35", ...plainUefiFirmware(dir)];
}

/** Rounds through the three ways (interleaved, so a burst of load hits all of them alike). */
const ROUNDS = Number(process.argv[2] ?? "2");
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 10) throw new Error("usage: bun scripts/bench-stick-boot.ts [ROUNDS 1..10]");

async function timeBoot(stick: string, firmware: string[], target: string): Promise<{ agent: number; written: number; secureBoot: boolean }> {
  const r = await bootQemu({
    args: [...firmware, ...guestArgs(), "-nic", "none", "-device", "qemu-xhci", "-drive", `if=none,id=stick,format=raw,file=${stick}`, "-device", "usb-storage,drive=stick,bootindex=0", ...virtioDisk(target, "TARGET", 1)],
    timeoutMs: GUEST_TIMEOUT_MS,
    marks: { agent: /discus \S+ agent started/, written: /disk written/, secureBoot: /Secure boot enabled/ },
  });
  if (r.marks.agent === undefined || r.marks.written === undefined) throw new Error(`the guest wrote no disk (timed out: ${r.timedOut}):\n${r.console.slice(-2000)}`);
  return { agent: r.marks.agent, written: r.marks.written, secureBoot: r.marks.secureBoot !== undefined };
}

const fmt = (xs: number[]) => `${Math.min(...xs).toFixed(1)} s (${xs.map((x) => x.toFixed(1)).join(", ")})`;

await ensureNetbootBuild();
const dir = await tmpDir();
try {
  const source = join(dir, "new-os.img");
  await makeBootDisk({ path: source, sizeBytes: DISK_BYTES, marker: "new-1", kernelPath: VMLINUZ });
  const old = join(dir, "old-os.img");
  await makeBootDisk({ path: old, sizeBytes: DISK_BYTES, marker: "old-1", kernelPath: VMLINUZ });
  await discusOk(["keygen", join(dir, "site")]);
  await discusOk(["create", "--quiet", "--sign", join(dir, "site.key"), source, join(dir, "new-os.dsc")]);
  const keyHex = /discus\.key=([0-9a-f]{64})/.exec(await discusOk(["key", join(dir, "site.pub")]))![1]!;
  const stick = join(dir, "stick.img");
  await $`bash scripts/build-rescue --kernel ${VMLINUZ} --initramfs ${INITRAMFS} --out ${stick} --image ${join(dir, "new-os.dsc")} --append ${`discus.disk=only discus.key=${keyHex} discus.after=poweroff discus.onfail=poweroff`}`.cwd(repo).quiet();
  const legacy = await legacyStick(stick, dir);
  console.log(`${new Date().toISOString()}, load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
  const runs: [string, string, (d: string) => string[]][] = [
    ["before: standalone unsigned GRUB, OVMF", legacy, plainFirmware],
    ["signed shim → GRUB → kernel, OVMF, Secure Boot off", stick, plainFirmware],
    ["signed shim → GRUB → kernel, OVMF with Microsoft's keys, Secure Boot on", stick, secureBootFirmware],
  ];
  const results = runs.map(() => ({ agent: [] as number[], written: [] as number[], secureBoot: false }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, [, s, firmware]] of runs.entries()) {
      const fw = join(dir, `fw-${round}-${i}`);
      mkdirSync(fw);
      const target = join(dir, `target-${round}-${i}.img`);
      copyFileSync(old, target);
      const t = await timeBoot(s, firmware(fw), target);
      results[i]!.agent.push(t.agent);
      results[i]!.written.push(t.written);
      results[i]!.secureBoot = t.secureBoot;
    }
  }
  console.log(`| stick, firmware (q35, TCG) | power-on → agent started, best (each run) | power-on → disk written, best (each run) | Secure Boot |\n|---|---:|---:|---|`);
  for (const [i, [name]] of runs.entries()) console.log(`| ${name} | ${fmt(results[i]!.agent)} | ${fmt(results[i]!.written)} | ${results[i]!.secureBoot ? "on" : "off"} |`);
  console.log(`load average after: ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
