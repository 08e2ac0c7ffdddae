// Positional reads and writes that finish or throw: the OS may return short counts. A refusal
// becomes an I/O DiscusError naming the file or device, so restore, load, create and serve (and
// their worker threads, where the errno code would not survive the trip) all report it the same way.
import { readlinkSync, readSync, writeSync } from "node:fs";
import { DiscusError, ioError } from "./errors.ts";
import { formatBytes } from "./units.ts";

/** The path behind an open descriptor, for messages: the device or file the user named. */
export function fdPath(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return `file descriptor ${fd}`;
  }
}

export function readFully(fd: number, into: Uint8Array, positionBytes: number): void {
  let done = 0;
  while (done < into.length) {
    let n: number;
    try {
      n = readSync(fd, into, done, into.length - done, positionBytes + done);
    } catch (e) {
      throw ioError(e, fdPath(fd), `reading ${formatBytes(into.length - done)} at byte ${positionBytes + done}`);
    }
    if (n <= 0) throw new DiscusError("input", fdPath(fd), `ends at byte ${positionBytes + done}, before the data it should hold`, "The file was truncated or changed while in use: copy it again");
    done += n;
  }
}

export function writeFully(fd: number, bytes: Uint8Array, positionBytes: number): void {
  let done = 0;
  while (done < bytes.length) {
    let n: number;
    try {
      n = writeSync(fd, bytes, done, bytes.length - done, positionBytes + done);
    } catch (e) {
      throw ioError(e, fdPath(fd), `writing ${formatBytes(bytes.length - done)} at byte ${positionBytes + done}`);
    }
    // A zero-byte write of a non-empty buffer means the device cannot take more: treat it as full.
    if (n <= 0) throw new DiscusError("io", fdPath(fd), `writing at byte ${positionBytes + done} stored nothing (no space left)`, "Use a larger disk or free space on it");
    done += n;
  }
}
