// Power control for a reload: `none` (the node reloads on its next boot, whoever causes it),
// `command` (any program: `PROGRAM cycle NODE-NAME`), `ipmi` (ipmitool over LAN, lanplus; the
// password comes from a file, never a command-line argument another user could read in ps).
import { DiscusError } from "../util/errors.ts";
import type { PowerSpec } from "./model.ts";

/** A BMC answers within seconds or not at all; a hung one must not hold a reload. */
export const POWER_TIMEOUT_MS = 30_000;
const MAX_OUTPUT_BYTES = 4096;

async function run(argv: string[], what: string, timeoutMs: number): Promise<string> {
  let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
  try {
    proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: timeoutMs, killSignal: "SIGKILL" });
  } catch (e) {
    throw new DiscusError("io", what, `could not start ${argv[0]}: ${(e as Error).message}`, "Install it (ipmitool is a Debian package) or fix the node's power setting");
  }
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (proc.signalCode !== null) throw new DiscusError("io", what, `gave no answer within ${timeoutMs / 1000} s`, "Check the BMC or program is reachable");
  if (code !== 0) throw new DiscusError("io", what, `exited ${code}: ${err.trim().slice(0, MAX_OUTPUT_BYTES) || out.trim().slice(0, MAX_OUTPUT_BYTES)}`, "Check the node's power setting (host, user, password file)");
  return out.slice(0, MAX_OUTPUT_BYTES);
}

function ipmiArgv(p: Extract<PowerSpec, { driver: "ipmi" }>, ...command: string[]): string[] {
  return ["ipmitool", "-I", "lanplus", "-H", p.host, "-U", p.user, "-f", p.passwordFile, ...command];
}

/** Starts the node afresh: on if it is off, a power cycle if it is on. */
export async function powerCycle(spec: PowerSpec, nodeName: string, timeoutMs = POWER_TIMEOUT_MS): Promise<string> {
  switch (spec.driver) {
    case "none":
      return "no power control: the node reloads at its next boot";
    case "command":
      await run([spec.command, "cycle", nodeName], `power command for ${nodeName}`, timeoutMs);
      return `${spec.command} cycle ${nodeName}`;
    case "ipmi": {
      const what = `IPMI power of ${nodeName} (${spec.host})`;
      const status = await run(ipmiArgv(spec, "chassis", "power", "status"), what, timeoutMs);
      const verb = /\boff\b/i.test(status) ? "on" : "cycle";
      await run(ipmiArgv(spec, "chassis", "power", verb), what, timeoutMs);
      return `ipmi chassis power ${verb}`;
    }
  }
}
