// After restoring a GPT disk onto a larger target: move the backup GPT to the new end. Planned
// from the image before the first chunk is written (so a table growth cannot move is refused while
// the target is untouched), and carried out from the written target at the end.
import { entryArrayBytesMax, entryArraySectors, decodeGptHeader, primaryHeaderLba } from "../part/gpt.ts";
import { relocateGpt } from "../part/relocate.ts";
import { mbrBytes, PartitionTableError } from "../part/types.ts";
import type { OpenImage } from "../image/reader.ts";
import { DiscusError } from "../util/errors.ts";
import { readFully, writeFully } from "../util/io.ts";
import { MAX_SOURCE_READ_BYTES, readImageSource } from "./image-source.ts";
import { assert } from "../util/assert.ts";

assert(entryArrayBytesMax + 4096 <= MAX_SOURCE_READ_BYTES, "the largest entry array capture accepts, in whole sectors, is one source read");

/** Reads source bytes [offsetBytes, offsetBytes + lengthBytes): from the image, or the written target. */
export type SourceRead = (offsetBytes: number, lengthBytes: number) => Uint8Array;

/** One positional write of the growth, in target bytes. */
export interface GptWrite {
  offsetBytes: number;
  bytes: Uint8Array;
}

/**
 * Every write growth will make, in order, from the source's protective MBR, primary header and entry
 * array. Throws PartitionTableError when the table cannot be moved (a damaged primary, a bad entry
 * CRC, no 0xEE entry, a target too little larger for the backup table). Pure but for `read`.
 */
export function planGptGrowth(read: SourceRead, sectorBytes: number, sourceBytes: number, targetBytes: number): GptWrite[] {
  const targetSectorBytes = Math.floor(targetBytes / sectorBytes) * sectorBytes;
  const mbr = read(0, sectorBytes);
  const headerSector = read(primaryHeaderLba * sectorBytes, sectorBytes);
  // Decoded here against the source, so the entry array read below is bounded before it is made.
  const header = decodeGptHeader(headerSector, sectorBytes, sourceBytes / sectorBytes);
  const entrySectors = entryArraySectors(header, sectorBytes);
  const entries = entrySectors === 0 ? new Uint8Array(0) : read(header.entryArrayLba * sectorBytes, entrySectors * sectorBytes);
  const moved = relocateGpt(headerSector, entries, mbr, sectorBytes, targetSectorBytes);
  // The old backup header is cleared first: a target only a little larger puts the new backup
  // entries over it, and those must win.
  return [
    { offsetBytes: moved.oldBackupHeaderLba * sectorBytes, bytes: new Uint8Array(sectorBytes) },
    { offsetBytes: moved.backupEntriesLba * sectorBytes, bytes: moved.entries },
    { offsetBytes: moved.backupHeaderLba * sectorBytes, bytes: moved.backupHeader },
    { offsetBytes: primaryHeaderLba * sectorBytes, bytes: moved.primaryHeader },
    { offsetBytes: 0, bytes: moved.protectiveMbr.subarray(0, mbrBytes) },
  ];
}

function growthRefused(thing: string, why: string, action: string): DiscusError {
  return new DiscusError("input", thing, `its GPT cannot be moved to the end of a larger target: ${why}`, action);
}

/** Before the first write: checks that growth onto `targetBytes` will work, from the image's own bytes. */
export function checkGptGrowth(image: OpenImage, targetBytes: number): void {
  const m = image.manifest;
  if (m.info.partitionTable.kind !== "gpt" || targetBytes <= m.sourceBytes) return;
  try {
    planGptGrowth((offset, length) => readImageSource(image, offset, length), m.sectorBytes, m.sourceBytes, targetBytes);
  } catch (e) {
    if (e instanceof PartitionTableError) {
      const action = `Restore it onto a target of exactly ${m.sourceBytes} bytes, or repair the source's GPT (\`sgdisk -v\`, \`sgdisk -e\`) and capture it again. Nothing was written`;
      throw growthRefused(image.path, e.message, action);
    }
    throw e;
  }
}

/** At the end: moves the backup GPT of the written target, re-planned from what was written. */
export function growGpt(fd: number, sectorBytes: number, sourceBytes: number, targetBytes: number): void {
  const readTarget: SourceRead = (offset, length) => {
    const bytes = new Uint8Array(length);
    readFully(fd, bytes, offset);
    return bytes;
  };
  let writes: GptWrite[];
  try {
    writes = planGptGrowth(readTarget, sectorBytes, sourceBytes, targetBytes);
  } catch (e) {
    if (e instanceof PartitionTableError) {
      throw growthRefused("the written target", e.message, "The target holds the whole image, but its backup GPT is still where the source ended: move it with `sgdisk -e`");
    }
    throw e;
  }
  for (const w of writes) writeFully(fd, w.bytes, w.offsetBytes);
}
