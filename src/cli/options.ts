// One place for checking command-line values. Every command reads its counts, sizes, durations,
// rates, addresses and paths through these, so "abc", "1.5M" for a count, negatives, NaN and huge
// values are refused the same way everywhere: a usage error (exit 2) that names the option.
import { existsSync, readFileSync, statSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { isIpv4Address, isMulticastAddress } from "../net/socket.ts";
import { sessionKeyFromHex, type SessionKey } from "../net/auth.ts";
import { assert } from "../util/assert.ts";
import { DiscusError, ioError } from "../util/errors.ts";
import { formatBytes, parseBytes, parseDurationMs, parseRate } from "../util/units.ts";

export function usage(thing: string, why: string, action: string): never {
  throw new DiscusError("usage", thing, why, action);
}

/** yargs hands over a string, or an array when an option is repeated; options are declared as strings. */
function single(option: string, raw: unknown): string {
  if (Array.isArray(raw)) usage(option, `is given ${raw.length} times`, "Give it once");
  if (typeof raw === "number" && Number.isFinite(raw)) return String(raw);
  if (typeof raw !== "string") usage(option, "needs a value", "See `discus --help`");
  if (raw.trim() === "") usage(option, "needs a value", "See `discus --help`");
  return raw.trim();
}

/** A whole number in lo..hi, written in plain decimal (no 1e3, 0x10, 1.5 or 2K). */
/** Send rates `serve` and `server` accept, and the longest idle time either waits. */
export const MIN_RATE_BITS_PER_SECOND = 1e6;
export const MAX_RATE_BITS_PER_SECOND = 100e9;
export const MAX_IDLE_EXIT_MS = 7 * 24 * 3_600_000;

export function intOption(option: string, raw: unknown, lo: number, hi: number, action: string): number {
  assert(Number.isSafeInteger(lo) && Number.isSafeInteger(hi) && lo <= hi, "integer option bounds are ordered");
  const text = single(option, raw);
  if (!/^[-+]?\d+$/.test(text)) usage(option, `"${text}" is not a whole number`, action);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < lo || n > hi) usage(option, `${text} is outside ${lo}..${hi}`, action);
  return n;
}

/** A size in bytes ("4096", "32K", "1M", "1MiB") in lo..hi, optionally a multiple of `stepBytes`. */
export function bytesOption(option: string, raw: unknown, lo: number, hi: number, action: string, stepBytes = 1): number {
  assert(lo >= 0 && lo <= hi && stepBytes >= 1, "size option bounds are ordered");
  const text = single(option, raw);
  let n: number;
  try {
    n = parseBytes(text);
  } catch (e) {
    usage(option, (e as Error).message, action);
  }
  if (n < lo || n > hi) usage(option, `${text} is outside ${formatBytes(lo)}..${formatBytes(hi)}`, action);
  if (n % stepBytes !== 0) usage(option, `${text} is not a multiple of ${formatBytes(stepBytes)}`, action);
  return n;
}

/** A duration ("500ms", "30s", "5m", "1h", or bare seconds) in loMs..hiMs. */
export function durationOption(option: string, raw: unknown, loMs: number, hiMs: number, action: string): number {
  assert(loMs >= 0 && loMs <= hiMs, "duration option bounds are ordered");
  const text = single(option, raw);
  let ms: number;
  try {
    ms = parseDurationMs(text);
  } catch (e) {
    usage(option, (e as Error).message, action);
  }
  if (!(ms >= loMs && ms <= hiMs)) usage(option, `${text} is outside ${loMs / 1000}s..${hiMs / 1000}s`, action);
  return ms;
}

/** A rate in bits per second ("100mbit", "1gbit") in lo..hi. */
export function rateOption(option: string, raw: unknown, lo: number, hi: number, action: string): number {
  assert(lo > 0 && lo <= hi, "rate option bounds are ordered");
  const text = single(option, raw);
  let bits: number;
  try {
    bits = parseRate(text);
  } catch (e) {
    usage(option, (e as Error).message, action);
  }
  if (!(bits >= lo && bits <= hi)) usage(option, `${text} is outside ${lo / 1e6}mbit..${hi / 1e9}gbit`, action);
  return bits;
}

/** An IPv4 multicast group address. */
export function groupOption(option: string, raw: unknown): string {
  const text = single(option, raw);
  if (!isMulticastAddress(text)) usage(option, `${text} is not an IPv4 multicast address`, "Use one in 239.0.0.0/8 (site-local), one group per image");
  return text;
}

/** The IPv4 address of an interface of this machine (checked before any socket is opened). */
export function localAddressOption(option: string, raw: unknown): string {
  const text = single(option, raw);
  const action = "Give the address of this machine's interface on the imaging network (see `ip -4 addr`)";
  if (!isIpv4Address(text)) usage(option, `${text} is not an IPv4 address`, action);
  const local = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).filter((a) => a.family === "IPv4").map((a) => a.address));
  if (!local.includes(text)) usage(option, `${text} is not an address of this machine (it has ${local.join(", ") || "none"})`, action);
  return text;
}

/** Exactly `digits` hexadecimal digits. */
export function hexOption(option: string, raw: unknown, digits: number, action: string): string {
  const text = single(option, raw);
  if (!new RegExp(`^[0-9a-f]{${digits}}$`, "i").test(text)) usage(option, `${text} is not ${digits} hex digits`, action);
  return text.toLowerCase();
}

/** The text of a small file the user named (a key): missing, a directory or unreadable is refused. */
export function readSmallFile(option: string, raw: unknown, action: string): string {
  const path = single(option, raw);
  if (!existsSync(path)) usage(`${option} ${path}`, "no such file", action);
  if (statSync(path).isDirectory()) usage(`${option} ${path}`, "is a directory", action);
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw ioError(e, path, "reading the file");
  }
}

/** A session key file is small: 64 hex digits and a newline, give or take white space. */
const MAX_AUTH_KEY_FILE_BYTES = 256;

/**
 * `--auth-key-file F`: the session key of authenticated control packets, 64 hex digits, in a file
 * only its owner may read (mode 0600 or stricter, as the daemon's token files). Absent: open mode.
 */
export function authKeyFileOption(option: string, raw: unknown): SessionKey | null {
  if (raw === undefined) return null;
  const path = single(option, raw);
  const action = "Write 64 hex digits into a file only you can read: `openssl rand -hex 32 > F; chmod 600 F` (the same file for serve and load)";
  if (!existsSync(path)) usage(`${option} ${path}`, "no such file", action);
  const st = statSync(path);
  if (!st.isFile()) usage(`${option} ${path}`, "is not a regular file", action);
  const mode = st.mode & 0o777;
  if ((mode & 0o077) !== 0) usage(`${option} ${path}`, `is readable by others (mode ${mode.toString(8).padStart(4, "0")})`, "Run `chmod 600` on it; if others could read it, treat the key as leaked and make a new one");
  if (st.size > MAX_AUTH_KEY_FILE_BYTES) usage(`${option} ${path}`, `is ${st.size} bytes, not a session key`, action);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw ioError(e, path, "reading the file");
  }
  const key = sessionKeyFromHex(text);
  if (key === null) usage(`${option} ${path}`, "does not hold a session key (64 hex digits)", action);
  return key;
}

/** An image to read: a directory is refused here, before any reader gets to it. */
export function inputImagePath(path: string): string {
  if (existsSync(path) && statSync(path).isDirectory()) {
    throw new DiscusError("io", path, "is a directory (EISDIR), not an image file", "Name the image file, e.g. DIR/disk.dsc");
  }
  return path;
}
