// Booting the installed OS through the firmware when kexec is refused (Secure Boot lockdown): a
// plain reboot would start the discus stick again, first in the boot order. So the agent finds the
// UEFI boot entry (Boot####) that starts the installed OS's disk and sets BootNext to it: the
// firmware boots that entry once, and the boot order (stick first) stays as the admin left it.
// Decoding load options and disk signatures is pure; efivarfs and the disk are read at the edge.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, realpathSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assert } from "../util/assert.ts";

/** EFI_GLOBAL_VARIABLE: the vendor GUID of Boot####, BootOrder and BootNext. */
export const EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
export const EFIVARS_DIR = "/sys/firmware/efi/efivars";
/** non-volatile | boot-service access | runtime access: what the UEFI spec asks of BootNext. */
const BOOT_NEXT_ATTRIBUTES = 0x7;
/** efivarfs puts the variable's 4 attribute bytes before its data. */
const EFIVARFS_ATTR_BYTES = 4;
const MAX_LOAD_OPTION_BYTES = 64 << 10;
const MAX_DEVICE_PATH_NODES = 64;
/** Enough for the MBR, the GPT header and a 128-entry array on 512- or 4096-byte sectors. */
export const DISK_HEAD_BYTES = 64 << 10;
const GPT_ENTRY_MIN_BYTES = 128;
const GPT_GUID_OFFSET_IN_ENTRY = 16;
const MBR_SIGNATURE_OFFSET = 440;
const SIGNATURE_TYPE_MBR = 1;
const SIGNATURE_TYPE_GUID = 2;
assert(DISK_HEAD_BYTES >= 3 * 4096, "the disk head holds the GPT header and the first entries on 4 KiB sectors");

export interface LoadOption {
  number: number;
  description: string;
  /** Partition signatures of its hard-drive nodes, hex (GPT unique GUID bytes, or the MBR's 4). */
  partitionSignatures: string[];
  /** PCI path of its hardware nodes, e.g. "root0/1c.0/00.0"; null when it has none. */
  pciPath: string | null;
  /** Names a file (a loader on a partition) rather than a whole device. */
  hasFile: boolean;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const pciNode = (device: number, fn: number) => `${device.toString(16).padStart(2, "0")}.${fn.toString(16)}`;

/** Decodes an EFI_LOAD_OPTION (the variable's data, attributes stripped). Pure; null if malformed. */
export function parseLoadOption(number: number, data: Uint8Array): LoadOption | null {
  if (data.length < 6 || data.length > MAX_LOAD_OPTION_BYTES) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const pathBytes = view.getUint16(4, true);
  let at = 6;
  let description = "";
  for (; at + 1 < data.length; at += 2) {
    const c = view.getUint16(at, true);
    if (c === 0) break;
    description += String.fromCharCode(c);
  }
  at += 2;
  const end = at + pathBytes;
  if (end > data.length) return null;
  const option: LoadOption = { number, description, partitionSignatures: [], pciPath: null, hasFile: false };
  const pci: string[] = [];
  for (let nodes = 0; at + 4 <= end && nodes < MAX_DEVICE_PATH_NODES; nodes++) {
    const type = data[at]!;
    const sub = data[at + 1]!;
    const len = view.getUint16(at + 2, true);
    if (len < 4 || at + len > end || type === 0x7f) break;
    if (type === 2 && sub === 1 && len >= 12) pci.push(`root${view.getUint32(at + 8, true)}`); // ACPI PciRoot(UID)
    else if (type === 1 && sub === 1 && len >= 6) pci.push(pciNode(data[at + 5]!, data[at + 4]!)); // Pci(dev, fn)
    else if (type === 4 && sub === 1 && len >= 42) {
      const sigType = data[at + 41]!;
      if (sigType === SIGNATURE_TYPE_GUID) option.partitionSignatures.push(hex(data.subarray(at + 24, at + 40)));
      else if (sigType === SIGNATURE_TYPE_MBR) option.partitionSignatures.push(hex(data.subarray(at + 24, at + 28)));
    } else if (type === 4 && sub === 4) option.hasFile = true;
    at += len;
  }
  option.pciPath = pci.length > 0 ? pci.join("/") : null;
  return option;
}

/** The signatures a firmware's hard-drive nodes use for a disk's partitions. Pure. */
export function diskSignatures(head: Uint8Array, sectorBytes: number): string[] {
  const out: string[] = [];
  if (head.length >= 512) out.push(hex(head.subarray(MBR_SIGNATURE_OFFSET, MBR_SIGNATURE_OFFSET + 4)));
  const header = head.subarray(sectorBytes, sectorBytes + 92);
  if (header.length < 92 || Buffer.from(header.subarray(0, 8)).toString("latin1") !== "EFI PART") return out;
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const arrayStart = Number(view.getBigUint64(72, true)) * sectorBytes;
  const count = view.getUint32(80, true);
  const entryBytes = view.getUint32(84, true);
  if (entryBytes < GPT_ENTRY_MIN_BYTES) return out;
  for (let i = 0; i < count; i++) {
    const at = arrayStart + i * entryBytes;
    if (at + entryBytes > head.length) break; // entries past the head: rare, and only lose matches
    const entry = head.subarray(at, at + entryBytes);
    if (entry.subarray(0, 16).some((b) => b !== 0)) out.push(hex(entry.subarray(GPT_GUID_OFFSET_IN_ENTRY, GPT_GUID_OFFSET_IN_ENTRY + 16)));
  }
  return out;
}

/** "root0/04.0" for /sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda. Pure; null off PCI root bus 0. */
export function pciPathOf(sysfsDevicePath: string): string | null {
  const parts = sysfsDevicePath.split("/");
  const rootAt = parts.indexOf("pci0000:00");
  if (rootAt < 0) return null;
  const chain = ["root0"];
  for (const p of parts.slice(rootAt + 1)) {
    const m = /^[0-9a-f]{4}:[0-9a-f]{2}:([0-9a-f]{2})\.([0-7])$/.exec(p);
    if (m === null) break;
    chain.push(`${m[1]}.${m[2]}`);
  }
  return chain.length > 1 ? chain.join("/") : null;
}

export interface DiskIdentity {
  signatures: string[];
  pciPath: string | null;
  /** Another disk hangs off the same PCI function (SATA ports, NVMe namespaces): no whole-device match. */
  pciShared: boolean;
}

/**
 * The entry that boots `disk`, first in boot order: one naming one of its partitions (the installed
 * OS's own entry), else a firmware-made entry for the whole device at its PCI path. Pure.
 */
export function chooseBootEntry(options: readonly LoadOption[], order: readonly number[], disk: DiskIdentity): LoadOption | null {
  const ranked = [...options].sort((a, b) => rank(order, a.number) - rank(order, b.number));
  const byPartition = ranked.find((o) => o.partitionSignatures.some((s) => disk.signatures.includes(s)));
  if (byPartition !== undefined) return byPartition;
  if (disk.pciPath === null || disk.pciShared) return null;
  return ranked.find((o) => o.pciPath === disk.pciPath && o.partitionSignatures.length === 0 && !o.hasFile) ?? null;
}

function rank(order: readonly number[], n: number): number {
  const i = order.indexOf(n);
  return i < 0 ? order.length + n : i;
}

const varPath = (name: string) => join(EFIVARS_DIR, `${name}-${EFI_GLOBAL_GUID}`);
const bootName = (n: number) => `Boot${n.toString(16).toUpperCase().padStart(4, "0")}`;
export const describeEntry = (o: LoadOption) => `${bootName(o.number)} "${o.description}"`;

function readVar(name: string): Uint8Array | null {
  try {
    const bytes = readFileSync(varPath(name));
    return bytes.length > MAX_LOAD_OPTION_BYTES + EFIVARFS_ATTR_BYTES ? null : new Uint8Array(bytes.subarray(EFIVARFS_ATTR_BYTES));
  } catch {
    return null;
  }
}

/** The firmware's boot entries and order, from efivarfs (which the caller has mounted). */
export function readBootEntries(): { options: LoadOption[]; order: number[] } {
  const options: LoadOption[] = [];
  for (const f of existsSync(EFIVARS_DIR) ? readdirSync(EFIVARS_DIR) : []) {
    const m = /^Boot([0-9A-F]{4})-/.exec(f);
    if (m === null || !f.endsWith(EFI_GLOBAL_GUID)) continue;
    const data = readVar(`Boot${m[1]}`);
    const o = data === null ? null : parseLoadOption(parseInt(m[1]!, 16), data);
    if (o !== null) options.push(o);
  }
  const raw = readVar("BootOrder") ?? new Uint8Array(0);
  const order: number[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) order.push(raw[i]! | (raw[i + 1]! << 8));
  return { options, order };
}

/** How the firmware's hard-drive and PCI nodes would name `diskName` (e.g. "vda"). */
export function diskIdentity(diskName: string, otherDisks: readonly string[], sysBlock = "/sys/block"): DiskIdentity {
  const sectorBytes = Number(readFileSync(join(sysBlock, diskName, "queue/logical_block_size"), "utf8").trim()) || 512;
  const head = new Uint8Array(DISK_HEAD_BYTES);
  const fd = openSync(`/dev/${diskName}`, "r");
  try {
    readSync(fd, head, 0, DISK_HEAD_BYTES, 0);
  } finally {
    closeSync(fd);
  }
  const pciOf = (name: string) => pciPathOf(realpathSync(join(sysBlock, name)));
  const pciPath = pciOf(diskName);
  return { signatures: diskSignatures(head, sectorBytes), pciPath, pciShared: pciPath !== null && otherDisks.some((d) => d !== diskName && pciOf(d) === pciPath) };
}

/** Sets BootNext: the firmware boots this entry at the next reset only. One write, as efivarfs needs. */
export function setBootNext(n: number): void {
  const bytes = new Uint8Array(EFIVARFS_ATTR_BYTES + 2);
  new DataView(bytes.buffer).setUint32(0, BOOT_NEXT_ATTRIBUTES, true);
  new DataView(bytes.buffer).setUint16(EFIVARFS_ATTR_BYTES, n, true);
  writeFileSync(varPath("BootNext"), bytes);
}
