// Linux swap headers that swapon itself would refuse: damaged copies of a real mkswap area must be
// captured raw (restored byte for byte); the clean one, and one with a valid bad-page list, stay parsed.
import { $ } from "bun";
import { afterAll, beforeAll, test } from "bun:test";
import { join } from "node:path";
import { FIXTURE_TIMEOUT_MS } from "../helpers.ts";
import { bytesOf, expectParsed, expectRawBytes, expectRawRoundTrip, scratchDir, viewOf } from "./doubt-helpers.ts";

const LAST_PAGE = 1024 + 4;
const BAD_PAGE_COUNT = 1024 + 8;
const BAD_PAGES = 1536;

let dir: string;
let cleanup: () => Promise<void>;
let swap: string;
beforeAll(async () => {
  ({ dir, cleanup } = await scratchDir());
  swap = join(dir, "swap.img");
  await $`truncate -s 64M ${swap} && chmod 600 ${swap} && mkswap -L doubt ${swap}`.quiet();
}, FIXTURE_TIMEOUT_MS);
afterAll(() => cleanup());

function withBadPages(bytes: Uint8Array, pages: readonly number[]): void {
  const view = viewOf(bytes);
  view.setUint32(BAD_PAGE_COUNT, pages.length, true);
  pages.forEach((page, i) => view.setUint32(BAD_PAGES + i * 4, page, true));
}

test("swap: a size field past the partition is captured raw and restored byte for byte", async () => {
  expectParsed(swap, "swap");
  const bytes = bytesOf(swap);
  viewOf(bytes).setUint32(LAST_PAGE, viewOf(bytes).getUint32(LAST_PAGE, true) + 4096, true);
  const damaged = join(dir, "swap-grown.img");
  await Bun.write(damaged, bytes);
  await expectRawRoundTrip(damaged, dir, /header claims \d+ bytes but the partition has 67108864/);
}, FIXTURE_TIMEOUT_MS);

test("swap: bad-page lists swapon would refuse are captured raw; a valid one is parsed", async () => {
  const pristine = bytesOf(swap);
  const lastPage = viewOf(pristine).getUint32(LAST_PAGE, true);
  const cases: Array<{ name: string; pages: number[] | null; count?: number; why: RegExp }> = [
    { name: "count", pages: null, count: 5000, why: /lists 5000 bad pages, more than its page holds \(637\)/ },
    { name: "past-end", pages: [7, lastPage + 1], why: new RegExp(`bad page ${lastPage + 1} lies outside`) },
    { name: "zero", pages: [0], why: /bad page 0 lies outside/ },
  ];
  for (const c of cases) {
    const bytes = pristine.slice();
    if (c.pages !== null) withBadPages(bytes, c.pages);
    else viewOf(bytes).setUint32(BAD_PAGE_COUNT, c.count!, true);
    expectRawBytes(dir, `swap-${c.name}.img`, bytes, c.why);
  }
  const valid = pristine.slice();
  withBadPages(valid, [5, lastPage]);
  const path = join(dir, "swap-valid-bad.img");
  await Bun.write(path, valid);
  expectParsed(path, "swap");
}, FIXTURE_TIMEOUT_MS);
