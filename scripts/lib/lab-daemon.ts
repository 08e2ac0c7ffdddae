// `discus server` as its own process in a lab's server namespace, for the tests and the demo:
// started, drained (a full pipe would stall it), and awaited until it says it listens. Also the
// one parser of its boot scripts' `discus.*` words, as a node's kernel would get them.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Host, Lab } from "./netlab.ts";
import { drain } from "./drain.ts";

export const LAB_DAEMON_HTTP_PORT = 8080;
const CLI = join(import.meta.dir, "..", "..", "src", "cli.ts");
/** Start-up reads the catalog and serves unfinished jobs' images again: seconds, not minutes. */
const START_TIMEOUT_MS = 30_000;
const POLL_MS = 50;

export interface LabDaemonOptions {
  state: string;
  images: string;
  /** More `discus server` options (--port, --db, --boot-dir, --key...). */
  args?: string[];
}

export interface LabDaemon {
  /** http://ADDRESS:8080, reachable from the lab's namespaces. */
  url: string;
  proc: ReturnType<Lab["spawn"]>;
  /** Its local socket, STATE/api.sock, reachable from this process. */
  socket: string;
  /** Everything it printed so far (stdout and stderr). */
  log(): string;
  adminToken(): string;
  /** Signals it and waits until it has exited and its output is read. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
}

/** argv of `discus server` on the lab's server address. */
function serverArgv(host: Host, o: LabDaemonOptions): string[] {
  return ["bun", CLI, "server", "--state", o.state, "--listen", `${host.address}:${LAB_DAEMON_HTTP_PORT}`, "--images", o.images, "--iface", host.address, ...(o.args ?? [])];
}

export async function startLabDaemon(lab: Lab, o: LabDaemonOptions): Promise<LabDaemon> {
  const proc = lab.spawn(lab.server, serverArgv(lab.server, o));
  const out = drain([proc]);
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (!out.text().includes("listening on")) {
    if (out.exited() || performance.now() > deadline) {
      await out.stop("SIGKILL");
      throw new Error(`discus server did not start (exit ${proc.exitCode}):\n${out.text()}`);
    }
    await Bun.sleep(POLL_MS);
  }
  return {
    url: `http://${lab.server.address}:${LAB_DAEMON_HTTP_PORT}`,
    proc,
    socket: join(o.state, "api.sock"),
    log: out.text,
    adminToken: () => readFileSync(join(o.state, "admin.token"), "utf8").trim(),
    stop: out.stop,
  };
}

/** The `discus.*` words of a boot script's kernel line (the disk rule is quoted). Pure. */
export function bootWords(script: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of script.matchAll(/"?discus\.([a-z]+)=([^"\s]+)"?/g)) out[m[1]!] = m[2]!;
  return out;
}
