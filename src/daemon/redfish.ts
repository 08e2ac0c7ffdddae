// The `redfish` power driver: HTTPS to the BMC's Redfish service, following the DMTF schema. From
// the service root to the ComputerSystem, the boot source override is set to Pxe for one boot,
// then the system's #ComputerSystem.Reset action (its target and allowed types as the service
// states them) turns it on, or restarts it. Basic authentication on every request: one power
// action is a handful of requests, so a session (a login, a token to keep secret, a logout to
// not leak) would add two requests and state without adding safety over TLS.
// Tested against scripts/lib/redfish-bmc.ts powering a QEMU guest (test/daemon/redfish.test.ts).
import { readFileSync, statSync } from "node:fs";
import { DiscusError } from "../util/errors.ts";
import type { PowerSpec } from "./model.ts";

export type Redfish = Extract<PowerSpec, { driver: "redfish" }>;

/** A Redfish answer larger than this is not a resource we need: refused, never buffered whole. */
export const MAX_BODY_BYTES = 1 << 20;
/** A PEM bundle of a few certificates; a larger caFile is a mistake. */
export const MAX_CA_FILE_BYTES = 1 << 20;
/** What of a BMC's message goes into a job's reason. */
const MAX_MESSAGE_CHARS = 200;
/** Below this much time left, another request is not started: it could not finish. */
const MIN_REQUEST_MS = 500;
/** Requests one action may make: root, collection, system, PATCH, ActionInfo, up to two resets. */
const MAX_REQUESTS = 8;
if (MAX_MESSAGE_CHARS * 2 > 1000) throw new Error("a BMC message must leave room in a job's reason");

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** The first message of a Redfish error body (error.message, else its first ExtendedInfo), one line, bounded. */
export function redfishMessage(body: unknown): string | null {
  if (!isObj(body) || !isObj(body.error)) return null;
  const e = body.error;
  const info = Array.isArray(e["@Message.ExtendedInfo"]) ? e["@Message.ExtendedInfo"][0] : undefined;
  const text = isObj(info) && typeof info.Message === "string" ? info.Message : typeof e.message === "string" ? e.message : null;
  return text === null ? null : oneLine(text);
}

export function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > MAX_MESSAGE_CHARS ? `${flat.slice(0, MAX_MESSAGE_CHARS)}...` : flat;
}

/** The ResetType that boots the system afresh, given its power state and what the service allows (null: anything). */
export function chooseReset(powerState: string, allowed: readonly string[] | null): string[] | null {
  const ok = (t: string) => allowed === null || allowed.includes(t);
  if (powerState === "Off" || powerState === "PoweringOff") {
    const on = ["On", "ForceOn"].find(ok);
    return on === undefined ? null : [on];
  }
  if (powerState === "On" || powerState === "PoweringOn") {
    const restart = ["ForceRestart", "PowerCycle"].find(ok);
    if (restart !== undefined) return [restart];
    const on = ["On", "ForceOn"].find(ok);
    return ok("ForceOff") && on !== undefined ? ["ForceOff", on] : null;
  }
  return null;
}

/** The member of a Systems collection to drive: the one there is, or the one named by systemId. */
export function pickSystem(collection: unknown, systemId: string | null): { path: string } | { why: string } {
  const members = isObj(collection) && Array.isArray(collection.Members) ? collection.Members : null;
  if (members === null) return { why: "its Systems collection has no Members list" };
  const paths = members.map((m) => (isObj(m) && typeof m["@odata.id"] === "string" ? m["@odata.id"] : "")).filter((p) => p !== "");
  if (systemId !== null) {
    const path = paths.find((p) => p.replace(/\/+$/, "").split("/").pop() === systemId);
    return path === undefined ? { why: `it has no system ${systemId} (it has ${paths.map(lastSegment).join(", ") || "none"})` } : { path };
  }
  if (paths.length !== 1) return { why: `it has ${paths.length} systems (${paths.map(lastSegment).join(", ")}), and no systemId names one` };
  return { path: paths[0]! };
}

const lastSegment = (p: string): string => p.replace(/\/+$/, "").split("/").pop() ?? p;

/** The strings of a JSON array, or null if it is not one. */
const strings = (v: unknown): string[] | null => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : null);

interface Call {
  spec: Redfish;
  what: string;
  password: string;
  tls: { ca?: string; rejectUnauthorized: boolean };
  deadlineMs: number;
  timeoutMs: number;
  requests: number;
}

interface Answer {
  status: number;
  etag: string | null;
  body: unknown;
}

/** The spec's TLS choice: its caFile's certificates, none checked (tlsVerify false), or the system's. */
function tlsOf(spec: Redfish, what: string): Call["tls"] {
  if (!spec.tlsVerify) return { rejectUnauthorized: false };
  if (spec.caFile === null) return { rejectUnauthorized: true };
  const action = `Write the BMC's certificate (PEM) to ${spec.caFile}, or set tlsVerify false`;
  try {
    const st = statSync(spec.caFile);
    if (!st.isFile() || st.size === 0 || st.size > MAX_CA_FILE_BYTES) throw new DiscusError("usage", what, `CA file ${spec.caFile} is not a PEM file of 1 byte to ${MAX_CA_FILE_BYTES} bytes`, action);
    return { ca: readFileSync(spec.caFile, "utf8"), rejectUnauthorized: true };
  } catch (e) {
    if (e instanceof DiscusError) throw e;
    throw new DiscusError("usage", what, `CA file ${spec.caFile} cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`, action);
  }
}

/** Reads a body to its end or to `maxBytes`, whichever comes first; null if it was larger. */
async function readBody(res: Response, maxBytes: number): Promise<Uint8Array | null> {
  if (res.body === null) return new Uint8Array(0);
  const kept: Uint8Array[] = [];
  let bytes = 0;
  for await (const piece of res.body) {
    bytes += piece.length;
    if (bytes > maxBytes) {
      await res.body.cancel().catch(() => {});
      return null;
    }
    kept.push(piece);
  }
  return Buffer.concat(kept);
}

/** What went wrong on the way to the BMC, for a person: the certificate, the connection, the time. */
function transportError(c: Call, e: unknown): DiscusError {
  const err = e as { name?: string; code?: string; message?: string };
  if (err.name === "TimeoutError" || err.name === "AbortError") {
    return new DiscusError("network", c.what, `no answer within ${Math.round(c.timeoutMs / 1000)} s`, "Check the BMC is reachable from the server over HTTPS");
  }
  const code = err.code ?? "";
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ALTNAME|ISSUER/.test(code)) {
    const fix = c.spec.caFile !== null ? `Check ${c.spec.caFile} holds the BMC's certificate (PEM) and that it names ${c.spec.host.replace(/:\d+$/, "")}` : "Give the BMC's certificate as caFile, or set tlsVerify false";
    return new DiscusError("network", c.what, `its TLS certificate was refused (${code}: ${oneLine(err.message ?? "")})`, fix);
  }
  return new DiscusError("network", c.what, `HTTPS to ${c.spec.host} failed (${oneLine(`${code} ${err.message ?? ""}`)})`, "Check the BMC's address and port, and that its Redfish service is on");
}

/** One request to the BMC, bounded in time and size; any answer but 2xx is an error naming the cause. */
async function request(c: Call, method: string, path: string, body?: Json, etag?: string | null): Promise<Answer> {
  const leftMs = c.deadlineMs - Date.now();
  if (leftMs < MIN_REQUEST_MS || ++c.requests > MAX_REQUESTS) throw new DiscusError("network", c.what, `no answer within ${Math.round(c.timeoutMs / 1000)} s`, "Check the BMC is reachable from the server over HTTPS");
  const headers: Record<string, string> = {
    Accept: "application/json",
    "OData-Version": "4.0",
    Authorization: `Basic ${Buffer.from(`${c.spec.user}:${c.password}`).toString("base64")}`,
  };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = etag;
  let res: Response;
  let bytes: Uint8Array | null;
  try {
    const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body), redirect: "manual", signal: AbortSignal.timeout(leftMs), tls: c.tls };
    res = await fetch(`https://${c.spec.host}${path}`, init as RequestInit);
    bytes = await readBody(res, MAX_BODY_BYTES);
  } catch (e) {
    throw transportError(c, e);
  }
  if (bytes === null) throw new DiscusError("network", c.what, `${method} ${path} answered more than ${MAX_BODY_BYTES} bytes`, "Check the address names a Redfish service");
  let json: unknown = null;
  const text = Buffer.from(bytes).toString("utf8");
  if (text.trim() !== "") {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (res.status < 200 || res.status > 299) throw statusError(c, method, path, res.status, json);
  if (json === undefined) throw new DiscusError("network", c.what, `${method} ${path} answered HTTP ${res.status} with a body that is not JSON`, "Check the address names a Redfish service");
  return { status: res.status, etag: res.headers.get("etag"), body: json };
}

function statusError(c: Call, method: string, path: string, status: number, body: unknown): DiscusError {
  const said = redfishMessage(body);
  const tail = said === null ? "" : `: ${said.replaceAll(c.password, "***")}`;
  if (status === 401 || status === 403) {
    return new DiscusError("network", c.what, `the BMC refused user ${c.spec.user} (HTTP ${status} on ${method} ${path}${tail})`, `Check the user and the password in ${c.spec.passwordFile}`);
  }
  return new DiscusError("network", c.what, `${method} ${path} failed with HTTP ${status}${tail}`, `Check the BMC (redfishtool -r ${c.spec.host} -S Always Systems)`);
}

/** The @odata.id link `key` of a resource, or an error saying the service lacks it. */
function link(c: Call, resource: unknown, key: string, where: string): string {
  const v = isObj(resource) ? resource[key] : undefined;
  if (isObj(v) && typeof v["@odata.id"] === "string") return v["@odata.id"];
  throw new DiscusError("network", c.what, `${where} has no ${key} link`, "Check the address names a Redfish service (GET /redfish/v1/)");
}

/** ResetType values the action allows: its AllowableValues, else its ActionInfo's, else null (any). */
async function allowedResets(c: Call, action: Json): Promise<string[] | null> {
  const listed = strings(action["ResetType@Redfish.AllowableValues"]);
  if (listed !== null) return listed;
  if (typeof action["@Redfish.ActionInfo"] !== "string") return null;
  const info = (await request(c, "GET", action["@Redfish.ActionInfo"])).body;
  const params = isObj(info) && Array.isArray(info.Parameters) ? info.Parameters : [];
  const reset = params.find((p) => isObj(p) && p.Name === "ResetType");
  return isObj(reset) ? strings(reset.AllowableValues) : null;
}

/** Sets the next boot, and that one only, to PXE; honours the resource's ETag. */
async function pxeOnce(c: Call, path: string, system: Json, etag: string | null): Promise<void> {
  const boot = isObj(system.Boot) ? system.Boot : null;
  if (boot === null) throw new DiscusError("network", c.what, `system ${path} has no Boot settings`, "Set PXE as the next boot on the BMC, or use another power driver");
  const targets = strings(boot["BootSourceOverrideTarget@Redfish.AllowableValues"]);
  if (targets !== null && !targets.includes("Pxe")) throw new DiscusError("network", c.what, `system ${path} cannot boot from Pxe (it allows ${oneLine(targets.join(", "))})`, "Use a BMC that offers a PXE boot override");
  const tag = typeof system["@odata.etag"] === "string" ? system["@odata.etag"] : etag;
  await request(c, "PATCH", path, { Boot: { BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Once" } }, tag);
}

/** Boots the node afresh from PXE: On if it is off, ForceRestart (or PowerCycle, or off and on) if it is on. */
export async function redfishPowerCycle(spec: Redfish, password: string, nodeName: string, timeoutMs: number): Promise<string> {
  const what = `Redfish power of ${nodeName} (BMC ${spec.host})`;
  const c: Call = { spec, what, password, tls: tlsOf(spec, what), deadlineMs: Date.now() + timeoutMs, timeoutMs, requests: 0 };
  const root = (await request(c, "GET", "/redfish/v1/")).body;
  const collection = (await request(c, "GET", link(c, root, "Systems", "its service root"))).body;
  const picked = pickSystem(collection, spec.systemId);
  if ("why" in picked) throw new DiscusError("usage", what, picked.why, "Set the node's power systemId to one of the BMC's systems");
  const got = await request(c, "GET", picked.path);
  const system = isObj(got.body) ? got.body : {};
  const state = typeof system.PowerState === "string" ? system.PowerState : "absent";
  const actions = isObj(system.Actions) ? system.Actions : {};
  const action = actions["#ComputerSystem.Reset"];
  if (!isObj(action) || typeof action.target !== "string") throw new DiscusError("network", c.what, `system ${picked.path} offers no #ComputerSystem.Reset action`, "Check the BMC's firmware supports Redfish power control");
  const resets = chooseReset(state, await allowedResets(c, action));
  if (resets === null) throw new DiscusError("network", c.what, `system ${picked.path} is in power state ${oneLine(state)} and allows no reset that boots it`, "Power the node by hand once, then reload again");
  await pxeOnce(c, picked.path, system, got.etag);
  for (const type of resets) await request(c, "POST", action.target, { ResetType: type });
  return `redfish ${resets.join(" then ")} (was ${oneLine(state)}), next boot Pxe once, system ${picked.path}`;
}
