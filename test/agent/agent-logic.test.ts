// The agent's pure decisions: settings and their precedence, disk rules, labels, boot entries,
// the lease file. The boot tests exercise the same code inside real guests.
import { describe, expect, test } from "bun:test";
import { resolveSettings, splitCmdline, dhcpOptionText } from "../../src/agent/settings.ts";
import { chooseDisk, parseDiskRule, serialFromVpd80, type DiskInfo } from "../../src/agent/disks.ts";
import { labelOf, LABEL_PROBE_BYTES } from "../../src/agent/labels.ts";
import { parseExtlinux, parseGrubCfg } from "../../src/agent/localboot.ts";
import { parseLease } from "../../src/agent/agent.ts";
import { DiscusError } from "../../src/util/errors.ts";

const KEY_A = "a".repeat(64);
const KEY_B = "b".repeat(64);

function errorOf(f: () => unknown): DiscusError {
  try {
    f();
  } catch (e) {
    if (e instanceof DiscusError) return e;
    throw e;
  }
  throw new Error("expected a DiscusError");
}

describe("settings", () => {
  test("the kernel command line is split like the kernel does, quotes grouping words", () => {
    expect(splitCmdline(`ro quiet discus.disk="model:Samsung SSD*,size:480G" x=1`)).toEqual(["ro", "quiet", "discus.disk=model:Samsung SSD*,size:480G", "x=1"]);
  });

  test("no discus words: boot the installed OS, touch nothing", () => {
    const s = resolveSettings("BOOT_IMAGE=/vmlinuz ro quiet", null);
    expect(s.action).toBe("boot");
    expect(s.onfail).toBe("halt");
  });

  test("DHCP overrides the command line, except a pinned key", () => {
    const s = resolveSettings(`discus.group=239.1.1.1 discus.key=${KEY_A} discus.disk=only discus.after=poweroff`, `action=load discus.disk=serial:X after=reboot key=${KEY_B}`);
    expect(s.action).toBe("load");
    expect(s.disk).toBe("serial:X");
    expect(s.origin.disk).toBe("dhcp");
    expect(s.after).toBe("reboot");
    expect(Buffer.from(s.key!).toString("hex")).toBe(KEY_A);
    expect(s.origin.key).toBe("cmdline");
    expect(s.notes.join()).toContain("ignored");
  });

  test("DHCP may supply a key when the command line has none", () => {
    const s = resolveSettings("discus.group=239.1.1.1", `action=load disk=only key=${KEY_B}`);
    expect(Buffer.from(s.key!).toString("hex")).toBe(KEY_B);
  });

  test("a reload needs exactly one source and a disk rule; typos are errors", () => {
    expect(errorOf(() => resolveSettings("discus.action=load discus.disk=only", null)).message).toContain("names no source");
    expect(errorOf(() => resolveSettings("discus.action=load discus.group=239.1.1.1 discus.file=x.dsc discus.disk=only", null)).message).toContain("two sources");
    expect(errorOf(() => resolveSettings("discus.action=load discus.group=239.1.1.1", null)).message).toContain("never guesses");
    expect(errorOf(() => resolveSettings("discus.dsik=only", null)).message).toContain("names no discus setting");
    expect(errorOf(() => resolveSettings("discus.group=10.0.0.1", null)).message).toContain("not an IPv4 multicast address");
    expect(errorOf(() => resolveSettings("discus.key=abc", null)).message).toContain("64 hex digits");
    expect(errorOf(() => resolveSettings("discus.file=../x", null)).message).toContain("plain file name");
    expect(errorOf(() => resolveSettings("discus.after=explode", null)).message).toContain("is not one of");
    expect(errorOf(() => resolveSettings("discus.giveup=0.1s", null)).message).toContain("1s..1h");
  });

  test("udhcpc hands unknown options over as hex", () => {
    expect(dhcpOptionText(Buffer.from("action=load disk=only\0").toString("hex"))).toBe("action=load disk=only");
    expect(dhcpOptionText("action=load")).toBe("action=load");
  });

  test("the lease file names the interface, address and option", () => {
    const lease = parseLease(`interface=eth0\nip=10.0.0.200\nmask=24\nopt224=${Buffer.from("action=load").toString("hex")}\n`);
    expect(lease).toEqual({ iface: "eth0", ip: "10.0.0.200", dhcpSettings: "action=load" });
    expect(parseLease("interface=eth0\n")).toBeNull();
  });
});

function disk(over: Partial<DiskInfo>): DiskInfo {
  return { name: "sda", path: "/dev/sda", sizeBytes: 500e9, removable: false, usb: false, readOnly: false, serial: "S1", wwn: "", model: "Samsung SSD 870", bootMedium: false, partitions: [], ...over };
}

describe("disk rules", () => {
  const nvme = disk({ name: "nvme0n1", path: "/dev/nvme0n1", serial: "N1", model: "WD Blue SN570", sizeBytes: 1e12, wwn: "eui.0025388b" });
  const sata = disk({ wwn: "naa.5002538e40a1b2c3" });
  const stick = disk({ name: "sdb", path: "/dev/sdb", serial: "U1", model: "Cruzer", sizeBytes: 16e9, removable: true, usb: true, bootMedium: true });
  const machine = [sata, stick, nvme];

  test("each property picks its disk", () => {
    expect(chooseDisk("serial:N1", machine)).toBe(nvme);
    expect(chooseDisk("/dev/sda", machine)).toBe(sata);
    expect(chooseDisk("wwn:0x5002538E40A1B2C3", machine)).toBe(sata);
    expect(chooseDisk("model:samsung*", machine)).toBe(sata);
    expect(chooseDisk("size:1T-2T", machine)).toBe(nvme);
    expect(chooseDisk("size:500G", machine)).toBe(sata); // decimal, as disks are sold
    expect(chooseDisk("size:931GiB", machine)).toBe(nvme);
  });

  test("never a guess: several matches, or none, are errors that list the disks", () => {
    expect(errorOf(() => chooseDisk("only", machine)).message).toContain("matches 2 disks (/dev/sda, /dev/nvme0n1)");
    const none = errorOf(() => chooseDisk("serial:NOPE", machine));
    expect(none.kind).toBe("target");
    expect(none.message).toContain('/dev/nvme0n1 1.00 TB model "WD Blue SN570" serial "N1"');
  });

  test("removable disks and the boot stick only when the rule says so", () => {
    expect(errorOf(() => chooseDisk("serial:U1", machine)).message).toContain("matched but is removable");
    expect(chooseDisk("serial:U1,removable", machine)).toBe(stick);
    expect(chooseDisk("path:/dev/sdb", machine)).toBe(stick);
    expect(chooseDisk("only", [sata, stick])).toBe(sata);
  });

  test("read-only disks never", () => {
    expect(errorOf(() => chooseDisk("only", [disk({ readOnly: true })])).message).toContain("read-only");
  });

  test("bad rules are usage errors", () => {
    for (const rule of ["", "colour:red", "size:big", "size:2T-1T", "path:sda", "serial:"]) expect(errorOf(() => parseDiskRule(rule)).kind).toBe("usage");
  });

  test("SCSI serials come from VPD page 0x80", () => {
    const page = new Uint8Array([0, 0x80, 0, 10, ...Buffer.from("  WD-12345")]);
    expect(serialFromVpd80(page)).toBe("WD-12345");
    expect(serialFromVpd80(new Uint8Array([0, 0x83, 0, 0]))).toBe("");
  });
});

describe("labels", () => {
  test("FAT32 and ext labels are read; anything else has none", () => {
    const fat = new Uint8Array(LABEL_PROBE_BYTES);
    fat.set(Buffer.from("DISCUS-BOOT"), 71);
    fat.set(Buffer.from("FAT32   "), 82);
    fat[510] = 0x55;
    fat[511] = 0xaa;
    expect(labelOf(fat)).toBe("DISCUS-BOOT");
    const ext = new Uint8Array(LABEL_PROBE_BYTES);
    ext[1024 + 56] = 0x53;
    ext[1024 + 57] = 0xef;
    ext.set(Buffer.from("DISCUS-IMG"), 1024 + 120);
    expect(labelOf(ext)).toBe("DISCUS-IMG");
    expect(labelOf(new Uint8Array(LABEL_PROBE_BYTES))).toBe("");
  });
});

describe("boot entries of the installed OS", () => {
  test("extlinux: the DEFAULT label, initrd from INITRD or APPEND", () => {
    const text = "DEFAULT second\nLABEL first\n KERNEL /a\nLABEL second\n  LINUX ../vmlinuz\n  APPEND root=/dev/sda1 initrd=/initrd.img ro\n";
    expect(parseExtlinux(text)).toEqual({ kernel: "../vmlinuz", initrd: "/initrd.img", append: "root=/dev/sda1 ro" });
    expect(parseExtlinux("PROMPT 0\n")).toBeNull();
  });

  test("GRUB: the first menuentry, variables dropped", () => {
    const text = `set default=0\nmenuentry 'Debian' --class debian {\n\tload_video\n\tlinux\t/boot/vmlinuz-6.1.0 root=UUID=1234 ro quiet \${vt_handoff}\n\tinitrd\t/boot/initrd.img-6.1.0\n}\nmenuentry 'Other' {\n linux /other\n}\n`;
    expect(parseGrubCfg(text)).toEqual({ kernel: "/boot/vmlinuz-6.1.0", initrd: "/boot/initrd.img-6.1.0", append: "root=UUID=1234 ro quiet" });
    expect(parseGrubCfg("set timeout=5\n")).toBeNull();
  });
});
