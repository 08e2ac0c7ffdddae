// NTFS whose boot sector the volume itself would doubt: damaged copies of a real mkntfs volume
// filled through ntfs-3g must be captured raw (restored byte for byte); the clean one stays parsed.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { ntfsParser, parseNtfsBootSector, systemFileRuns } from "../../src/fs/ntfs.ts";
import { memoryReader } from "../../src/fs/reader.ts";
import { rangeEnd } from "../../src/util/ranges.ts";
import { ntfsImage } from "../fixtures/ntfs.ts";
import { FIXTURE_TIMEOUT_MS } from "../helpers.ts";
import { bytesOf, expectParsed, expectRawBytes, expectRawRoundTrip, scratchDir, viewOf } from "./doubt-helpers.ts";

const TOTAL_SECTORS = 0x28;
const MFT_LCN = 0x30;
const SECTORS_PER_CLUSTER = 0x0d;
// The probe's volume: a 48 MiB partition, 98303 sectors counted, the backup in the last one.
const PROBE_SECTORS = 98303;
const SHRUNK_SECTORS = 61439;

let dir: string;
let cleanup: () => Promise<void>;
let image: string;
beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir());
  image = (await ntfsImage({ sizeMiB: 48, contentMiB: 24, label: "PROBE" })).image;
}, FIXTURE_TIMEOUT_MS);
afterAll(() => cleanup());

function withTotalSectors(bytes: Uint8Array, at: number, sectors: number): void {
  viewOf(bytes).setBigUint64(at + TOTAL_SECTORS, BigInt(sectors), true);
}

test("the probe's case: total sectors shrunk 98303 -> 61439, backup disagreeing, is captured raw", async () => {
  expectParsed(image, "ntfs");
  const pristine = bytesOf(image);
  expect(Number(viewOf(pristine).getBigUint64(TOTAL_SECTORS, true))).toBe(PROBE_SECTORS);
  // The true volume has file data past the shrunk end: trusting the size would lose it.
  const truth = ntfsParser.allocation(memoryReader(pristine));
  const shrunkEnd = SHRUNK_SECTORS * 512;
  const pastEnd = truth.allocated.filter((r) => rangeEnd(r) > shrunkEnd && r.start < (PROBE_SECTORS - 1) * 512);
  expect(pastEnd.length).toBeGreaterThan(0);

  const bytes = pristine.slice();
  withTotalSectors(bytes, 0, SHRUNK_SECTORS);
  const damaged = join(dir, "ntfs-shrunk.img");
  await Bun.write(damaged, bytes);
  await expectRawRoundTrip(damaged, dir, /sector after the volume's 61439 sectors is not a matching backup boot sector/);
}, FIXTURE_TIMEOUT_MS);

test("ntfs: damaged size fields, geometry and maps are captured raw", async () => {
  const pristine = bytesOf(image);
  const lastSector = pristine.length - 512;
  const cases: Array<{ name: string; why: RegExp; damage: (b: Uint8Array, v: DataView) => void }> = [
    // Both copies shrunk alike: the sector after the new end is still no backup.
    {
      name: "both-shrunk",
      why: /not a matching backup boot sector/,
      damage: (b) => {
        withTotalSectors(b, 0, SHRUNK_SECTORS);
        withTotalSectors(b, lastSector, SHRUNK_SECTORS);
      },
    },
    // A matching backup planted after the shrunk end: the old backup at the partition's end disagrees.
    {
      name: "planted-backup",
      why: /partition's end describes 98303 sectors, the boot sector 61439/,
      damage: (b) => {
        withTotalSectors(b, 0, SHRUNK_SECTORS);
        b.copyWithin(SHRUNK_SECTORS * 512, 0, 512);
      },
    },
    { name: "grown", why: /larger than its/, damage: (b) => withTotalSectors(b, 0, PROBE_SECTORS + 4096) },
    // Only the backup damaged: the two copies disagree, so neither is trusted.
    { name: "backup-damaged", why: /not a matching backup/, damage: (_, v) => v.setBigUint64(lastSector + MFT_LCN, 9n, true) },
    { name: "mft-lcn", why: /NTFS:/, damage: (_, v) => v.setBigUint64(MFT_LCN, 9n, true) },
    { name: "cluster-size", why: /NTFS:/, damage: (b) => (b[SECTORS_PER_CLUSTER] = 16) },
    // Allocation map: $Bitmap with the $MFT's own cluster marked free.
    {
      name: "bitmap-mft-free",
      why: /marks \$Boot or \$MFT free/,
      damage: (b, v) => {
        const bitmapAt = bitmapStreamOffset(b);
        const mftLcn = Number(v.getBigUint64(MFT_LCN, true));
        b[bitmapAt + (mftLcn >>> 3)]! &= ~(1 << (mftLcn & 7));
      },
    },
  ];
  for (const c of cases) {
    const bytes = pristine.slice();
    c.damage(bytes, viewOf(bytes));
    expectRawBytes(dir, `ntfs-${c.name}.img`, bytes, c.why);
  }
}, FIXTURE_TIMEOUT_MS);

/** Disk offset of the $Bitmap stream's first byte (its first run, record 6). */
function bitmapStreamOffset(bytes: Uint8Array): number {
  const first = systemFileRuns(memoryReader(bytes), 6)[0]!;
  return first.lcn! * parseNtfsBootSector(bytes.subarray(0, 512)).clusterBytes;
}
