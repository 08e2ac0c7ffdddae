// GPT growth onto a larger target, with the one header decoder capture uses: a 2 MiB entry array
// (16384 entries, within capture's 4 MiB bound) grows; a table growth cannot move is refused
// before anything is written.
import { describe, expect, test, beforeAll } from "bun:test";
import { $ } from "bun";
import { join } from "node:path";
import { openSync, readSync, closeSync, writeSync, readFileSync, writeFileSync } from "node:fs";
import { discus, discusOk, sha256File, tmpDir, FIXTURE_TIMEOUT_MS } from "../helpers.ts";
import { closeImage, openImage } from "../../src/image/reader.ts";
import { Loader } from "../../src/client/loader.ts";
import type { LoadStats } from "../../src/client/stats.ts";
import { TargetSink } from "../../src/client/sink.ts";
import { DiscusError } from "../../src/util/errors.ts";
import { MemoryLan, VIRTUAL_GROUP, VIRTUAL_PORT, VirtualClock, virtualServer } from "../net/virtual.ts";

const MIB = 1 << 20;
const DISK_BYTES = 48 * MIB;
const TARGET_BYTES = DISK_BYTES + 32 * MIB;
const ENTRY_COUNT = 16384; // × 128 bytes = 2 MiB of entries, 4096 sectors
const ENTRY_SECTORS = (ENTRY_COUNT * 128) / 512;
const HEADER_CRC_OFFSET = 16;

function readBytes(path: string, offset: number, length: number): Uint8Array {
  const fd = openSync(path, "r");
  const out = new Uint8Array(length);
  readSync(fd, out, 0, length, offset);
  closeSync(fd);
  return out;
}

/** A GPT disk with a 2 MiB entry array and random data in both partitions, so every byte restored can be compared. */
async function bigTableDisk(dir: string): Promise<string> {
  const disk = join(dir, "big-table.img");
  await $`truncate -s ${DISK_BYTES} ${disk}`;
  await $`sgdisk -o -a 2048 --resize-table=${ENTRY_COUNT} -n 1:0:+8M -t 1:8300 -n 2:0:+8M -t 2:8300 ${disk}`.quiet();
  const parts = JSON.parse(await $`sfdisk --json ${disk}`.text()).partitiontable.partitions as { start: number; size: number }[];
  for (const p of parts) await $`dd if=/dev/urandom of=${disk} bs=512 seek=${p.start} count=${p.size} conv=notrunc status=none`;
  return disk;
}

/** A copy of `disk` whose primary GPT header is damaged: capture reads the backup, growth needs the primary. */
function damagedCopy(disk: string, damaged: string): void {
  writeFileSync(damaged, readFileSync(disk));
  const fd = openSync(damaged, "r+");
  const crc = readBytes(damaged, 512 + HEADER_CRC_OFFSET, 1);
  writeSync(fd, new Uint8Array([crc[0]! ^ 0xff]), 0, 1, 512 + HEADER_CRC_OFFSET);
  closeSync(fd);
}

describe("GPT with a 2 MiB entry array", () => {
  let dir: string;
  let disk: string;
  let image: string;
  beforeAll(async () => {
    dir = await tmpDir();
    disk = await bigTableDisk(dir);
    image = join(dir, "big-table.dsc");
    await discusOk(["create", "--quiet", disk, image]);
  }, FIXTURE_TIMEOUT_MS);

  test("restores onto a larger target with the backup table moved to the new end", async () => {
    const target = join(dir, "grown.img");
    await $`truncate -s ${TARGET_BYTES} ${target}`;
    const out = JSON.parse(await discusOk(["restore", "--json", image, target]));
    expect(out.gptMoved).toBe(true);
    expect(await $`sgdisk -v ${target}`.nothrow().text()).toContain("No problems found");
    const grown = JSON.parse(await $`sfdisk --json ${target}`.text()).partitiontable;
    expect(grown.lastlba).toBe(TARGET_BYTES / 512 - 2 - ENTRY_SECTORS);
    const original = JSON.parse(await $`sfdisk --json ${disk}`.text()).partitiontable;
    expect(grown.partitions.map((p: { start: number; size: number }) => [p.start, p.size])).toEqual(
      original.partitions.map((p: { start: number; size: number }) => [p.start, p.size]),
    );
    // The primary entry array and every partition are the source's, byte for byte.
    const firstBytes = 2 * 512;
    await $`cmp -i ${firstBytes} -n ${(original.lastlba + 1) * 512 - firstBytes} ${disk} ${target}`;
  });

  test("a primary table growth cannot use is refused before anything is written", async () => {
    // The primary header is damaged: capture reads the backup, but growth needs the primary.
    const damaged = join(dir, "damaged.img");
    damagedCopy(disk, damaged);
    const damagedImage = join(dir, "damaged.dsc");
    await discusOk(["create", "--quiet", damaged, damagedImage]);

    const target = join(dir, "untouched.img");
    await $`head -c ${TARGET_BYTES} /dev/zero | tr '\\000' '\\245' > ${target}`;
    const before = await sha256File(target);
    const r = await discus(["restore", damagedImage, target]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/GPT/);
    expect(r.stderr).toContain("Nothing was written");
    expect(r.stderr).not.toMatch(/internal error|assertion/i);
    expect(await sha256File(target)).toBe(before);
    // The same image onto a target of exactly its size needs no growth, and restores.
    const exact = join(dir, "exact.img");
    await discusOk(["restore", "--quiet", damagedImage, exact]);
    await $`cmp ${damaged} ${exact}`;
  });
});

// The same two images loaded over multicast (the real ServeSession and Loader on virtual time):
// chunks come in any order, so the loader's sink holds writes back until the table's chunks have
// come and the growth is planned (target/gpt-gate.ts).
describe("GPT growth under a multicast load", () => {
  let dir: string;
  let disk: string;
  beforeAll(async () => {
    dir = await tmpDir();
    disk = await bigTableDisk(dir);
  }, FIXTURE_TIMEOUT_MS);

  async function load(imagePath: string, target: string): Promise<{ error: unknown; stats: LoadStats | null }> {
    const image = openImage(imagePath);
    const clock = new VirtualClock();
    const lan = new MemoryLan(clock, 0.2);
    try {
      const server = virtualServer(image, clock, lan, { seed: 1 });
      await server.start();
      const loader = new Loader(
        { group: VIRTUAL_GROUP, port: VIRTUAL_PORT, publicKey: null, keyPath: null, imageId: null, giveUpMs: 30_000, bufferBytes: 8 << 20, requestWindowChunks: 4, seed: 2 },
        { clock, openTransport: lan.transport("198.18.0.2", VIRTUAL_PORT), sink: new TargetSink({ target, freeMode: "skip", workers: 0 }) },
      );
      let outcome: { error: unknown; stats: LoadStats | null } | null = null;
      const run = loader.run().then((stats) => void (outcome = { error: null, stats }), (error) => void (outcome = { error, stats: null }));
      await clock.runUntil(() => outcome !== null, 120_000);
      await run;
      await server.stop();
      return outcome!;
    } finally {
      closeImage(image);
    }
  }

  test("a 2 MiB entry array spread over three chunks: planned before writing, moved at the end", async () => {
    const image = join(dir, "big-table.dsc");
    await discusOk(["create", "--quiet", "--chunk-size", "1M", disk, image]);
    const target = join(dir, "loaded.img");
    await $`truncate -s ${TARGET_BYTES} ${target}`;
    const r = await load(image, target);
    expect(r.error).toBeNull();
    expect(r.stats!.gptMoved).toBe(true);
    expect(r.stats!.chunksRejected).toBe(0);
    expect(await $`sgdisk -v ${target}`.nothrow().text()).toContain("No problems found");
    const original = JSON.parse(await $`sfdisk --json ${disk}`.text()).partitiontable;
    await $`cmp -i 1024 -n ${(original.lastlba + 1) * 512 - 1024} ${disk} ${target}`;
  }, 120_000);

  test("a table growth cannot move: the load ends with exit 3's error and the target untouched", async () => {
    const damaged = join(dir, "damaged.img");
    damagedCopy(disk, damaged);
    const image = join(dir, "damaged.dsc");
    await discusOk(["create", "--quiet", "--chunk-size", "1M", damaged, image]);
    const target = join(dir, "untouched.img");
    await $`head -c ${TARGET_BYTES} /dev/zero | tr '\\000' '\\245' > ${target}`;
    const before = await sha256File(target);
    const r = await load(image, target);
    expect(r.error).toBeInstanceOf(DiscusError);
    expect((r.error as DiscusError).kind).toBe("input");
    expect((r.error as DiscusError).message).toContain("its GPT cannot be moved");
    expect(await sha256File(target)).toBe(before);
  }, 120_000);
});
