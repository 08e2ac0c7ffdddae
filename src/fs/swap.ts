// Linux swap areas: only the header page holds anything worth keeping; the rest is scratch space.
import { assert } from "../util/assert.ts";
import { FsUnsupportedError } from "../util/errors.ts";
import type { BlockReader, FsAllocation, FsParser } from "./types.ts";
import { decodeLabel, formatUuid } from "./names.ts";

// The header page: boot bits, then the version-1 info block at byte 1024, magic in the last 10 bytes.
const infoOffsetBytes = 1024;
const infoVersion = 0; // u32
const infoLastPage = 4; // u32: index of the last usable page
const infoBadPageCount = 8; // u32
const infoUuid = 12; // 16 bytes
const infoVolumeName = 28; // 16 bytes
const uuidBytes = 16;
const volumeNameBytes = 16;
const infoBytes = infoVolumeName + volumeNameBytes;
// The bad-page list follows the info block's padding; it may fill the page up to the magic.
const badPagesOffsetBytes = 1536;
const badPageEntryBytes = 4;

const magicBytes = 10;
const magicV2 = "SWAPSPACE2";
// The pre-2.2 format: the header page is a bitmap of usable pages and there is no size field.
const magicV1 = "SWAP-SPACE";
const supportedVersion = 1;

/** Page sizes mkswap may have used; the magic sits at the end of the first page. */
const pageBytesCandidates = [4096, 8192, 16384, 65536] as const;
const maxPageBytes = 65536;

function magicAt(reader: BlockReader, pageBytes: number): string | null {
  if (reader.sizeBytes < pageBytes) return null;
  const text = new TextDecoder("latin1").decode(reader.read(pageBytes - magicBytes, magicBytes));
  return text === magicV2 || text === magicV1 ? text : null;
}

/** The first candidate page size whose page ends in a swap magic. */
function findHeader(reader: BlockReader): { pageBytes: number; magic: string } | null {
  for (const pageBytes of pageBytesCandidates) {
    const magic = magicAt(reader, pageBytes);
    if (magic !== null) return { pageBytes, magic };
  }
  return null;
}


/** The bad-page list as swapon checks it: it fits the header page and names pages of the area. */
function checkBadPages(reader: BlockReader, pageBytes: number, count: number, lastPage: number, littleEndian: boolean): void {
  const maxCount = Math.floor((pageBytes - magicBytes - badPagesOffsetBytes) / badPageEntryBytes);
  if (count > maxCount) throw new FsUnsupportedError(`swap: header lists ${count} bad pages, more than its page holds (${maxCount})`);
  if (count === 0) return;
  const list = reader.read(badPagesOffsetBytes, count * badPageEntryBytes);
  const view = new DataView(list.buffer, list.byteOffset, list.byteLength);
  for (let i = 0; i < count; i++) {
    const page = view.getUint32(i * badPageEntryBytes, littleEndian);
    if (page === 0 || page > lastPage) throw new FsUnsupportedError(`swap: bad page ${page} lies outside the area's ${lastPage} pages`);
  }
}

export const swapParser: FsParser = {
  name: "swap",

  detect(reader: BlockReader): boolean {
    return findHeader(reader) !== null;
  },

  allocation(reader: BlockReader): FsAllocation {
    const header = findHeader(reader);
    if (header === null) throw new FsUnsupportedError("swap: no swap signature");
    assert(header.pageBytes <= maxPageBytes, "page size candidate within the detect window");
    if (header.magic !== magicV2) throw new FsUnsupportedError(`swap: old "${header.magic}" format is not supported`);

    const info = reader.read(infoOffsetBytes, infoBytes);
    const view = new DataView(info.buffer, info.byteOffset, info.byteLength);
    // The header is in the writer's byte order; version 1 tells us which order that was.
    let littleEndian = true;
    if (view.getUint32(infoVersion, true) !== supportedVersion) {
      if (view.getUint32(infoVersion, false) !== supportedVersion) {
        throw new FsUnsupportedError(`swap: unknown header version ${view.getUint32(infoVersion, true)}`);
      }
      littleEndian = false;
    }
    const lastPage = view.getUint32(infoLastPage, littleEndian);
    if (lastPage === 0) throw new FsUnsupportedError("swap: header says the area has no pages");
    checkBadPages(reader, header.pageBytes, view.getUint32(infoBadPageCount, littleEndian), lastPage, littleEndian);
    const fsBytes = (lastPage + 1) * header.pageBytes;
    assert(Number.isSafeInteger(fsBytes), "swap size is exact");
    if (fsBytes > reader.sizeBytes) {
      throw new FsUnsupportedError(`swap: header claims ${fsBytes} bytes but the partition has ${reader.sizeBytes}`);
    }

    return {
      kind: "swap",
      label: decodeLabel(info.subarray(infoVolumeName, infoVolumeName + volumeNameBytes)),
      uuid: formatUuid(info.subarray(infoUuid, infoUuid + uuidBytes)),
      blockBytes: header.pageBytes,
      fsBytes,
      // Swapped-out pages die with the running system, so only the header page is kept.
      allocated: [{ start: 0, length: header.pageBytes }],
    };
  },
};
