// The agent's settings: `discus.*` words from the kernel command line and the same words from a
// site-specific DHCP option. Pure: text in, settings (with where each came from) out.
// Precedence, lowest first: built-in defaults, kernel command line, DHCP option. One exception:
// a `key` set on the command line cannot be replaced from DHCP, so a stick or PXE entry that
// pins a signing key stays pinned whatever a DHCP server answers.
import { DiscusError } from "../util/errors.ts";
import { parseDurationMs } from "../util/units.ts";
import { isIpv4Address, isMulticastAddress } from "../net/socket.ts";
import { fromHex } from "../util/bytes.ts";
import { DEFAULT_PORT } from "../net/wire.ts";

export type Origin = "default" | "cmdline" | "dhcp";
export type FinalAction = "reboot" | "poweroff" | "halt" | "shell";
export type FreeSetting = "skip" | "zero" | "discard";
export const AGENT_ACTIONS = ["load", "boot", "inventory"] as const;
export type AgentAction = (typeof AGENT_ACTIONS)[number];

export interface AgentSettings {
  /**
   * "load": write the disk; "boot": touch no disk, boot the installed OS; "inventory": report the
   * hardware to the control server, touch no disk, power off.
   */
  action: AgentAction;
  group: string | null;
  port: number;
  /** The image's http:// URL: loaded from when no multicast announce comes (or alone, without a group). */
  http: string | null;
  /** Only this image (16 bytes), or any the group serves. */
  imageId: Uint8Array | null;
  /** An image file on the rescue stick's DISCUS-IMG partition, instead of multicast. */
  file: string | null;
  /** The target disk rule, unparsed (disks.ts parses it). */
  disk: string | null;
  free: FreeSetting;
  /** Raw Ed25519 public key (32 bytes) the image must be signed with. */
  key: Uint8Array | null;
  after: FinalAction;
  onfail: FinalAction;
  giveUpMs: number;
  /** The control server that booted this node (http://HOST:PORT), its job token and the MAC it booted with; null without a daemon. */
  server: string | null;
  token: string | null;
  mac: string | null;
  /** The session key (32 bytes) of authenticated control packets, from `discus server`'s boot script; null: open mode. */
  auth: Uint8Array | null;
  /** Where each setting came from, for the console summary. */
  origin: Record<SettingName, Origin>;
  /** Things worth telling the operator (ignored words, a pinned key kept). */
  notes: string[];
}

/** `server`, `token`, `mac`: set by `discus server`'s boot script, so the agent can reach the daemon as its job. */
export const SETTING_NAMES = ["action", "group", "port", "image", "file", "disk", "free", "key", "after", "onfail", "giveup", "net", "server", "token", "mac", "auth", "http"] as const;
export type SettingName = (typeof SETTING_NAMES)[number];

/** Longest settings text accepted from either source (a kernel command line is at most 4 KiB). */
const MAX_SETTINGS_TEXT_BYTES = 4096;
const MAX_GIVE_UP_MS = 3_600_000;
export const DEFAULT_GIVE_UP_MS = 60_000;
const PREFIX = "discus.";

/**
 * Splits a kernel command line into words the way the kernel does: spaces separate, double
 * quotes group (`discus.disk="model:Samsung SSD*"`), and the quotes themselves are dropped.
 */
export function splitCmdline(text: string): string[] {
  const words: string[] = [];
  let word = "";
  let quoted = false;
  let inWord = false;
  for (const ch of text) {
    if (ch === '"') {
      quoted = !quoted;
      inWord = true;
    } else if (!quoted && /\s/.test(ch)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/**
 * The `discus.*` words of one source as name -> value. `requirePrefix`: the command line carries
 * everyone's words, so only `discus.` ones are ours; the DHCP option is ours alone, so the prefix
 * is optional there. An unknown `discus.` name is an error: a typo must not silently do nothing.
 */
export function wordsToSettings(text: string, source: Exclude<Origin, "default">): Map<SettingName, string> {
  if (text.length > MAX_SETTINGS_TEXT_BYTES) {
    throw new DiscusError("usage", sourceName(source), `is ${text.length} bytes, over the ${MAX_SETTINGS_TEXT_BYTES}-byte limit`, "Shorten the discus settings");
  }
  const out = new Map<SettingName, string>();
  for (const word of splitCmdline(text)) {
    const prefixed = word.startsWith(PREFIX);
    if (source === "cmdline" && !prefixed) continue;
    const body = prefixed ? word.slice(PREFIX.length) : word;
    const eq = body.indexOf("=");
    const name = (eq < 0 ? body : body.slice(0, eq)).toLowerCase();
    if (!(SETTING_NAMES as readonly string[]).includes(name)) {
      throw new DiscusError("usage", `${sourceName(source)} word "${word}"`, `names no discus setting`, `Use one of ${SETTING_NAMES.map((n) => PREFIX + n).join(", ")} (docs/NETBOOT.md)`);
    }
    if (eq < 0) throw new DiscusError("usage", `${sourceName(source)} word "${word}"`, "has no value", `Write ${PREFIX}${name}=VALUE`);
    out.set(name as SettingName, body.slice(eq + 1));
  }
  return out;
}

/** A DHCP option's value as busybox udhcpc hands it to its script: hex digits, or already text. */
export function dhcpOptionText(value: string): string {
  const v = value.trim();
  if (v.length > 0 && v.length % 2 === 0 && /^[0-9a-f]+$/i.test(v)) {
    return new TextDecoder().decode(fromHex(v)).replace(/\0+$/, "");
  }
  return v;
}

function sourceName(o: Origin): string {
  return o === "cmdline" ? "kernel command line" : o === "dhcp" ? "DHCP option" : "default";
}

function oneOf<T extends string>(name: SettingName, value: string, choices: readonly T[], origin: Origin): T {
  if ((choices as readonly string[]).includes(value)) return value as T;
  throw new DiscusError("usage", `${PREFIX}${name}=${value} (${sourceName(origin)})`, `is not one of ${choices.join(", ")}`, `Set ${PREFIX}${name} to one of them`);
}

/** Merges both sources by the precedence above and checks every value. */
export function resolveSettings(cmdlineText: string, dhcpText: string | null): AgentSettings {
  const fromCmdline = wordsToSettings(cmdlineText, "cmdline");
  const fromDhcp = dhcpText === null ? new Map<SettingName, string>() : wordsToSettings(dhcpText, "dhcp");
  const notes: string[] = [];
  const origin = Object.fromEntries(SETTING_NAMES.map((n) => [n, "default"])) as Record<SettingName, Origin>;
  const merged = new Map<SettingName, string>();
  for (const [n, v] of fromCmdline) {
    merged.set(n, v);
    origin[n] = "cmdline";
  }
  for (const [n, v] of fromDhcp) {
    if (n === "key" && fromCmdline.has("key")) {
      if (v.toLowerCase() !== fromCmdline.get("key")!.toLowerCase()) notes.push("the DHCP option names another signing key: ignored, the kernel command line pins the key");
      continue;
    }
    merged.set(n, v);
    origin[n] = "dhcp";
  }
  const get = (n: SettingName) => merged.get(n) ?? null;
  const thing = (n: SettingName) => `${PREFIX}${n}=${get(n)} (${sourceName(origin[n])})`;

  const action = oneOf("action", get("action") ?? "boot", AGENT_ACTIONS, origin.action);
  const group = get("group");
  if (group !== null && !(isIpv4Address(group) && isMulticastAddress(group))) {
    throw new DiscusError("usage", thing("group"), "is not an IPv4 multicast address", "Use the group `discus serve --group` serves, e.g. 239.192.0.1");
  }
  const port = Number(get("port") ?? DEFAULT_PORT);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new DiscusError("usage", thing("port"), "is not a UDP port", "Use the port `discus serve` uses (default 4520)");
  const imageText = get("image");
  if (imageText !== null && !/^[0-9a-f]{32}$/i.test(imageText)) throw new DiscusError("usage", thing("image"), "is not 32 hex digits", "Copy the image id from `discus info IMAGE`");
  const http = get("http");
  if (http !== null && !/^https?:\/\/[A-Za-z0-9.:[\]-]{1,260}\/[A-Za-z0-9._~%/-]{1,1024}$/.test(http)) {
    throw new DiscusError("usage", thing("http"), "is not an http:// URL of an image file", "Write it as http://HOST[:PORT]/PATH/IMAGE.dsc");
  }
  const file = get("file");
  if (file !== null && (file.length === 0 || file.includes("/") || file.startsWith("."))) {
    throw new DiscusError("usage", thing("file"), "is not a plain file name", "Name a file at the top of the stick's DISCUS-IMG partition");
  }
  const keyText = get("key");
  if (keyText !== null && !/^[0-9a-f]{64}$/i.test(keyText)) {
    throw new DiscusError("usage", thing("key"), "is not 64 hex digits (a raw Ed25519 public key)", "Print it with `discus key NAME.pub`");
  }
  let giveUpMs = DEFAULT_GIVE_UP_MS;
  if (get("giveup") !== null) {
    try {
      giveUpMs = parseDurationMs(get("giveup")!);
    } catch (e) {
      throw new DiscusError("usage", thing("giveup"), (e as Error).message, "Write a duration such as 60s or 5m");
    }
    if (giveUpMs < 1000 || giveUpMs > MAX_GIVE_UP_MS) throw new DiscusError("usage", thing("giveup"), "is outside 1s..1h", "Allow the server at least a few seconds, e.g. 60s");
  }
  const server = get("server");
  if (server !== null && !/^http:\/\/[A-Za-z0-9.:[\]-]{1,260}$/.test(server)) throw new DiscusError("usage", thing("server"), "is not http://HOST:PORT", "Let `discus server` write the boot script");
  const token = get("token");
  if (token !== null && !/^[A-Za-z0-9_-]{16,128}$/.test(token)) throw new DiscusError("usage", "discus.token", "is not a job token", "Let `discus server` write the boot script");
  const authText = get("auth");
  if (authText !== null && !/^[0-9a-f]{64}$/i.test(authText)) throw new DiscusError("usage", "discus.auth", "is not 64 hex digits (a session key)", "Let `discus server` write the boot script");
  const mac = get("mac");
  if (mac !== null && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) throw new DiscusError("usage", thing("mac"), "is not a MAC address", "Write it as aa:bb:cc:dd:ee:ff");
  if (action === "load") {
    const network = group !== null || http !== null;
    if (network === (file !== null)) {
      throw new DiscusError("usage", "discus.action=load", network ? "names two sources (the network and a file)" : "names no source", "Set discus.group (multicast, with discus.http as its fallback) or discus.http, or else discus.file (rescue stick)");
    }
    if (get("disk") === null) {
      throw new DiscusError("usage", "discus.action=load", "names no target disk", "Set discus.disk to a rule such as serial:XYZ, path:/dev/nvme0n1, or only (docs/NETBOOT.md); discus never guesses");
    }
  }
  return {
    action,
    group,
    port,
    http,
    imageId: imageText === null ? null : fromHex(imageText),
    file,
    disk: get("disk"),
    free: oneOf("free", get("free") ?? "skip", ["skip", "zero", "discard"] as const, origin.free),
    key: keyText === null ? null : fromHex(keyText),
    after: oneOf("after", get("after") ?? "reboot", ["reboot", "poweroff", "halt", "shell"] as const, origin.after),
    onfail: oneOf("onfail", get("onfail") ?? "halt", ["reboot", "poweroff", "halt", "shell"] as const, origin.onfail),
    giveUpMs,
    server,
    token,
    mac,
    auth: authText === null ? null : fromHex(authText),
    origin,
    notes,
  };
}

/** One line per non-default setting, for the console. */
export function describeSettings(s: AgentSettings): string[] {
  const shown: [SettingName, string | null][] = [
    ["action", s.action],
    ["group", s.group === null ? null : `${s.group}:${s.port}`],
    ["http", s.http],
    ["image", s.imageId === null ? null : Buffer.from(s.imageId).toString("hex")],
    ["file", s.file],
    ["disk", s.disk],
    ["free", s.free],
    ["key", s.key === null ? null : `${Buffer.from(s.key).toString("hex").slice(0, 16)}...`],
    ["after", s.after],
    ["onfail", s.onfail],
  ];
  return shown.filter(([, v]) => v !== null).map(([n, v]) => `${n} = ${v} (${sourceName(s.origin[n])})`);
}
