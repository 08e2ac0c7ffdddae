// A throwaway LAN for multicast tests and benchmarks: a "switch" namespace holding a bridge, one
// namespace per host and a veth from each host to the switch. The root namespace is never touched:
// veths are created inside the switch namespace with their peer moved straight into the host's.
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";

export interface LabOptions {
  clients: number; // 0..32 client hosts
  extras?: number; // extra hosts (e.g. a forger), default 0
  linkMbit?: number | null; // tbf rate of every link, both directions; null/undefined = unlimited
  clientMbit?: (number | null)[]; // per-client override of the link rate toward that client
  lossPercent?: number[]; // per-client random loss (0..100) of incoming UDP
}
export interface Host { name: string; ns: string; address: string; iface: string }
export interface Lab {
  id: string;
  server: Host; clients: Host[]; extras: Host[];
  /** 239.77.<labByte>.<n+1>, n = 0..253 (labs are isolated switches, so groups never clash anyway) */
  group(n: number): string;
  /** Bun.spawn of cmd inside host's namespace, stdout/stderr piped; env passthrough plus opts.env */
  spawn(host: Host, cmd: string[], opts?: { env?: Record<string, string>; stdin?: "pipe" | "ignore" }): Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe">;
  /** Runs cmd in host's namespace to completion */
  exec(host: Host, cmd: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  setLoss(host: Host, percent: number): Promise<void>; // replace that host's loss rule (0 removes it)
  setRate(host: Host, mbit: number | null): Promise<void>; // replace the tbf toward that host
  /** Adds tap device `tap<n>` to the bridge, for a QEMU guest run in the switch namespace `switchNs`. */
  addTap(n: number): Promise<string>;
  switchNs: string;
  destroy(): Promise<void>; // removes every namespace it made (their veths and bridge go with them); idempotent
}

const NS_PATTERN = /^dl[0-9a-f]{6}-(sw|s|c\d+|x\d+)$/;
const SWITCH_IFACE = "br0";
const HOST_IFACE = "eth0";
// Labs are shared state between processes (tests, benchmarks): each lab records its owner as
// "pid starttime" in OWNER_DIR/<id>, written before any namespace, so destroyStaleLabs only
// removes labs whose owner is gone. The start time guards against a reused pid.
const OWNER_DIR = "/run/discus-netlab";
const ownerFile = (id: string): string => `${OWNER_DIR}/${id}`;
function processTag(pid: number): string | undefined {
  try {
    return `${pid} ${readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[19]}`; // field 22: starttime
  } catch {
    return undefined;
  }
}
function ownerAlive(id: string): boolean {
  try {
    const tag = readFileSync(ownerFile(id), "utf8").trim();
    return processTag(Number(tag.split(" ")[0])) === tag;
  } catch {
    return false;
  }
}

async function collect(cmd: string[], stdin?: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const p = Bun.spawn({ cmd, stdin: stdin === undefined ? "ignore" : Buffer.from(stdin), stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { exitCode, stdout, stderr };
}

/** Runs a setup command; throws naming the command and its stderr when it fails. */
async function run(cmd: string[], stdin?: string): Promise<string> {
  const r = await collect(cmd, stdin);
  if (r.exitCode !== 0) throw new Error(`netlab: \`${cmd.join(" ")}\` failed (exit ${r.exitCode}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** Kills whatever still runs in ns (it only ever held lab processes), then deletes it. */
async function deleteNs(ns: string): Promise<void> {
  const pids = await collect(["ip", "netns", "pids", ns]);
  for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
    try { process.kill(Number(pid), "SIGKILL"); } catch { /* already gone */ }
  }
  await collect(["ip", "netns", "delete", ns]); // a missing ns is fine: destroy is idempotent
}

/**
 * tbf toward a link at R Mbit/s (tbf counts the 14-byte Ethernet header in each packet's length).
 * burst 64 KiB: a full bucket passes a 32 x 1514 B = 47 KiB burst at line rate. limit = burst plus
 * 100 ms of traffic at R: a sender pacing at R (with jitter and the ~1% Ethernet overhead it may not
 * count) never fills it, while one well above R overflows it within ~100 ms like a real switch port.
 */
function tbf(mbit: number): string[] {
  if (!(mbit > 0)) throw new Error(`netlab: bad rate ${mbit} Mbit/s`);
  const burst = 64 * 1024;
  const limit = burst + Math.ceil((mbit * 1e6 / 8) * 0.1);
  return ["tbf", "rate", `${mbit}mbit`, "burst", String(burst), "limit", String(limit)];
}

async function setTbf(ns: string, dev: string, mbit: number | null): Promise<void> {
  if (mbit === null) await collect(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"]); // none there is fine
  else await run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", ...tbf(mbit)]);
}

export async function destroyStaleLabs(): Promise<void> {
  const list = await run(["ip", "netns", "list"]);
  const names = list.split("\n").map((l) => l.split(" ")[0] ?? "").filter((n) => NS_PATTERN.test(n));
  const ids = new Set([...names.map((n) => n.slice(0, 8)), ...(existsSync(OWNER_DIR) ? readdirSync(OWNER_DIR) : [])]);
  for (const id of ids) {
    if (ownerAlive(id)) continue;
    for (const ns of names) if (ns.startsWith(`${id}-`)) await deleteNs(ns);
    rmSync(ownerFile(id), { force: true });
  }
}

export async function createLab(opts: LabOptions): Promise<Lab> {
  const extrasN = opts.extras ?? 0;
  if (!Number.isInteger(opts.clients) || opts.clients < 0 || opts.clients > 32) throw new Error(`netlab: clients must be 0..32, got ${opts.clients}`);
  if (!Number.isInteger(extrasN) || extrasN < 0 || extrasN > 32) throw new Error(`netlab: extras must be 0..32, got ${extrasN}`);
  for (const p of opts.lossPercent ?? []) if (!(p >= 0 && p <= 100)) throw new Error(`netlab: loss must be 0..100, got ${p}`);

  let bytes = randomBytes(3);
  while (existsSync(ownerFile(`dl${bytes.toString("hex")}`)) || existsSync(`/run/netns/dl${bytes.toString("hex")}-sw`)) bytes = randomBytes(3);
  const id = `dl${bytes.toString("hex")}`;
  mkdirSync(OWNER_DIR, { recursive: true });
  writeFileSync(ownerFile(id), processTag(process.pid) ?? String(process.pid));
  // Addresses come from 198.18.0.0/15, the range set aside for benchmarks (RFC 2544), never from a
  // range a real network uses. The subnet and group bytes come from the id, so concurrent labs differ.
  const [a, b, c] = [bytes[0] ?? 0, bytes[1] ?? 0, bytes[2] ?? 0];
  const sw = `${id}-sw`;
  const host = (suffix: string, n: number, name: string): Host => ({ name, ns: `${id}-${suffix}`, address: `198.${18 + (a & 1)}.${b}.${n}`, iface: HOST_IFACE });
  const server = host("s", 1, "server");
  const clients = Array.from({ length: opts.clients }, (_, i) => host(`c${i}`, 11 + i, `client${i}`));
  const extras = Array.from({ length: extrasN }, (_, i) => host(`x${i}`, 101 + i, `extra${i}`));
  const hosts = [server, ...clients, ...extras];
  const port = (h: Host): string => `p${h.ns.slice(id.length)}`; // "p-s", "p-c3": the host's port on the switch
  const made: string[] = [];
  const procs = new Set<Bun.Subprocess>();
  let destroying: Promise<void> | undefined;

  const lab: Lab = {
    id, server, clients, extras,
    group(n) {
      if (!Number.isInteger(n) || n < 0 || n > 253) throw new Error(`netlab: group index ${n} out of 0..253`);
      return `239.77.${c}.${n + 1}`;
    },
    spawn(h, cmd, o) {
      const p = Bun.spawn({
        cmd: ["ip", "netns", "exec", h.ns, ...cmd],
        stdin: o?.stdin ?? "ignore", stdout: "pipe", stderr: "pipe",
        env: { ...process.env, ...o?.env },
      });
      procs.add(p);
      void p.exited.then(() => procs.delete(p));
      return p;
    },
    exec: (h, cmd) => collect(["ip", "netns", "exec", h.ns, ...cmd]),
    async setLoss(h, percent) {
      if (!(percent >= 0 && percent <= 100)) throw new Error(`netlab: loss must be 0..100, got ${percent}`);
      // One transaction: create-if-missing, delete, then re-create with the new rule (or nothing).
      let script = "table inet discuslab {}\ndelete table inet discuslab\n";
      if (percent > 0) {
        script += "table inet discuslab {\n chain input {\n  type filter hook input priority 0; policy accept;\n" +
          `  meta l4proto udp numgen random mod 1000 < ${Math.round(percent * 10)} counter drop\n }\n}\n`;
      }
      await run(["ip", "netns", "exec", h.ns, "nft", "-f", "-"], script);
    },
    setRate: (h, mbit) => setTbf(sw, port(h), mbit),
    switchNs: sw,
    async addTap(n) {
      if (!Number.isInteger(n) || n < 0 || n > 63) throw new Error(`netlab: tap index ${n} out of 0..63`);
      const name = `tap${n}`;
      await run(["ip", "-n", sw, "tuntap", "add", "dev", name, "mode", "tap"]);
      await run(["ip", "-n", sw, "link", "set", name, "master", SWITCH_IFACE, "up"]);
      return name;
    },
    destroy() {
      destroying ??= (async () => {
        for (const p of procs) p.kill("SIGKILL");
        await Promise.all([...procs].map((p) => p.exited));
        for (const ns of [...made].reverse()) await deleteNs(ns);
        rmSync(ownerFile(id), { force: true });
      })();
      return destroying;
    },
  };

  try {
    // Namespaces one by one: concurrent `ip netns add` can race making /run/netns a shared mount.
    for (const ns of [sw, ...hosts.map((h) => h.ns)]) {
      await run(["ip", "netns", "add", ns]);
      made.push(ns);
    }
    await run(["ip", "-n", sw, "link", "add", SWITCH_IFACE, "type", "bridge", "mcast_snooping", "0"]); // flood multicast
    await run(["ip", "-n", sw, "link", "set", SWITCH_IFACE, "up"]);
    await run(["ip", "-n", sw, "link", "set", "lo", "up"]);
    // allSettled: destroy only once every host's setup has stopped touching its namespace.
    const setups = await Promise.allSettled(hosts.map(async (h) => {
      await run(["ip", "-n", sw, "link", "add", port(h), "type", "veth", "peer", "name", HOST_IFACE, "netns", h.ns]);
      await run(["ip", "-n", sw, "link", "set", port(h), "master", SWITCH_IFACE, "up"]);
      await run(["ip", "-n", h.ns, "link", "set", "lo", "up"]);
      await run(["ip", "-n", h.ns, "addr", "add", `${h.address}/24`, "dev", HOST_IFACE]);
      await run(["ip", "-n", h.ns, "link", "set", HOST_IFACE, "up"]);
      await run(["ip", "-n", h.ns, "route", "add", "224.0.0.0/4", "dev", HOST_IFACE]);
      // Best effort: on many kernels net.core.{r,w}mem_max are read-only outside the root netns
      // (the host's value applies), so a failure here is expected and harmless.
      await collect(["ip", "netns", "exec", h.ns, "sysctl", "-q", "-w", "net.core.rmem_max=16777216", "net.core.wmem_max=16777216"]);
      const ci = clients.indexOf(h);
      const rate = ci >= 0 && opts.clientMbit?.[ci] !== undefined ? opts.clientMbit[ci] ?? null : opts.linkMbit ?? null;
      if (rate !== null) await setTbf(sw, port(h), rate); // toward the host
      if (opts.linkMbit != null) await setTbf(h.ns, HOST_IFACE, opts.linkMbit); // from the host
      const loss = ci >= 0 ? opts.lossPercent?.[ci] ?? 0 : 0;
      if (loss > 0) await lab.setLoss(h, loss);
    }));
    for (const r of setups) if (r.status === "rejected") throw r.reason;
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  return lab;
}

export async function withLab<T>(opts: LabOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await createLab(opts);
  try {
    return await fn(lab);
  } finally {
    await lab.destroy();
  }
}
