// Reading request bodies with a bound on their size and on the time they take, and turning JSON
// into typed values. The bound holds twice: a declared Content-Length over it is refused before a
// byte is read, and the bytes actually read are counted, so a chunked or lying sender is cut off.
import { MAX_SCHEMA_STRING_CHARS, SchemaError, type Validator } from "../util/schema.ts";
import { HttpError } from "./respond.ts";

export const MAX_BODY_BYTES = 64 * 1024;
/** A sender that dribbles its body is cut off after this long. */
export const BODY_READ_TIMEOUT_MS = 10_000;
// No one JSON string may be larger than a whole body could carry, or its own bound is never reached.
if (MAX_SCHEMA_STRING_CHARS > MAX_BODY_BYTES) throw new Error("bodies: a string bound exceeds the body bound");

function tooLarge(maxBytes: number): HttpError {
  return new HttpError(413, `the request body is larger than ${maxBytes} bytes; send less (split a CSV import into parts)`);
}

function declaredLength(req: Request): number | null {
  const header = req.headers.get("content-length");
  if (header === null) return null;
  if (!/^\s*\d{1,15}\s*$/.test(header)) throw new HttpError(400, "the Content-Length header is not a whole number");
  return Number(header);
}

async function readWithin<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HttpError(408, `the request body took longer than ${BODY_READ_TIMEOUT_MS} ms to arrive`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The whole body, at most `maxBytes` of it, or an HttpError (413 too large, 408 too slow). */
export async function readBodyBytes(req: Request, maxBytes = MAX_BODY_BYTES, timeoutMs = BODY_READ_TIMEOUT_MS): Promise<Uint8Array> {
  const declared = declaredLength(req);
  if (declared !== null && declared > maxBytes) throw tooLarge(maxBytes);
  if (req.body === null) return new Uint8Array(0);
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  const deadlineMs = Date.now() + timeoutMs;
  try {
    for (;;) {
      const r = await readWithin(reader.read(), Math.max(0, deadlineMs - Date.now()));
      if (r.done) break;
      total += r.value.byteLength;
      if (total > maxBytes) throw tooLarge(maxBytes);
      parts.push(r.value);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  }
  return Buffer.concat(parts, total);
}

/** The body as UTF-8 text (a CSV import). */
export async function readText(req: Request): Promise<string> {
  const bytes = await readBodyBytes(req);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new HttpError(400, "the request body is not UTF-8 text");
  }
}

/** Parses JSON text and checks it against `shape`; the 400's message names the bad field. */
export function parseJsonBody<T>(textBody: string, shape: Validator<T>): T {
  if (textBody.trim() === "") throw new HttpError(400, "the request needs a JSON body");
  let value: unknown;
  try {
    value = JSON.parse(textBody);
  } catch (e) {
    throw new HttpError(400, `the request body is not valid JSON (${(e as Error).message})`);
  }
  try {
    return shape(value, "");
  } catch (e) {
    if (e instanceof SchemaError) throw new HttpError(400, `invalid request body: ${e.message}`);
    throw e;
  }
}

/** Reads, parses and validates a JSON body. */
export async function readJson<T>(req: Request, shape: Validator<T>): Promise<T> {
  return parseJsonBody(await readText(req), shape);
}
