// The daemon's local socket (STATE/api.sock, mode 0600): the same API as the TCP listener, for
// tools on the daemon's own machine, and proof that no second daemon runs on one state directory.
// A socket file left by a killed daemon is removed; one a live daemon answers on is refused.
import { chmodSync, existsSync, lstatSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import { DiscusError } from "../util/errors.ts";

/** A live daemon answers a connect at once; a stale socket file refuses it at once. */
const PROBE_TIMEOUT_MS = 1000;
/** sun_path holds 108 bytes on Linux, the terminating zero included. */
export const MAX_SOCKET_PATH_BYTES = 107;

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(path);
    const done = (alive: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(alive);
    };
    const timer = setTimeout(() => done(false), PROBE_TIMEOUT_MS);
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

/** Makes `path` free for a new listener: refuses a live one, removes a stale socket, never a plain file. */
export async function claimSocketPath(path: string): Promise<void> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new DiscusError("usage", `socket ${path}`, `is longer than ${MAX_SOCKET_PATH_BYTES} bytes, the limit of a Unix socket path`, "Use a shorter --state directory or --socket path");
  }
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) {
    throw new DiscusError("usage", `socket ${path}`, "exists and is not a socket", "Move that file away, or give another --socket path");
  }
  if (await answers(path)) {
    throw new DiscusError("usage", `socket ${path}`, "another discus server is running on this state directory", "Stop it first, or give this one another --state directory");
  }
  unlinkSync(path);
}

/** Owner only: the socket carries admin calls (they still need the token). */
export function protectSocket(path: string): void {
  chmodSync(path, 0o600);
}
