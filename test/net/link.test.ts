// Link awareness (issue 13): sysfs text about the interface under --iface turns into the MTU and
// the starting rate of `discus serve`, and --mtu/--rate given by hand win (--rate as a ceiling).
import { describe, expect, test } from "bun:test";
import { DEFAULT_MTU_BYTES, DEFAULT_RATE_BITS_PER_SECOND, linkDefaults, parseMtu, parseSpeedMbit, type LinkFacts } from "../../src/net/link.ts";
import { MAX_MTU_BYTES } from "../../src/net/wire.ts";

const nic = (mtuText: string | null, speedText: string | null): LinkFacts => ({ name: "enp1s0", mtuText, speedText, hasDevice: true });

describe("sysfs text", () => {
  test("MTU: a whole number or nothing", () => {
    expect(parseMtu("1500\n")).toBe(1500);
    expect(parseMtu("9000")).toBe(9000);
    expect(parseMtu("")).toBeNull();
    expect(parseMtu(null)).toBeNull();
    expect(parseMtu("-1")).toBeNull();
    expect(parseMtu("15x0")).toBeNull();
  });

  test("speed: Mbit/s of a link that says; -1, empty, garbage and absurd values are unknown", () => {
    expect(parseSpeedMbit("1000\n")).toBe(1000);
    expect(parseSpeedMbit("25000")).toBe(25000);
    expect(parseSpeedMbit("-1\n")).toBeNull();
    expect(parseSpeedMbit("0")).toBeNull();
    expect(parseSpeedMbit("")).toBeNull();
    expect(parseSpeedMbit(null)).toBeNull();
    expect(parseSpeedMbit("4294967295")).toBeNull();
    expect(parseSpeedMbit("10G")).toBeNull();
  });
});

describe("linkDefaults", () => {
  test("a 10 GbE NIC with jumbo frames: MTU 9000, start at 10 Gbit/s", () => {
    const d = linkDefaults(nic("9000\n", "10000\n"), null, null);
    expect(d.mtuBytes).toBe(9000);
    expect(d.rateBitsPerSecond).toBe(10e9);
    expect(d.note).toContain("enp1s0");
  });

  test("--rate is a ceiling: start at the lower of it and the link", () => {
    expect(linkDefaults(nic("1500", "1000"), 400e6, null).rateBitsPerSecond).toBe(400e6);
    expect(linkDefaults(nic("1500", "1000"), 10e9, null).rateBitsPerSecond).toBe(1e9);
  });

  test("a link MTU above the protocol's largest is capped; --mtu wins over the link", () => {
    expect(linkDefaults(nic("9216", "100000"), null, null).mtuBytes).toBe(MAX_MTU_BYTES);
    expect(linkDefaults(nic("9000", "1000"), null, 1500).mtuBytes).toBe(1500);
  });

  test("unknown speed (-1, a virtual link, no interface): today's 100 Mbit/s or --rate, and the log says so", () => {
    const minus = linkDefaults(nic("1500", "-1"), null, null);
    expect(minus.rateBitsPerSecond).toBe(DEFAULT_RATE_BITS_PER_SECOND);
    expect(minus.note).toContain("unknown");
    // A veth says 10000 whatever it carries: without a device behind it, its speed is not believed.
    const veth = linkDefaults({ name: "eth0", mtuText: "1500", speedText: "10000", hasDevice: false }, null, null);
    expect(veth.rateBitsPerSecond).toBe(DEFAULT_RATE_BITS_PER_SECOND);
    expect(veth.note).toContain("virtual");
    expect(linkDefaults({ name: "eth0", mtuText: "1500", speedText: "10000", hasDevice: false }, 1e9, null).rateBitsPerSecond).toBe(1e9);
    const none = linkDefaults(null, null, null);
    expect([none.mtuBytes, none.rateBitsPerSecond]).toEqual([DEFAULT_MTU_BYTES, DEFAULT_RATE_BITS_PER_SECOND]);
  });
});
