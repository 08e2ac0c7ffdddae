// The SQLite store must not sync the disk at every commit: Bun.SQL runs SQLite on the event
// loop's thread, so each fsync stalls every HTTP request and the daemon's in-process multicast
// sessions (scripts/bench-daemon.ts measured boot.ipxe p99 at 0.87 s with 1,000 agents, and
// 0.13 s without the per-commit syncs). strace counts the real fsync/fdatasync calls of 100
// commits; a WAL in synchronous=NORMAL syncs only at checkpoints.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { $ } from "bun";
import { tmpDir } from "../helpers.ts";

const COMMITS = 100;
/** Opening (schema, pragmas) and the checkpoint at close sync a few times; one per commit is far above this. */
const MAX_SYNCS = COMMITS / 4;
const helper = join(import.meta.dir, "store-commits.ts");

let dir = "";
beforeAll(async () => void (dir = await tmpDir()));
afterAll(async () => void (dir && (await $`rm -rf ${dir}`.quiet())));

test("SQLite store: 100 commits sync the disk a few times, not once each", async () => {
  const log = join(dir, "strace.log");
  const r = await $`strace -f -qq -e trace=fsync,fdatasync -o ${log} bun ${helper} ${`sqlite://${join(dir, "state.db")}`} ${COMMITS}`.nothrow().quiet();
  expect(r.exitCode).toBe(0);
  const syncs = (await Bun.file(log).text()).split("\n").filter((l) => /\b(fsync|fdatasync)\(/.test(l)).length;
  expect(syncs).toBeGreaterThan(0); // strace saw the process: opening the database syncs
  expect(syncs).toBeLessThan(MAX_SYNCS);
});
