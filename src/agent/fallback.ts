// The agent's network load: multicast from the group its settings name, and HTTP when they also
// name an image URL (discus.http) and no server announced within ANNOUNCE_WAIT_MS. Multicast is
// tried first because it serves a whole rack for the cost of one client; the usual reasons it
// stays silent (IGMP snooping with no querier on the switch, a routed network between node and
// server) do not stop TCP. Nothing is written before a server's manifest is proven, so giving up
// on multicast after the wait leaves the disk as it was.
import { httpLoadImage } from "../client/http-load.ts";
import { loadImage, NoAnnounceError } from "../client/load.ts";
import type { LoadEvent } from "../client/load-state.ts";
import type { LoadStats } from "../client/stats.ts";
import type { SessionKey } from "../net/auth.ts";
import type { FreeMode } from "../target/apply.ts";
import { assert } from "../util/assert.ts";
import type { KeyObject } from "node:crypto";

/** How long the agent waits for a multicast announce before it loads over HTTP instead. */
export const ANNOUNCE_WAIT_MS = 5000;
const CHUNK_BUFFER_BYTES = 64 << 20;
const REQUEST_WINDOW_CHUNKS = 4;
assert(ANNOUNCE_WAIT_MS >= 1000, "a server gets at least a second (several query rounds) to announce");

export interface NetworkLoad {
  group: string | null;
  port: number;
  /** This machine's address on the imaging network (multicast only). */
  iface: string | null;
  /** The image's URL; null: multicast only. */
  http: string | null;
  /** With a control server: the job token and MAC its image route wants. */
  job: { server: string; token: string; mac: string } | null;
  target: string;
  freeMode: FreeMode;
  workers: number;
  publicKey: KeyObject | null;
  keyPath: string | null;
  imageId: Uint8Array | null;
  giveUpMs: number;
  authKey: SessionKey | null;
  /** How long to wait for an announce before falling back (ANNOUNCE_WAIT_MS unless a test says otherwise). */
  announceWaitMs?: number;
  say(line: string): void;
  onEvent?(e: LoadEvent): void;
}

export interface NetworkLoadResult {
  stats: LoadStats;
  via: "multicast" | "http";
  /** For the console and the daemon's log: how the image came, and why over HTTP. */
  note: string;
}

/**
 * The request for the image's URL: a URL on the control server that booted us gets the job's
 * MAC and token (its image route serves a node only the image of its job); any other gets neither. Pure.
 */
export function httpRequestFor(url: string, job: NetworkLoad["job"]): { url: string; headers: Record<string, string> } {
  if (job === null || !url.startsWith(`${job.server}/`)) return { url, headers: {} };
  const u = new URL(url);
  u.searchParams.set("mac", job.mac);
  return { url: u.toString(), headers: { authorization: `Bearer ${job.token}` } };
}

export async function loadOverNetwork(n: NetworkLoad): Promise<NetworkLoadResult> {
  assert(n.group !== null || n.http !== null, "a network load has a group or a URL");
  if (n.group !== null) {
    const waitMs = n.announceWaitMs ?? ANNOUNCE_WAIT_MS;
    try {
      const stats = await loadImage({
        group: n.group,
        port: n.port,
        iface: n.iface!,
        ttl: 1,
        target: n.target,
        freeMode: n.freeMode,
        workers: n.workers,
        publicKey: n.publicKey,
        keyPath: n.keyPath,
        imageId: n.imageId,
        giveUpMs: n.giveUpMs,
        bufferBytes: CHUNK_BUFFER_BYTES,
        requestWindowChunks: REQUEST_WINDOW_CHUNKS,
        seed: crypto.getRandomValues(new Uint32Array(1))[0]!,
        authKey: n.authKey,
        showProgress: false,
        onEvent: n.onEvent,
        announceWaitMs: n.http === null ? null : waitMs,
      });
      return { stats, via: "multicast", note: `loaded over multicast from ${stats.server} (group ${n.group}:${n.port})` };
    } catch (e) {
      if (!(e instanceof NoAnnounceError) || n.http === null) throw e;
      n.say(`no multicast announce from group ${n.group}:${n.port} within ${waitMs / 1000} s: falling back to HTTP, ${n.http}`);
    }
  }
  const why = n.group === null ? "no multicast group set" : `no multicast announce from ${n.group}:${n.port} within ${(n.announceWaitMs ?? ANNOUNCE_WAIT_MS) / 1000} s`;
  const req = httpRequestFor(n.http!, n.job);
  const stats = await httpLoadImage({
    url: req.url,
    headers: req.headers,
    target: n.target,
    freeMode: n.freeMode,
    workers: n.workers,
    publicKey: n.publicKey,
    keyPath: n.keyPath,
    imageId: n.imageId,
    bufferBytes: CHUNK_BUFFER_BYTES,
    showProgress: false,
    onEvent: n.onEvent,
  });
  return { stats, via: "http", note: `loaded over HTTP from ${n.http} (${why})` };
}
