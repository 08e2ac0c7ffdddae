// "No reload asked": boot the installed OS without writing a byte. The agent finds the installed
// Linux's boot entry on a read-only mount (ext4 mounted `noload`, so not even the journal is
// replayed), copies its kernel and initrd to memory and loads them with kexec; /init then jumps
// into them. Other operating systems are booted by the PXE stage instead (docs/NETBOOT.md).
// Under Secure Boot the kernel is locked down: kexec_load is refused and kexec_file_load takes only
// kernels signed by a key it trusts. When both refuse, the OS is booted by a reboot instead
// (rebootPlan: through the firmware's BootNext from the stick, through PXE when netbooted).
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import type { DiskInfo } from "./disks.ts";
import { chooseBootEntry, describeEntry, diskIdentity, EFIVARS_DIR, readBootEntries, setBootNext } from "./efiboot.ts";

export interface BootEntry {
  kernel: string;
  initrd: string | null;
  append: string;
}

/** Where boot loaders keep their configuration, relative to a partition's root. */
const CONFIG_PATHS = [
  "boot/extlinux/extlinux.conf",
  "extlinux/extlinux.conf",
  "boot/syslinux/syslinux.cfg",
  "syslinux/syslinux.cfg",
  "boot/grub/grub.cfg",
  "grub/grub.cfg",
];
const MAX_CONFIG_BYTES = 1 << 20;
const MAX_KERNEL_BYTES = 256 << 20;

/** The default (else first) entry of an extlinux/syslinux configuration. Pure. */
export function parseExtlinux(text: string): BootEntry | null {
  const entries: { label: string; kernel: string | null; initrd: string | null; append: string }[] = [];
  let wanted: string | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const m = /^(\S+)\s*(.*)$/.exec(line);
    if (!m || line.startsWith("#")) continue;
    const word = m[1]!.toUpperCase();
    const rest = m[2]!.trim();
    if (word === "DEFAULT") wanted = rest;
    else if (word === "LABEL") entries.push({ label: rest, kernel: null, initrd: null, append: "" });
    const e = entries.at(-1);
    if (e === undefined) continue;
    if (word === "KERNEL" || word === "LINUX") e.kernel = rest;
    else if (word === "INITRD") e.initrd = rest.split(",")[0]!;
    else if (word === "APPEND") e.append = rest;
  }
  const chosen = entries.find((e) => e.label === wanted) ?? entries[0];
  if (chosen === undefined || chosen.kernel === null) return null;
  // An initrd may also be given as initrd= in APPEND.
  const inAppend = /(?:^|\s)initrd=(\S+)/.exec(chosen.append);
  return { kernel: chosen.kernel, initrd: chosen.initrd ?? inAppend?.[1] ?? null, append: chosen.append.replace(/(?:^|\s)initrd=\S+/, "").trim() };
}

/** The first menu entry of a GRUB configuration. Pure; variables are dropped, not expanded. */
export function parseGrubCfg(text: string): BootEntry | null {
  const start = text.search(/^\s*menuentry\s/m);
  if (start < 0) return null;
  let kernel: string | null = null;
  let initrd: string | null = null;
  let append = "";
  for (const raw of text.slice(start).split("\n").slice(1)) {
    const line = raw.trim();
    if (/^(menuentry|submenu)\s/.test(line) || line === "}") break;
    const m = /^(linux|linuxefi|linux16|initrd|initrdefi|initrd16)\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    if (m[1]!.startsWith("linux")) {
      kernel = m[2]!;
      append = m[3]!.replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, "").replace(/\s+/g, " ").trim();
    } else initrd = m[2]!;
  }
  return kernel === null ? null : { kernel, initrd, append };
}

/** A boot entry found on a mounted partition, with its paths made absolute. */
export function findBootEntry(mountPoint: string): { config: string; entry: BootEntry } | null {
  for (const rel of CONFIG_PATHS) {
    const path = join(mountPoint, rel);
    if (!existsSync(path) || statSync(path).size > MAX_CONFIG_BYTES) continue;
    const text = readFileSync(path, "utf8");
    const entry = rel.includes("grub") ? parseGrubCfg(text) : parseExtlinux(text);
    if (entry === null) continue;
    // extlinux resolves relative paths from its config's folder; GRUB's are from the partition root.
    const base = rel.includes("grub") ? mountPoint : dirname(path);
    const resolve = (p: string) => (p.startsWith("/") ? join(mountPoint, p) : join(base, p));
    return { config: rel, entry: { kernel: resolve(entry.kernel), initrd: entry.initrd === null ? null : resolve(entry.initrd), append: entry.append } };
  }
  return null;
}

export interface LocalBoot {
  disk: DiskInfo;
  partition: string;
  config: string;
  append: string;
  /** Staged for `kexec -e`; false when the kernel refused every kexec (why says so, kexec's words). */
  staged: boolean;
  why: string;
}

const SECURITYFS_DIR = "/sys/kernel/security";
const LOCKDOWN_FILE = `${SECURITYFS_DIR}/lockdown`;

/** The kernel's lockdown mode from "none [integrity] confidentiality"; null if it has none. Pure. */
export function parseLockdown(text: string): string | null {
  return /\[(\w+)\]/.exec(text)?.[1] ?? null;
}

/** Mounts a kernel filesystem at `dir` unless it is mounted there already (securityfs, efivarfs). */
function ensureMounted(run: Run, type: string, dir: string): void {
  const mounted = readFileSync("/proc/self/mounts", "utf8").split("\n").some((l) => l.split(" ")[1] === dir);
  if (!mounted) run(["mount", "-t", type, type, dir]);
}

/** The lockdown mode ("integrity" under Secure Boot), "none", or null when the kernel cannot say. */
export function lockdownMode(run: Run): string | null {
  ensureMounted(run, "securityfs", SECURITYFS_DIR);
  return existsSync(LOCKDOWN_FILE) ? parseLockdown(readFileSync(LOCKDOWN_FILE, "utf8")) : null;
}

/** kexec-tools prints its segments before its error: the last line is the reason. Pure. */
const lastLine = (output: string) => output.trim().split("\n").at(-1) ?? "";

/** Why kexec refused, in one phrase for the console. Pure. */
export function kexecRefusal(lockdown: string | null, kexecOutput: string): string {
  const said = lastLine(kexecOutput);
  if (lockdown !== null && lockdown !== "none") {
    return `the kernel is locked down (${lockdown}, as under Secure Boot): it kexecs only kernels signed by a key it trusts, and this one is not (kexec: ${said})`;
  }
  return `kexec: ${said}`;
}

type Run = (argv: string[]) => { ok: boolean; output: string };

/**
 * Mounts each partition of each fixed disk read-only until one holds a boot entry, then stages
 * it for kexec. Returns what was staged; else the first entry kexec refused (staged false); else
 * null. Nothing is written either way.
 */
export function stageInstalledLinux(disks: readonly DiskInfo[], run: Run, scratchDir: string, say: (line: string) => void): LocalBoot | null {
  const mountPoint = join(scratchDir, "probe");
  mkdirSync(mountPoint, { recursive: true });
  let refused: LocalBoot | null = null;
  for (const d of disks.filter((x) => !x.removable && !x.bootMedium)) {
    for (const part of d.partitions.length > 0 ? d.partitions : [d.path]) {
      // noload: do not replay the journal, so a read-only mount writes nothing at all.
      if (!run(["mount", "-t", "ext4", "-o", "ro,noload", part, mountPoint]).ok) continue;
      try {
        const found = findBootEntry(mountPoint);
        if (found === null) continue;
        const { entry } = found;
        if (!existsSync(entry.kernel) || statSync(entry.kernel).size > MAX_KERNEL_BYTES) {
          say(`${part}: ${found.config} names kernel ${entry.kernel.slice(mountPoint.length)}, which is missing or too large`);
          continue;
        }
        const kernel = join(scratchDir, "kernel");
        const initrd = join(scratchDir, "initrd");
        copyFileSync(entry.kernel, kernel);
        if (entry.initrd !== null) copyFileSync(entry.initrd, initrd);
        const args = [kernel, ...(entry.initrd !== null ? [`--initrd=${initrd}`] : []), `--command-line=${entry.append}`];
        // kexec_load first (any kernel); then kexec_file_load (-s), which lockdown allows for signed kernels.
        const load = run(["kexec", "-l", ...args]);
        const fileLoad = load.ok ? load : run(["kexec", "-s", "-l", ...args]);
        const booted = { disk: d, partition: part, config: found.config, append: entry.append };
        if (fileLoad.ok) return { ...booted, staged: true, why: "" };
        say(`${part}: kexec could not load ${entry.kernel.slice(mountPoint.length)}: ${lastLine(load.output)}; with kexec_file_load: ${lastLine(fileLoad.output)}`);
        refused ??= { ...booted, staged: false, why: fileLoad.output };
      } finally {
        run(["umount", mountPoint]);
      }
    }
  }
  return refused;
}

/** How the installed OS gets booted when kexec is refused. */
export type RebootPlan =
  | { kind: "pxe" }
  | { kind: "boot-next"; entry: string }
  | { kind: "remove-stick"; why: string };

/**
 * A reboot would start what booted the agent. Netbooted (no discus stick in the machine), the PXE
 * stage boots the disk when no reload is ordered. From a stick, BootNext points the firmware at
 * the disk's own entry for one boot; without one (BIOS, or no entry names the disk) the user must
 * pull the stick. Sets BootNext as a side effect.
 */
export function rebootPlan(boot: LocalBoot, disks: readonly DiskInfo[], run: Run): RebootPlan {
  if (!disks.some((d) => d.bootMedium)) return { kind: "pxe" };
  if (!existsSync("/sys/firmware/efi")) return { kind: "remove-stick", why: "BIOS firmware has no one-time boot entry to set" };
  ensureMounted(run, "efivarfs", EFIVARS_DIR);
  const { options, order } = readBootEntries();
  if (options.length === 0) return { kind: "remove-stick", why: `the firmware's boot entries cannot be read (efivarfs at ${EFIVARS_DIR})` };
  try {
    const entry = chooseBootEntry(options, order, diskIdentity(boot.disk.name, disks.map((d) => d.name)));
    if (entry === null) return { kind: "remove-stick", why: `none of the firmware's ${options.length} boot entries names ${boot.disk.path}` };
    setBootNext(entry.number);
    return { kind: "boot-next", entry: describeEntry(entry) };
  } catch (e) {
    // Reading the disk's table or writing BootNext failed: the user can still pull the stick.
    return { kind: "remove-stick", why: `setting UEFI BootNext failed: ${(e as Error).message}` };
  }
}
