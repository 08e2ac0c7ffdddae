// Filesystem labels, read from a partition's first sectors: how the agent recognises the discus
// boot stick (FAT "DISCUS-BOOT") and its image partition (ext4 "DISCUS-IMG") without udev.
import { closeSync, openSync, readSync } from "node:fs";

export const BOOT_LABEL = "DISCUS-BOOT";
export const IMAGES_LABEL = "DISCUS-IMG";
export const LABEL_PROBE_BYTES = 2048;

function ascii(bytes: Uint8Array): string {
  return new TextDecoder("latin1").decode(bytes).replace(/\0+$/, "").trim();
}

/** The label of the FAT or ext2/3/4 filesystem starting at `head` (its first 2 KiB), or "". */
export function labelOf(head: Uint8Array): string {
  if (head.length < LABEL_PROBE_BYTES) return "";
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  // ext2/3/4: superblock at 1024, magic 0xEF53 at +56, volume name at +120 (16 bytes).
  if (dv.getUint16(1024 + 56, true) === 0xef53) return ascii(head.subarray(1024 + 120, 1024 + 136));
  if (dv.getUint16(510, true) !== 0xaa55) return "";
  // FAT32 keeps its extended boot record at 64, FAT12/16 at 36; the label follows the id.
  if (ascii(head.subarray(82, 90)) === "FAT32") return ascii(head.subarray(71, 82));
  if (ascii(head.subarray(54, 59)).startsWith("FAT")) return ascii(head.subarray(43, 54));
  return "";
}

/** Reads the label of a partition device; "" when it cannot be read or has none. */
export function readLabel(devicePath: string): string {
  let fd = -1;
  try {
    fd = openSync(devicePath, "r");
    const head = new Uint8Array(LABEL_PROBE_BYTES);
    if (readSync(fd, head, 0, head.length, 0) < head.length) return "";
    return labelOf(head);
  } catch {
    return "";
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

export function isDiscusMedium(devicePath: string): boolean {
  const label = readLabel(devicePath);
  return label === BOOT_LABEL || label === IMAGES_LABEL;
}
