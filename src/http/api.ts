// The HTTP face of the control server (docs/API.md): Bun.serve in front of a DaemonApi. This
// module owns what every request shares: matching, the admin token, the mapping of failures to
// statuses, and the one log line per request. Tokens never reach a log line or a response.
import type { DaemonApi } from "../daemon/api-types.ts";
import { DiscusError } from "../util/errors.ts";
import { bearerToken, redact, tokenMatches } from "./auth.ts";
import { HttpError, errorResponse } from "./respond.ts";
import { compileRoutes, matchRoute, type Route } from "./router.ts";
import { buildRoutes } from "./routes.ts";
import { HttpMetrics, METRICS_CONTENT_TYPE } from "./metrics.ts";
import { protectSocket } from "./unix-socket.ts";

export interface HttpOptions {
  listen: { hostname: string; port: number };
  adminToken: string;
  /** A Unix socket to serve the same API on as well (claimed with claimSocketPath first); absent or null: none. */
  socketPath?: string | null;
  /** Where GET /boot/NAME (the agent's kernel and initramfs) is served from; absent or null: not served. */
  bootDir?: string | null;
  log?: (line: string) => void;
}

export interface HttpServer {
  url: string;
  stop(): Promise<void>;
}

/** What a Host header may hold before it goes into a boot script: a name or address, and a port. */
const HOST_PATTERN = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;
/** An admin token shorter than this is too easy to guess. */
export const MIN_ADMIN_TOKEN_CHARS = 16;

const UNAUTHORIZED = { "www-authenticate": "Bearer" };
/** Methods a metric label may name; any other is "other" (a client may send any word). */
const KNOWN_METHODS = new Set(["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"]);

function hostUrl(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `http://[${host}]` : `http://${host}`;
}

/** `http://HOST` as the client used it (the Host header), else the address we listen on. */
function baseUrlOf(req: Request, ownUrl: string): string {
  const host = req.headers.get("host");
  if (host === null || host === "") return ownUrl;
  if (!HOST_PATTERN.test(host)) throw new HttpError(400, "the Host header is not a host name or address with an optional port");
  return `http://${host}`;
}

/** The path of a URL that URL() refused (a bad Host), query left out, for the log line. */
function rawPath(href: string): string {
  return /^[a-z]+:\/\/[^/]*(\/[^?#]*)/i.exec(href)?.[1] ?? "/";
}

function checkAdmin(route: Route, token: string | null, adminToken: string): void {
  if (route.auth !== "admin") return;
  if (token === null) throw new HttpError(401, "this call needs the admin token: Authorization: Bearer TOKEN (see docs/API.md)", UNAUTHORIZED);
  if (!tokenMatches(token, adminToken)) throw new HttpError(401, "the admin token is wrong", UNAUTHORIZED);
}

interface Failure {
  response: Response;
  /** Details for the server log only. */
  detail: string | null;
}

/** Maps anything a handler threw to a response; only the causes we chose to show reach the client. */
function failure(e: unknown, requestId: number): Failure {
  if (e instanceof HttpError) return { response: errorResponse(e.status, e.message, e.headers), detail: null };
  if (e instanceof DiscusError && e.kind === "usage") return { response: errorResponse(400, e.message), detail: null };
  const detail = e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
  const what = e instanceof DiscusError ? `the server failed (${e.kind} error)` : "internal error";
  return { response: errorResponse(500, `${what}; the details are in the server log under request ${requestId}`), detail };
}

export function startHttp(api: DaemonApi, o: HttpOptions): HttpServer {
  if (o.adminToken.length < MIN_ADMIN_TOKEN_CHARS) {
    throw new DiscusError("usage", "the admin token", `it is shorter than ${MIN_ADMIN_TOKEN_CHARS} characters`, "Use the token the daemon created in its state directory");
  }
  const metrics = new HttpMetrics(api);
  const metricsRoute: Route = {
    method: "GET",
    path: "/metrics",
    auth: "admin",
    handle: async () => new Response(await metrics.render(), { headers: { "content-type": METRICS_CONTENT_TYPE } }),
  };
  const routes = compileRoutes([...buildRoutes(api, o.bootDir ?? null), metricsRoute]);
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let ownUrl = hostUrl(o.listen.hostname);
  let requests = 0;

  /** `seen.route`: the pattern matched, for the latency metric (raw paths would be unbounded labels). */
  async function dispatch(req: Request, url: URL, token: string | null, seen: { route: string }): Promise<Response> {
    const match = matchRoute(routes, req.method, url.pathname);
    if (match === null) throw new HttpError(404, `no route ${url.pathname}; see docs/API.md`);
    if ("allowed" in match) throw new HttpError(405, `${url.pathname} does not take ${req.method}; it takes ${match.allowed.join(", ")}`, { allow: match.allowed.join(", ") });
    seen.route = match.route.path;
    checkAdmin(match.route, token, o.adminToken);
    return match.route.handle({ req, url, params: match.params, baseUrl: baseUrlOf(req, ownUrl), token });
  }

  async function handle(req: Request): Promise<Response> {
    const startedMs = performance.now();
    const requestId = ++requests;
    const url = URL.parse(req.url);
    const path = url?.pathname ?? rawPath(req.url);
    const token = bearerToken(req.headers.get("authorization"));
    const secrets = token === null ? [o.adminToken] : [o.adminToken, token];
    let response: Response;
    const seen = { route: "unmatched" };
    try {
      // Bun builds the URL from the Host header, so a malformed Host shows up here.
      if (url === null) throw new HttpError(400, "the request's Host header or path is not valid in a URL");
      response = await dispatch(req, url, token, seen);
    } catch (e) {
      const f = failure(e, requestId);
      if (f.detail !== null) log(redact(`request ${requestId} ${req.method} ${path} failed: ${f.detail}`, secrets));
      response = f.response;
    }
    const elapsedMs = performance.now() - startedMs;
    metrics.observe(seen.route, KNOWN_METHODS.has(req.method) ? req.method : "other", response.status, elapsedMs / 1000);
    const ms = elapsedMs.toFixed(1);
    log(redact(`${req.method} ${path} ${response.status} ${ms}ms`, secrets));
    return response;
  }

  const server = Bun.serve({
    hostname: o.listen.hostname,
    port: o.listen.port,
    development: false,
    fetch: handle,
    // handle() catches everything; this is the last line should Bun itself fail a request.
    error: () => errorResponse(500, "internal error; the details are in the server log"),
  });
  ownUrl = `${hostUrl(o.listen.hostname)}:${server.port}`;
  const local = o.socketPath ? Bun.serve({ unix: o.socketPath, development: false, fetch: handle, error: () => errorResponse(500, "internal error; the details are in the server log") }) : null;
  if (o.socketPath) protectSocket(o.socketPath);
  return {
    url: ownUrl,
    stop: async () => {
      await Promise.all([server.stop(true), local?.stop(true)]);
    },
  };
}
