// Which UEFI boot entry boots the installed OS's disk (src/agent/efiboot.ts): disk signatures read
// from real partition tables (sgdisk, sfdisk) against the GUIDs and signatures those tools print,
// and load options laid out as the UEFI spec's EFI_LOAD_OPTION and device-path nodes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { $ } from "bun";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { chooseBootEntry, diskSignatures, DISK_HEAD_BYTES, parseLoadOption, pciPathOf } from "../../src/agent/efiboot.ts";
import { tmpDir } from "../helpers.ts";

let dir = "";
beforeAll(async () => {
  dir = await tmpDir();
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A GUID as firmware stores it: the first three fields little-endian, the rest as written. */
function guidBytes(text: string): number[] {
  const h = text.replace(/-/g, "");
  const b = (i: number) => parseInt(h.slice(i * 2, i * 2 + 2), 16);
  return [b(3), b(2), b(1), b(0), b(5), b(4), b(7), b(6), ...Array.from({ length: 8 }, (_, i) => b(8 + i))];
}

const u16 = (n: number) => [n & 0xff, n >> 8];
const u32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
const node = (type: number, sub: number, body: number[]) => [type, sub, ...u16(4 + body.length), ...body];
const pciRoot = (uid: number) => node(2, 1, [...u32(0x0a0341d0), ...u32(uid)]);
const pci = (device: number, fn: number) => node(1, 1, [fn, device]);
/** Hard-drive node: partition number, start and size (LBA), signature, format (2 GPT), type (2 GUID, 1 MBR). */
const hd = (sig: number[], sigType: number) => node(4, 1, [...u32(1), ...new Array(16).fill(0), ...sig, ...new Array(16 - sig.length).fill(0), sigType === 2 ? 2 : 1, sigType]);
const file = (path: string) => node(4, 4, [...[...path, "\0"].flatMap((c) => u16(c.charCodeAt(0)))]);
const end = () => [0x7f, 0xff, 4, 0];

function loadOption(description: string, nodes: number[][]): Uint8Array {
  const path = [...nodes.flat(), ...end()];
  return new Uint8Array([...u32(1), ...u16(path.length), ...[...description, "\0"].flatMap((c) => u16(c.charCodeAt(0))), ...path]);
}

async function head(disk: string): Promise<Uint8Array> {
  return new Uint8Array(readFileSync(disk).subarray(0, DISK_HEAD_BYTES));
}

test("a GPT disk's partition GUIDs, as sgdisk prints them, pick the installed OS's own entry over the firmware's", async () => {
  const disk = join(dir, "gpt.img");
  await $`truncate -s 64M ${disk}`;
  await $`sgdisk -n 1:2048:+32M -t 1:ef00 -n 2:0:0 -t 2:8300 ${disk}`.quiet();
  const guids = await Promise.all([1, 2].map(async (n) => /Partition unique GUID: (\S+)/.exec(await $`sgdisk -i ${n} ${disk}`.text())![1]!));
  const sigs = diskSignatures(await head(disk), 512);
  for (const g of guids) expect(sigs).toContain(Buffer.from(guidBytes(g)).toString("hex"));

  const firmwareEntry = parseLoadOption(1, loadOption("UEFI Misc Device", [pciRoot(0), pci(3, 0)]))!;
  const osEntry = parseLoadOption(4, loadOption("debian", [hd(guidBytes(guids[0]!), 2), file("\\EFI\\debian\\shimx64.efi")]))!;
  const otherDisk = parseLoadOption(5, loadOption("other", [hd(guidBytes("0fc63daf-8483-4772-8e79-3d69d8477de4"), 2), file("\\EFI\\x.efi")]))!;
  expect(osEntry).toMatchObject({ description: "debian", hasFile: true, pciPath: null });
  expect(firmwareEntry.pciPath).toBe("root0/03.0");
  const identity = { signatures: sigs, pciPath: "root0/03.0", pciShared: false };
  // The OS's own entry wins even when the firmware's comes first in the boot order.
  expect(chooseBootEntry([firmwareEntry, otherDisk, osEntry], [1, 5, 4], identity)?.number).toBe(4);
  // Without it, the firmware's whole-device entry at the disk's PCI path; never another disk's.
  expect(chooseBootEntry([firmwareEntry, otherDisk], [5, 1], identity)?.number).toBe(1);
  // Two disks behind one PCI function (SATA ports, NVMe namespaces): the PCI path proves nothing.
  expect(chooseBootEntry([firmwareEntry, otherDisk], [5, 1], { ...identity, pciShared: true })).toBeNull();
});

test("an MBR disk's signature, as sfdisk prints it, matches an MBR hard-drive node", async () => {
  const disk = join(dir, "mbr.img");
  await $`truncate -s 16M ${disk}`;
  await $`sfdisk --quiet ${disk} < ${new Response("label: dos\nlabel-id: 0x1a2b3c4d\nstart=2048, type=83\n")}`.quiet();
  const id = /Disk identifier: 0x([0-9a-f]{8})/.exec(await $`sfdisk -l ${disk}`.text())![1]!;
  const sig = Buffer.from(id, "hex").reverse();
  expect(diskSignatures(await head(disk), 512)).toEqual([sig.toString("hex")]);
  const entry = parseLoadOption(7, loadOption("installed", [pciRoot(0), pci(4, 0), hd([...sig], 1), file("\\EFI\\BOOT\\BOOTX64.EFI")]))!;
  expect(chooseBootEntry([entry], [7], { signatures: [sig.toString("hex")], pciPath: null, pciShared: false })?.number).toBe(7);
});

test("PCI paths from sysfs, and malformed load options refused", () => {
  expect(pciPathOf("/sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0/nvme/nvme0/nvme0n1")).toBe("root0/1c.0/00.0");
  expect(pciPathOf("/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda")).toBe("root0/04.0");
  expect(pciPathOf("/sys/devices/pci0000:80/0000:80:01.0/0000:81:00.0/nvme/nvme1/nvme1n1")).toBeNull();
  expect(pciPathOf("/sys/devices/platform/host0/target0:0:0/0:0:0:0/block/sda")).toBeNull();
  const good = loadOption("x", [pciRoot(0), pci(3, 0)]);
  expect(parseLoadOption(1, good.subarray(0, 5))).toBeNull();
  // A path length past the end of the variable.
  const long = good.slice();
  long[4] = 0xff;
  expect(parseLoadOption(1, long)).toBeNull();
});
