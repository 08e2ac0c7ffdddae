// The agent's inventory: the pure parsers on sample text from real machines, the bounds that keep
// a report within what the daemon accepts, and the readers on this machine's own /proc and sysfs.
import { describe, expect, test } from "bun:test";
import { boundHardware, describeHardware, MAX_DISKS, MAX_HARDWARE_JSON_CHARS, parseCpuInfo, parseMemInfo, parseNicSpeed, readHardware, readNics, type Hardware } from "../../src/agent/inventory.ts";
import { resolveSettings } from "../../src/agent/settings.ts";
import { listDisks } from "../../src/agent/disks.ts";
import { hardware as hardwareShape } from "../../src/http/shapes.ts";
import { isHardware, LIMITS } from "../../src/daemon/schema.ts";

const XEON_CPUINFO = `processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 79
model name\t: Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz
physical id\t: 0
core id\t\t: 0

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz
physical id\t: 0
core id\t\t: 1

processor\t: 2
model name\t: Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz
`;

const ARM_CPUINFO = `processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm
CPU implementer\t: 0x41

processor\t: 1
BogoMIPS\t: 50.00
`;

const MEMINFO = `MemTotal:        8029412 kB
MemFree:          412344 kB
MemAvailable:    5120000 kB
`;

const disk = (n: number): Hardware["disks"][number] => ({ path: `/dev/sd${n}`, model: "Samsung SSD 860", serial: `S3Z9NB0K${n}`, wwn: "0x5002538e", sizeBytes: 500107862016, removable: false });

describe("inventory parsers", () => {
  test("CPU model and logical CPUs from /proc/cpuinfo, x86 and arm", () => {
    expect(parseCpuInfo(XEON_CPUINFO)).toEqual({ model: "Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz", cores: 3 });
    expect(parseCpuInfo(ARM_CPUINFO)).toEqual({ model: "", cores: 2 });
    expect(parseCpuInfo("")).toEqual({ model: "", cores: 0 });
  });

  test("MemTotal in bytes; 0 when the file says nothing", () => {
    expect(parseMemInfo(MEMINFO)).toBe(8029412 * 1024);
    expect(parseMemInfo("MemFree: 12 kB\n")).toBe(0);
  });

  test("link speed: Mbit/s, or null for a down or virtual link", () => {
    expect(parseNicSpeed("1000\n")).toBe(1000);
    expect(parseNicSpeed("-1")).toBeNull();
    expect(parseNicSpeed("")).toBeNull();
    expect(parseNicSpeed("0")).toBeNull();
    expect(parseNicSpeed("99999999999")).toBeNull();
  });
});

describe("inventory bounds", () => {
  const base: Hardware = { disks: [disk(1)], nics: [{ name: "eth0", mac: "52:54:00:12:34:56", speedMbit: 1000 }], cpu: { model: "Xeon", cores: 16 }, memoryBytes: 68719476736 };

  test("a normal report passes unchanged, and the daemon's own checks accept it", () => {
    const { hardware, dropped } = boundHardware(base);
    expect(hardware).toEqual(base);
    expect(dropped).toEqual([]);
    expect(hardwareShape(JSON.parse(JSON.stringify(hardware)), "")).toEqual(base);
    expect(isHardware(hardware)).toBe(true);
    expect(describeHardware(hardware)).toEqual([
      'disk /dev/sd1 500.1 GB model "Samsung SSD 860" serial "S3Z9NB0K1" wwn 0x5002538e',
      "nic eth0 52:54:00:12:34:56 1000 Mbit/s",
      'cpu "Xeon", 16 logical CPUs; memory 64.0 GiB',
    ]);
  });

  test("too many disks, texts too long and a huge report are cut to what the daemon takes, and say so", () => {
    const long = "x".repeat(5000);
    const big: Hardware = { ...base, disks: Array.from({ length: 300 }, (_, i) => ({ ...disk(i), model: long, serial: long })), cpu: { model: long, cores: 0 } };
    const { hardware, dropped } = boundHardware(big);
    expect(hardware.disks.length).toBeLessThanOrEqual(MAX_DISKS);
    expect(hardware.disks.length).toBeGreaterThan(0);
    expect(JSON.stringify(hardware).length).toBeLessThanOrEqual(MAX_HARDWARE_JSON_CHARS);
    expect(MAX_HARDWARE_JSON_CHARS).toBe(LIMITS.hardwareJsonChars);
    expect(hardware.cpu.cores).toBe(1);
    expect(dropped[0]).toBe(`44 disks beyond ${MAX_DISKS}`);
    expect(dropped[1]).toMatch(/^\d+ disks over the 65536-character report bound$/);
    // What the agent sends is what the API's validator and the store's check accept.
    expect(hardwareShape(JSON.parse(JSON.stringify(hardware)), "")).toEqual(hardware);
    expect(isHardware(hardware)).toBe(true);
  });
});

describe("inventory on this machine", () => {
  test("real /proc and sysfs: memory, CPUs, physical NICs only, disks from disks.ts", () => {
    const disks = listDisks("/sys/block", () => false);
    const { hardware, dropped } = readHardware(disks);
    expect(dropped).toEqual([]);
    expect(hardware.memoryBytes).toBeGreaterThan(64 << 20);
    expect(hardware.cpu.cores).toBeGreaterThanOrEqual(1);
    expect(hardware.disks.map((d) => d.path)).toEqual(disks.map((d) => d.path));
    expect(readNics("/sys/class/net").map((n) => n.name)).not.toContain("lo");
    for (const n of hardware.nics) expect(n.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    expect(hardwareShape(JSON.parse(JSON.stringify(hardware)), "")).toEqual(hardware);
  });

  test("discus.action=inventory is a setting the agent knows, and needs no disk or group", () => {
    const s = resolveSettings("console=ttyS0 discus.action=inventory discus.server=http://198.18.0.1:8080 discus.token=abcdefghijklmnopqrstuv discus.mac=52:54:00:12:34:56", null);
    expect(s.action).toBe("inventory");
    expect(s.disk).toBeNull();
    expect(s.server).toBe("http://198.18.0.1:8080");
  });
});
