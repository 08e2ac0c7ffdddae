// What the dashboard's live stream carries (GET /api/stream, docs/API.md "Dashboard"): the rows
// the page shows, shaped on the server so the page only draws. Types only: the server (stream.ts)
// and the page (app/) both import them, so the two cannot drift apart.
import type { EventRecord, ImageRecord, JobKind, JobState, NodeState } from "../daemon/model.ts";

/** One row of the fleet table. `id` is the MAC: it never changes, names may. */
export interface FleetRow {
  id: string;
  name: string;
  tags: string[];
  state: NodeState;
  /** The image its newest job writes, else the node's own. */
  image: string | null;
  power: string;
  job: {
    id: number;
    kind: JobKind;
    state: JobState;
    percent: number;
    bytesPerSecond: number;
    error: string | null;
    /** When the job last changed (an agent's report moves it), epoch ms. */
    updatedMs: number;
    createdMs: number;
  } | null;
  lastSeenMs: number | null;
}

/** A client of a session, as its last report told. */
export interface SessionClientRow {
  client: string;
  state: "loading" | "done" | "failed";
  percent: number;
  lossFraction: number;
  lastHeardMs: number;
}

export interface SessionRow {
  /** The image name: one session per image. */
  id: string;
  group: string;
  port: number;
  rateBitsPerSecond: number;
  bytesSent: number;
  /** The image file's size, to set bytes sent against. */
  imageBytes: number;
  clientCount: number;
  /** The clients shown: those holding the session back first, at most MAX_SESSION_CLIENT_ROWS. */
  clients: SessionClientRow[];
  /** The client holding the session back, and why; null when none is loading. */
  holdingBack: { client: string; why: string } | null;
  /** Send rate, one point per stream tick, oldest first, at most RATE_HISTORY_POINTS. */
  rateHistory: number[];
}

/** An image of the catalog, its group and port as one `ADDRESS:PORT`. */
export type ImageRow = Pick<ImageRecord, "imageId" | "sourceBytes" | "fileBytes" | "dataChunks" | "signed"> & { id: string; group: string };

/** An audit event, as the daemon records it: it holds no secret and nothing the page lacks. */
export type EventRow = EventRecord;

/**
 * The stream's messages. `snapshot` comes first and whole; then each tick sends `update` with
 * only the rows that changed (and the ids removed), so 1,000 idle nodes cost nothing to send.
 */
export type StreamMessage =
  | { kind: "snapshot"; atMs: number; nodes: FleetRow[]; sessions: SessionRow[]; images: ImageRow[]; events: EventRow[] }
  | { kind: "update"; atMs: number; nodes: FleetRow[]; removedNodes: string[]; sessions: SessionRow[]; removedSessions: string[]; images: ImageRow[] | null; events: EventRow[] };

/** Who is logged in: the admin may act, a viewer only reads. */
export type Role = "admin" | "viewer";
