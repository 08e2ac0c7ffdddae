// Block-device and file-range system calls through bun:ffi: size, discard, zero-out, hole punching.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { existsSync, readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { basename } from "node:path";
import { DiscusError } from "../util/errors.ts";
import { fdPath } from "../util/io.ts";

// ioctl request numbers from <linux/fs.h> (x86-64 and arm64 share them).
const BLKGETSIZE64 = 0x80081272;
const BLKDISCARD = 0x1277;
const BLKZEROOUT = 0x127f;
const BLKRRPART = 0x125f;
const BLKROGET = 0x125e;
// fallocate modes from <linux/falloc.h>.
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;

let libc: ReturnType<typeof openLibc> | null = null;

function openLibc() {
  return dlopen("libc.so.6", {
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 },
  }).symbols;
}

function c() {
  libc ??= openLibc();
  return libc;
}

/** Size of an open block device in bytes (BLKGETSIZE64), never from stat, which says 0. */
export function blockDeviceBytes(fd: number): number {
  const out = new BigUint64Array(1);
  const rc = c().ioctl(fd, BLKGETSIZE64, ptr(out));
  if (rc !== 0) throw new DiscusError("io", fdPath(fd), "the kernel did not say how large the device is (BLKGETSIZE64 failed)", "Check it is a disk or partition and still attached");
  return Number(out[0]);
}

/** Whether the kernel marks a block device read-only (BLKROGET): writes to it would fail with EPERM. */
export function isReadOnlyDevice(fd: number): boolean {
  const out = new Int32Array(1);
  return c().ioctl(fd, BLKROGET, ptr(out)) === 0 && out[0] !== 0;
}

function rangeIoctl(fd: number, request: number, startBytes: number, lengthBytes: number): boolean {
  const range = new BigUint64Array([BigInt(startBytes), BigInt(lengthBytes)]);
  return c().ioctl(fd, request, ptr(range)) === 0;
}

/** Discards a byte range of a block device; false if the device does not support it. */
export function discardRange(fd: number, startBytes: number, lengthBytes: number): boolean {
  return rangeIoctl(fd, BLKDISCARD, startBytes, lengthBytes);
}

/** Zeroes a byte range of a block device in the kernel (write-zeroes or unmap where supported). */
export function zeroOutRange(fd: number, startBytes: number, lengthBytes: number): boolean {
  return rangeIoctl(fd, BLKZEROOUT, startBytes, lengthBytes);
}

/** Punches a hole in a regular file: the range reads as zeros and frees its space. */
export function punchHole(fd: number, startBytes: number, lengthBytes: number): boolean {
  return c().fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, startBytes, lengthBytes) === 0;
}

/** Asks the kernel to re-read a disk's partition table (best effort). */
export function rereadPartitions(fd: number): boolean {
  return c().ioctl(fd, BLKRRPART, ptr(new Uint8Array(8))) === 0;
}

/** The sysfs name of a block device path ("/dev/loop3" -> "loop3"), following symlinks. */
export function sysfsName(devicePath: string): string {
  return basename(realpathSync(devicePath));
}

/** Partitions of a whole disk as sysfs lists them (e.g. loop3p1), and the holders using them. */
export function deviceUsers(devicePath: string): { partitions: string[]; holders: string[] } {
  const name = sysfsName(devicePath);
  const dir = `/sys/class/block/${name}`;
  const partitions: string[] = [];
  const holders: string[] = [];
  try {
    for (const entry of readdirSync(dir)) {
      if (entry.startsWith(name) && existsSync(`${dir}/${entry}/partition`)) partitions.push(entry);
    }
    holders.push(...readdirSync(`${dir}/holders`));
  } catch {
    // No sysfs entry: not a block device we can inspect; the O_EXCL open still guards it.
  }
  return { partitions, holders };
}

/** Mount points of a device and of its partitions, from /proc/self/mountinfo (by major:minor). */
export function mountsOf(devicePath: string): string[] {
  const rdev = statSync(devicePath).rdev;
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((Math.floor(rdev / 1048576) & 0xfff00) >>> 0);
  const ids = new Set<string>([`${major}:${minor}`]);
  for (const part of deviceUsers(devicePath).partitions) {
    try {
      ids.add(readFileSync(`/sys/class/block/${part}/dev`, "utf8").trim());
    } catch {
      // partition vanished meanwhile
    }
  }
  const mounts: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const fields = line.split(" ");
    if (fields.length > 4 && ids.has(fields[2]!)) mounts.push(fields[4]!);
  }
  return mounts;
}

/** Loop devices whose backing file is `filePath`. */
export function loopDevicesBackedBy(filePath: string): string[] {
  let real: string;
  try {
    real = realpathSync(filePath);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const name of readdirSync("/sys/block")) {
    if (!name.startsWith("loop")) continue;
    try {
      if (readFileSync(`/sys/block/${name}/loop/backing_file`, "utf8").trim() === real) out.push(`/dev/${name}`);
    } catch {
      // detached meanwhile
    }
  }
  return out;
}
