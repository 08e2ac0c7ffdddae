// Moves a GPT's backup to the end of a larger disk, for an image of a smaller disk restored to a bigger
// one. Pure: takes the primary structures as bytes and returns every sector to write, CRCs recomputed.
import { assert } from "../util/assert.ts";
import { isPowerOfTwo, setU64 } from "../util/bytes.ts";
import {
  crc32,
  decodeGptHeader,
  entryArraySectors,
  headerAlternateLbaOffset,
  headerCrc,
  headerCrcOffset,
  headerEntryArrayLbaOffset,
  headerLastUsableLbaOffset,
  headerMyLbaOffset,
  primaryHeaderLba,
} from "./gpt.ts";
import { decodeEntries, typeGptProtective, writeEntrySectorCount } from "./mbr.ts";
import { mbrBytes, PartitionTableError } from "./types.ts";

export interface RelocatedGpt {
  /** Write at LBA 1: AlternateLBA and LastUsableLBA now point at the new end. */
  primaryHeader: Uint8Array;
  /** Write at byte 0: the 0xEE entry grown to the new end (capped at 0xFFFFFFFF sectors). */
  protectiveMbr: Uint8Array;
  /** Write at `backupHeaderLba`, the new last sector. */
  backupHeader: Uint8Array;
  backupHeaderLba: number;
  /** Where `entries` go for the backup copy (the primary copy stays where it was, unchanged). */
  backupEntriesLba: number;
  /** The entry array, padded to whole sectors. */
  entries: Uint8Array;
  /** Where the old backup header was (the primary's AlternateLBA): now inside the usable area. */
  oldBackupHeaderLba: number;
}

/** MBR sector counts are 32 bits; a protective entry for a bigger disk says 0xFFFFFFFF. */
const mbrSectorCountMax = 0xffffffff;

export function relocateGpt(
  primaryHeaderSector: Uint8Array,
  entryArray: Uint8Array,
  protectiveMbr: Uint8Array,
  sectorBytes: number,
  newDiskBytes: number,
): RelocatedGpt {
  assert(sectorBytes >= mbrBytes && isPowerOfTwo(sectorBytes), `sector size ${sectorBytes} is a power of two >= 512`);
  assert(primaryHeaderSector.length === sectorBytes, "the primary header is one whole sector");
  assert(protectiveMbr.length >= mbrBytes, "the protective MBR holds 512 bytes");
  assert(Number.isSafeInteger(newDiskBytes) && newDiskBytes % sectorBytes === 0, `new disk size ${newDiskBytes} is whole sectors`);
  const newDiskSectors = newDiskBytes / sectorBytes;

  // The one header decoder capture uses (part/gpt.ts), with the same bounds; what the image or the
  // target size can make wrong is a PartitionTableError, so a caller can refuse before writing.
  const header = decodeGptHeader(primaryHeaderSector, sectorBytes, newDiskSectors);
  if (header.myLba !== primaryHeaderLba) throw new PartitionTableError(`the header at LBA ${primaryHeaderLba} says it is at LBA ${header.myLba}`);
  const oldDiskSectors = header.alternateLba + 1;
  if (newDiskSectors <= header.alternateLba) {
    throw new PartitionTableError(`the backup header (LBA ${header.alternateLba}) lies past the end of a ${newDiskSectors}-sector disk`);
  }
  const entryArrayBytes = header.entryCount * header.entryBytes;
  assert(entryArray.length >= entryArrayBytes, "the whole entry array is given");
  if (crc32(entryArray.subarray(0, entryArrayBytes)) !== header.entryArrayCrc) {
    throw new PartitionTableError("GPT entry array CRC32 mismatch: refusing to relocate a corrupt table");
  }

  const entrySectors = entryArraySectors(header, sectorBytes);
  const backupHeaderLba = newDiskSectors - 1;
  const backupEntriesLba = backupHeaderLba - entrySectors;
  const lastUsableLba = backupEntriesLba - 1;
  if (lastUsableLba < header.lastUsableLba) {
    throw new PartitionTableError(`a backup table of ${entrySectors + 1} sectors at the end of a ${newDiskSectors}-sector disk would cut into the usable area (last usable LBA ${header.lastUsableLba})`);
  }

  const primaryHeader = primaryHeaderSector.slice();
  const primaryView = new DataView(primaryHeader.buffer);
  setU64(primaryView, headerAlternateLbaOffset, backupHeaderLba);
  setU64(primaryView, headerLastUsableLbaOffset, lastUsableLba);
  primaryView.setUint32(headerCrcOffset, headerCrc(primaryHeader, header.headerBytes), true);

  // The backup is the primary with its own location, the primary's as alternate, and its own entries.
  const backupHeader = new Uint8Array(sectorBytes);
  backupHeader.set(primaryHeader.subarray(0, header.headerBytes));
  const backupView = new DataView(backupHeader.buffer);
  setU64(backupView, headerMyLbaOffset, backupHeaderLba);
  setU64(backupView, headerAlternateLbaOffset, primaryHeaderLba);
  setU64(backupView, headerEntryArrayLbaOffset, backupEntriesLba);
  backupView.setUint32(headerCrcOffset, headerCrc(backupHeader, header.headerBytes), true);

  const entries = new Uint8Array(entrySectors * sectorBytes);
  entries.set(entryArray.subarray(0, Math.min(entryArray.length, entries.length)));

  return {
    primaryHeader,
    protectiveMbr: grownProtectiveMbr(protectiveMbr, oldDiskSectors, newDiskSectors),
    backupHeader,
    backupHeaderLba,
    backupEntriesLba,
    entries,
    oldBackupHeaderLba: header.alternateLba,
  };
}

/**
 * Grows the 0xEE entry that covered the old disk to the new end. A hybrid MBR's 0xEE entry that stops
 * short of the old end is left as it was: it was never meant to cover the whole disk.
 */
function grownProtectiveMbr(mbr: Uint8Array, oldDiskSectors: number, newDiskSectors: number): Uint8Array {
  const out = mbr.slice();
  const protective = decodeEntries(out).filter((e) => e.type === typeGptProtective);
  if (protective.length === 0) throw new PartitionTableError("the protective MBR has no 0xEE entry");
  for (const e of protective) {
    const coversOldDisk = e.startLba + e.sectorCount >= oldDiskSectors || e.sectorCount === mbrSectorCountMax;
    if (e.startLba !== primaryHeaderLba || !coversOldDisk) continue;
    writeEntrySectorCount(out, e.slot, Math.min(newDiskSectors - primaryHeaderLba, mbrSectorCountMax));
  }
  return out;
}
