// The CLI's fleet commands (`discus node|image|reload|cancel|status|job`): each is one call to the
// daemon's HTTP API (docs/API.md). The daemon is found by --server URL, or through the state
// directory it wrote (server.json); the admin token comes from --token, DISCUS_TOKEN, or the
// state directory's token file. The token is sent, never printed.
import { readFileSync } from "node:fs";
import type { NodeInput, NodeStatus, StatusView } from "../daemon/api-types.ts";
import type { EventRecord, ImageRecord, JobRecord, NodeRecord, PowerSpec } from "../daemon/model.ts";
import { parsePowerText } from "../daemon/csv.ts";
import { DEFAULT_STATE_DIR, readServerUrl, readToken, tokenPath } from "../daemon/state-dir.ts";
import { DiscusError } from "../util/errors.ts";
import { formatBytes } from "../util/units.ts";

/** A daemon that does not answer within this long is down or unreachable. */
const CALL_TIMEOUT_MS = 30_000;
const MAX_CSV_BYTES = 4 << 20;

export interface Connection {
  url: string;
  token: string;
}

export function connection(o: { server?: string; token?: string; state?: string }): Connection {
  const state = o.state ?? DEFAULT_STATE_DIR;
  const url = o.server ?? readServerUrl(state);
  if (url === null) throw new DiscusError("usage", "discus server", `no --server given and no daemon has written ${state}/server.json`, "Pass --server http://HOST:PORT, or start `discus server --state DIR` on this machine");
  const token = o.token ?? process.env.DISCUS_TOKEN ?? readToken(tokenPath(state));
  return { url: url.replace(/\/+$/, ""), token };
}

export async function call<T>(c: Connection, method: string, path: string, body?: unknown, contentType = "application/json"): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${c.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${c.token}`, ...(body === undefined ? {} : { "content-type": contentType }) },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
  } catch (e) {
    throw new DiscusError("network", `discus server ${c.url}`, `did not answer: ${(e as Error).message}`, "Check the daemon runs (`discus server`) and --server names it");
  }
  const text = await res.text();
  let value: unknown = null;
  try {
    value = text === "" ? null : JSON.parse(text);
  } catch {
    value = { error: text.slice(0, 200) };
  }
  if (res.ok) return value as T;
  const why = (value as { error?: string } | null)?.error ?? `HTTP ${res.status}`;
  if (res.status === 401) throw new DiscusError("usage", `discus server ${c.url}`, why, "Pass the admin token: --token, DISCUS_TOKEN, or --state DIR of the daemon");
  if (res.status === 404) throw new DiscusError("usage", `${method} ${path}`, why, "Check the name (`discus node list`, `discus image list`)");
  if (res.status < 500) throw new DiscusError("usage", `${method} ${path}`, why, "Correct the request and try again");
  throw new DiscusError("network", `discus server ${c.url}`, why, "See the daemon's log");
}

export function parsePower(text: string): PowerSpec {
  return parsePowerText(text, `--power ${text}`, { bmc: true });
}

export function nodeInput(name: string, a: { mac: string; disk?: string; image?: string; tag?: string[]; power?: string }): NodeInput {
  return { name, mac: a.mac, diskRule: a.disk ?? null, image: a.image ?? null, tags: a.tag ?? [], power: parsePower(a.power ?? "none") };
}

export function readCsv(path: string): string {
  const bytes = readFileSync(path);
  if (bytes.length > MAX_CSV_BYTES) throw new DiscusError("usage", path, `is larger than ${formatBytes(MAX_CSV_BYTES)}`, "Split it");
  return bytes.toString("utf8");
}

function ago(ms: number | null): string {
  if (ms === null) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s}s ago` : `${Math.round(s / 60)}m ago`;
}

function jobText(j: JobRecord | null): string {
  if (j === null) return "-";
  const rate = j.bytesPerSecond > 0 ? ` ${formatBytes(j.bytesPerSecond)}/s` : "";
  return `job ${j.id} ${j.state} ${j.percent.toFixed(0)}%${rate}${j.error ? ` (${j.error})` : ""}`;
}

export function formatNodes(rows: readonly NodeStatus[]): string {
  if (rows.length === 0) return "no nodes (add one with `discus node add`)";
  const lines = rows.map(({ node: n, job }) => [n.name, n.mac, n.state, n.image ?? "-", n.tags.join(" ") || "-", jobText(job), ago(n.lastSeenMs)]);
  return table(["NAME", "MAC", "STATE", "IMAGE", "TAGS", "JOB", "SEEN"], lines);
}

export function formatNode(s: NodeStatus): string {
  const n: NodeRecord = s.node;
  const hw = n.hardware === null ? "not collected" : n.hardware.disks.map((d) => `${d.path} ${d.model} serial:${d.serial} ${formatBytes(d.sizeBytes)}`).join("; ");
  return [`${n.name} ${n.mac} ${n.state}`, `image: ${n.image ?? "-"}`, `disk rule: ${n.diskRule ?? "- (never written until set)"}`, `tags: ${n.tags.join(" ") || "-"}`, `power: ${n.power.driver}`, `hardware: ${hw}`, `job: ${jobText(s.job)}`].join("\n");
}

export function formatImages(images: readonly ImageRecord[]): string {
  if (images.length === 0) return "no images (put .dsc files in the images directory, then `discus image rescan`)";
  return table(["NAME", "ID", "DISK", "FILE", "GROUP", "SIGNED"], images.map((i) => [i.name, i.imageId.slice(0, 12), formatBytes(i.sourceBytes), formatBytes(i.fileBytes), `${i.group}:${i.port}`, i.signed ? "yes" : "no"]));
}

export function formatStatus(v: StatusView): string {
  const sessions = v.sessions.length === 0 ? "no sessions" : table(["IMAGE", "GROUP", "RATE", "CLIENTS", "SENT"], v.sessions.map((s) => [s.image, `${s.group}:${s.port}`, `${(s.rateBitsPerSecond / 1e6).toFixed(0)} Mbit/s`, String(s.clients), formatBytes(s.bytesSent)]));
  return `${formatNodes(v.nodes)}\n\n${sessions}`;
}

export function formatJobs(jobs: readonly JobRecord[]): string {
  return jobs.length === 0 ? "no jobs" : jobs.map((j) => `${j.mac} ${jobText(j)} ${j.image === null ? j.kind : `image ${j.image}`}`).join("\n");
}

export function formatEvents(events: readonly EventRecord[]): string {
  return events.map((e) => `${new Date(e.atMs).toISOString()} ${e.actor} ${e.action} ${e.subject} ${e.detail}`).join("\n");
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}
