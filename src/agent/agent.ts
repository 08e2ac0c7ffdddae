// `discus agent`: what a PXE-booted node (or the rescue stick) runs after /init has loaded
// drivers and asked DHCP. It reads its settings, then either writes the chosen disk and says what
// to do next (reboot into the new OS), or touches no disk and boots the installed one.
// Every failure ends with one clear console message and, when the server can be reached, a report
// in the server's log; nothing is written unless every check before the first write passed.
import { availableParallelism } from "node:os";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { restoreImage } from "../target/restore.ts";
import { publicKeyFromRaw } from "../image/signing.ts";
import { DiscusError } from "../util/errors.ts";
import { formatBytes } from "../util/units.ts";
import { VERSION } from "../version.ts";
import { chooseDisk, describeDisk, listDisks, type DiskInfo } from "./disks.ts";
import { IMAGES_LABEL, isDiscusMedium, readLabel } from "./labels.ts";
import { kexecRefusal, lockdownMode, rebootPlan, stageInstalledLinux, type LocalBoot } from "./localboot.ts";
import { DaemonReporter } from "./daemon-client.ts";
import { describeHardware, readHardware } from "./inventory.ts";
import { reportFailure } from "./report.ts";
import { ANNOUNCE_WAIT_MS, loadOverNetwork } from "./fallback.ts";
import { SessionKey } from "../net/auth.ts";
import { describeSettings, dhcpOptionText, resolveSettings, type AgentSettings, type FinalAction } from "./settings.ts";

/** The site-specific DHCP option that carries discus settings (224..254 are the site range). */
export const DHCP_OPTION = 224;

export interface AgentPaths {
  cmdline: string;
  /** key=value lines written by /init's udhcpc script: iface, ip, mask, router, opt224... */
  netEnv: string;
  sysBlock: string;
  /** Where /init reads the next step from: reboot, poweroff, halt, shell or kexec. */
  nextFile: string;
  /** Scratch space in memory (mount points, the staged kernel). */
  runDir: string;
}

export const DEFAULT_PATHS: AgentPaths = {
  cmdline: "/proc/cmdline",
  netEnv: "/run/discus/net.env",
  sysBlock: "/sys/block",
  nextFile: "/run/discus/next",
  runDir: "/run/discus",
};

export type NextStep = FinalAction | "kexec";

/** Disks appear asynchronously (USB takes seconds): wait until the list holds still this long. */
const DISKS_STABLE_MS = 2000;
const DISKS_MAX_WAIT_MS = 20_000;
const IMAGE_PARTITION_MAX_WAIT_MS = 20_000;
const POLL_MS = 250;
const REPORT_WAIT_MS = 3000;

interface Lease {
  iface: string;
  ip: string;
  dhcpSettings: string | null;
}

function uptimeSeconds(): number {
  try {
    return Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
  } catch {
    return performance.now() / 1000;
  }
}

function say(line: string): void {
  for (const l of line.split("\n")) process.stdout.write(`discus agent [${uptimeSeconds().toFixed(2).padStart(7)} s]: ${l}\n`);
}

/** Parses the lease file /init's udhcpc script writes; null when no interface got a lease. Pure. */
export function parseLease(text: string): Lease | null {
  const env = new Map<string, string>();
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) env.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim().replace(/^'(.*)'$/, "$1"));
  }
  const ip = env.get("ip");
  const iface = env.get("interface");
  if (!ip || !iface) return null;
  const option = env.get(`opt${DHCP_OPTION}`);
  return { iface, ip, dhcpSettings: option ? dhcpOptionText(option) : null };
}

function readLease(path: string): Lease | null {
  return existsSync(path) ? parseLease(readFileSync(path, "utf8")) : null;
}

function spawnRun(argv: string[]): { ok: boolean; output: string } {
  const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  return { ok: p.exitCode === 0, output: `${p.stdout.toString()}${p.stderr.toString()}` };
}

async function sleepMs(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/**
 * Lists disks once the set has held still for DISKS_STABLE_MS (bounded by DISKS_MAX_WAIT_MS).
 * `isBootMedium` reads partition labels; the inventory passes one that opens nothing.
 */
async function settledDisks(sysBlock: string, isBootMedium: (partition: string) => boolean = isDiscusMedium): Promise<DiskInfo[]> {
  const startMs = performance.now();
  let names = "";
  let stableSinceMs = startMs;
  for (;;) {
    const now = existsSync(sysBlock) ? readdirSync(sysBlock).sort().join(" ") : "";
    const nowMs = performance.now();
    if (now !== names) {
      names = now;
      stableSinceMs = nowMs;
    }
    if (nowMs - stableSinceMs >= DISKS_STABLE_MS || nowMs - startMs >= DISKS_MAX_WAIT_MS) break;
    await sleepMs(POLL_MS);
  }
  return listDisks(sysBlock, isBootMedium);
}

/** Finds and mounts (read-only) the stick's image partition; returns the image file's path. */
async function mountImageFile(s: AgentSettings, paths: AgentPaths): Promise<string> {
  const startMs = performance.now();
  for (;;) {
    const parts = listDisks(paths.sysBlock, () => false).flatMap((d) => d.partitions);
    const found = parts.find((p) => readLabel(p) === IMAGES_LABEL);
    if (found !== undefined) {
      const mountPoint = join(paths.runDir, "images");
      mkdirSync(mountPoint, { recursive: true });
      const m = spawnRun(["mount", "-t", "ext4", "-o", "ro,noload", found, mountPoint]);
      if (!m.ok) throw new DiscusError("io", found, `holds the ${IMAGES_LABEL} partition but cannot be mounted: ${m.output.trim()}`, "Rebuild the stick with scripts/build-rescue");
      const file = join(mountPoint, s.file!);
      if (!existsSync(file)) throw new DiscusError("input", `discus.file=${s.file}`, `is not on ${found} (${IMAGES_LABEL})`, `It holds: ${readdirSync(mountPoint).filter((f) => f !== "lost+found").join(", ") || "nothing"}`);
      say(`image file ${s.file} on ${found}`);
      return file;
    }
    if (performance.now() - startMs > IMAGE_PARTITION_MAX_WAIT_MS) {
      throw new DiscusError("input", `discus.file=${s.file}`, `no partition labelled ${IMAGES_LABEL} appeared within ${IMAGE_PARTITION_MAX_WAIT_MS / 1000} s`, "Boot from a stick made by `scripts/build-rescue --image`, or load over the network with discus.group");
    }
    await sleepMs(POLL_MS);
  }
}

/** Writes the disk; returns the step after success and the rate. Throws DiscusError on any failure. */
async function reload(s: AgentSettings, lease: Lease | null, paths: AgentPaths, markLoadStarted: () => void, daemon: DaemonReporter | null): Promise<{ next: NextStep; bytesPerSecond: number; note: string }> {
  if ((s.group !== null || s.http !== null) && lease === null) {
    const ifaces = existsSync("/sys/class/net") ? readdirSync("/sys/class/net").filter((n) => n !== "lo") : [];
    throw new DiscusError("network", "DHCP", `no answer on ${ifaces.join(", ") || "any interface (no network driver matched this machine's NIC)"}`, "Check the cable, the DHCP server, and that the NIC's driver is in the initramfs");
  }
  const disks = await settledDisks(paths.sysBlock);
  say(`disks:\n${disks.map((d) => `  ${describeDisk(d)}`).join("\n") || "  (none)"}`);
  const disk = chooseDisk(s.disk!, disks);
  say(`target ${describeDisk(disk)} (rule ${s.disk})`);
  const publicKey = s.key === null ? null : publicKeyFromRaw(s.key);
  const keyPath = s.key === null ? null : "discus.key";
  const workers = Math.max(1, Math.min(availableParallelism(), 8));
  const startMs = performance.now();
  let written: number;
  let signature: string;
  let note = "";
  if (s.file !== null) {
    const image = await mountImageFile(s, paths);
    markLoadStarted();
    const r = await restoreImage({ image, target: disk.path, freeMode: s.free, workers, order: "sequential", seed: 1, publicKey, keyPath });
    written = r.writtenBytes;
    signature = r.signature;
  } else {
    say(s.group !== null ? `loading from group ${s.group}:${s.port} on ${lease!.iface} (${lease!.ip})${s.http !== null ? `, over HTTP if no server announces within ${ANNOUNCE_WAIT_MS / 1000} s` : ""}` : `loading over HTTP from ${s.http}`);
    markLoadStarted();
    const r = await loadOverNetwork({
      group: s.group,
      port: s.port,
      iface: lease!.ip,
      http: s.http,
      job: s.server !== null && s.token !== null && s.mac !== null ? { server: s.server, token: s.token, mac: s.mac } : null,
      target: disk.path,
      freeMode: s.free,
      workers,
      publicKey,
      keyPath,
      imageId: s.imageId,
      giveUpMs: s.giveUpMs,
      authKey: s.auth === null ? null : new SessionKey(s.auth),
      say,
      onEvent: (e) => {
        if (e.kind === "progress" && e.chunksTotal > 0) daemon?.progress((100 * e.chunksDone) / e.chunksTotal, e.bytesWritten / Math.max(0.001, (performance.now() - startMs) / 1000));
      },
    });
    written = r.stats.writtenBytes;
    signature = r.stats.signature;
    note = r.via === "http" ? r.note : "";
    say(`image ${r.stats.imageId}: ${r.note}: ${r.stats.chunks} chunks, ${r.stats.chunksRejected} rejected and fetched again, ${r.stats.requestsSent} requests`);
  }
  const seconds = (performance.now() - startMs) / 1000;
  say(`disk written: ${disk.path}, ${formatBytes(written)} in ${seconds.toFixed(1)} s, every chunk's digest checked, signature ${signature}`);
  return { next: s.after, bytesPerSecond: written / Math.max(0.001, seconds), note };
}

/** The daemon that booted this node, when its boot script named one. */
function daemonOf(s: AgentSettings): DaemonReporter | null {
  return s.server !== null && s.token !== null && s.mac !== null ? new DaemonReporter({ server: s.server, token: s.token, mac: s.mac }) : null;
}

/** Tells the daemon how the job ended; says on the console whether it heard. */
async function tellDaemon(daemon: DaemonReporter | null, state: "written" | "failed", bytesPerSecond: number, message: string): Promise<void> {
  if (daemon === null) return;
  const heard = await daemon.finish(state, bytesPerSecond, message);
  say(heard ? `reported ${state} to the control server` : `the control server did not take the ${state} report: it will show the job unfinished`);
}

/**
 * The `inventory` action: collects the hardware (opening no disk), prints it, gives it to the
 * control server, and powers off. Without a server in the settings it only prints.
 */
async function takeInventory(paths: AgentPaths, daemon: DaemonReporter | null): Promise<NextStep> {
  say("inventory: collecting the hardware; no disk will be opened or written");
  const { hardware, dropped } = readHardware(await settledDisks(paths.sysBlock, () => false));
  for (const line of describeHardware(hardware)) say(`  ${line}`);
  for (const d of dropped) say(`note: left out of the report: ${d}`);
  if (daemon === null) {
    say("no control server named (discus.server, discus.token, discus.mac): the inventory is on this console only");
    return "poweroff";
  }
  if (!(await daemon.inventory(hardware))) {
    throw new DiscusError("network", "the control server", "did not take the hardware inventory (no answer, or it refused the job token)", "Check that the node reaches the server, then boot it again for a fresh token; no disk was written");
  }
  say("inventory reported to the control server");
  return "poweroff";
}

/** Touches no disk: stages the installed Linux for kexec, or reboots into it, or fails saying why. */
async function bootInstalled(paths: AgentPaths, run: typeof spawnRun): Promise<NextStep> {
  say("no reload asked: no disk will be written");
  const disks = await settledDisks(paths.sysBlock);
  const staged = stageInstalledLinux(disks, run, paths.runDir, say);
  if (staged === null) {
    throw new DiscusError("input", "installed OS", "no fixed disk holds a Linux boot entry (extlinux or GRUB on ext4) to boot", "To boot another OS, let the PXE stage fall through to the local disk (docs/NETBOOT.md); no disk was written");
  }
  if (!staged.staged) return await rebootIntoDisk(staged, disks, paths, run);
  say(`booting the installed OS from ${staged.partition} (${staged.config}): ${staged.append}`);
  return "kexec";
}

/** Bounded wait for the user to pull the stick; the disk boots at the next power-on either way. */
const STICK_REMOVAL_MAX_WAIT_MS = 10 * 60_000;

/** kexec was refused: one console line with the cause, then a reboot that reaches the disk. */
async function rebootIntoDisk(boot: LocalBoot, disks: DiskInfo[], paths: AgentPaths, run: typeof spawnRun): Promise<NextStep> {
  const cause = `kexec refused: ${kexecRefusal(lockdownMode(run), boot.why)}`;
  const plan = rebootPlan(boot, disks, run);
  const target = `the installed OS on ${boot.partition} (${boot.config})`;
  if (plan.kind === "pxe") {
    say(`${cause}; rebooting into ${target} through PXE instead (with no reload ordered, the boot server sends the node to its disk)`);
    return "reboot";
  }
  if (plan.kind === "boot-next") {
    say(`${cause}; rebooting into ${target} through the firmware instead (UEFI BootNext = ${plan.entry}, once; the boot order is unchanged)`);
    return "reboot";
  }
  say(`${cause}; to boot ${target}, remove the discus stick (${plan.why}): rebooting as soon as it is out`);
  const startMs = performance.now();
  while (listDisks(paths.sysBlock, isDiscusMedium).some((d) => d.bootMedium)) {
    if (performance.now() - startMs > STICK_REMOVAL_MAX_WAIT_MS) {
      say(`the stick is still in after ${STICK_REMOVAL_MAX_WAIT_MS / 60_000} min: powering off (remove it, then power on)`);
      return "poweroff";
    }
    await sleepMs(POLL_MS);
  }
  return "reboot";
}

/** Runs the agent; writes the next step for /init and returns it, with whether all went well. */
export async function runAgent(paths: AgentPaths = DEFAULT_PATHS): Promise<{ next: NextStep; ok: boolean }> {
  say(`discus ${VERSION} agent started`);
  mkdirSync(paths.runDir, { recursive: true });
  let next: NextStep;
  let settings: AgentSettings | null = null;
  const lease = readLease(paths.netEnv);
  let loadStarted = false;
  let ok = false;
  let daemon: DaemonReporter | null = null;
  try {
    say(lease === null ? "network: no DHCP lease" : `network: ${lease.iface} ${lease.ip}${lease.dhcpSettings !== null ? `, DHCP option ${DHCP_OPTION}: ${lease.dhcpSettings}` : ""}`);
    settings = resolveSettings(readFileSync(paths.cmdline, "utf8"), lease?.dhcpSettings ?? null);
    for (const line of describeSettings(settings)) say(`  ${line}`);
    for (const note of settings.notes) say(`note: ${note}`);
    daemon = daemonOf(settings);
    if (settings.action === "load") {
      const r = await reload(settings, lease, paths, () => (loadStarted = true), daemon);
      // A load that fell back to HTTP says so in the daemon's log: multicast is not reaching this node.
      await tellDaemon(daemon, "written", r.bytesPerSecond, r.note);
      next = r.next;
    } else if (settings.action === "inventory") next = await takeInventory(paths, daemon);
    else next = await bootInstalled(paths, spawnRun);
    ok = true;
  } catch (e) {
    const message = e instanceof DiscusError ? e.message : `internal error: ${(e as Error).stack ?? e}`;
    say(`FAILED: ${message}`);
    say("nothing more will be written to any disk by this boot");
    await tellDaemon(daemon, "failed", 0, message);
    // The loader reports its own failures; earlier ones are reported here, when a server answers.
    if (!loadStarted && settings?.group && lease !== null) {
      const server = await reportFailure({ group: settings.group, port: settings.port, iface: lease.ip, imageId: settings.imageId, message, waitMs: REPORT_WAIT_MS });
      say(server === null ? "no image server answered: the failure is on this console only" : `failure reported to server ${server}`);
    }
    next = settings?.onfail ?? "halt";
  }
  say(`next: ${next}`);
  writeFileSync(paths.nextFile, `${next}\n`);
  return { next, ok };
}
