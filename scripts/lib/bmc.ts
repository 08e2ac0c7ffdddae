// An IPMI BMC for tests: OpenIPMI's ipmi_sim in a lab host's namespace, answering IPMI over LAN
// (RMCP+, as `ipmitool -I lanplus` speaks it) on the host's 198.18/15 address. Like a real
// machine's BMC it owns the power of its host: "power on" makes ipmi_sim run its `startcmd`, a
// QEMU guest whose ipmi-bmc-extern device connects back to ipmi_sim's VM serial port; the power
// is "on" exactly while that process lives. "power off" asks the guest over that link, then
// SIGTERMs it after `poweroff_wait`; "power cycle" is off, then on once the process is gone.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Host, Lab } from "./netlab.ts";

/** The standard RMCP port: the BMC has its namespace to itself, so it can use it. */
export const BMC_LAN_PORT = 623;
/** ipmi_sim's VM serial port, on the BMC's own loopback: QEMU's chardev connects here. */
const BMC_SERIAL_PORT = 9002;
/** QEMU retries its BMC connection this often (s) while ipmi_sim is not there. */
const QEMU_RECONNECT_S = 1;
/** After asking the guest to power off, ipmi_sim waits this long (s) before SIGTERM... */
const POWEROFF_WAIT_S = 2;
/** ...and this long (s) after SIGTERM before SIGKILL. */
const KILL_WAIT_S = 5;
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 200;
/** IPMI 2.0 passwords are at most 20 bytes; user names at most 16. */
const MAX_PASSWORD_BYTES = 20;
const MAX_USER_BYTES = 16;
/** The user slot the config defines (1 is the anonymous user). */
const USER_SLOT = 2;
/** ipmi_sim 2.0.33 offers suites 0-14 (no 17), and ipmitool 1.8.19 gets no usable answer to its
 * Get Channel Cipher Suites query (it waits 10 s per call, then falls back): name suite 3. */
export const BMC_CIPHER_SUITE = "3";

export interface BmcOptions {
  lab: Lab;
  /** The lab host whose namespace and address the BMC takes (an extra, usually). */
  host: Host;
  /** Working directory: config, state, QEMU's console and log. Created if missing. */
  dir: string;
  user: string;
  password: string;
  /** The guest's own QEMU arguments (accel, memory, disks, NICs); the BMC adds the console, the
   * chardev to itself and the IPMI devices. Do not pass -serial or -no-shutdown. */
  guestArgs: string[];
}

export interface Bmc {
  address: string;
  user: string;
  /** Holds the right password, mode 0600. */
  passwordFile: string;
  /** The guest's serial console, appended across power cycles. */
  consolePath: string;
  /** How many times the BMC has started the guest (one line per power-on in a file). */
  guestStarts(): number;
  /** ipmitool -I lanplus against this BMC, run in `from`'s namespace. */
  ipmitool(from: Host, args: string[], passwordFile?: string): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** `chassis power status`, parsed; throws on anything else. */
  powerStatus(from: Host): Promise<"on" | "off">;
  /** Stops ipmi_sim and the guest it started; idempotent. */
  stop(): Promise<void>;
}

const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/** ipmi_sim's lan.conf (ipmi_lan(5)): one BMC, one LAN channel, one admin user, a VM serial port. */
export function lanConf(o: { address: string; user: string; password: string; startScript: string }): string {
  for (const [what, v, max] of [["user", o.user, MAX_USER_BYTES], ["password", o.password, MAX_PASSWORD_BYTES]] as const) {
    if (!/^[A-Za-z0-9._@+-]+$/.test(v) || v.length > max) throw new Error(`bmc: ${what} must be 1-${max} plain characters`);
  }
  return [
    'name "discusbmc"',
    "set_working_mc 0x20",
    "  startlan 1",
    `    addr ${o.address} ${BMC_LAN_PORT}`,
    "    priv_limit admin",
    // IPMI 1.5 sessions: MD5 only. RMCP+ (lanplus) is governed by the cipher suites ipmi_sim knows.
    ...["callback", "user", "operator", "admin"].map((p) => `    allowed_auths_${p} md5`),
    "    guid a1d15c05000000000000000000000001",
    "  endlan",
    `  serial 15 127.0.0.1 ${BMC_SERIAL_PORT} codec VM`,
    `  startcmd "${o.startScript}"`,
    "  startnow false",
    `  poweroff_wait ${POWEROFF_WAIT_S}`,
    `  kill_wait ${KILL_WAIT_S}`,
    `  user ${USER_SLOT} true "${o.user}" "${o.password}" admin 10 md5`,
    "",
  ].join("\n");
}

/** ipmi_sim's command file (ipmi_sim_cmd(5)): the BMC itself, enabled. */
const EMU_COMMANDS = ["mc_setbmc 0x20", "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02", "mc_enable 0x20", ""].join("\n");

/**
 * QEMU for a BMC's host: no display, its serial console appended to `consolePath` (the console
 * outlives a power cycle, so never truncated), then `extra`. `firmwareConsole` is -nographic,
 * which also makes SeaBIOS print to the serial port, so a power-on shows without an OS.
 */
export function guestQemuArgv(consolePath: string, extra: string[], o: { firmwareConsole?: boolean } = {}): string[] {
  return [
    "qemu-system-x86_64", ...(o.firmwareConsole ? ["-nographic"] : ["-display", "none"]), "-monitor", "none",
    "-chardev", `file,id=con,path=${consolePath},append=on`, "-serial", "chardev:con",
    ...extra,
  ];
}

/** The script ipmi_sim runs on power-on: note the start and the pid, then become QEMU. */
function startScript(dir: string, consolePath: string, guestArgs: string[]): string {
  const qemu = guestQemuArgv(consolePath, [
    // The guest's halt leaves the machine powered (the process lives), as a halted server stays on.
    "-no-shutdown",
    "-chardev", `socket,id=ipmi0,host=127.0.0.1,port=${BMC_SERIAL_PORT},reconnect=${QEMU_RECONNECT_S}`,
    "-device", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0", "-device", "isa-ipmi-kcs,bmc=bmc0",
    ...guestArgs,
  ]);
  return [
    "#!/bin/sh",
    `echo $$ > ${shellQuote(join(dir, "qemu.pid"))}`,
    `date +%s >> ${shellQuote(join(dir, "starts"))}`,
    `exec ${qemu.map(shellQuote).join(" ")} >> ${shellQuote(join(dir, "qemu.log"))} 2>&1`,
    "",
  ].join("\n");
}

export function pidAlive(pid: number, name: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1").includes(name);
  } catch {
    return false;
  }
}

/** The pid of the last guest the BMC started (its start script writes it), or 0. */
function guestPid(dir: string): number {
  const file = join(dir, "qemu.pid");
  return existsSync(file) ? Number(readFileSync(file, "utf8").trim()) : 0;
}

export async function waitGone(pid: number, name: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid, name)) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(POLL_MS);
  }
  return true;
}

export async function startBmc(o: BmcOptions): Promise<Bmc> {
  mkdirSync(join(o.dir, "state"), { recursive: true });
  const consolePath = join(o.dir, "console.log");
  const script = join(o.dir, "power-on.sh");
  writeFileSync(script, startScript(o.dir, consolePath, o.guestArgs), { mode: 0o755 });
  const conf = join(o.dir, "lan.conf");
  writeFileSync(conf, lanConf({ address: o.host.address, user: o.user, password: o.password, startScript: script }), { mode: 0o600 });
  writeFileSync(join(o.dir, "bmc.emu"), EMU_COMMANDS);
  const passwordFile = join(o.dir, "password");
  writeFileSync(passwordFile, `${o.password}\n`, { mode: 0o600 });
  // -n: no command console on stdio (with stdin closed it would otherwise read EOF).
  const proc = o.lab.spawn(o.host, ["ipmi_sim", "-n", "-c", conf, "-f", join(o.dir, "bmc.emu"), "-s", join(o.dir, "state")]);
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then((t) => t.join(""));
  let stopped: Promise<void> | undefined;

  const ipmitool: Bmc["ipmitool"] = (from, args, file = passwordFile) =>
    o.lab.exec(from, ["ipmitool", "-I", "lanplus", "-C", BMC_CIPHER_SUITE, "-H", o.host.address, "-p", String(BMC_LAN_PORT), "-U", o.user, "-f", file, ...args]);

  const bmc: Bmc = {
    address: o.host.address,
    user: o.user,
    passwordFile,
    consolePath,
    guestStarts: () => (existsSync(join(o.dir, "starts")) ? readFileSync(join(o.dir, "starts"), "utf8").split("\n").filter((l) => l !== "").length : 0),
    ipmitool,
    async powerStatus(from) {
      const r = await ipmitool(from, ["chassis", "power", "status"]);
      const m = /^Chassis Power is (on|off)$/m.exec(r.stdout);
      if (r.exitCode !== 0 || m === null) throw new Error(`bmc: power status failed (exit ${r.exitCode}): ${r.stdout}${r.stderr}`);
      return m[1] as "on" | "off";
    },
    stop() {
      stopped ??= (async () => {
        // Power off through the BMC first, so ipmi_sim ends (and reaps) the guest it started.
        const pid = guestPid(o.dir);
        if (pid > 0 && pidAlive(pid, "qemu") && proc.exitCode === null) {
          await ipmitool(o.host, ["chassis", "power", "off"]);
          await waitGone(pid, "qemu", (POWEROFF_WAIT_S + KILL_WAIT_S) * 1000 + STOP_TIMEOUT_MS);
        }
        proc.kill("SIGTERM");
        const quit = await Promise.race([proc.exited.then(() => true), Bun.sleep(STOP_TIMEOUT_MS).then(() => false)]);
        if (!quit) proc.kill("SIGKILL");
        await proc.exited;
        // ipmi_sim leaves its guest running when it quits: if one is left, stop it by its pid.
        if (pid > 0 && pidAlive(pid, "qemu")) {
          process.kill(pid, "SIGTERM");
          if (!(await waitGone(pid, "qemu", STOP_TIMEOUT_MS))) process.kill(pid, "SIGKILL");
        }
      })();
      return stopped;
    },
  };

  // Up once it answers a status request over its LAN channel.
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const r = await ipmitool(o.host, ["chassis", "power", "status"]);
    if (r.exitCode === 0) return bmc;
    if (proc.exitCode !== null || Date.now() > deadline) {
      await bmc.stop();
      throw new Error(`bmc: ipmi_sim did not answer on ${o.host.address}:${BMC_LAN_PORT}: ${r.stderr.trim()} ${await output}`);
    }
    await Bun.sleep(POLL_MS);
  }
}
