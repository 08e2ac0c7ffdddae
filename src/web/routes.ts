// The dashboard's routes: the page and its bundled files (anyone may fetch them; they hold no
// data), login and logout, and the live stream. Every action the page takes goes through the
// API's own routes, checked there like any other call (src/http/api.ts).
import { readJson } from "../http/bodies.ts";
import { HttpError, json } from "../http/respond.ts";
import type { Route } from "../http/router.ts";
import { roleOfToken } from "../http/auth.ts";
import { exact, text } from "../http/shapes.ts";
import type { DashboardAssets } from "./assets.ts";
import type { Logins } from "./login.ts";
import type { LiveHub } from "./stream.ts";

/** A token is 43 base64url characters; a login body with a longer one is refused unread. */
const MAX_LOGIN_TOKEN_CHARS = 512;
const loginBody = exact<{ token: string }>({ token: text(MAX_LOGIN_TOKEN_CHARS) });

/** No inline script or style, nothing from elsewhere: an injected string cannot run or phone home. */
export const PAGE_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

export interface WebOptions {
  assets: DashboardAssets;
  logins: Logins;
  hub: LiveHub;
  adminToken: string;
  viewerToken: string | null;
}

/** Whether the client takes gzip (listed in Accept-Encoding, and not with q=0). */
export function acceptsGzip(req: Request): boolean {
  const m = /(?:^|,)\s*gzip\s*(?:;\s*q=([0-9.]+))?\s*(?:,|$)/i.exec(req.headers.get("accept-encoding") ?? "");
  return m !== null && (m[1] === undefined || Number(m[1]) > 0);
}

function pageRoutes(o: WebOptions): Route[] {
  return [
    { method: "GET", path: "/", auth: "none", handle: async () => new Response(o.assets.html, { headers: { ...PAGE_HEADERS, "content-type": "text/html; charset=utf-8", "cache-control": "no-store" } }) },
    {
      method: "GET",
      path: "/ui/:file",
      auth: "none",
      handle: async (c) => {
        const asset = o.assets.files.get(c.params.file!);
        if (asset === undefined) throw new HttpError(404, `no dashboard file ${c.params.file}`);
        const headers = { ...PAGE_HEADERS, "content-type": asset.type, "cache-control": "public, max-age=31536000, immutable", vary: "accept-encoding" };
        if (!acceptsGzip(c.req)) return new Response(asset.body, { headers });
        return new Response(asset.gzip, { headers: { ...headers, "content-encoding": "gzip" } });
      },
    },
  ];
}

function loginRoutes(o: WebOptions): Route[] {
  return [
    {
      method: "POST",
      path: "/api/login",
      auth: "none",
      handle: async (c) => {
        const role = roleOfToken((await readJson(c.req, loginBody)).token.trim(), o.adminToken, o.viewerToken);
        if (role === null) throw new HttpError(401, "that token is neither the admin token nor the viewer token (they are in the server's state directory)");
        return json({ role }, 200, { "set-cookie": o.logins.create(role) });
      },
    },
    { method: "POST", path: "/api/logout", auth: "none", handle: async (c) => json({ ok: true }, 200, { "set-cookie": o.logins.end(c.req.headers.get("cookie")) }) },
    // Open to anyone, so a page without a login learns it without an error status (a console error).
    { method: "GET", path: "/api/whoami", auth: "none", handle: async (c) => json({ role: o.logins.roleOf(c.req.headers.get("cookie")) }) },
  ];
}

export function webRoutes(o: WebOptions): Route[] {
  return [
    ...pageRoutes(o),
    ...loginRoutes(o),
    {
      method: "GET",
      path: "/api/stream",
      auth: "viewer",
      handle: async (c) => {
        const response = await o.hub.open(c.req.signal);
        if (response === null) throw new HttpError(503, "too many dashboards are open on this server; close one and reload", { "retry-after": "10" });
        return response;
      },
    },
  ];
}
