// Opens what `restore` (and later `load`) writes, after every check has passed:
// large enough, not mounted, not in use, not ambiguous. Nothing is written here.
import { closeSync, constants, existsSync, fstatSync, ftruncateSync, openSync, statSync } from "node:fs";
import { DiscusError } from "../util/errors.ts";
import { formatBytes } from "../util/units.ts";
import { blockDeviceBytes, deviceUsers, loopDevicesBackedBy, mountsOf } from "../device/blockdev.ts";

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
  if (!existsSync(path)) return { exists: false, isBlockDevice: false };
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

/**
 * Opens the target for writing. Block devices are opened O_EXCL: the kernel refuses if anything
 * (a mount, another tool) holds the device, which closes the gap after checkTarget.
 */
export function openTarget(path: string, neededBytes: number): Target {
  const checked = checkTarget(path, neededBytes);
  if (!checked.exists) {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
    // A new file starts sparse at exactly the image's size: every unwritten byte reads as zero.
    try {
      ftruncateSync(fd, neededBytes);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return { path, fd, sizeBytes: neededBytes, isBlockDevice: false, freshFile: true };
  }
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | (checked.isBlockDevice ? constants.O_EXCL : 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EBUSY") throw new DiscusError("target", path, "is busy: mounted or opened exclusively by another program", "Unmount it or stop that program first");
    throw new DiscusError("target", path, `cannot be opened for writing (${code ?? e})`, "Check the path and that you are root");
  }
  const sizeBytes = checked.isBlockDevice ? blockDeviceBytes(fd) : fstatSync(fd).size;
  if (sizeBytes < neededBytes) {
    closeSync(fd);
    throw new DiscusError("target", path, `is ${formatBytes(sizeBytes)}, the image needs ${formatBytes(neededBytes)}`, "Use a disk at least as large as the source");
  }
  return { path, fd, sizeBytes, isBlockDevice: checked.isBlockDevice, freshFile: false };
}
