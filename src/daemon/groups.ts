// The multicast group pool: each catalog image gets its own group, the lowest free address of the
// configured range (default 239.192.77.0/24, in the organization-local scope), persisted with the
// image so a restarted daemon serves it on the same group again. Pure.
import { DiscusError } from "../util/errors.ts";
import { isIpv4Address, isMulticastAddress } from "../net/socket.ts";

export const DEFAULT_GROUP_POOL = "239.192.77.0/24";
/** A pool larger than this is pointless (one group per image) and would make allocation slow. */
const MAX_POOL_ADDRESSES = 65536;

export interface GroupPool {
  firstAddress: number;
  size: number;
  text: string;
}

function toNumber(address: string): number {
  return address.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

function toAddress(n: number): string {
  return [24, 16, 8, 0].map((shift) => (Math.floor(n / 2 ** shift) & 0xff).toString()).join(".");
}

export function parseGroupPool(text: string): GroupPool {
  const [address, bitsText] = text.split("/");
  const bits = Number(bitsText);
  const bad = (why: string) => new DiscusError("usage", `--group-pool ${text}`, why, `Give a multicast range such as ${DEFAULT_GROUP_POOL}`);
  if (address === undefined || !isIpv4Address(address) || !isMulticastAddress(address)) throw bad("does not start at an IPv4 multicast address");
  if (!Number.isInteger(bits) || bits < 16 || bits > 32) throw bad("needs a prefix length of 16..32");
  const size = 2 ** (32 - bits);
  if (size > MAX_POOL_ADDRESSES) throw bad(`holds more than ${MAX_POOL_ADDRESSES} addresses`);
  const firstAddress = toNumber(address) - (toNumber(address) % size);
  return { firstAddress, size, text };
}

/**
 * The lowest address of the pool not in `used`, skipping the range's first and last (the network
 * and broadcast addresses, which some switches treat specially); null when the pool is full.
 */
export function allocateGroup(pool: GroupPool, used: ReadonlySet<string>): string | null {
  const first = pool.size > 2 ? 1 : 0;
  const last = pool.size > 2 ? pool.size - 2 : pool.size - 1;
  for (let i = first; i <= last; i++) {
    const address = toAddress(pool.firstAddress + i);
    if (!used.has(address)) return address;
  }
  return null;
}
