// XFS whose free-space accounting the filesystem itself would doubt: copies of a real mkfs.xfs
// image damaged with xfs_db (which rewrites the CRCs, so only the cross-checks can notice) must be
// captured raw and restored byte for byte; the clean v4 and v5 images stay parsed.
import { $ } from "bun";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { xfsImage, type XfsImageOptions } from "../fixtures/xfs.ts";
import { FIXTURE_TIMEOUT_MS } from "../helpers.ts";
import { copyOf, expectParsed, expectRawPlan, expectRawRoundTrip, scratchDir } from "./doubt-helpers.ts";

// The parser tests' fixtures: v5 with thousands of small holes (multi-level btrees), and v4.
const V5_SMALL: XfsImageOptions = { fileMiB: 301, fsMiB: 300, contentMiB: 64, deleteEvery: 3, smallFiles: 2400, label: "discus-v5" };
const V4: XfsImageOptions = { fileMiB: 301, fsMiB: 300, crc: false, contentMiB: 24, label: "discus-v4" };

let dir: string;
let cleanup: () => Promise<void>;
let v5: string;
beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir());
  v5 = await xfsImage(V5_SMALL);
}, FIXTURE_TIMEOUT_MS);
afterAll(() => cleanup());

async function db(image: string, commands: string[], write = false): Promise<string> {
  const args = commands.flatMap((c) => ["-c", c]);
  return (await $`xfs_db ${write ? ["-x"] : ["-r"]} ${args} ${image}`.quiet().text()).trim();
}

async function dbNumber(image: string, commands: string[], field: string): Promise<number> {
  const out = await db(image, [...commands, `print ${field}`]);
  const m = new RegExp(`^${field.replace(/[[\]]/g, "\\$&")} = (\\d+)$`, "m").exec(out);
  if (m === null) throw new Error(`xfs_db printed no ${field}: ${out}`);
  return Number(m[1]);
}

/** An AG whose bnobt root is a leaf holding at least two records, so one record can be edited alone. */
async function agWithLeafRoot(image: string): Promise<number> {
  const agCount = await dbNumber(image, ["sb 0"], "agcount");
  for (let ag = 0; ag < agCount; ag++) {
    const level = await dbNumber(image, [`agf ${ag}`], "bnolevel");
    if (level === 1 && (await dbNumber(image, [`agf ${ag}`, "addr bnoroot"], "numrecs")) >= 2) return ag;
  }
  throw new Error("no AG with a leaf bnobt root");
}

/** xfs_repair -n calls the damage an error (exit 1). */
async function expectRepairComplains(image: string, name: string): Promise<void> {
  const code = (await $`xfs_repair -n ${image}`.quiet().nothrow()).exitCode;
  expect({ name, code }).toEqual({ name, code: 1 });
}

test("the probe's cases: AGF free count altered, and a free-space btree record altered, are captured raw", async () => {
  expectParsed(v5, "xfs");
  const freeblks = join(dir, "freeblks.img");
  await $`cp --sparse=always ${v5} ${freeblks}`.quiet();
  const count = await dbNumber(freeblks, ["agf 1"], "freeblks");
  await db(freeblks, ["agf 1", `write freeblks ${count + 7}`], true);
  await expectRepairComplains(freeblks, "freeblks");
  await expectRawRoundTrip(freeblks, dir, /AG 1 free extents sum to \d+ blocks but the AGF says \d+/);
  await $`rm -f ${freeblks}`.quiet();

  const record = join(dir, "record.img");
  await $`cp --sparse=always ${v5} ${record}`.quiet();
  const ag = await agWithLeafRoot(record);
  const length = await dbNumber(record, [`agf ${ag}`, "addr bnoroot"], "recs[1].blockcount");
  // One free extent made shorter in the bnobt only: its blocks would look in use, the trees disagree.
  await db(record, [`agf ${ag}`, "addr bnoroot", `write recs[1].blockcount ${length - 1}`], true);
  await expectRepairComplains(record, "record");
  await expectRawRoundTrip(record, dir, new RegExp(`AG ${ag} bnobt and cntbt disagree`));
  await $`rm -f ${record}`.quiet();
}, FIXTURE_TIMEOUT_MS);

test("xfs: damaged superblock counters, size fields and AGF fields are captured raw", async () => {
  const cases: Array<{ name: string; why: RegExp; commands: (image: string) => Promise<string[]> }> = [
    // The superblock's free count no longer matches what the AGFs add up to.
    { name: "sb-fdblocks", why: /superblock counts \d+ free blocks but the AGFs \d+/, commands: async (i) => ["sb 0", `write fdblocks ${(await dbNumber(i, ["sb 0"], "fdblocks")) + 64}`] },
    // Size fields: the block count cut by a third (written past xfs_db's verifier, CRC kept good),
    // cut inside the last AG, and one AG's length.
    {
      name: "sb-dblocks-third",
      why: /data blocks do not fill 4 AGs/,
      commands: async (i) => ["sb 0", `write -d dblocks ${Math.floor(((await dbNumber(i, ["sb 0"], "dblocks")) * 2) / 3)}`],
    },
    { name: "sb-dblocks-tail", why: /AG 3 AGF length \d+ disagrees with the superblock/, commands: async (i) => ["sb 0", `write dblocks ${(await dbNumber(i, ["sb 0"], "dblocks")) - 100}`] },
    { name: "agf-length", why: /AG 2 AGF length/, commands: async (i) => ["agf 2", `write length ${(await dbNumber(i, ["agf 2"], "length")) - 16}`] },
    // Both trees' roots swapped: each is then read as the other kind.
    {
      name: "agf-roots",
      why: /AG 0 (bno|cnt)bt block \d+ has a bad magic number/,
      commands: async (i) => ["agf 0", `write bnoroot ${await dbNumber(i, ["agf 0"], "cntroot")}`],
    },
    { name: "agf-longest", why: /AG 3 longest free extent/, commands: async (i) => ["agf 3", `write longest ${(await dbNumber(i, ["agf 3"], "longest")) - 1}`] },
  ];
  for (const c of cases) {
    const image = await copyOf(v5, dir, `xfs-${c.name}.img`);
    await db(image, await c.commands(image), true);
    await expectRepairComplains(image, c.name);
    expectRawPlan(image, c.why);
    await $`rm -f ${image}`.quiet();
  }
}, FIXTURE_TIMEOUT_MS);

test("xfs v4 (lazy counters, no CRCs): an altered superblock free count is captured raw, the clean image parsed", async () => {
  const v4 = await xfsImage(V4);
  expectParsed(v4, "xfs");
  expect(await db(v4, ["version"])).toContain("LAZYSBCOUNT");
  const image = await copyOf(v4, dir, "v4-fdblocks.img");
  await db(image, ["sb 0", `write fdblocks ${(await dbNumber(image, ["sb 0"], "fdblocks")) - 3}`], true);
  await expectRepairComplains(image, "v4-fdblocks");
  expectRawPlan(image, /superblock counts \d+ free blocks but the AGFs \d+/);
}, FIXTURE_TIMEOUT_MS);
