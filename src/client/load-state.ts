// The state of one load, shared by the modules that make up the Loader engine (loader.ts, the
// server choice, the request scheduling, the block intake and chunk completion): the options and injected parts,
// the server being loaded from, and where each chunk stands. One object per Loader, passed
// explicitly to each step; no module keeps state of its own.
import type { KeyObject } from "node:crypto";
import type { SessionKey } from "../net/auth.ts";
import type { Manifest } from "../image/manifest.ts";
import type { AnnouncePacket } from "../net/wire.ts";
import type { Clock } from "../util/clock.ts";
import type { DiscusError } from "../util/errors.ts";
import type { BufferPool, Geometry, Slot } from "./assembly.ts";
import type { LossMeter } from "./loss-meter.ts";
import type { ManifestParts } from "./manifest-parts.ts";
import type { Candidate, Candidates } from "./servers.ts";
import type { ChunkSink } from "./sink.ts";
import type { LoadStats } from "./stats.ts";

export interface LoaderOptions {
  /** The group and port, for messages (the transport is already bound to them). */
  group: string;
  port: number;
  publicKey: KeyObject | null;
  keyPath: string | null;
  /** Accept only this image (hex id); null: whatever the group serves. */
  imageId: Uint8Array | null;
  /** Give up after this long without progress (a block or chunk this client needed). */
  giveUpMs: number;
  /** Memory for chunks being received and applied (the client's main budget). */
  bufferBytes: number;
  /** Chunks this client has asked for and not yet received, at most. */
  requestWindowChunks: number;
  /** Every random choice (sender id, chunk order) comes from it, so a simulation is reproducible. */
  seed: number;
  /** Tag queries, requests and reports with this key, and heed only tagged requests of others; null: open. */
  authKey?: SessionKey | null;
}

export type LoadEvent =
  | { kind: "server"; atMs: number; server: string; imageId: string }
  | { kind: "progress"; atMs: number; chunksDone: number; chunksTotal: number; bytesWritten: number }
  | { kind: "done"; atMs: number; stats: LoadStats }
  | { kind: "failed"; atMs: number; error: DiscusError };

export enum ChunkState {
  missing = 0,
  filling = 1,
  complete = 2,
  done = 3,
}

export interface Server {
  candidate: Candidate;
  /** Where blocks must come from: the candidate's address, or a successor once it fell silent. */
  address: string;
  epoch: number;
  announce: AnnouncePacket;
  /** Last valid block from it (it is alive), and last manifest block stored (it is useful). */
  lastBlockMs: number;
  lastManifestBlockMs: number;
}

export interface LoadState {
  readonly o: LoaderOptions;
  readonly clock: Clock;
  readonly sink: ChunkSink;
  /** This client's sender id. */
  readonly me: number;
  readonly stats: LoadStats;
  readonly loss: LossMeter;
  readonly candidates: Candidates;
  /** The load's random draws (request slots), in the order the seed fixes. */
  readonly random: () => number;
  readonly emit: (e: LoadEvent) => void;
  /** To the group, once the transport is open. */
  readonly send: (bytes: Uint8Array) => void;
  server: Server | null;
  /** Why the last server was dropped or refused, for the give-up message. */
  lastRefusal: string | null;
  /** The last announce ignored because its session key is not ours (or we have none), for the give-up message. */
  authRefusal: string | null;
  /** The last image a server offered that this client refused for the image's own fault. */
  refusedWith: DiscusError | null;
  /** The image of the server adopted last, for a failure report after it was dropped. */
  lastImageId: Uint8Array | null;
  /** Digests of manifests refused for their own fault, newest last: never fetched again. */
  readonly refusedManifests: string[];
  /** Only progress resets the give-up timer: never an announcement, which anyone can send. */
  lastProgressMs: number;
  geometry: Geometry | null;
  dataChunks: number;
  totalChunks: number;
  /** A ChunkState per chunk, data chunks first, then the manifest's parts. */
  state: Uint8Array;
  readonly slots: Map<number, Slot>;
  buffers: BufferPool | null;
  readonly readyData: { chunk: number; buffer: Uint8Array }[];
  manifestParts: ManifestParts | null;
  manifest: Manifest | null;
  /** The sink is open (the manifest proven and the target ready): chunks may go to it. */
  sinkOpen: boolean;
  /** Chunks in the sink's apply() now. */
  applying: number;
  chunksDone: number;
  /** This client's own order of data chunks, and where asking for new ones resumes. */
  order: Uint32Array;
  orderCursor: number;
  nextQueryMs: number;
  queryWaitMs: number;
  /** Other clients heard asking (bounded): how wide the request slot is. */
  readonly heardClients: Set<number>;
}
