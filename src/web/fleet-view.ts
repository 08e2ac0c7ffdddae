// The dashboard's rows, made from what the daemon says (pure functions): a fleet row per node, a
// session row per session with the client holding it back, an image row per catalog image.
import type { LiveSession, NodeStatus } from "../daemon/api-types.ts";
import type { ImageRecord, PowerSpec } from "../daemon/model.ts";
import type { ClientSnapshot } from "../server/clients.ts";
import type { FleetRow, ImageRow, SessionClientRow, SessionRow } from "./view-types.ts";

/** Clients listed per session: the worst first; the count says how many there are in all. */
export const MAX_SESSION_CLIENT_ROWS = 16;
/**
 * Loss at or above this marks the client with the most loss as the one holding the session back:
 * the rate law slows the whole group for it. Below, the slowest client is the one to watch.
 */
export const HOLDING_BACK_LOSS_FRACTION = 0.01;

function powerText(p: PowerSpec): string {
  switch (p.driver) {
    case "none":
      return "none";
    case "command":
      return "command";
    default:
      return `${p.driver} ${p.host}`;
  }
}

export function fleetRow({ node, job }: NodeStatus): FleetRow {
  return {
    id: node.mac,
    name: node.name,
    tags: node.tags,
    state: node.state,
    image: job?.image ?? node.image,
    power: powerText(node.power),
    job: job === null ? null : { id: job.id, kind: job.kind, state: job.state, percent: job.percent, bytesPerSecond: job.bytesPerSecond, error: job.error, updatedMs: job.updatedMs, createdMs: job.createdMs },
    lastSeenMs: node.lastSeenMs,
  };
}

function percentOf(c: ClientSnapshot): number {
  if (c.state === "done") return 100;
  return c.chunksTotal > 0 ? (100 * c.chunksDone) / c.chunksTotal : 0;
}

/** The loading client the session waits for: the most loss if any is lossy, else the least done. */
export function holdingBack(clients: readonly ClientSnapshot[]): { client: string; why: string } | null {
  const loading = clients.filter((c) => c.state === "loading");
  if (loading.length === 0) return null;
  const lossiest = loading.reduce((a, b) => (b.lossFraction > a.lossFraction ? b : a));
  if (lossiest.lossFraction >= HOLDING_BACK_LOSS_FRACTION) return { client: lossiest.client, why: `most loss: ${(100 * lossiest.lossFraction).toFixed(1)} %` };
  const slowest = loading.reduce((a, b) => (percentOf(b) < percentOf(a) ? b : a));
  return { client: slowest.client, why: `slowest: ${percentOf(slowest).toFixed(0)} % done` };
}

/** Loading before done, most loss first, then least done: the rows an admin needs to see. */
function worstFirst(a: ClientSnapshot, b: ClientSnapshot): number {
  const rank = (c: ClientSnapshot) => (c.state === "loading" ? 0 : c.state === "failed" ? 1 : 2);
  return rank(a) - rank(b) || b.lossFraction - a.lossFraction || percentOf(a) - percentOf(b);
}

function clientRow(c: ClientSnapshot): SessionClientRow {
  return { client: c.client, state: c.state, percent: percentOf(c), lossFraction: c.lossFraction, lastHeardMs: c.lastHeardMs };
}

export function sessionRow(s: LiveSession, imageBytes: number, rateHistory: number[]): SessionRow {
  const shown = [...s.clients].sort(worstFirst).slice(0, MAX_SESSION_CLIENT_ROWS);
  return {
    id: s.image,
    group: s.group,
    port: s.port,
    rateBitsPerSecond: s.rateBitsPerSecond,
    bytesSent: s.bytesSent,
    imageBytes,
    clientCount: s.clients.length,
    clients: shown.map(clientRow),
    holdingBack: holdingBack(s.clients),
    rateHistory,
  };
}

export function imageRow(i: ImageRecord): ImageRow {
  return { id: i.name, imageId: i.imageId, sourceBytes: i.sourceBytes, fileBytes: i.fileBytes, dataChunks: i.dataChunks, signed: i.signed, group: `${i.group}:${i.port}` };
}
