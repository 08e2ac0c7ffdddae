// Bearer tokens: reading them from a request and comparing them without leaking, through timing,
// how much of a guess was right. Both sides are hashed first, so the comparison always runs over
// 32 bytes whatever the lengths.
import { createHash, timingSafeEqual } from "node:crypto";

/** Longer headers are refused before hashing: a token is 64 hex characters or so. */
export const MAX_TOKEN_CHARS = 512;

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** The token of `Authorization: Bearer TOKEN`, or null when the header is missing or not that form. */
export function bearerToken(header: string | null): string | null {
  if (header === null || header.length > MAX_TOKEN_CHARS + 7) return null;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}

/** Whether `given` equals `expected`, in time that depends on neither. */
export function tokenMatches(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

/** Removes the given secrets from a line before it is logged or shown (a daemon error could quote one). */
export function redact(line: string, secrets: readonly string[]): string {
  let out = line;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join("[redacted]");
  return out;
}

/** Which of the two tokens `given` is: the admin's (acts), the viewer's (reads), or neither (null). */
export function roleOfToken(given: string, adminToken: string, viewerToken: string | null): "admin" | "viewer" | null {
  if (tokenMatches(given, adminToken)) return "admin";
  if (viewerToken !== null && tokenMatches(given, viewerToken)) return "viewer";
  return null;
}
