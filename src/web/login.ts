// Dashboard logins: a page posts the admin (or viewer) token once and gets a session cookie,
// HttpOnly (no script can read it) and SameSite=Strict (no other site's page can send it). The
// cookie holds a random id; the server keeps only its SHA-256, so a memory dump does not hand out
// live sessions. Sessions live in memory: a restarted daemon asks for the token again.
import { createHash, randomBytes } from "node:crypto";
import { assert } from "../util/assert.ts";
import type { Role } from "./view-types.ts";

export const COOKIE_NAME = "discus_session";
/** A login lasts a working day; then the token is asked again. */
export const LOGIN_TTL_MS = 12 * 60 * 60 * 1000;
/** Logins kept at most; the oldest goes first (each page login adds one). */
export const MAX_LOGINS = 256;
const SESSION_ID_BYTES = 32;
/** The cookie's value is base64url of SESSION_ID_BYTES: longer is not ours. */
const MAX_COOKIE_VALUE_CHARS = 64;
assert(Math.ceil((SESSION_ID_BYTES * 4) / 3) <= MAX_COOKIE_VALUE_CHARS, "an id fits the cookie bound");

interface Login {
  role: Role;
  expiresMs: number;
}

function digest(id: string): string {
  return createHash("sha256").update(id, "utf8").digest("hex");
}

/** The value of cookie `name` in a Cookie header, or null. */
export function cookieValue(header: string | null, name: string): string | null {
  if (header === null) return null;
  for (const part of header.split(";")) {
    const at = part.indexOf("=");
    if (at < 0 || part.slice(0, at).trim() !== name) continue;
    const value = part.slice(at + 1).trim();
    return value.length > 0 && value.length <= MAX_COOKIE_VALUE_CHARS ? value : null;
  }
  return null;
}

export class Logins {
  /** Map order is insertion order: the first entry is the oldest login. */
  private readonly byDigest = new Map<string, Login>();

  constructor(private readonly nowMs: () => number = Date.now) {}

  /** A new login; returns the Set-Cookie header value. */
  create(role: Role): string {
    const id = randomBytes(SESSION_ID_BYTES).toString("base64url");
    if (this.byDigest.size >= MAX_LOGINS) this.byDigest.delete(this.byDigest.keys().next().value!);
    this.byDigest.set(digest(id), { role, expiresMs: this.nowMs() + LOGIN_TTL_MS });
    return `${COOKIE_NAME}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${LOGIN_TTL_MS / 1000}`;
  }

  /** The role of the request's login cookie; null when it has none, or an unknown or expired one. */
  roleOf(cookieHeader: string | null): Role | null {
    const id = cookieValue(cookieHeader, COOKIE_NAME);
    if (id === null) return null;
    const key = digest(id);
    const login = this.byDigest.get(key);
    if (login === undefined) return null;
    if (login.expiresMs <= this.nowMs()) {
      this.byDigest.delete(key);
      return null;
    }
    return login.role;
  }

  /** Ends the request's login; returns the Set-Cookie value that clears the cookie. */
  end(cookieHeader: string | null): string {
    const id = cookieValue(cookieHeader, COOKIE_NAME);
    if (id !== null) this.byDigest.delete(digest(id));
    return `${COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`;
  }
}
