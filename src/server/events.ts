// What a ServeSession tells its faces (the CLI, the daemon, the simulator): its events as it runs,
// and the snapshot it gives on demand. Types only.
import type { ReportBody } from "../net/wire.ts";
import type { ClientSnapshot } from "./clients.ts";
import type { ServeStats, SessionSummary } from "./transfers.ts";

/** What a client's report said, for the faces (the done line prints it). */
export type ClientFigures = Pick<
  ReportBody,
  "chunksDone" | "chunksTotal" | "bytesWritten" | "blocksReceived" | "duplicateBlocks" | "requestsSent" | "rerequests" | "chunksRejected"
>;

/** Control packets a keyed session dropped since it last told, by reason (docs/PROTOCOL.md, "Authentication"). */
export interface AuthDrops {
  packets: { unauthenticated: number; badTag: number; staleEpoch: number; replayed: number };
  /** Source address of the last one dropped. */
  lastFrom: string;
}

export type ServeEvent =
  | { kind: "started"; atMs: number; imageId: string; group: string; rateBitsPerSecond: number; port: number; adaptiveRate: boolean; blockBytes: number; chunkBytes: number; dataChunkCount: number; manifestPartCount: number; authenticated: boolean }
  | ({ kind: "auth-dropped"; atMs: number } & AuthDrops)
  | { kind: "client-progress"; atMs: number; client: string; chunksDone: number; chunksTotal: number; bytesWritten: number; lossFraction: number }
  | ({ kind: "client-done"; atMs: number; client: string; seconds: number } & ClientFigures)
  | { kind: "client-failed"; atMs: number; client: string; message: string; seconds: number; chunksDone: number; chunksTotal: number }
  | { kind: "rate-changed"; atMs: number; rateBitsPerSecond: number; lossFraction: number; previousBitsPerSecond: number; reports: number }
  | { kind: "idle"; atMs: number }
  | { kind: "transfer-started"; atMs: number; rateBitsPerSecond: number }
  | { kind: "transfer-ended"; atMs: number; summary: SessionSummary }
  | { kind: "ended"; atMs: number; stats: ServeStats };

export interface ServeSnapshot {
  atMs: number;
  imageId: string;
  group: string;
  rateBitsPerSecond: number;
  queuedChunks: number;
  /** Since start(), over every transfer. */
  blocksSent: number;
  bytesSent: number;
  transferOpen: boolean;
  /** The most recently heard clients, at most MAX_CLIENT_ROWS. */
  clients: ClientSnapshot[];
}
