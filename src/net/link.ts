// What the link under --iface offers: its MTU (jumbo frames or not) and its speed, read from
// /sys/class/net/IF, so `discus serve` starts with the block size and rate the link can carry.
// The decisions are pure functions of the sysfs text; only linkOf touches the system.
import { existsSync, readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { assert } from "../util/assert.ts";
import { MAX_MTU_BYTES, MIN_MTU_BYTES } from "./wire.ts";

/** Without a readable MTU: standard Ethernet. */
export const DEFAULT_MTU_BYTES = 1500;
/** Without a link speed (virtual links, or the driver does not say): Fast Ethernet's, as before. */
export const DEFAULT_RATE_BITS_PER_SECOND = 100e6;
/** Speeds beyond this (Mbit/s) are not believed: 800 GbE is the fastest Ethernet there is. */
const MAX_BELIEVED_SPEED_MBIT = 800_000;
assert(DEFAULT_MTU_BYTES >= MIN_MTU_BYTES && DEFAULT_MTU_BYTES <= MAX_MTU_BYTES, "the default MTU is one the server accepts");

/** The sysfs facts about one interface, as text (null: the file could not be read). */
export interface LinkFacts {
  name: string;
  mtuText: string | null;
  speedText: string | null;
  /** Whether /sys/class/net/IF/device exists: a real NIC (veth, bridges, tunnels have none). */
  hasDevice: boolean;
}

/** What the server starts with, and why (one line for the log). */
export interface LinkDefaults {
  mtuBytes: number;
  rateBitsPerSecond: number;
  note: string;
}

/** The MTU in sysfs text, or null when it is not a whole number. */
export function parseMtu(text: string | null): number | null {
  const t = text?.trim() ?? "";
  return /^\d{1,6}$/.test(t) ? Number(t) : null;
}

/** The speed in sysfs text (Mbit/s), or null when unknown: -1, empty, garbage, or beyond belief. */
export function parseSpeedMbit(text: string | null): number | null {
  const t = text?.trim() ?? "";
  if (!/^\d{1,7}$/.test(t)) return null;
  const mbit = Number(t);
  return mbit > 0 && mbit <= MAX_BELIEVED_SPEED_MBIT ? mbit : null;
}

/**
 * The MTU and starting rate for a link. The MTU is the link's, capped at the protocol's largest
 * (a 9216-byte jumbo link gets 9000-byte frames; loopback's 65536 too); the rate is the link
 * speed of a real NIC (a veth says 10000 whatever it can carry), capped by --rate when given.
 */
export function linkDefaults(link: LinkFacts | null, rateCeiling: number | null, mtuGiven: number | null): LinkDefaults {
  const notes: string[] = [];
  let mtuBytes = mtuGiven ?? DEFAULT_MTU_BYTES;
  if (mtuGiven !== null) notes.push(`MTU ${mtuGiven} (--mtu)`);
  else {
    const mtu = parseMtu(link?.mtuText ?? null);
    if (mtu === null) notes.push(`MTU ${DEFAULT_MTU_BYTES} (the link's is unknown)`);
    else {
      mtuBytes = Math.min(MAX_MTU_BYTES, mtu);
      notes.push(mtuBytes === mtu ? `MTU ${mtu} (the link's)` : `MTU ${mtuBytes} (the link's ${mtu}, capped)`);
    }
  }
  const speed = link?.hasDevice === true ? parseSpeedMbit(link.speedText) : null;
  let rateBitsPerSecond: number;
  if (speed === null) {
    rateBitsPerSecond = rateCeiling ?? DEFAULT_RATE_BITS_PER_SECOND;
    const why = link === null ? "no interface found" : link.hasDevice ? "the driver does not say" : "a virtual link";
    notes.push(rateCeiling === null ? `link speed unknown (${why}): starting at ${DEFAULT_RATE_BITS_PER_SECOND / 1e6} Mbit/s` : `link speed unknown (${why}): --rate`);
  } else {
    const linkBits = speed * 1e6;
    rateBitsPerSecond = rateCeiling === null ? linkBits : Math.min(linkBits, rateCeiling);
    notes.push(`link ${speed} Mbit/s${rateCeiling !== null && rateCeiling < linkBits ? ", --rate below it" : ""}`);
  }
  return { mtuBytes, rateBitsPerSecond, note: `${link?.name ?? "?"}: ${notes.join(", ")}` };
}

/** The name of the interface holding this IPv4 address, or null. */
export function interfaceOf(address: string): string | null {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.family === "IPv4" && a.address === address)) return name;
  }
  return null;
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null; // EINVAL for a link that is down or has no speed, ENOENT for no such file
  }
}

/** The sysfs facts of the interface holding `address`, or null when no interface has it. */
export function linkOf(address: string): LinkFacts | null {
  const name = interfaceOf(address);
  if (name === null || !/^[\w.:@-]{1,15}$/.test(name)) return null;
  const dir = `/sys/class/net/${name}`;
  return { name, mtuText: readText(`${dir}/mtu`), speedText: readText(`${dir}/speed`), hasDevice: existsSync(`${dir}/device`) };
}
