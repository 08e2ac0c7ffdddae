// `discus server`: opens the state (SQLite under --state by default, or --db postgres://...),
// starts the daemon and its HTTP face, and runs until SIGINT or SIGTERM. Sessions for unfinished
// jobs are served again at start, so a restarted daemon picks up where it was.
import { join } from "node:path";
import { Daemon } from "../daemon/daemon.ts";
import { parseGroupPool } from "../daemon/groups.ts";
import { adminToken, ensureStateDir, sessionSecret, viewerToken, writeServerInfo } from "../daemon/state-dir.ts";
import type { Log } from "../util/log.ts";
import { buildDashboard } from "../web/assets.ts";
import { openStore } from "../daemon/store.ts";
import { startHttp, type HttpServer } from "./api.ts";
import { claimSocketPath } from "./unix-socket.ts";
import { grubTftpAnswer } from "./boot-files.ts";
import { startTftp, type TftpServer } from "./tftp-boot.ts";

export interface ServerOptions {
  stateDir: string;
  listen: { hostname: string; port: number };
  dbUrl: string | null;
  imagesDir: string;
  /** Interface address the sessions send from. */
  iface: string;
  groupPool: string;
  port: number;
  /** Sessions' rate ceiling and MTU; null: from the sending interface's link (src/net/link.ts). */
  rateBitsPerSecond: number | null;
  mtuBytes: number | null;
  sessionIdleMs: number;
  /** Power actions at once, at most. */
  powerConcurrency: number;
  keyHex: string | null;
  /** The local socket (the same API); null: none. */
  socketPath: string | null;
  /** Where boot files (vmlinuz, initramfs) are served from: GET /boot/NAME. */
  bootDir: string | null;
  /** Where GRUB's per-MAC answer is served over TFTP (the Secure Boot path); null: not served. */
  tftp?: { address: string; port: number } | null;
  log: Log;
  /** Serve the web dashboard at / (default true). */
  dashboard?: boolean;
}

export interface RunningServer {
  url: string;
  daemon: Daemon;
  stop(): Promise<void>;
}

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  ensureStateDir(o.stateDir);
  // Before the database: a second daemon on one state directory stops here, having touched nothing.
  if (o.socketPath !== null) await claimSocketPath(o.socketPath);
  const token = adminToken(o.stateDir);
  const viewer = viewerToken(o.stateDir);
  // Bundled before anything opens: a broken install stops here, having touched nothing.
  const dashboard = o.dashboard === false ? null : await buildDashboard();
  const store = await openStore(o.dbUrl ?? `sqlite://${join(o.stateDir, "discus.db")}`);
  const daemon = new Daemon(store, {
    imagesDir: o.imagesDir,
    pool: parseGroupPool(o.groupPool),
    port: o.port,
    keyHex: o.keyHex,
    powerConcurrency: o.powerConcurrency,
    sessions: { iface: o.iface, ttl: 1, rateBitsPerSecond: o.rateBitsPerSecond, mtuBytes: o.mtuBytes, idleMs: o.sessionIdleMs, authSecret: sessionSecret(o.stateDir), stateDir: o.stateDir, log: o.log },
    log: o.log,
  });
  let http: HttpServer | null = null;
  let tftp: TftpServer | null = null;
  try {
    await daemon.start();
    http = startHttp(daemon, { listen: o.listen, adminToken: token, viewerToken: viewer, dashboard, log: o.log, bootDir: o.bootDir, socketPath: o.socketPath });
    // The agent GRUB starts reaches the daemon over HTTP at the address GRUB asked over TFTP.
    if (o.tftp) tftp = await startTftp(o.tftp.address, o.tftp.port, grubTftpAnswer(daemon, `http://${o.tftp.address}:${new URL(http.url).port}`), o.log);
  } catch (e) {
    await http?.stop();
    await daemon.stop();
    await store.close();
    throw e;
  }
  writeServerInfo(o.stateDir, http.url);
  o.log(`discus server: listening on ${http.url}${o.socketPath ? ` and ${o.socketPath}` : ""}${o.tftp ? `, GRUB's answers on tftp ${o.tftp.address}:${tftp!.port}` : ""}, state in ${o.stateDir} (${store.kind}), images from ${o.imagesDir}`);
  const server = http;
  const grubTftp = tftp;
  return {
    url: server.url,
    daemon,
    async stop() {
      await grubTftp?.stop();
      await server.stop();
      await daemon.stop();
      await store.close();
    },
  };
}
