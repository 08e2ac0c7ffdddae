// Opens what `create` reads: a block device or a disk/partition image file, read-only.
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { DiscusError } from "../util/errors.ts";
import { blockDeviceBytes } from "./blockdev.ts";

export interface Source {
  path: string;
  fd: number;
  sizeBytes: number;
  isBlockDevice: boolean;
}

export function openSource(path: string, sectorBytes: number): Source {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch (e) {
    throw new DiscusError("usage", path, `cannot open the source (${(e as NodeJS.ErrnoException).code ?? e})`, "Name an existing disk, partition or image file");
  }
  const st = fstatSync(fd);
  const isBlockDevice = st.isBlockDevice();
  if (!isBlockDevice && !st.isFile()) {
    closeSync(fd);
    throw new DiscusError("usage", path, "is neither a block device nor a regular file", "Name a disk such as /dev/sda, a partition, or an image file");
  }
  const sizeBytes = isBlockDevice ? blockDeviceBytes(fd) : st.size;
  if (sizeBytes === 0 || sizeBytes % sectorBytes !== 0) {
    closeSync(fd);
    throw new DiscusError("usage", path, `is ${sizeBytes} bytes, not a whole number of ${sectorBytes}-byte sectors`, "Capture a whole disk or partition");
  }
  return { path, fd, sizeBytes, isBlockDevice };
}
