// Builds an example GPT disk with a FAT32 EFI System Partition and an ext4 root full of real files,
// then runs discus on it the way an admin would and checks the restored disk with the real tools.
import { $ } from "bun";
import { join } from "node:path";
import { gptComposite } from "../test/fixtures/composite.ts";
import { checkPartition, discusOk } from "../test/helpers.ts";

const step = (text: string) => console.log(`\n== ${text}`);
const show = async (args: string[]) => {
  console.log(`$ discus ${args.join(" ")}`);
  process.stdout.write(await discusOk(args));
};

step("building the example disk (cached after the first run)");
const disk = await gptComposite();
console.log(`${disk.path}: ${disk.diskBytes / 2 ** 20} MiB, partitions: ${disk.partitions.map((p) => `${p.index}:${p.fs}`).join(" ")}`);
const dir = (await $`mktemp -d /tmp/discus-demo-XXXXXX`.text()).trim();
const image = join(dir, "example.dsc");
const restored = join(dir, "restored.img");

step("capture");
await show(["create", disk.path, image]);
step("what the image holds");
await show(["info", image]);
step("verify every chunk");
await show(["verify", image]);
step("restore to a new disk file");
await show(["restore", "--order", "random", image, restored]);

step("check the restored disk with each filesystem's own checker and every file's digest");
let failures = 0;
for (const p of disk.partitions) {
  const [before, after] = [await checkPartition(disk.path, p), await checkPartition(restored, p)];
  const same = before.content === after.content;
  const ok = after.checkerCode === 0 && same;
  if (!ok) failures++;
  console.log(`partition ${p.index} (${p.fs}): checker exit ${after.checkerCode}, contents ${same ? "identical" : "DIFFERENT"} -> ${ok ? "ok" : "FAILED"}`);
}
await $`rm -rf ${dir}`;
if (failures > 0) {
  console.log(`\ndemo FAILED: ${failures} partition(s) differ`);
  process.exit(1);
}
console.log("\ndemo ok: the restored disk is the captured one");
