// The daemon's state directory: the SQLite database (by default), the admin and viewer tokens
// (mode 0600, made at first start) and server.json (where the daemon listens), so the CLI on the
// same machine finds them without being told. Nothing secret is ever printed: the CLI reads the
// token file.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { DiscusError } from "../util/errors.ts";

export const DEFAULT_STATE_DIR = "/var/lib/discus";
const TOKEN_FILE = "admin.token";
const VIEWER_TOKEN_FILE = "viewer.token";
/** The secret every session key is derived from (docs/PROTOCOL.md, "Authentication"). */
const SESSION_SECRET_FILE = "session.secret";
const SESSION_SECRET_BYTES = 32;
const SERVER_FILE = "server.json";
const TOKEN_BYTES = 32;
const MAX_TOKEN_FILE_BYTES = 1024;

export function ensureStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new DiscusError("io", `state directory ${dir}`, (e as Error).message, "Pick a directory root can write, with --state DIR");
  }
}

/** A token file, made (mode 0600) if the directory has none yet. */
function ownToken(dir: string, file: string): string {
  const path = join(dir, file);
  if (!existsSync(path)) writeFileSync(path, `${randomBytes(TOKEN_BYTES).toString("base64url")}\n`, { mode: 0o600, flag: "wx" });
  return readToken(path);
}

/** The admin token: every action. */
export function adminToken(dir: string): string {
  return ownToken(dir, TOKEN_FILE);
}

/** The viewer token: the dashboard and the API's reads, no action. Given to whoever may watch. */
export function viewerToken(dir: string): string {
  return ownToken(dir, VIEWER_TOKEN_FILE);
}

/** Reads a token file, refusing one that others can read (a leaked token is an open door). */
export function readToken(path: string): string {
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch {
    throw new DiscusError("usage", `token file ${path}`, "does not exist", "Start `discus server --state DIR` once, or pass --token / DISCUS_TOKEN");
  }
  if ((mode & 0o077) !== 0) {
    chmodSync(path, 0o600);
    throw new DiscusError("usage", `token file ${path}`, `was readable by others (mode ${mode.toString(8)}); it is 0600 now, but treat the token as leaked`, "Delete the file and restart the daemon to make a new token");
  }
  const text = readFileSync(path, "utf8").trim();
  if (text.length === 0 || text.length > MAX_TOKEN_FILE_BYTES) throw new DiscusError("usage", `token file ${path}`, "is empty or too long", "Delete it and restart the daemon to make a new one");
  return text;
}

/**
 * The secret the sessions' keys are derived from, made (mode 0600) at first start: a restarted
 * daemon derives the same keys, so agents booted before the restart still talk to its sessions.
 */
export function sessionSecret(dir: string): Uint8Array {
  const path = join(dir, SESSION_SECRET_FILE);
  if (!existsSync(path)) writeFileSync(path, `${randomBytes(SESSION_SECRET_BYTES).toString("hex")}\n`, { mode: 0o600, flag: "wx" });
  const text = readToken(path);
  if (!new RegExp(`^[0-9a-f]{${SESSION_SECRET_BYTES * 2}}$`).test(text)) {
    throw new DiscusError("usage", `session secret ${path}`, `is not ${SESSION_SECRET_BYTES * 2} hex digits`, "Delete it and restart the daemon to make a new one (agents booted before must boot again)");
  }
  return Uint8Array.from(Buffer.from(text, "hex"));
}

export function tokenPath(dir: string): string {
  return join(dir, TOKEN_FILE);
}

export function writeServerInfo(dir: string, url: string): void {
  writeFileSync(join(dir, SERVER_FILE), `${JSON.stringify({ url })}\n`, { mode: 0o644 });
}

/** The URL a running daemon wrote into its state directory; null when there is none. */
export function readServerUrl(dir: string): string | null {
  try {
    const v = JSON.parse(readFileSync(join(dir, SERVER_FILE), "utf8")) as { url?: unknown };
    return typeof v.url === "string" ? v.url : null;
  } catch {
    return null;
  }
}
