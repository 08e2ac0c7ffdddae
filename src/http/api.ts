// The HTTP face of the control server (docs/API.md): Bun.serve in front of a DaemonApi. This
// module owns what every request shares: matching, the admin token, the mapping of failures to
// statuses, and the one log line per request. Tokens never reach a log line or a response.
import type { DaemonApi } from "../daemon/api-types.ts";
import { DiscusError } from "../util/errors.ts";
import { bearerToken, redact, roleOfToken } from "./auth.ts";
import { HttpError, errorResponse } from "./respond.ts";
import { compileRoutes, matchRoute, type Route } from "./router.ts";
import { buildRoutes } from "./routes.ts";
import { HttpMetrics, METRICS_CONTENT_TYPE } from "./metrics.ts";
import { protectSocket } from "./unix-socket.ts";
import type { DashboardAssets } from "../web/assets.ts";
import type { Log } from "../util/log.ts";
import { Logins } from "../web/login.ts";
import { webRoutes } from "../web/routes.ts";
import { LiveHub } from "../web/stream.ts";
import type { Role } from "../web/view-types.ts";

export interface HttpOptions {
  listen: { hostname: string; port: number };
  adminToken: string;
  /** A Unix socket to serve the same API on as well (claimed with claimSocketPath first); absent or null: none. */
  socketPath?: string | null;
  /** A second token that may read but not act (dashboard and API); null: none. */
  viewerToken?: string | null;
  /** The dashboard's bundled files; absent or null: no dashboard is served. */
  dashboard?: DashboardAssets | null;
  /** Where GET /boot/NAME (the agent's kernel and initramfs) is served from; absent or null: not served. */
  bootDir?: string | null;
  log?: Log;
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
/** The header the dashboard's page adds to every change it asks for (see checkAccess). */
export const CSRF_HEADER = "x-discus-request";
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

/**
 * The caller's role on an admin or viewer route, from its bearer token or else its dashboard
 * login; null on other routes. A login's cookie alone never acts: a change needs CSRF_HEADER too,
 * which only a page of this origin can add (another site's form cannot, and SameSite already
 * keeps the cookie from other sites' requests).
 */
function checkAccess(route: Route, req: Request, token: string | null, o: HttpOptions, logins: Logins): Role | null {
  if (route.auth !== "admin" && route.auth !== "viewer") return null;
  let role: Role | null;
  if (token !== null) {
    role = roleOfToken(token, o.adminToken, o.viewerToken ?? null);
    if (role === null) throw new HttpError(401, "the admin token is wrong", UNAUTHORIZED);
  } else {
    role = logins.roleOf(req.headers.get("cookie"));
    if (role === null) throw new HttpError(401, "this call needs the admin token: Authorization: Bearer TOKEN (see docs/API.md), or a dashboard login", UNAUTHORIZED);
    if (req.method !== "GET" && req.headers.get(CSRF_HEADER) !== "1") throw new HttpError(403, `a dashboard login acts only from the dashboard's page (the ${CSRF_HEADER} header is missing)`);
  }
  if (route.auth === "admin" && role !== "admin") throw new HttpError(403, "the viewer token may only look; this call needs the admin token");
  return role;
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
    // Read-only: a Prometheus may scrape with the viewer token.
    auth: "viewer",
    handle: async () => new Response(await metrics.render(), { headers: { "content-type": METRICS_CONTENT_TYPE } }),
  };
  const log: Log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const logins = new Logins();
  const hub = new LiveHub(api, Date.now, log);
  const web = o.dashboard ? webRoutes({ assets: o.dashboard, logins, hub, adminToken: o.adminToken, viewerToken: o.viewerToken ?? null }) : [];
  const routes = compileRoutes([...buildRoutes(api, o.bootDir ?? null), metricsRoute, ...web]);
  let ownUrl = hostUrl(o.listen.hostname);
  let requests = 0;

  /** `seen.route`: the pattern matched, for the latency metric (raw paths would be unbounded labels). */
  async function dispatch(req: Request, url: URL, token: string | null, seen: { route: string }): Promise<Response> {
    const match = matchRoute(routes, req.method, url.pathname);
    if (match === null) throw new HttpError(404, `no route ${url.pathname}; see docs/API.md`);
    if ("allowed" in match) throw new HttpError(405, `${url.pathname} does not take ${req.method}; it takes ${match.allowed.join(", ")}`, { allow: match.allowed.join(", ") });
    seen.route = match.route.path;
    const role = checkAccess(match.route, req, token, o, logins);
    return match.route.handle({ req, url, params: match.params, baseUrl: baseUrlOf(req, ownUrl), token, role });
  }

  async function handle(req: Request): Promise<Response> {
    const startedMs = performance.now();
    const requestId = ++requests;
    const url = URL.parse(req.url);
    const path = url?.pathname ?? rawPath(req.url);
    const token = bearerToken(req.headers.get("authorization"));
    const secrets = [o.adminToken, o.viewerToken ?? "", token ?? ""];
    let response: Response;
    const seen = { route: "unmatched" };
    try {
      // Bun builds the URL from the Host header, so a malformed Host shows up here.
      if (url === null) throw new HttpError(400, "the request's Host header or path is not valid in a URL");
      response = await dispatch(req, url, token, seen);
    } catch (e) {
      const f = failure(e, requestId);
      if (f.detail !== null) log(redact(`request ${requestId} ${req.method} ${path} failed: ${f.detail}`, secrets), { level: "error", request: requestId });
      response = f.response;
    }
    const elapsedMs = performance.now() - startedMs;
    metrics.observe(seen.route, KNOWN_METHODS.has(req.method) ? req.method : "other", response.status, elapsedMs / 1000);
    const ms = elapsedMs.toFixed(1);
    const level = response.status >= 500 ? "error" : "info";
    log(redact(`${req.method} ${path} ${response.status} ${ms}ms`, secrets), { level, request: requestId, method: req.method, path: redact(path, secrets), route: seen.route, status: response.status, ms: Number(ms) });
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
      hub.stop();
      await Promise.all([server.stop(true), local?.stop(true)]);
    },
  };
}
