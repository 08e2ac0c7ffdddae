// The agent's `inventory` action (MAAS: commissioning, Ironic: introspection): what hardware this
// node has, for the control server, so the admin can write disk rules by serial. Disks come from
// disks.ts's sysfs reader (which opens no device), NICs from /sys/class/net, the CPU and memory
// from /proc. Parsing and bounding are pure; the readers at the bottom are thin. Nothing here
// opens a disk, let alone for writing.
import { availableParallelism } from "node:os";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { formatDiskBytes, type DiskInfo } from "./disks.ts";

/** The daemon's Hardware record (src/daemon/model.ts), kept here so the agent does not import the daemon. */
export interface Hardware {
  disks: { path: string; model: string; serial: string; wwn: string; sizeBytes: number; removable: boolean }[];
  nics: { name: string; mac: string; speedMbit: number | null }[];
  /** `cores`: the logical CPUs the kernel runs (what /proc/cpuinfo lists). */
  cpu: { model: string; cores: number };
  memoryBytes: number;
}

/** The daemon's bounds (src/http/shapes.ts, src/daemon/schema.ts LIMITS): a report within them is never refused. */
export const MAX_DISKS = 256;
export const MAX_NICS = 64;
export const MAX_TEXT_CHARS = 256;
export const MAX_HARDWARE_JSON_CHARS = 64 * 1024;
const MAX_NIC_SPEED_MBIT = 10_000_000;
/** /proc and sysfs files read here are small; at most this much of one is parsed. */
const MAX_PROC_FILE_CHARS = 1 << 20;
/** A disk's JSON: four texts of MAX_TEXT_CHARS plus its keys and numbers, well under this. */
const MAX_DISK_JSON_CHARS = 4 * MAX_TEXT_CHARS + 256;
if (MAX_DISK_JSON_CHARS + MAX_NICS * (MAX_TEXT_CHARS + 64) + MAX_TEXT_CHARS + 256 > MAX_HARDWARE_JSON_CHARS) {
  throw new Error("a report with every NIC and one disk must fit the JSON bound");
}

/** CPU model and logical CPU count from /proc/cpuinfo (x86 `model name`; other arches' names as fallbacks). */
export function parseCpuInfo(text: string): { model: string; cores: number } {
  let model = "";
  let cores = 0;
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const key = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (key === "processor" && /^\d+$/.test(value)) cores++;
    if (model === "" && (key === "model name" || key === "cpu model" || key === "cpu")) model = value;
  }
  return { model, cores };
}

/** MemTotal from /proc/meminfo, in bytes (the kernel writes kB, meaning KiB); 0 when absent. */
export function parseMemInfo(text: string): number {
  const m = /^MemTotal:\s+(\d+)\s*kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

/** A NIC's link speed as sysfs gives it: Mbit/s, or "-1" / unreadable when the link is down or virtual. */
export function parseNicSpeed(text: string): number | null {
  const t = text.trim();
  if (!/^\d{1,9}$/.test(t)) return null;
  const n = Number(t);
  return n > 0 && n <= MAX_NIC_SPEED_MBIT ? n : null;
}

export function diskHardware(d: DiskInfo): Hardware["disks"][number] {
  return { path: d.path, model: d.model, serial: d.serial, wwn: d.wwn, sizeBytes: d.sizeBytes, removable: d.removable };
}

const cut = (s: string): string => s.slice(0, MAX_TEXT_CHARS);

/**
 * The inventory within the daemon's bounds: texts cut, lists capped, and disks dropped from the
 * end until the JSON fits. Returns what was left out, for the console.
 */
export function boundHardware(hw: Hardware): { hardware: Hardware; dropped: string[] } {
  const dropped: string[] = [];
  if (hw.disks.length > MAX_DISKS) dropped.push(`${hw.disks.length - MAX_DISKS} disks beyond ${MAX_DISKS}`);
  if (hw.nics.length > MAX_NICS) dropped.push(`${hw.nics.length - MAX_NICS} NICs beyond ${MAX_NICS}`);
  const out: Hardware = {
    disks: hw.disks.slice(0, MAX_DISKS).map((d) => ({ ...d, path: cut(d.path), model: cut(d.model), serial: cut(d.serial), wwn: cut(d.wwn) })),
    nics: hw.nics.slice(0, MAX_NICS).map((n) => ({ ...n, name: cut(n.name), mac: n.mac.slice(0, 17) })),
    cpu: { model: cut(hw.cpu.model), cores: Math.max(1, hw.cpu.cores) },
    memoryBytes: hw.memoryBytes,
  };
  let over = 0;
  while (out.disks.length > 0 && JSON.stringify(out).length > MAX_HARDWARE_JSON_CHARS) {
    out.disks.pop();
    over++;
  }
  if (over > 0) dropped.push(`${over} disks over the ${MAX_HARDWARE_JSON_CHARS}-character report bound`);
  return { hardware: out, dropped };
}

/** The console summary: one line per disk and NIC, then CPU and memory. */
export function describeHardware(hw: Hardware): string[] {
  const lines = hw.disks.map((d) => `disk ${d.path} ${formatDiskBytes(d.sizeBytes)} model "${d.model}" serial "${d.serial}"${d.wwn ? ` wwn ${d.wwn}` : ""}${d.removable ? " [removable]" : ""}`);
  if (hw.disks.length === 0) lines.push("disk: none found");
  for (const n of hw.nics) lines.push(`nic ${n.name} ${n.mac}${n.speedMbit === null ? "" : ` ${n.speedMbit} Mbit/s`}`);
  lines.push(`cpu "${hw.cpu.model}", ${hw.cpu.cores} logical CPUs; memory ${(hw.memoryBytes / 2 ** 30).toFixed(1)} GiB`);
  return lines;
}

// ---- readers ------------------------------------------------------------------------------------

export interface InventoryPaths {
  sysNet: string;
  cpuinfo: string;
  meminfo: string;
}

export const DEFAULT_INVENTORY_PATHS: InventoryPaths = { sysNet: "/sys/class/net", cpuinfo: "/proc/cpuinfo", meminfo: "/proc/meminfo" };

function readSmall(path: string): string {
  try {
    return readFileSync(path, "utf8").slice(0, MAX_PROC_FILE_CHARS).trim();
  } catch {
    return "";
  }
}

/** Physical NICs only (a `device` link in sysfs): not lo, bridges, veths or tunnels. */
export function readNics(sysNet: string): Hardware["nics"] {
  if (!existsSync(sysNet)) return [];
  return readdirSync(sysNet)
    .sort()
    .filter((name) => existsSync(`${sysNet}/${name}/device`))
    .map((name) => ({ name, mac: readSmall(`${sysNet}/${name}/address`).toLowerCase(), speedMbit: parseNicSpeed(readSmall(`${sysNet}/${name}/speed`)) }));
}

/** The whole inventory, from disks already listed (disks.ts) and the files above; bounded. */
export function readHardware(disks: readonly DiskInfo[], paths: InventoryPaths = DEFAULT_INVENTORY_PATHS): { hardware: Hardware; dropped: string[] } {
  const cpu = parseCpuInfo(readSmall(paths.cpuinfo));
  return boundHardware({
    disks: disks.map(diskHardware),
    nics: readNics(paths.sysNet),
    cpu: { model: cpu.model, cores: cpu.cores > 0 ? cpu.cores : availableParallelism() },
    memoryBytes: parseMemInfo(readSmall(paths.meminfo)),
  });
}
