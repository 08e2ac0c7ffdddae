// BlockReaders over a file descriptor window and over memory.
import { readSync } from "node:fs";
import { assert } from "../util/assert.ts";
import type { BlockReader } from "./types.ts";

/** Reads [baseBytes, baseBytes + sizeBytes) of an open file or block device. */
export function fdReader(fd: number, baseBytes: number, sizeBytes: number): BlockReader {
  return {
    sizeBytes,
    read(offsetBytes: number, lengthBytes: number): Uint8Array {
      if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > sizeBytes) {
        throw new RangeError(`read of ${lengthBytes} bytes at ${offsetBytes} is outside the ${sizeBytes}-byte area`);
      }
      const out = new Uint8Array(lengthBytes);
      let done = 0;
      while (done < lengthBytes) {
        const n = readSync(fd, out, done, lengthBytes - done, baseBytes + offsetBytes + done);
        assert(n > 0, `short read at byte ${baseBytes + offsetBytes + done}`);
        done += n;
      }
      return out;
    },
  };
}

export function memoryReader(bytes: Uint8Array): BlockReader {
  return {
    sizeBytes: bytes.length,
    read(offsetBytes: number, lengthBytes: number): Uint8Array {
      if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > bytes.length) {
        throw new RangeError(`read of ${lengthBytes} bytes at ${offsetBytes} is outside the ${bytes.length}-byte area`);
      }
      return bytes.slice(offsetBytes, offsetBytes + lengthBytes);
    },
  };
}
