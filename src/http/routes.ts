// The API's routes: each maps one DaemonApi call to a method and path (docs/API.md). Handlers
// read and validate their input here, so the daemon only ever sees typed, bounded values.
import type { DaemonApi } from "../daemon/api-types.ts";
import { readJson, readText } from "./bodies.ts";
import { bootFileRoute } from "./boot-files.ts";
import { fileRangeResponse } from "../server/http-serve.ts";
import { HttpError, json, plainText } from "./respond.ts";
import type { Route, RouteContext } from "./router.ts";
import type { Validator } from "../util/schema.ts";
import { MAX_MAC_CHARS, agentReport, cancelBody, hardware, nodeChange, nodeInput, reloadBody } from "./shapes.ts";

/** Who the audit log names for calls with the admin token. */
export const ADMIN_ACTOR = "admin";
export const DEFAULT_EVENTS_LIMIT = 100;
export const MAX_EVENTS_LIMIT = 1000;
/** Job ids are database ids: positive, and within what JSON carries exactly. */
const MAX_JOB_ID = Number.MAX_SAFE_INTEGER;

function found<T>(value: T | null, what: string): T {
  if (value === null) throw new HttpError(404, `no ${what}`);
  return value;
}

function wholeNumber(textValue: string, name: string, min: number, max: number): number {
  const n = /^\d{1,16}$/.test(textValue) ? Number(textValue) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new HttpError(400, `${name} should be a whole number in ${min}..${max}`);
  return n;
}

/** The `mac` query parameter the boot and agent routes need. */
function macParam(url: URL): string {
  const mac = url.searchParams.get("mac");
  if (mac === null || mac === "") throw new HttpError(400, "the query parameter mac is missing (e.g. ?mac=52:54:00:12:34:56)");
  if (mac.length > MAX_MAC_CHARS) throw new HttpError(400, `the query parameter mac is longer than ${MAX_MAC_CHARS} characters`);
  return mac;
}

/** The agent's job token; its absence is a 401, a wrong one the daemon's refusal (403). */
function agentToken(c: RouteContext): string {
  if (c.token === null) throw new HttpError(401, "this call needs the job token from the boot script: Authorization: Bearer JOBTOKEN", { "www-authenticate": "Bearer" });
  return c.token;
}

const JOB_TOKEN_REFUSED = "the job token does not match a job of this node; boot the node again for a fresh boot script";

function accepted(ok: boolean): Response {
  if (!ok) throw new HttpError(403, JOB_TOKEN_REFUSED);
  return json({ ok: true });
}

function nodeRoutes(api: DaemonApi): Route[] {
  return [
    { method: "GET", path: "/api/nodes", auth: "viewer", handle: async () => json(await api.listNodes()) },
    { method: "GET", path: "/api/nodes/:id", auth: "viewer", handle: async (c) => json(found(await api.getNode(c.params.id!), `node ${c.params.id}`)) },
    { method: "POST", path: "/api/nodes", auth: "admin", handle: async (c) => json(await api.addNode(await readJson(c.req, nodeInput), ADMIN_ACTOR), 201) },
    {
      method: "PATCH",
      path: "/api/nodes/:id",
      auth: "admin",
      handle: async (c) => json(found(await api.updateNode(c.params.id!, await readJson(c.req, nodeChange), ADMIN_ACTOR), `node ${c.params.id}`)),
    },
    {
      method: "DELETE",
      path: "/api/nodes/:id",
      auth: "admin",
      handle: async (c) => json({ ok: found((await api.removeNode(c.params.id!, ADMIN_ACTOR)) || null, `node ${c.params.id}`) }),
    },
    { method: "POST", path: "/api/nodes/import", auth: "admin", handle: async (c) => json(await api.importNodes(await readText(c.req), ADMIN_ACTOR), 201) },
  ];
}

function imageAndJobRoutes(api: DaemonApi): Route[] {
  return [
    { method: "GET", path: "/api/images", auth: "viewer", handle: async () => json(await api.listImages()) },
    { method: "GET", path: "/api/images/:name", auth: "viewer", handle: async (c) => json(found(await api.getImage(c.params.name!), `image ${c.params.name}`)) },
    {
      method: "GET",
      path: "/api/images/:name/info",
      auth: "viewer",
      handle: async (c) => json(found(await api.imageInfo(c.params.name!), `image ${c.params.name}, or its file is gone`)),
    },
    { method: "POST", path: "/api/images/rescan", auth: "admin", handle: async () => json(await api.rescanImages(ADMIN_ACTOR)) },
    {
      method: "POST",
      path: "/api/reload",
      auth: "admin",
      handle: async (c) => {
        const body = await readJson(c.req, reloadBody);
        return json(await api.reload(body.selectors, body.image, ADMIN_ACTOR));
      },
    },
    { method: "POST", path: "/api/inventory", auth: "admin", handle: async (c) => json(await api.inventory((await readJson(c.req, cancelBody)).selectors, ADMIN_ACTOR)) },
    { method: "POST", path: "/api/power", auth: "admin", handle: async (c) => json({ nodes: await api.powerCycle((await readJson(c.req, cancelBody)).selectors, ADMIN_ACTOR) }) },
    { method: "POST", path: "/api/cancel", auth: "admin", handle: async (c) => json(await api.cancel((await readJson(c.req, cancelBody)).selectors, ADMIN_ACTOR)) },
    { method: "GET", path: "/api/status", auth: "viewer", handle: async () => json(await api.status()) },
    {
      method: "GET",
      path: "/api/jobs/:id",
      auth: "viewer",
      handle: async (c) => json(found(await api.getJob(wholeNumber(c.params.id!, "the job id", 1, MAX_JOB_ID)), `job ${c.params.id}`)),
    },
    {
      method: "GET",
      path: "/api/events",
      auth: "viewer",
      handle: async (c) => {
        const limitText = c.url.searchParams.get("limit");
        const limit = limitText === null ? DEFAULT_EVENTS_LIMIT : wholeNumber(limitText, "the query parameter limit", 1, MAX_EVENTS_LIMIT);
        return json(await api.listEvents(limit));
      },
    },
  ];
}

function bootAndAgentRoutes(api: DaemonApi): Route[] {
  return [
    { method: "GET", path: "/boot.ipxe", auth: "none", handle: async (c) => plainText(await api.bootScript(macParam(c.url), c.baseUrl)) },
    // The same decision for the Secure Boot path: GRUB sources this from its static grub.cfg (docs/NETBOOT.md).
    { method: "GET", path: "/boot.grub", auth: "none", handle: async (c) => plainText(await api.bootScript(macParam(c.url), c.baseUrl, "grub")) },
    {
      method: "GET",
      path: "/api/agent/plan",
      auth: "agent",
      handle: async (c) => {
        const plan = await api.agentPlan(macParam(c.url), agentToken(c));
        if (plan === null) throw new HttpError(403, JOB_TOKEN_REFUSED);
        return json(plan);
      },
    },
    agentPost("/api/agent/report", agentReport, (mac, token, report) => api.agentReport(mac, token, report)),
    imageFileRoute(api),
    agentPost("/api/agent/inventory", hardware, (mac, token, found) => api.agentInventory(mac, token, found)),
  ];
}

/**
 * GET /images/NAME.dsc?mac=MAC: the image file with HTTP Range, the agent's fallback when
 * multicast does not reach it. Only an agent whose job token is live for a job of that image may
 * read it: images are signed, not encrypted, and a disk can hold host keys and password hashes;
 * multicast keeps them to the LAN (TTL 1), while this TCP port may be reached from further away.
 */
function imageFileRoute(api: DaemonApi): Route {
  return {
    method: "GET",
    path: "/images/:file",
    auth: "agent",
    handle: async (c) => {
      const name = /^(.+)\.dsc$/.exec(c.params.file!)?.[1] ?? null;
      if (name === null) throw new HttpError(404, "image files are named NAME.dsc");
      const plan = await api.agentPlan(macParam(c.url), agentToken(c));
      if (plan === null) throw new HttpError(403, JOB_TOKEN_REFUSED);
      if (plan.image !== name) throw new HttpError(403, `this job loads ${plan.image === null ? "no image" : `image ${plan.image}`}, not ${name}`);
      const record = found(await api.getImage(name), `image ${name}`);
      return fileRangeResponse(c.req, record.path);
    },
  };
}

/** An agent's POST: its MAC and job token, a body of `shape`, and the daemon's yes or no. */
function agentPost<T>(path: string, shape: Validator<T>, send: (mac: string, token: string, body: T) => Promise<boolean>): Route {
  return {
    method: "POST",
    path,
    auth: "agent",
    handle: async (c) => {
      const mac = macParam(c.url);
      const token = agentToken(c);
      return accepted(await send(mac, token, await readJson(c.req, shape)));
    },
  };
}

/** `bootDir`: where GET /boot/NAME serves files from; null serves none. */
export function buildRoutes(api: DaemonApi, bootDir: string | null): Route[] {
  const files = bootDir === null ? [] : [bootFileRoute(bootDir)];
  return [...nodeRoutes(api), ...imageAndJobRoutes(api), ...bootAndAgentRoutes(api), ...files];
}
