// Byte ranges of one image file over HTTP, for `discus load http://...`. Each request is bounded
// in time and in bytes (the body is read into a buffer of exactly the length asked for), retried
// with backoff on network errors, timeouts, short bodies and 5xx, and refused at once on 4xx and
// on a server that ignores Range (200 with the whole file). Every answer must be the range asked
// for, of a file of the same size and, when the server sends one, the same ETag: a file replaced
// under a load is refused rather than mixed.
import { assert } from "../util/assert.ts";
import { DiscusError } from "../util/errors.ts";

export const HTTP_REQUEST_TIMEOUT_MS = 30_000;
/** Attempts per range, the first included; waits between them double from the first. */
export const HTTP_MAX_ATTEMPTS = 5;
export const HTTP_FIRST_BACKOFF_MS = 250;
export const HTTP_MAX_BACKOFF_MS = 4000;
/** Longest URL accepted (it goes into messages and request lines). */
export const MAX_URL_CHARS = 2048;
assert(HTTP_FIRST_BACKOFF_MS <= HTTP_MAX_BACKOFF_MS && HTTP_MAX_ATTEMPTS >= 2, "retries back off within their bound");

export interface ContentRange {
  start: number;
  /** Inclusive, as HTTP writes it. */
  end: number;
  total: number;
}

/** `bytes START-END/TOTAL`, or null for anything else (an unknown total included). Pure. */
export function parseContentRange(text: string | null): ContentRange | null {
  const m = /^bytes (\d{1,16})-(\d{1,16})\/(\d{1,16})$/.exec((text ?? "").trim());
  if (m === null) return null;
  const [start, end, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (!Number.isSafeInteger(total) || start > end || end >= total) return null;
  return { start, end, total };
}

/** The wait before attempt `attempt + 1` (attempt counts from 1). Pure. */
export function backoffMs(attempt: number): number {
  return Math.min(HTTP_MAX_BACKOFF_MS, HTTP_FIRST_BACKOFF_MS * 2 ** (attempt - 1));
}

/** A failure worth another attempt: the network, a timeout, a 5xx, a short body. */
class Transient extends Error {}

export interface HttpSourceOptions {
  url: string;
  /** Sent with every request (the daemon's image route wants the job token). */
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export class HttpSource {
  /** The file's size, known after the first answer. */
  fileBytes: number | null = null;
  private etag: string | null = null;
  requests = 0;
  retries = 0;
  bytesFetched = 0;

  constructor(private readonly o: HttpSourceOptions) {}

  get url(): string {
    return this.o.url;
  }

  /** The last `length` bytes of the file (a suffix range): learns the file's size. */
  tail(length: number): Promise<Uint8Array> {
    return this.fetchRange(`bytes=-${length}`, length, null);
  }

  /** Bytes [start, start + length) of the file. */
  range(start: number, length: number): Promise<Uint8Array> {
    assert(length > 0 && start >= 0, "a non-empty range");
    return this.fetchRange(`bytes=${start}-${start + length - 1}`, length, start);
  }

  private async fetchRange(header: string, length: number, start: number | null): Promise<Uint8Array> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(header, length, start);
      } catch (e) {
        if (!(e instanceof Transient)) throw e;
        if (attempt >= HTTP_MAX_ATTEMPTS) {
          throw new DiscusError("network", this.o.url, `${e.message} (${HTTP_MAX_ATTEMPTS} attempts)`, "Check that the web server is up and reachable from this machine, then run the load again");
        }
        this.retries++;
        await new Promise((r) => setTimeout(r, backoffMs(attempt)));
      }
    }
  }

  private async once(header: string, length: number, start: number | null): Promise<Uint8Array> {
    this.requests++;
    let res: Response;
    try {
      res = await fetch(this.o.url, { headers: { ...this.o.headers, range: header }, signal: AbortSignal.timeout(this.o.timeoutMs ?? HTTP_REQUEST_TIMEOUT_MS), redirect: "error" });
    } catch (e) {
      throw new Transient(`no answer (${(e as Error).message})`);
    }
    if (res.status !== 206) {
      await res.body?.cancel().catch(() => {});
      throw this.refusal(res.status);
    }
    const cr = parseContentRange(res.headers.get("content-range"));
    if (start === null && cr !== null && cr.total < length) {
      await res.body?.cancel().catch(() => {});
      throw new DiscusError("input", this.o.url, `is ${cr.total} bytes, too short to be a discus image`, "Check the URL names a .dsc image file");
    }
    const wantStart = start ?? (cr === null ? 0 : cr.total - length);
    if (cr === null || cr.start !== wantStart || cr.end !== wantStart + length - 1) {
      await res.body?.cancel().catch(() => {});
      throw new DiscusError("network", this.o.url, `answered range ${res.headers.get("content-range") ?? "(none)"} to a request for ${header}`, "Serve the image with a web server that implements HTTP Range (nginx, `discus serve --http`)");
    }
    this.sameFile(cr.total, res.headers.get("etag"));
    const bytes = await readBody(res, length);
    this.bytesFetched += length;
    return bytes;
  }

  private refusal(status: number): Error {
    if (status === 200) {
      return new DiscusError("network", this.o.url, "the server ignores HTTP Range requests (it answered 200 with the whole file, not 206 with the range asked for)", "Serve the image with a web server that implements Range (nginx, `discus serve --http`), or restore from a copy of the file");
    }
    if (status >= 500) return new Transient(`HTTP ${status}`);
    if (status === 404) return new DiscusError("network", this.o.url, "the server has no such file (HTTP 404)", "Check the URL: `discus info` on the server's copy names the image");
    if (status === 401 || status === 403) return new DiscusError("network", this.o.url, `the server refused the request (HTTP ${status})`, "A `discus server` image route needs the job token of a reload of that image; check the URL and the token");
    return new DiscusError("network", this.o.url, `the server answered HTTP ${status} to a range request`, "Check the URL and the web server's log");
  }

  /** The first answer fixes the file's size and ETag; a later one that differs means the file changed. */
  private sameFile(total: number, etag: string | null): void {
    if (this.fileBytes === null) {
      this.fileBytes = total;
      this.etag = etag;
      return;
    }
    if (total !== this.fileBytes || (this.etag !== null && etag !== null && etag !== this.etag)) {
      throw new DiscusError("network", this.o.url, `the file changed during the load (${this.fileBytes} bytes, ETag ${this.etag ?? "none"}; now ${total} bytes, ETag ${etag ?? "none"})`, "Run the load again once the image file is no longer being replaced; nothing unverified was written");
    }
  }
}

/** Reads exactly `length` bytes of body into a fresh buffer; a longer body is an error, a shorter one transient. */
async function readBody(res: Response, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let got = 0;
  const reader = res.body?.getReader();
  if (reader === undefined) throw new Transient("an empty body");
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (got + value.length > length) throw new DiscusError("network", res.url, `sent more than the ${length} bytes of the range asked for`, "Serve the image with a web server that implements HTTP Range correctly");
      out.set(value, got);
      got += value.length;
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    if (e instanceof DiscusError) throw e;
    throw new Transient(`the transfer broke off (${(e as Error).message})`);
  }
  if (got !== length) throw new Transient(`a short body (${got} of ${length} bytes)`);
  return out;
}
