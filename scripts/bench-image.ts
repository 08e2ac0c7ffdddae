// The "paper" benchmark: a 3 GiB ext4 holding ~700 MiB of real files (the scale of Frisbee's
// 3 GB / 642 MB image). Capture and restore with discus and with the partclone pipelines that
// Clonezilla uses, in one run, page cache dropped before each step; prints times, sizes, ratios.
// `--baseline DIR` also captures with the discus checkout in DIR (e.g. `git archive` of an older
// commit), so before and after are measured side by side in one run.
import { $ } from "bun";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cli as cliPath } from "../test/helpers.ts";
import { benchDir, paperFixture } from "./lib/paper.ts";

// `--work DIR` puts images and restored disks elsewhere (e.g. a tmpfs when the disk is short).
const workAt = process.argv.indexOf("--work");
const workDir = workAt >= 0 && process.argv[workAt + 1] ? process.argv[workAt + 1]! : "/tmp/discus-bench";
rmSync(workDir, { recursive: true, force: true });
mkdirSync(workDir, { recursive: true });
const cli = ["bun", cliPath];
const baselineAt = process.argv.indexOf("--baseline");
const baselineDir = baselineAt >= 0 ? process.argv[baselineAt + 1] : undefined;
if (baselineAt >= 0 && !baselineDir) throw new Error("--baseline needs the directory of a discus checkout");

interface Run {
  seconds: number;
  peakRssMiB: number;
}

/** Runs a shell command line after dropping the page cache; wall time and peak RSS via GNU time. */
async function timed(cmd: string): Promise<Run> {
  await $`sync; echo 3 > /proc/sys/vm/drop_caches`.quiet();
  const timeFile = join(workDir, "time.txt");
  const start = performance.now();
  await $`/usr/bin/time -f %M -o ${timeFile} bash -c ${cmd}`.quiet();
  const seconds = (performance.now() - start) / 1000;
  const peakKiB = Number((await Bun.file(timeFile).text()).trim().split("\n").pop());
  return { seconds, peakRssMiB: peakKiB / 1024 };
}

const size = (p: string) => Bun.file(p).size;
const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

const paper = await paperFixture();
const used = (await $`dumpe2fs -h ${paper} 2>/dev/null`.text()).match(/Block count:\s+(\d+)[\s\S]*Free blocks:\s+(\d+)[\s\S]*Block size:\s+(\d+)/)!;
const usedBytes = (Number(used[1]) - Number(used[2])) * Number(used[3]);
console.log(`paper fixture: ${paper}, 3 GiB ext4, ${mb(usedBytes)} MB in use`);

const d = (name: string) => join(workDir, name);
const q = (s: string) => `'${s}'`;
const rows: { what: string; run: Run; bytes?: number }[] = [];
const cliLine = cli.map(q).join(" ");

rows.push({ what: "capture discus zstd-3", run: await timed(`${cliLine} create --quiet ${q(paper)} ${q(d("paper-zstd.dsc"))}`), bytes: 0 });
rows[rows.length - 1]!.bytes = size(d("paper-zstd.dsc"));
rows.push({ what: "capture discus zlib-6", run: await timed(`${cliLine} create --quiet --codec zlib ${q(paper)} ${q(d("paper-zlib.dsc"))}`) });
rows[rows.length - 1]!.bytes = size(d("paper-zlib.dsc"));
if (baselineDir) {
  const before = ["bun", join(baselineDir, "src", "cli.ts")].map(q).join(" ");
  rows.push({ what: "capture discus zstd-3, baseline", run: await timed(`${before} create --quiet ${q(paper)} ${q(d("base-zstd.dsc"))}`) });
  rows[rows.length - 1]!.bytes = size(d("base-zstd.dsc"));
  rows.push({ what: "capture discus zlib-6, baseline", run: await timed(`${before} create --quiet --codec zlib ${q(paper)} ${q(d("base-zlib.dsc"))}`) });
  rows[rows.length - 1]!.bytes = size(d("base-zlib.dsc"));
}
rows.push({ what: "capture partclone | pigz -6", run: await timed(`partclone.ext4 -q -c -s ${q(paper)} -o - 2>/dev/null | pigz -6 -p 2 > ${q(d("pc.gz"))}`) });
rows[rows.length - 1]!.bytes = size(d("pc.gz"));
rows.push({ what: "capture partclone | zstd -3 -T2", run: await timed(`partclone.ext4 -q -c -s ${q(paper)} -o - 2>/dev/null | zstd -q -3 -T2 > ${q(d("pc.zst"))}`) });
rows[rows.length - 1]!.bytes = size(d("pc.zst"));

rows.push({ what: "restore discus zstd", run: await timed(`${cliLine} restore --quiet ${q(d("paper-zstd.dsc"))} ${q(d("r-zstd.img"))}`) });
rows.push({ what: "restore discus zlib", run: await timed(`${cliLine} restore --quiet ${q(d("paper-zlib.dsc"))} ${q(d("r-zlib.img"))}`) });
await $`truncate -s 3G ${d("r-pigz.img")} ${d("r-pzstd.img")}`;
rows.push({ what: "restore pigz -dc | partclone", run: await timed(`pigz -dc ${q(d("pc.gz"))} | partclone.ext4 -q -r -s - -O ${q(d("r-pigz.img"))} 2>/dev/null`) });
rows.push({ what: "restore zstd -dc | partclone", run: await timed(`zstd -dc ${q(d("pc.zst"))} | partclone.ext4 -q -r -s - -O ${q(d("r-pzstd.img"))} 2>/dev/null`) });

// Every restore must have produced a clean filesystem, or the times mean nothing.
for (const img of ["r-zstd.img", "r-zlib.img", "r-pigz.img", "r-pzstd.img"]) {
  const fsck = await $`e2fsck -fn ${d(img)}`.quiet().nothrow();
  if (fsck.exitCode !== 0) throw new Error(`${img} does not pass e2fsck`);
}

const byName = (w: string) => rows.find((r) => r.what === w)!;
console.log("\n| step | seconds | MB/s of used data | peak RSS MiB | output MB |");
console.log("|---|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(`| ${r.what} | ${r.run.seconds.toFixed(2)} | ${(usedBytes / 1e6 / r.run.seconds).toFixed(0)} | ${r.run.peakRssMiB.toFixed(0)} | ${r.bytes ? mb(r.bytes) : ""} |`);
}
const ratio = (a: string, b: string) => (byName(a).run.seconds / byName(b).run.seconds).toFixed(2);
const sizeRatio = (a: string, b: string) => (byName(a).bytes! / byName(b).bytes!).toFixed(3);
console.log("\nratios (discus / peer; below 1 is better for discus)");
console.log(`capture time  zlib vs pigz:  ${ratio("capture discus zlib-6", "capture partclone | pigz -6")}   (target <= 0.70)`);
console.log(`capture size  zlib vs pigz:  ${sizeRatio("capture discus zlib-6", "capture partclone | pigz -6")}  (target <= 1.01)`);
console.log(`capture time  zstd vs zstd:  ${ratio("capture discus zstd-3", "capture partclone | zstd -3 -T2")}   (target <= 1.00)`);
console.log(`capture size  zstd vs zstd:  ${sizeRatio("capture discus zstd-3", "capture partclone | zstd -3 -T2")}  (target <= 1.02)`);
if (baselineDir) {
  console.log(`capture time  zstd vs baseline: ${ratio("capture discus zstd-3", "capture discus zstd-3, baseline")}   (target <= 1.00)`);
  console.log(`capture time  zlib vs baseline: ${ratio("capture discus zlib-6", "capture discus zlib-6, baseline")}   (target <= 1.00)`);
}
console.log(`restore time  zstd vs zstd:  ${ratio("restore discus zstd", "restore zstd -dc | partclone")}   (target <= 0.50)`);
console.log(`restore time  zlib vs pigz:  ${ratio("restore discus zlib", "restore pigz -dc | partclone")}`);
rmSync(workDir, { recursive: true, force: true });
