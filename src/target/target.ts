// Opens what `restore` (and later `load`) writes, after every check has passed:
// large enough, not mounted, not in use, not ambiguous. Nothing is written here.
import { closeSync, constants, existsSync, fstatSync, ftruncateSync, openSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { DiscusError, ioError } from "../util/errors.ts";
import { formatBytes } from "../util/units.ts";
import { blockDeviceBytes, deviceUsers, isReadOnlyDevice, loopDevicesBackedBy, mountsOf } from "../device/blockdev.ts";

export interface Target {
  path: string;
  fd: number;
  sizeBytes: number;
  isBlockDevice: boolean;
  /** True when the target is a file discus created: it reads as zeros everywhere it did not write. */
  freshFile: boolean;
}

/** Checks a target without opening it for writing; returns what `openTarget` will do. */
export function checkTarget(path: string, neededBytes: number): { exists: boolean; isBlockDevice: boolean } {
  if (!existsSync(path)) {
    checkParentDirectory(path);
    return { exists: false, isBlockDevice: false };
  }
  const st = statSync(path);
  if (st.isBlockDevice()) {
    const mounts = mountsOf(path);
    if (mounts.length > 0) {
      throw new DiscusError("target", path, `is mounted (${mounts.join(", ")})`, "Unmount it and every partition on it first");
    }
    const { holders } = deviceUsers(path);
    if (holders.length > 0) {
      throw new DiscusError("target", path, `is in use by ${holders.join(", ")} (LVM, RAID or device-mapper)`, "Stop whatever holds it first");
    }
    return { exists: true, isBlockDevice: true };
  }
  if (!st.isFile()) throw new DiscusError("target", path, "is neither a block device nor a regular file", "Name a disk such as /dev/sdb or an image file");
  const loops = loopDevicesBackedBy(path);
  if (loops.length > 0) {
    throw new DiscusError("target", path, `is attached to ${loops.join(", ")}`, "Detach it with `losetup -d` first, or restore to the loop device itself");
  }
  if (st.size < neededBytes) {
    throw new DiscusError("target", path, `is ${formatBytes(st.size)}, the image needs ${formatBytes(neededBytes)}`, "Use a larger disk, or remove the file so discus creates it at the right size");
  }
  return { exists: true, isBlockDevice: false };
}

/** A new file target needs an existing directory to live in: say so before any download. */
function checkParentDirectory(path: string): void {
  const dir = dirname(path);
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    throw ioError(e, path, `finding its directory ${dir}`);
  }
  if (!st.isDirectory()) throw new DiscusError("io", path, `${dir} is not a directory (ENOTDIR)`, "Check the path");
}

/** Creates a new file target, sparse at exactly the image's size: unwritten bytes read as zero. */
function createFileTarget(path: string, neededBytes: number): Target {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
  } catch (e) {
    throw ioError(e, path, "creating the target file");
  }
  const target: Target = { path, fd, sizeBytes: neededBytes, isBlockDevice: false, freshFile: true };
  try {
    ftruncateSync(fd, neededBytes);
  } catch (e) {
    closeTarget(target, true);
    throw ioError(e, path, `sizing the new file to ${formatBytes(neededBytes)}`);
  }
  return target;
}

/**
 * Closes a target. After a failure, a file discus created itself is removed, so no half-written
 * disk image is left that looks whole; a device or a file that existed before is never removed.
 */
export function closeTarget(target: Target, failed: boolean): void {
  try {
    closeSync(target.fd);
  } catch {
    // Already closed, or the close itself failed: the error that got us here says more.
  }
  if (!failed || !target.freshFile) return;
  try {
    unlinkSync(target.path);
  } catch {
    // Gone already; nothing more to clean.
  }
}

/**
 * Opens the target for writing. Block devices are opened O_EXCL: the kernel refuses if anything
 * (a mount, another tool) holds the device, which closes the gap after checkTarget.
 */
export function openTarget(path: string, neededBytes: number): Target {
  const checked = checkTarget(path, neededBytes);
  if (!checked.exists) return createFileTarget(path, neededBytes);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | (checked.isBlockDevice ? constants.O_EXCL : 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EBUSY") throw new DiscusError("target", path, "is busy: mounted or opened exclusively by another program", "Unmount it or stop that program first");
    throw ioError(e, path, "opening the target for writing");
  }
  if (checked.isBlockDevice && isReadOnlyDevice(fd)) {
    closeSync(fd);
    throw new DiscusError("io", path, "is a read-only device (EROFS); nothing was written", "Use a writable disk, or make it writable with `blockdev --setrw` if it should be");
  }
  let sizeBytes: number;
  try {
    sizeBytes = checked.isBlockDevice ? blockDeviceBytes(fd) : fstatSync(fd).size;
  } catch (e) {
    closeSync(fd);
    throw ioError(e, path, "reading the target's size");
  }
  if (sizeBytes < neededBytes) {
    closeSync(fd);
    throw new DiscusError("target", path, `is ${formatBytes(sizeBytes)}, the image needs ${formatBytes(neededBytes)}`, "Use a disk at least as large as the source");
  }
  return { path, fd, sizeBytes, isBlockDevice: checked.isBlockDevice, freshFile: false };
}
