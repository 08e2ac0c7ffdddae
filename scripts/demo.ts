// Builds an example GPT disk with a FAT32 EFI System Partition and an ext4 root full of real files,
// then runs discus on it the way an admin would and checks the restored disk with the real tools;
// finally serves the image over multicast to three clients in network namespaces.
import { $ } from "bun";
import { join } from "node:path";
import { gptComposite } from "../test/fixtures/composite.ts";
import { checkPartition, discusOk } from "../test/helpers.ts";
import { destroyStaleLabs, withLab } from "./lib/netlab.ts";
import { runClient, startServer } from "./lib/mcast.ts";
import { startLabDaemon } from "./lib/lab-daemon.ts";
import { mkdirSync, linkSync } from "node:fs";

const step = (text: string) => console.log(`\n== ${text}`);
const show = async (args: string[]) => {
  console.log(`$ discus ${args.join(" ")}`);
  process.stdout.write(await discusOk(args));
};

await destroyStaleLabs();
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

step("multicast: serve the image to three clients in their own network namespaces (100 Mbit/s links)");
const restoredSha = (await $`sha256sum ${restored}`.text()).split(" ")[0];
await withLab({ clients: 3, linkMbit: 100 }, async (lab) => {
  const group = lab.group(0);
  console.log(`$ discus serve ${image} --group ${group} --iface ${lab.server.address} --rate 100mbit   (in ${lab.server.ns})`);
  const server = startServer(lab, image, group, ["--rate", "100mbit"]);
  const results = await Promise.all(
    lab.clients.map((c, i) => {
      const target = join(dir, `client-${i}.img`);
      console.log(`$ discus load ${target} --group ${group} --iface ${c.address} --json   (in ${c.ns})`);
      return runClient(lab, c, group, target, ["--give-up", "30s"]);
    }),
  );
  await Bun.sleep(3500); // the server logs its session summary after 3 s of quiet
  await server.stop();
  console.log(server.log().trim().split("\n").map((l) => `  ${l}`).join("\n"));
  for (const r of results) {
    const s = r.stats;
    const sha = r.exitCode === 0 ? (await $`sha256sum ${r.target}`.text()).split(" ")[0] : "";
    const ok = s !== null && sha === restoredSha;
    if (!ok) failures++;
    console.log(
      s === null
        ? `${r.host.name}: FAILED (exit ${r.exitCode}) ${r.stderr.trim()}`
        : `${r.host.name} (${r.host.address}): ${(s.writtenBytes / 1e6).toFixed(1)} MB written in ${s.seconds.toFixed(2)} s (${s.megabytesPerSecond.toFixed(1)} MB/s), ` +
            `${s.requestsSent} requests, ${s.blocksReceived} blocks (${((100 * s.duplicateBlocks) / Math.max(1, s.blocksReceived)).toFixed(1)}% duplicates), ${s.chunksRejected} rejected, peak RSS ${(s.peakRssBytes / 2 ** 20).toFixed(0)} MiB -> disk ${ok ? "identical to the local restore" : "DIFFERENT"}`,
    );
  }
});

step("discus server: the daemon reloads two machines (namespaces) with one command");
failures += await daemonSection();

await $`rm -rf ${dir}`;
if (failures > 0) {
  console.log(`\ndemo FAILED: ${failures} partition(s) differ`);
  process.exit(1);
}
console.log("\ndemo ok: the restored disk is the captured one, three multicast clients wrote the same disk, and discus server reloaded two nodes with one command");

/** `discus server` in the lab's server namespace, two nodes in theirs; returns the failures. */
async function daemonSection(): Promise<number> {
  const cli = join(import.meta.dir, "..", "src", "cli.ts");
  const nodeScript = join(import.meta.dir, "lib", "namespace-node.ts");
  const [images, state] = [join(dir, "images"), join(dir, "state")];
  mkdirSync(images);
  linkSync(image, join(images, "example.dsc"));
  const restoredSha = (await $`sha256sum ${restored}`.text()).split(" ")[0];
  return withLab({ clients: 2, linkMbit: 100 }, async (lab) => {
    const s = lab.server;
    const daemon = await startLabDaemon(lab, { state, images });
    console.log(`$ discus server --state ${state} --listen ${s.address}:8080 --images ${images} --iface ${s.address}   (in ${s.ns})`);
    const admin = async (args: string[]) => {
      console.log(`$ discus ${args.join(" ")}`);
      const r = await lab.exec(s, ["bun", cli, ...args, "--state", state]);
      process.stdout.write(r.stdout + r.stderr);
      return r.exitCode;
    };
    let failed = 0;
    const macs = lab.clients.map((_, i) => `52:54:00:de:00:0${i + 1}`);
    for (const [i, mac] of macs.entries()) failed += (await admin(["node", "add", `node-${i + 1}`, "--mac", mac, "--disk", `serial:DEMO${i + 1}`, "--image", "example", "--tag", "demo"])) === 0 ? 0 : 1;
    failed += (await admin(["reload", "tag:demo"])) === 0 ? 0 : 1;
    console.log("(each node powers on: PXE asks the daemon what to boot, as the chain script does)");
    const runs = await Promise.all(lab.clients.map((c, i) => lab.exec(c, ["bun", nodeScript, daemon.url, macs[i]!, c.address, join(dir, `node-${i + 1}.img`)])));
    for (const r of runs) {
      process.stdout.write(r.stdout + r.stderr);
      if (r.exitCode !== 0) failed++;
    }
    failed += (await admin(["status"])) === 0 ? 0 : 1;
    for (let i = 0; i < lab.clients.length; i++) {
      const sha = (await $`sha256sum ${join(dir, `node-${i + 1}.img`)}`.nothrow().text()).split(" ")[0];
      const same = sha === restoredSha;
      if (!same) failed++;
      console.log(`node-${i + 1}: disk ${same ? "identical to the local restore" : "DIFFERENT"}`);
    }
    await daemon.stop();
    return failed;
  });
}
