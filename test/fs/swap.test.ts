// Linux swap parser against real mkswap areas: one header page allocated, size from the header,
// and a garbage-filled copy that blkid and swaplabel still see with the same label and UUID.
import { $ } from "bun";
import { expect, test } from "bun:test";
import { closeSync, fstatSync, openSync, readFileSync, rmSync } from "node:fs";
import { swapParser } from "../../src/fs/swap.ts";
import { fdReader, memoryReader } from "../../src/fs/reader.ts";
import type { FsAllocation } from "../../src/fs/types.ts";
import { FsUnsupportedError } from "../../src/util/errors.ts";
import { cachedFixture, garbageFilledCopy } from "../fixtures/common.ts";

const mib = 1024 * 1024;
const label = "discus-swap";
const uuid = "0f4c2d1e-8a9b-4c3d-9e2f-112233445566";

interface SwapCase {
  name: string;
  imageMiB: number;
  /** mkswap's size argument in KiB, when the area is smaller than the file. */
  sizeKiB?: number;
  pageBytes: number;
}

const cases: SwapCase[] = [
  { name: "64 MiB, 4 KiB pages", imageMiB: 64, pageBytes: 4096 },
  { name: "48 MiB area in a 64 MiB file", imageMiB: 64, sizeKiB: 48 * 1024, pageBytes: 4096 },
  { name: "64 MiB, 16 KiB pages", imageMiB: 64, pageBytes: 16384 },
  { name: "64 MiB, 64 KiB pages", imageMiB: 64, pageBytes: 65536 },
];

async function swapImage(c: SwapCase): Promise<string> {
  const key = `swap-${c.imageMiB}M-${c.sizeKiB ?? "all"}-p${c.pageBytes}-v1.img`;
  return cachedFixture(key, async (tmp) => {
    await $`truncate -s ${c.imageMiB}M ${tmp}`;
    await $`chmod 600 ${tmp}`;
    const size = c.sizeKiB === undefined ? [] : [String(c.sizeKiB)];
    await $`mkswap -p ${c.pageBytes} -L ${label} -U ${uuid} ${tmp} ${size}`.quiet();
  });
}

function allocationOf(image: string): FsAllocation {
  const fd = openSync(image, "r");
  try {
    const reader = fdReader(fd, 0, fstatSync(fd).size);
    expect(swapParser.detect(reader)).toBe(true);
    return swapParser.allocation(reader);
  } finally {
    closeSync(fd);
  }
}

async function blkidExport(image: string): Promise<Map<string, string>> {
  const text = await $`blkid -p -o export ${image}`.quiet().text();
  const out = new Map<string, string>();
  for (const line of text.trim().split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return out;
}

for (const c of cases) {
  test(c.name, async () => {
    const image = await swapImage(c);
    const alloc = allocationOf(image);
    const expectedBytes = c.sizeKiB === undefined ? c.imageMiB * mib : c.sizeKiB * 1024;
    expect(alloc.kind).toBe("swap");
    expect(alloc.blockBytes).toBe(c.pageBytes);
    expect(alloc.fsBytes).toBe(expectedBytes);
    expect(alloc.allocated).toEqual([{ start: 0, length: c.pageBytes }]);
    expect(alloc.label).toBe(label);
    expect(alloc.uuid).toBe(uuid);

    const original = await blkidExport(image);
    expect(original.get("TYPE")).toBe("swap");
    expect(original.get("LABEL")).toBe(label);
    expect(original.get("UUID")).toBe(uuid);

    const copy = `${image}.garbage-${process.pid}`;
    try {
      garbageFilledCopy(image, copy, alloc.allocated);
      // The copy really is garbage after the header page.
      const bytes = readFileSync(copy);
      expect(bytes.length).toBe(c.imageMiB * mib);
      expect(bytes[c.pageBytes]).toBe(0xa5);
      expect(bytes[bytes.length - 1]).toBe(0xa5);

      const seen = await blkidExport(copy);
      expect(seen.get("TYPE")).toBe("swap");
      expect(seen.get("LABEL")).toBe(label);
      expect(seen.get("UUID")).toBe(uuid);
      const swaplabel = await $`swaplabel ${copy}`.quiet().text();
      expect(swaplabel).toContain(`LABEL: ${label}`);
      expect(swaplabel).toContain(`UUID:  ${uuid}`);
      // And the parser reads the copy the same way.
      expect(allocationOf(copy)).toEqual(alloc);
    } finally {
      rmSync(copy, { force: true });
    }
  });
}

function headerOf(c: SwapCase): Promise<Uint8Array> {
  return swapImage(c).then((image) => new Uint8Array(readFileSync(image)));
}

function expectUnsupported(bytes: Uint8Array, reason: RegExp): void {
  let error: unknown = null;
  try {
    swapParser.allocation(memoryReader(bytes));
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(FsUnsupportedError);
  expect((error as Error).message).toMatch(reason);
}

test("refusals: old format, unknown version, area larger than the partition", async () => {
  const c = cases[0]!;
  const magicAt = c.pageBytes - 10;
  const old = await headerOf(c);
  old.set(new TextEncoder().encode("SWAP-SPACE"), magicAt);
  expect(swapParser.detect(memoryReader(old))).toBe(true);
  expectUnsupported(old, /old "SWAP-SPACE" format/);

  const version = await headerOf(c);
  new DataView(version.buffer).setUint32(1024, 2, true);
  expectUnsupported(version, /unknown header version/);

  // The header promises 64 MiB; a 32 MiB partition cannot hold it.
  const truncated = (await headerOf(c)).slice(0, 32 * mib);
  expectUnsupported(truncated, /claims 67108864 bytes/);
});

test("big-endian header is read in its own byte order", async () => {
  const bytes = await headerOf(cases[1]!);
  const view = new DataView(bytes.buffer);
  for (const offset of [1024, 1028]) view.setUint32(offset, view.getUint32(offset, true), false);
  const alloc = swapParser.allocation(memoryReader(bytes));
  expect(alloc.fsBytes).toBe(48 * mib);
  expect(alloc.label).toBe(label);
});

test("detect: no signature, hibernation image, too small", async () => {
  expect(swapParser.detect(memoryReader(new Uint8Array(64 * 1024)))).toBe(false);
  expect(swapParser.detect(memoryReader(new Uint8Array(1024)))).toBe(false);
  // A hibernation image replaces the magic; its pages matter, so it must not look like plain swap.
  const hibernated = await headerOf(cases[0]!);
  hibernated.set(new TextEncoder().encode("S1SUSPEND\0"), 4096 - 10);
  expect(swapParser.detect(memoryReader(hibernated))).toBe(false);
});
