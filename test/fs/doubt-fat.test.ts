// FAT whose maps the volume itself would doubt: damaged copies of real mkfs.fat volumes filled with
// mtools must be captured raw (restored byte for byte); the clean ones stay parsed.
import { $ } from "bun";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { fatParser, parseFatBootSector, type FatGeometry } from "../../src/fs/fat.ts";
import { memoryReader } from "../../src/fs/reader.ts";
import { rangeEnd } from "../../src/util/ranges.ts";
import { fatImage } from "../fixtures/fat.ts";
import { FIXTURE_TIMEOUT_MS } from "../helpers.ts";
import { bytesOf, expectParsed, expectRawBytes, expectRawRoundTrip, scratchDir, viewOf } from "./doubt-helpers.ts";

const TOTAL_SECTORS_32 = 0x20;
const SECTORS_PER_CLUSTER = 0x0d;
const RESERVED_SECTORS = 0x0e;
const MEDIA = 0x15;
const FAT_SECTORS_16 = 0x16;

let dir: string;
let cleanup: () => Promise<void>;
let fat12: string;
let fat16: string;
let fat16Full: string;
let fat32: string;
beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir());
  fat12 = (await fatImage(12, { sizeMiB: 8, contentMiB: 4, label: "FLOPPY" })).image;
  fat16 = (await fatImage(16, { sizeMiB: 64, contentMiB: 24, label: "DATA16" })).image;
  // Filled to about four fifths, so a size cut by a third cuts into files, as in the probe.
  fat16Full = (await fatImage(16, { sizeMiB: 32, contentMiB: 24, label: "FULL16" })).image;
  fat32 = (await fatImage(32, { sizeMiB: 256, contentMiB: 48, label: "ESP" })).image;
}, FIXTURE_TIMEOUT_MS);
afterAll(() => cleanup());

function geometry(bytes: Uint8Array): FatGeometry {
  return parseFatBootSector(bytes.subarray(0, 512));
}

function fatStart(geo: FatGeometry, copy: number): number {
  return (geo.reservedSectors + copy * geo.fatSectors) * geo.sectorBytes;
}

async function fsckFatCode(path: string): Promise<number> {
  return (await $`fsck.fat -n ${path}`.quiet().nothrow()).exitCode;
}

test("the probe's case: FAT16 with both FATs zeroed is captured raw", async () => {
  expectParsed(fat16Full, "fat16");
  const bytes = bytesOf(fat16Full);
  const geo = geometry(bytes);
  expect(geo.fatCount).toBe(2);
  bytes.fill(0, fatStart(geo, 0), fatStart(geo, 2));
  const damaged = join(dir, "fat16-zeroed.img");
  await Bun.write(damaged, bytes);
  expect(await fsckFatCode(damaged)).not.toBe(0);
  await expectRawRoundTrip(damaged, dir, /FAT copy 1 starts with 0x0, not the media entry 0xfff8/);
}, FIXTURE_TIMEOUT_MS);

test("the probe's case: FAT16 with its sector count shrunk by a third is captured raw", async () => {
  const pristine = bytesOf(fat16Full);
  const geo = geometry(pristine);
  // The true volume has clusters in use past the shrunk end.
  const shrunkSectors = Math.floor((geo.totalSectors * 2) / 3);
  const truth = fatParser.allocation(memoryReader(pristine));
  expect(truth.allocated.some((r) => rangeEnd(r) > shrunkSectors * geo.sectorBytes)).toBe(true);

  const bytes = pristine.slice();
  viewOf(bytes).setUint32(TOTAL_SECTORS_32, shrunkSectors, true);
  const damaged = join(dir, "fat16-shrunk.img");
  await Bun.write(damaged, bytes);
  expect(await fsckFatCode(damaged)).not.toBe(0);
  await expectRawRoundTrip(damaged, dir, /outside the volume's|past the volume's/);
}, FIXTURE_TIMEOUT_MS);

test("fat12/16/32: damaged boot sectors, FATs and size fields are captured raw", async () => {
  expectParsed(fat12, "fat12");
  expectParsed(fat32, "fat32");
  const cases: Array<{ image: string; name: string; why: RegExp; damage: (b: Uint8Array, v: DataView, g: FatGeometry) => void }> = [
    // FAT32 keeps a backup boot sector: a shrunk primary disagrees with it.
    {
      image: fat32,
      name: "fat32-shrunk",
      why: /backup boot sector \(sector 6\) describes another layout/,
      damage: (_, v, g) => v.setUint32(TOTAL_SECTORS_32, Math.floor((g.totalSectors * 2) / 3), true),
    },
    // Both FATs agree that the root directory's cluster is free.
    {
      image: fat32,
      name: "fat32-root-free",
      why: /root directory cluster 2 free/,
      damage: (_, v, g) => {
        for (let copy = 0; copy < g.fatCount; copy++) v.setUint32(fatStart(g, copy) + g.rootCluster * 4, 0, true);
      },
    },
    // One FAT's media entry overwritten; then both, so the copies still agree.
    { image: fat12, name: "fat12-media-one", why: /FAT copy 2 starts with/, damage: (b, _, g) => void (b[fatStart(g, 1)] = 0xf0) },
    {
      image: fat16,
      name: "fat16-media-both",
      why: /FAT copy 1 starts with 0xfff0/,
      damage: (b, _, g) => {
        b[fatStart(g, 0)] = 0xf0;
        b[fatStart(g, 1)] = 0xf0;
      },
    },
    // A chain in both copies pointing past the last cluster.
    {
      image: fat16,
      name: "fat16-chain",
      why: /cluster 3 chains to cluster/,
      damage: (_, v, g) => {
        for (let copy = 0; copy < g.fatCount; copy++) v.setUint16(fatStart(g, copy) + 3 * 2, g.clusterCount + 10, true);
      },
    },
    // Boot sector fields: the media byte no longer matches the FATs; reserved sectors or the FAT
    // size move the FATs; bigger clusters halve the cluster count under the files' chains.
    { image: fat16, name: "fat16-bpb-media", why: /not the media entry 0xfff0/, damage: (b) => void (b[MEDIA] = 0xf0) },
    { image: fat12, name: "fat12-reserved", why: /FAT:/, damage: (_, v) => v.setUint16(RESERVED_SECTORS, v.getUint16(RESERVED_SECTORS, true) + 1, true) },
    { image: fat16, name: "fat16-fat-size", why: /FAT:/, damage: (_, v) => v.setUint16(FAT_SECTORS_16, v.getUint16(FAT_SECTORS_16, true) - 1, true) },
    { image: fat16Full, name: "fat16-cluster-size", why: /FAT:/, damage: (b) => void (b[SECTORS_PER_CLUSTER] = b[SECTORS_PER_CLUSTER]! * 2) },
    { image: fat16, name: "fat16-grown", why: /larger than its/, damage: (_, v) => v.setUint32(TOTAL_SECTORS_32, v.getUint32(TOTAL_SECTORS_32, true) + 8, true) },
  ];
  for (const c of cases) {
    const bytes = bytesOf(c.image);
    c.damage(bytes, viewOf(bytes), geometry(bytes));
    expectRawBytes(dir, `${c.name}.img`, bytes, c.why);
  }
}, FIXTURE_TIMEOUT_MS);
