// Which disk the agent writes: an explicit rule matched against the machine's disks. Never a
// guess: the rule must match exactly one disk, removable disks and the boot medium only when the
// rule says so. Reading sysfs is at the edge (listDisks); matching is pure.
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { DiscusError } from "../util/errors.ts";


export interface DiskInfo {
  name: string;
  path: string;
  sizeBytes: number;
  /** The kernel's removable flag, or attached over USB (a USB disk is never a node's system disk). */
  removable: boolean;
  usb: boolean;
  readOnly: boolean;
  serial: string;
  wwn: string;
  model: string;
  /** Holds the discus boot stick's or image partition (by filesystem label). */
  bootMedium: boolean;
  partitions: string[];
}

export type DiskTerm =
  | { field: "path"; value: string }
  | { field: "serial"; value: string }
  | { field: "wwn"; value: string }
  | { field: "model"; pattern: RegExp; text: string }
  | { field: "size"; minBytes: number; maxBytes: number; text: string }
  | { field: "only" }
  | { field: "removable" };

/** Sizes given as one number match within this fraction: vendors' "480G" is not 480 GiB. */
const SIZE_TOLERANCE = 0.05;
const MAX_RULE_TERMS = 8;
/** Disk kinds that are never targets: memory, loop, optical, device-mapper, RAID, network. */
const NOT_DISKS = /^(loop|ram|zram|sr|fd|dm-|md|nbd|rbd)/;

/**
 * Parses `discus.disk`: terms joined by commas, all of which must hold, e.g.
 * `serial:S3Z9NB0K`, `path:/dev/nvme0n1`, `model:Samsung*,size:480G`, `size:400G-600G`, `only`.
 */
export function parseDiskRule(text: string): DiskTerm[] {
  const terms = text.split(",").map((t) => t.trim()).filter((t) => t.length > 0);
  const bad = (term: string, why: string): never => {
    throw new DiscusError("usage", `discus.disk term "${term}"`, why, "Use path:, serial:, wwn:, model:, size:, only or removable (docs/NETBOOT.md)");
  };
  if (terms.length === 0) bad(text, "is empty");
  if (terms.length > MAX_RULE_TERMS) bad(text, `has more than ${MAX_RULE_TERMS} terms`);
  return terms.map((term): DiskTerm => {
    if (term.startsWith("/dev/")) return { field: "path", value: term };
    if (term === "only") return { field: "only" };
    if (term === "removable") return { field: "removable" };
    const colon = term.indexOf(":");
    if (colon < 0) return bad(term, "is not field:value");
    const field = term.slice(0, colon).toLowerCase();
    const value = term.slice(colon + 1);
    if (value.length === 0) return bad(term, "has an empty value");
    switch (field) {
      case "path":
        if (!value.startsWith("/dev/")) bad(term, "is not under /dev");
        return { field: "path", value };
      case "serial":
        return { field: "serial", value };
      case "wwn":
        return { field: "wwn", value: normalWwn(value) };
      case "model":
        return { field: "model", pattern: globPattern(value), text: value };
      case "size":
        return sizeTerm(term, value, bad);
      default:
        return bad(term, `names no disk property "${field}"`);
    }
  });
}

/**
 * Disk sizes as disks are sold: decimal units (500G = 500e9 bytes) unless written binary (GiB).
 * Pure.
 */
export function parseDiskBytes(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)b?\s*$/i.exec(text);
  if (!m) return null;
  const power = " kmgtp".indexOf(m[2]!.toLowerCase() || " ");
  return Math.round(Number(m[1]) * (m[3] ? 1024 : 1000) ** power);
}

/** A disk size the way its label says it: decimal GB or TB. */
export function formatDiskBytes(bytes: number): string {
  return bytes >= 1e12 ? `${(bytes / 1e12).toFixed(2)} TB` : bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${(bytes / 1e6).toFixed(1)} MB`;
}

function sizeTerm(term: string, value: string, bad: (t: string, why: string) => never): DiskTerm {
  const parse = (t: string) => parseDiskBytes(t) ?? bad(term, `"${t}" is not a size (examples: 480G, 2T, 512GiB)`);
  const dash = value.indexOf("-");
  if (dash >= 0) {
    const minBytes = parse(value.slice(0, dash));
    const maxBytes = parse(value.slice(dash + 1));
    if (minBytes > maxBytes) bad(term, "has its bounds the wrong way round");
    return { field: "size", minBytes, maxBytes, text: value };
  }
  const bytes = parse(value);
  return { field: "size", minBytes: Math.floor(bytes * (1 - SIZE_TOLERANCE)), maxBytes: Math.ceil(bytes * (1 + SIZE_TOLERANCE)), text: value };
}

/** WWNs are written with or without "0x" / "naa." and in either case. */
export function normalWwn(text: string): string {
  return text.trim().toLowerCase().replace(/^(0x|naa\.)/, "");
}

function globPattern(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\?]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`, "i");
}

function termMatches(t: DiskTerm, d: DiskInfo): boolean {
  switch (t.field) {
    case "path":
      return d.path === t.value;
    case "serial":
      return d.serial === t.value;
    case "wwn":
      return d.wwn !== "" && normalWwn(d.wwn) === t.value;
    case "model":
      return t.pattern.test(d.model);
    case "size":
      return d.sizeBytes >= t.minBytes && d.sizeBytes <= t.maxBytes;
    case "only":
    case "removable":
      return true;
  }
}

/** One line describing a disk, for the console and error messages. */
export function describeDisk(d: DiskInfo): string {
  const flags = [d.removable ? "removable" : "", d.usb ? "usb" : "", d.bootMedium ? "discus boot medium" : "", d.readOnly ? "read-only" : ""].filter((f) => f !== "");
  return `${d.path} ${formatDiskBytes(d.sizeBytes)} model "${d.model}" serial "${d.serial}"${d.wwn ? ` wwn ${d.wwn}` : ""}${flags.length ? ` [${flags.join(", ")}]` : ""}`;
}

/**
 * The one disk the rule names. Removable disks and the boot medium are candidates only when the
 * rule names them by path or says `removable`; read-only disks never are.
 */
export function chooseDisk(ruleText: string, disks: readonly DiskInfo[]): DiskInfo {
  const terms = parseDiskRule(ruleText);
  const byPath = terms.some((t) => t.field === "path");
  const allowRemovable = byPath || terms.some((t) => t.field === "removable");
  const matching = disks.filter((d) => terms.every((t) => termMatches(t, d)));
  const eligible = matching.filter((d) => !d.readOnly && (allowRemovable || (!d.removable && !d.bootMedium)));
  const listing = disks.length === 0 ? "no disks at all" : disks.map(describeDisk).join("; ");
  if (eligible.length === 1) return eligible[0]!;
  if (eligible.length === 0) {
    const excluded = matching.length > 0 ? ` (${matching.map((d) => d.path).join(", ")} matched but ${matching.length === 1 ? "is" : "are"} removable, read-only or the boot medium)` : "";
    throw new DiscusError("target", `discus.disk=${ruleText}`, `matches no disk${excluded}`, `This machine has: ${listing}. Fix the rule (add \`removable\` to allow a removable disk); nothing was written`);
  }
  throw new DiscusError("target", `discus.disk=${ruleText}`, `matches ${eligible.length} disks (${eligible.map((d) => d.path).join(", ")})`, `This machine has: ${listing}. Make the rule name exactly one disk, e.g. by serial; discus never guesses, nothing was written`);
}

// ---- sysfs --------------------------------------------------------------------------------------

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8").replace(/\0/g, "").trim();
  } catch {
    return "";
  }
}

/** The unit serial from a SCSI VPD page 0x80 (bytes 4.. are the serial, space padded). */
export function serialFromVpd80(page: Uint8Array): string {
  if (page.length < 4 || page[1] !== 0x80) return "";
  const length = (page[2]! << 8) | page[3]!;
  return new TextDecoder().decode(page.subarray(4, 4 + length)).replace(/\0/g, "").trim();
}

function diskSerial(sysBlock: string, name: string): string {
  const direct = readText(`${sysBlock}/${name}/serial`) || readText(`${sysBlock}/${name}/device/serial`);
  if (direct) return direct;
  try {
    return serialFromVpd80(new Uint8Array(readFileSync(`${sysBlock}/${name}/device/vpd_pg80`)));
  } catch {
    return "";
  }
}

/** The machine's disks as sysfs describes them. `isBootMedium` says whether a partition is ours. */
export function listDisks(sysBlock: string, isBootMedium: (partitionPath: string) => boolean): DiskInfo[] {
  if (!existsSync(sysBlock)) return [];
  const disks: DiskInfo[] = [];
  for (const name of readdirSync(sysBlock).sort()) {
    if (NOT_DISKS.test(name)) continue;
    const dir = `${sysBlock}/${name}`;
    let link = "";
    try {
      link = readlinkSync(dir);
    } catch {
      // not a symlink (a test tree): no bus information
    }
    const partitions = readdirSync(dir).filter((p) => p.startsWith(name) && existsSync(`${dir}/${p}/partition`)).sort();
    const usb = link.includes("/usb");
    disks.push({
      name,
      path: `/dev/${name}`,
      sizeBytes: Number(readText(`${dir}/size`) || "0") * 512,
      removable: readText(`${dir}/removable`) === "1" || usb,
      usb,
      readOnly: readText(`${dir}/ro`) === "1",
      serial: diskSerial(sysBlock, name),
      wwn: readText(`${dir}/wwid`) || readText(`${dir}/device/wwid`),
      model: readText(`${dir}/device/model`),
      bootMedium: partitions.some((p) => isBootMedium(`/dev/${p}`)),
      partitions: partitions.map((p) => `/dev/${p}`),
    });
  }
  return disks;
}
