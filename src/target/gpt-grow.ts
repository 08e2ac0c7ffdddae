// After restoring a GPT disk onto a larger target: move the backup GPT to the new end.
import { relocateGpt } from "../part/relocate.ts";
import { view, getU64 } from "../util/bytes.ts";
import { readFully, writeFully } from "../util/io.ts";

/** GPT header field offsets used to find the entry array (UEFI spec, table 5-5). */
const HEADER_ENTRY_LBA = 72;
const HEADER_ENTRY_COUNT = 80;
const HEADER_ENTRY_BYTES = 84;
/** Bound on the entry array read (the spec's usual 128 x 128 bytes is 16 KiB). */
const MAX_ENTRY_ARRAY_BYTES = 1 << 20;

export function growGpt(fd: number, sectorBytes: number, sourceBytes: number, targetBytes: number): void {
  const mbr = new Uint8Array(sectorBytes);
  readFully(fd, mbr, 0);
  const header = new Uint8Array(sectorBytes);
  readFully(fd, header, sectorBytes);
  const dv = view(header);
  const entryLba = getU64(dv, HEADER_ENTRY_LBA);
  const entryArrayBytes = dv.getUint32(HEADER_ENTRY_COUNT, true) * dv.getUint32(HEADER_ENTRY_BYTES, true);
  if (entryArrayBytes > MAX_ENTRY_ARRAY_BYTES) throw new Error(`GPT entry array of ${entryArrayBytes} bytes is above the bound`);
  const entries = new Uint8Array(Math.ceil(entryArrayBytes / sectorBytes) * sectorBytes);
  readFully(fd, entries, entryLba * sectorBytes);
  const moved = relocateGpt(header, entries, mbr, sectorBytes, targetBytes);
  writeFully(fd, moved.entries, moved.backupEntriesLba * sectorBytes);
  writeFully(fd, moved.backupHeader, moved.backupHeaderLba * sectorBytes);
  writeFully(fd, moved.primaryHeader, sectorBytes);
  writeFully(fd, moved.protectiveMbr.subarray(0, 512), 0);
  // The old backup header now sits inside the usable area: clear it so no tool mistakes it for a table.
  writeFully(fd, new Uint8Array(sectorBytes), sourceBytes - sectorBytes);
}
