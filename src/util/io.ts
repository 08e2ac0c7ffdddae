// Positional reads and writes that finish or throw: the OS may return short counts.
import { readSync, writeSync } from "node:fs";

export function readFully(fd: number, into: Uint8Array, positionBytes: number): void {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, positionBytes + done);
    if (n <= 0) throw new Error(`unexpected end of file at byte ${positionBytes + done}`);
    done += n;
  }
}

export function writeFully(fd: number, bytes: Uint8Array, positionBytes: number): void {
  let done = 0;
  while (done < bytes.length) {
    const n = writeSync(fd, bytes, done, bytes.length - done, positionBytes + done);
    if (n <= 0) throw new Error(`write returned ${n} at byte ${positionBytes + done}`);
    done += n;
  }
}
