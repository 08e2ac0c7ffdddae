// The compiled executable (scripts/build) works on its own: worker code embedded, same results.
import { expect, test } from "bun:test";
import { $ } from "bun";
import { join } from "node:path";
import { repoRoot } from "./fixtures/common.ts";
import { extImage } from "./fixtures/ext.ts";
import { sha256File, tmpDir } from "./helpers.ts";

test("dist/discus, built by scripts/build, captures and restores like the checkout", async () => {
  await $`bash ${join(repoRoot, "scripts", "build")}`.quiet();
  const exe = join(repoRoot, "dist", "discus");
  const source = await extImage("ext4", { imageMiB: 64, contentMiB: 12, label: "build" });
  const dir = await tmpDir();
  const env = { ...process.env, SOURCE_DATE_EPOCH: "1700000000" };
  // Run from another directory so nothing can be found through the checkout.
  await $`cd / && ${exe} create --quiet ${source} ${dir}/a.dsc`.env(env);
  await $`bun ${join(repoRoot, "src", "cli.ts")} create --quiet ${source} ${dir}/b.dsc`.env(env);
  expect(await sha256File(`${dir}/a.dsc`)).toBe(await sha256File(`${dir}/b.dsc`));
  await $`cd / && ${exe} restore --quiet ${dir}/a.dsc ${dir}/r.img`;
  expect((await $`e2fsck -fn ${dir}/r.img`.quiet().nothrow()).exitCode).toBe(0);
  await $`rm -rf ${dir}`;
});
