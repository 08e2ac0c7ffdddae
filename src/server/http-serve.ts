// Serving an image file over HTTP with Range, for `discus load http://...` (the multicast
// fallback): `discus serve --http PORT` and the control daemon's image route share
// fileRangeResponse. One range per request (what the loader asks); the body is a slice of the
// file, streamed by Bun, never read into memory. The ETag (size and modification time, as nginx
// makes it) lets a client notice a file replaced under its load.
import { statSync } from "node:fs";
import { basename } from "node:path";
import { DiscusError } from "../util/errors.ts";

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/**
 * The one range a `Range` header asks of a file of `size` bytes: null when there is no header or
 * it is not a single byte range (the whole file is sent, as HTTP allows); "unsatisfiable" when it
 * lies wholly beyond the file. Pure.
 */
export function parseRangeHeader(header: string | null, size: number): ByteRange | null | "unsatisfiable" {
  if (header === null) return null;
  const m = /^bytes=(\d{0,16})-(\d{0,16})$/.exec(header.trim());
  if (m === null || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== "" && Number(m[2]) < start) return null; // invalid: ignored, as RFC 9110 says
  if (start >= size) return "unsatisfiable";
  return { start, end };
}

/** A strong validator from what nginx uses: size and modification time. Pure. */
export function etagOf(sizeBytes: number, mtimeMs: number): string {
  return `"${Math.floor(mtimeMs / 1000).toString(16)}-${sizeBytes.toString(16)}"`;
}

/** GET or HEAD of `path`, honouring a single Range (206) and If-Range; 416 beyond the end. */
export function fileRangeResponse(req: Request, path: string): Response {
  const st = statSync(path, { throwIfNoEntry: false });
  if (st === undefined || !st.isFile()) return new Response("no such image\n", { status: 404 });
  const etag = etagOf(st.size, st.mtimeMs);
  const base = { etag, "accept-ranges": "bytes", "content-type": "application/octet-stream", "last-modified": st.mtime.toUTCString() };
  const ifRange = req.headers.get("if-range");
  // A client holding another version gets the whole new file, never a piece of it.
  const range = ifRange !== null && ifRange !== etag ? null : parseRangeHeader(req.headers.get("range"), st.size);
  if (range === "unsatisfiable") return new Response(null, { status: 416, headers: { ...base, "content-range": `bytes */${st.size}` } });
  const head = req.method === "HEAD";
  if (range === null) return new Response(head ? null : Bun.file(path), { status: 200, headers: { ...base, "content-length": String(st.size) } });
  const length = range.end - range.start + 1;
  const headers = { ...base, "content-length": String(length), "content-range": `bytes ${range.start}-${range.end}/${st.size}` };
  return new Response(head ? null : Bun.file(path).slice(range.start, range.end + 1), { status: 206, headers });
}

export interface HttpImageServer {
  /** Where clients load from: http://HOST:PORT/NAME.dsc */
  url: string;
  stop(): void;
}

/** Serves one image file at /BASENAME on `hostname:port` until stopped. */
export function serveImageOverHttp(o: { image: string; hostname: string; port: number }): HttpImageServer {
  const name = basename(o.image);
  const urlPath = `/${encodeURIComponent(name)}`;
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: o.hostname,
      port: o.port,
      fetch(req) {
        if (req.method !== "GET" && req.method !== "HEAD") return new Response("only GET and HEAD\n", { status: 405, headers: { allow: "GET, HEAD" } });
        if (new URL(req.url).pathname !== urlPath) return new Response(`this server serves ${urlPath} only\n`, { status: 404 });
        return fileRangeResponse(req, o.image);
      },
    });
  } catch (e) {
    throw new DiscusError("network", `--http ${o.port}`, `cannot listen on ${o.hostname}:${o.port} (${(e as Error).message})`, "Pick a free port, or stop what holds it");
  }
  const host = o.hostname.includes(":") ? `[${o.hostname}]` : o.hostname;
  return { url: `http://${host}:${server.port}${urlPath}`, stop: () => void server.stop(true) };
}
