// Power control for a reload: `none` (the node reloads on its next boot, whoever causes it),
// `command` (any program: `PROGRAM cycle NODE-NAME`), `ipmi` (ipmitool over LAN, lanplus; the
// password comes from a file, never a command-line argument another user could read in ps).
// Tested against OpenIPMI's ipmi_sim (test/daemon/ipmi.test.ts). `redfish`: HTTPS to the BMC's
// Redfish service (src/daemon/redfish.ts), its password from a file checked the same way.
import { readFileSync, statSync } from "node:fs";
import { DiscusError } from "../util/errors.ts";
import type { PowerSpec } from "./model.ts";
import { redfishPowerCycle } from "./redfish.ts";

/** One power action, every ipmitool call of it included: a hung BMC must not hold a reload. */
export const POWER_TIMEOUT_MS = 30_000;
/** Below this much time left, another call is not started: it could not finish. */
const MIN_CALL_MS = 1_000;
const MAX_OUTPUT_BYTES = 4096;
/** What of a tool's message goes into a job's reason. */
const MAX_REASON_CHARS = 300;
/** IPMI 2.0 passwords are at most 20 bytes, Redfish ones rarely above 40; a larger file is not a password file. */
const MAX_PASSWORD_FILE_BYTES = 256;
/**
 * RMCP+ cipher suites, best first: 17 (HMAC-SHA256, AES-128), then 3 (HMAC-SHA1, AES-128), which
 * every IPMI 2.0 BMC offers. Naming one skips ipmitool's Get Channel Cipher Suites query, which
 * some BMCs leave unanswered: ipmitool 1.8.19 then loses 10 s per call (measured on ipmi_sim).
 * A BMC without suite 17 refuses it at once ("invalid authentication algorithm").
 */
export const IPMI_CIPHER_SUITES = ["17", "3"] as const;
if (MIN_CALL_MS * 4 > POWER_TIMEOUT_MS) throw new Error("POWER_TIMEOUT_MS must leave room for a status and a power call with a fallback");

interface Ran {
  code: number;
  out: string;
  err: string;
}

/** Reads a stream to its end, keeping only its first `maxBytes` bytes. */
async function readBounded(stream: ReadableStream<Uint8Array>, maxBytes: number): Promise<string> {
  const kept: Uint8Array[] = [];
  let keptBytes = 0;
  for await (const piece of stream) {
    if (keptBytes >= maxBytes) continue;
    kept.push(piece.subarray(0, maxBytes - keptBytes));
    keptBytes += kept[kept.length - 1]!.length;
  }
  return Buffer.concat(kept).toString("utf8");
}

async function spawnBounded(argv: string[], what: string, timeoutMs: number): Promise<Ran> {
  let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  try {
    proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: timeoutMs, killSignal: "SIGKILL" });
  } catch (e) {
    throw new DiscusError("io", what, `could not start ${argv[0]}: ${(e as Error).message}`, "Install it (ipmitool is a Debian package) or fix the node's power setting");
  }
  const [out, err, code] = await Promise.all([readBounded(proc.stdout, MAX_OUTPUT_BYTES), readBounded(proc.stderr, MAX_OUTPUT_BYTES), proc.exited]);
  if (proc.signalCode !== null) throw new DiscusError("network", what, `${argv[0]} gave no answer within ${Math.round(timeoutMs / 1000)} s`, "Check the BMC or program is reachable");
  return { code, out, err };
}

/** The last thing a tool said, on one line and bounded: the line that names the failure. */
export function lastWords(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  return (lines[lines.length - 1] ?? "no message").slice(0, MAX_REASON_CHARS);
}

/** `chassis power status` as ipmitool prints it ("Chassis Power is on"), or null. */
export function parsePowerStatus(out: string): "on" | "off" | null {
  const m = /^Chassis Power is (on|off)\s*$/m.exec(out);
  return m === null ? null : (m[1] as "on" | "off");
}

/** True when the BMC refused the session for its cipher suite, so the next suite may work. */
export function suiteRefused(err: string): boolean {
  return /invalid (authentication|integrity|confidentiality) algorithm|cipher suite .* not supported/i.test(err);
}

type Ipmi = Extract<PowerSpec, { driver: "ipmi" }>;

/** A BMC password file must hold one password only its owner can read (ipmitool would prompt otherwise). */
export function passwordOf(p: { passwordFile: string }, what: string): string {
  const action = `Write the BMC password (one line) to ${p.passwordFile} and chmod 600 it`;
  let size: number;
  let mode: number;
  try {
    const st = statSync(p.passwordFile);
    if (!st.isFile()) throw new DiscusError("usage", what, `password file ${p.passwordFile} is not a regular file`, action);
    [size, mode] = [st.size, st.mode & 0o777];
  } catch (e) {
    if (e instanceof DiscusError) throw e;
    throw new DiscusError("usage", what, `password file ${p.passwordFile} cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`, action);
  }
  if ((mode & 0o077) !== 0) throw new DiscusError("usage", what, `password file ${p.passwordFile} is open to other users (mode ${mode.toString(8)})`, `chmod 600 ${p.passwordFile}`);
  if (size === 0 || size > MAX_PASSWORD_FILE_BYTES) throw new DiscusError("usage", what, `password file ${p.passwordFile} holds ${size} bytes, not one password`, action);
  return readFileSync(p.passwordFile, "utf8").split("\n")[0] ?? "";
}

interface IpmiCall {
  spec: Ipmi;
  what: string;
  password: string;
  timeoutMs: number;
  deadlineMs: number;
  /** Index into IPMI_CIPHER_SUITES of the first suite still worth trying. */
  suite: number;
}

/** Runs one ipmitool command, falling back to the next cipher suite if the BMC refuses one. */
async function ipmitool(c: IpmiCall, command: string[]): Promise<string> {
  for (;;) {
    const leftMs = c.deadlineMs - Date.now();
    if (leftMs < MIN_CALL_MS) throw new DiscusError("network", c.what, `no answer within ${Math.round(c.timeoutMs / 1000)} s`, "Check the BMC is reachable from the server");
    const suite = IPMI_CIPHER_SUITES[c.suite]!;
    const argv = ["ipmitool", "-I", "lanplus", "-C", suite, "-H", c.spec.host, "-U", c.spec.user, "-f", c.spec.passwordFile, ...command];
    const r = await spawnBounded(argv, c.what, leftMs);
    if (r.code === 0) return r.out;
    if (suiteRefused(r.err) && c.suite + 1 < IPMI_CIPHER_SUITES.length) {
      c.suite++;
      continue;
    }
    const said = lastWords(r.err || r.out).replaceAll(c.password, "***");
    throw new DiscusError("network", c.what, `\`ipmitool ${command.join(" ")}\` failed: ${said}`,
      `Check the BMC's address, the user ${c.spec.user} and the password in ${c.spec.passwordFile} (ipmitool -I lanplus -H ${c.spec.host} -U ${c.spec.user} -f ${c.spec.passwordFile} chassis power status)`);
  }
}

/** On if the node is off, a power cycle if it is on: either way it boots afresh. */
async function ipmiPowerCycle(spec: Ipmi, nodeName: string, timeoutMs: number): Promise<string> {
  const what = `IPMI power of ${nodeName} (BMC ${spec.host})`;
  const c: IpmiCall = { spec, what, password: passwordOf(spec, what), timeoutMs, deadlineMs: Date.now() + timeoutMs, suite: 0 };
  const out = await ipmitool(c, ["chassis", "power", "status"]);
  const status = parsePowerStatus(out);
  if (status === null) throw new DiscusError("network", what, `the BMC's power status is not on or off: ${lastWords(out)}`, "Check the BMC with ipmitool chassis power status");
  const verb = status === "off" ? "on" : "cycle";
  await ipmitool(c, ["chassis", "power", verb]);
  return `ipmi chassis power ${verb} (was ${status}, cipher suite ${IPMI_CIPHER_SUITES[c.suite]})`;
}

/** Starts the node afresh: on if it is off, a power cycle if it is on. */
export async function powerCycle(spec: PowerSpec, nodeName: string, timeoutMs = POWER_TIMEOUT_MS): Promise<string> {
  switch (spec.driver) {
    case "none":
      return "no power control: the node reloads at its next boot";
    case "command": {
      const what = `power command for ${nodeName}`;
      const r = await spawnBounded([spec.command, "cycle", nodeName], what, timeoutMs);
      if (r.code !== 0) throw new DiscusError("io", what, `exited ${r.code}: ${lastWords(r.err || r.out)}`, "Check the node's power command");
      return `${spec.command} cycle ${nodeName}`;
    }
    case "ipmi":
      return ipmiPowerCycle(spec, nodeName, timeoutMs);
    case "redfish":
      return redfishPowerCycle(spec, passwordOf(spec, `Redfish power of ${nodeName} (BMC ${spec.host})`), nodeName, timeoutMs);
  }
}
