// Matching a request to a route: path patterns with `:name` segments, literal segments preferred
// (POST /api/nodes/import before POST /api/nodes/:id), and 404 versus 405 told apart.
import { HttpError } from "./respond.ts";

/**
 * Who may call a route: the admin (token or dashboard login); the admin or a viewer (reads only);
 * an agent with its job token (checked by the daemon); or anyone.
 */
export type Auth = "admin" | "viewer" | "agent" | "none";

export interface RouteContext {
  req: Request;
  url: URL;
  params: Record<string, string>;
  /** How the client reached us, `http://HOST` (for boot scripts). */
  baseUrl: string;
  /** The bearer token the request carried, if any (agent routes hand it to the daemon). */
  token: string | null;
  /** Who the caller proved to be (admin and viewer routes only; null elsewhere). */
  role: "admin" | "viewer" | null;
}

export interface Route {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: string;
  auth: Auth;
  handle(ctx: RouteContext): Promise<Response>;
}

/** A path parameter is a node name, a MAC or a number: anything longer is refused unread. */
export const MAX_PARAM_CHARS = 256;
export const MAX_PATH_SEGMENTS = 8;

interface Compiled {
  route: Route;
  segments: string[];
  literals: number;
}

export type Match = { route: Route; params: Record<string, string> } | { allowed: string[] } | null;

export function compileRoutes(routes: readonly Route[]): Compiled[] {
  const compiled = routes.map((route) => {
    const segments = route.path.split("/").slice(1);
    return { route, segments, literals: segments.filter((s) => !s.startsWith(":")).length };
  });
  return compiled.sort((a, b) => b.literals - a.literals);
}

function decodeParam(raw: string): string {
  if (raw.length > MAX_PARAM_CHARS * 3) throw new HttpError(400, `a path parameter is longer than ${MAX_PARAM_CHARS} characters`);
  let value: string;
  try {
    value = decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, "a path parameter is not valid percent-encoded UTF-8");
  }
  if (value.length > MAX_PARAM_CHARS) throw new HttpError(400, `a path parameter is longer than ${MAX_PARAM_CHARS} characters`);
  return value;
}

function paramsOf(c: Compiled, parts: readonly string[]): Record<string, string> | null {
  if (c.segments.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const seg = c.segments[i]!;
    const part = parts[i]!;
    if (seg.startsWith(":")) {
      if (part === "") return null;
      params[seg.slice(1)] = part;
    } else if (seg !== part) return null;
  }
  return params;
}

/** The route for this method and path; else the methods the path allows (405); else null (404). */
export function matchRoute(routes: readonly Compiled[], method: string, pathname: string): Match {
  const parts = pathname.split("/").slice(1);
  if (parts.length > MAX_PATH_SEGMENTS) return null;
  const allowed = new Set<string>();
  for (const c of routes) {
    const raw = paramsOf(c, parts);
    if (raw === null) continue;
    if (c.route.method !== method) {
      allowed.add(c.route.method);
      continue;
    }
    const params: Record<string, string> = {};
    for (const [k, v] of Object.entries(raw)) params[k] = decodeParam(v);
    return { route: c.route, params };
  }
  return allowed.size > 0 ? { allowed: [...allowed].sort() } : null;
}
