// The netboot path end to end, for a newcomer to watch: a LAN in network namespaces with dnsmasq
// (DHCP + TFTP), an HTTP server and `discus serve`; one QEMU guest that PXE-boots the discus
// initramfs, loads a signed image onto its disk over multicast and reboots; then the host checks
// that disk and boots it. Run through scripts/demo-netboot, which builds what this needs.
import { $ } from "bun";
import { join } from "node:path";
import { bootedLine, makeBootDisk } from "../test/fixtures/bootdisk.ts";
import { discusOk, tmpDir } from "../test/helpers.ts";
import { bootQemu } from "../test/agent/qemu.ts";
import { checkBootDisk, guestArgs, VMLINUZ, virtioDisk } from "../test/agent/netboot-env.ts";
import { destroyStaleLabs, withLab } from "./lib/netlab.ts";
import { MCAST_PORT, startServer } from "./lib/mcast.ts";
import { startPxeServer } from "./lib/pxe.ts";

const DISK_BYTES = 256 << 20;
const GUEST_MAC = "52:54:00:d1:5c:01";
const GUEST_TIMEOUT_MS = 300_000;

function step(text: string): void {
  console.log(`\n== ${text}`);
}

await destroyStaleLabs();
const dir = await tmpDir();
try {
  step("making the 'installed' OS (marker old-1) and the new OS image (marker new-1)");
  const source = join(dir, "new-os.img");
  const newOs = await makeBootDisk({ path: source, sizeBytes: DISK_BYTES, marker: "new-1", kernelPath: VMLINUZ });
  const disk = join(dir, "guest-disk.img");
  await makeBootDisk({ path: disk, sizeBytes: DISK_BYTES, marker: "old-1", kernelPath: VMLINUZ });
  await discusOk(["keygen", join(dir, "site")]);
  console.log(await discusOk(["create", "--quiet", "--sign", join(dir, "site.key"), source, join(dir, "new-os.dsc")]));
  const keyHex = /discus\.key=([0-9a-f]{64})/.exec(await discusOk(["key", join(dir, "site.pub")]))![1]!;

  await withLab({ clients: 0, linkMbit: 100 }, async (lab) => {
    const group = lab.group(0);
    step(`server ${lab.server.address}: discus serve on ${group}:${MCAST_PORT}, dnsmasq (DHCP, TFTP), HTTP`);
    const server = startServer(lab, join(dir, "new-os.dsc"), group, ["--rate", "100mbit"]);
    const siteArgs = `discus.group=${group} discus.key=${keyHex}`;
    const reload = `action=load disk=serial:DEMO-DISK`;
    console.log(`kernel command line (site-wide, boot.ipxe): ${siteArgs}`);
    console.log(`DHCP option 224 for ${GUEST_MAC}: ${reload}`);
    const pxe = await startPxeServer(lab, { dir: join(dir, "pxe"), siteArgs, reload: new Map([[GUEST_MAC, reload]]) });
    try {
      step("power on: the guest PXE-boots (its console follows)");
      const tap = await lab.addTap(1);
      const r = await bootQemu({
        prefix: ["ip", "netns", "exec", lab.switchNs],
        args: [...guestArgs(), "-netdev", `tap,id=n0,ifname=${tap},script=no,downscript=no`, "-device", `virtio-net-pci,netdev=n0,mac=${GUEST_MAC},bootindex=1`, ...virtioDisk(disk, "DEMO-DISK", 2)],
        timeoutMs: GUEST_TIMEOUT_MS,
        marks: { agent: /agent started/, written: /disk written/ },
        onConsole: (text) => process.stdout.write(text.replace(/\r/g, "")),
      });
      if (r.timedOut || r.marks.written === undefined) throw new Error("the guest did not write its disk: see its console above");
      step(`guest rebooted: power-on to agent ${r.marks.agent} s, to disk written ${r.marks.written} s, to reboot ${r.seconds} s`);
      console.log(server.log().split("\n").filter((l) => l.includes("client")).join("\n"));
    } finally {
      await pxe.stop();
      await server.stop();
    }
  });

  step("host checks the guest's disk: e2fsck -fn and every file's sha256");
  const check = await checkBootDisk(disk, Object.keys(newOs.files));
  const same = Object.keys(newOs.files).filter((f) => check.files[f] === newOs.files[f]);
  console.log(`e2fsck exit ${check.fsckCode}; ${same.length}/${Object.keys(newOs.files).length} files identical to the image's source`);
  if (check.fsckCode !== 0 || same.length !== Object.keys(newOs.files).length) throw new Error("the guest's disk does not match the image");

  step("the guest boots from its disk");
  const boot = await bootQemu({ args: [...guestArgs(512), "-nic", "none", ...virtioDisk(disk, "DEMO-DISK", 1)], timeoutMs: GUEST_TIMEOUT_MS });
  const line = boot.console.split("\n").find((l) => l.includes(bootedLine("new-1")));
  if (line === undefined) throw new Error(`the new OS did not boot:\n${boot.console.slice(-2000)}`);
  console.log(line.trim());
  step("netboot demo passed");
} finally {
  await $`rm -rf ${dir}`.quiet().nothrow();
}
