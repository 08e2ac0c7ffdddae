// `discus server` on the command line: its options, checked in one place (cli/options.ts), and a
// run until SIGINT or SIGTERM. Here rather than in cli.ts: it starts the HTTP face, which only
// the faces layer may import.
import type { Argv } from "yargs";
import { DEFAULT_GROUP_POOL } from "../daemon/groups.ts";
import { MAX_POWER_CONCURRENCY, POWER_CONCURRENCY } from "../daemon/daemon.ts";
import { DEFAULT_STATE_DIR } from "../daemon/state-dir.ts";
import { loadPublicKey, rawPublicKey } from "../image/signing.ts";
import { DEFAULT_PORT, MAX_MTU_BYTES, MIN_MTU_BYTES } from "../net/wire.ts";
import { hex } from "../util/bytes.ts";
import { durationOption, intOption, localAddressOption, MAX_IDLE_EXIT_MS, MAX_RATE_BITS_PER_SECOND, MIN_RATE_BITS_PER_SECOND, rateOption, readSmallFile, usage } from "../cli/options.ts";
import { join } from "node:path";
import { startServer } from "./run-server.ts";
import { LOG_FORMATS, makeLog, type LogFormat } from "../util/log.ts";

const SOCKET_FILE = "api.sock";

type Args = Record<string, unknown>;

function splitHostPort(text: string): [string, string] {
  const at = text.lastIndexOf(":");
  if (at <= 0) usage(`--listen ${text}`, "is not ADDRESS:PORT", "Give e.g. 0.0.0.0:8080");
  return [text.slice(0, at), text.slice(at + 1)];
}

/** --tftp ADDRESS:PORT: an address of this machine (GRUB's agent reaches the daemon's HTTP there too). */
function tftpOption(text: string): { address: string; port: number } {
  const at = text.lastIndexOf(":");
  if (at <= 0) usage(`--tftp ${text}`, "is not ADDRESS:PORT", "Give e.g. 192.0.2.1:6969 (dnsmasq's TFTP holds port 69)");
  return { address: localAddressOption("--tftp address", text.slice(0, at)), port: intOption("--tftp port", text.slice(at + 1), 1, 65535, "Give ADDRESS:PORT, e.g. 192.0.2.1:6969") };
}

async function runServer(a: Args): Promise<void> {
  const [hostname, portText] = splitHostPort(a.listen as string);
  const keyPath = a.key as string | undefined;
  const server = await startServer({
    stateDir: a.state as string,
    listen: { hostname, port: intOption("--listen port", portText, 0, 65535, "Give ADDRESS:PORT, e.g. 0.0.0.0:8080") },
    dbUrl: (a.db as string | undefined) ?? null,
    imagesDir: a.images as string,
    iface: localAddressOption("--iface", a.iface),
    groupPool: a["group-pool"] as string,
    port: intOption("--port", a.port, 1, 65535, "Give a UDP port"),
    rateBitsPerSecond: a.rate === undefined ? null : rateOption("--rate", a.rate, MIN_RATE_BITS_PER_SECOND, MAX_RATE_BITS_PER_SECOND, "Give the link speed, e.g. 100mbit or 1gbit"),
    mtuBytes: a.mtu === undefined ? null : intOption("--mtu", a.mtu, MIN_MTU_BYTES, MAX_MTU_BYTES, `Give the link MTU, ${MIN_MTU_BYTES}..${MAX_MTU_BYTES}`),
    powerConcurrency: intOption("--power-concurrency", a["power-concurrency"], 1, MAX_POWER_CONCURRENCY, `Give 1..${MAX_POWER_CONCURRENCY}`),
    sessionIdleMs: durationOption("--session-idle", a["session-idle"], 1000, MAX_IDLE_EXIT_MS, "Give a time such as 60s"),
    keyHex: keyPath === undefined ? null : hex(rawPublicKey(loadPublicKey(readSmallFile("key", keyPath, "Pass the .pub file written by `discus keygen`"), keyPath))),
    bootDir: (a["boot-dir"] as string | undefined) ?? null,
    tftp: a.tftp === undefined ? null : tftpOption(a.tftp as string),
    socketPath: a.socket === "" ? null : ((a.socket as string | undefined) ?? join(a.state as string, SOCKET_FILE)),
    log: makeLog(a["log-format"] as LogFormat, (line) => process.stderr.write(`${line}\n`)),
  });
  await new Promise<void>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => resolve());
  });
  await server.stop();
}

export function serverCommand(y: Argv): Argv {
  return y.command(
    "server",
    "Run the control server: image catalog, node inventory, boot decisions, reload jobs (docs/API.md)",
    (y) =>
      y
        .option("state", { type: "string", default: DEFAULT_STATE_DIR, describe: "State directory: database, admin token (0600), server.json" })
        .option("listen", { type: "string", default: "0.0.0.0:8080", describe: "HTTP address:port (nodes fetch boot.ipxe here)" })
        .option("socket", { type: "string", describe: `Local socket with the same API (default STATE/${SOCKET_FILE}, mode 0600; "" for none)` })
        .option("db", { type: "string", describe: "Database URL (default sqlite://STATE/discus.db; or postgres://...)" })
        .option("images", { type: "string", demandOption: true, describe: "Directory of .dsc images: the catalog" })
        .option("iface", { type: "string", demandOption: true, describe: "IPv4 address of the interface sessions send from" })
        .option("group-pool", { type: "string", default: DEFAULT_GROUP_POOL, describe: "Multicast range images' groups come from" })
        .option("port", { type: "string", default: String(DEFAULT_PORT), describe: "UDP port of every session" })
        .option("rate", { type: "string", describe: "Send rate ceiling of each session (default: the link's speed where known, else 100mbit)" })
        .option("mtu", { type: "string", describe: "MTU of the sessions' blocks (default: the sending interface's)" })
        .option("power-concurrency", { type: "string", default: String(POWER_CONCURRENCY), describe: "Power actions at once, at most (a bulk reload waits its turn)" })
        .option("session-idle", { type: "string", default: "60s", describe: "Stop a session this long after its last request, when no job needs it" })
        .option("key", { type: "string", describe: "Ed25519 public key (PEM) agents must check images against" })
        .option("log-format", { choices: LOG_FORMATS, default: "text", describe: "Log lines on stderr: words, or one JSON object per line (time, level, msg, and fields)" })
        .option("boot-dir", { type: "string", describe: "Directory with vmlinuz and initramfs, served at /boot/NAME" })
        .option("tftp", { type: "string", describe: "ADDRESS:PORT where Secure Boot GRUB asks boot.grub?mac= over TFTP (docs/NETBOOT.md), e.g. 192.0.2.1:6969" }),
    (a) => runServer(a),
  );
}
