// The "paper" fixture of the benchmarks: a 3 GiB ext4 holding ~700 MiB of real files, the scale of
// Frisbee's 3 GB / 642 MB image. Built once into .cache/bench and reused.
import { $ } from "bun";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pickFiles, repoRoot } from "../../test/fixtures/common.ts";

/** Where benchmarks keep what is slow to make (gitignored). */
export const benchDir = join(repoRoot, ".cache", "bench");
const CONTENT_MIB = 700;

export async function paperFixture(): Promise<string> {
  mkdirSync(benchDir, { recursive: true });
  const path = join(benchDir, "paper-3G.img");
  if (existsSync(path)) return path;
  const content = join(benchDir, "paper-content");
  rmSync(content, { recursive: true, force: true });
  mkdirSync(content);
  // Real files: the machine's own /usr/share and /usr/lib, sorted, up to the budget.
  const chosen = await pickFiles(["/usr/share", "/usr/lib"], CONTENT_MIB * 2 ** 20, "16M");
  await Bun.write(`${content}.list`, chosen.join("\n") + "\n");
  await $`tar -C / -cf - --files-from ${content}.list 2>/dev/null | tar -C ${content} -xf -`.quiet().nothrow();
  await $`truncate -s 3G ${path}.tmp && mkfs.ext4 -q -F -d ${content} ${path}.tmp && mv ${path}.tmp ${path}`;
  rmSync(content, { recursive: true, force: true });
  return path;
}

