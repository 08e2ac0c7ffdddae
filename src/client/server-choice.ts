// Which server the loader takes its image from: asking who serves, adopting the best candidate
// that announced, refusing one whose manifest it may not use, dropping one that stalls or that
// another host outserves, following a proven server that moved or restarted, and the message
// when no server would do. Steps over a LoadState.
import { blocksPerChunk, encodeQuery, type AnnouncePacket } from "../net/wire.ts";
import { fecGroupCount } from "../net/fec-groups.ts";
import type { Peer } from "../net/transport.ts";
import { assert } from "../util/assert.ts";
import { equalBytes, hex } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";
import { chunkOrder } from "../util/shuffle.ts";
import { formatBytes } from "../util/units.ts";
import { BufferPool, type Geometry } from "./assembly.ts";
import type { LoadState } from "./load-state.ts";
import { ManifestParts } from "./manifest-parts.ts";
import { firstChunkFirst } from "./requests.ts";
import { Candidates, sameLayout, type Candidate } from "./servers.ts";

export const QUERY_FIRST_WAIT_MS = 200;
const QUERY_MAX_WAIT_MS = 2000;
/** A second server announcing the same image is adopted only after the first fell silent this long. */
const SERVER_SWITCH_MS = 5000;
/**
 * A server not yet proven (its manifest not yet matched) that has delivered no manifest block for
 * this long is dropped for another that announced. An idle server answers within a round trip;
 * this allows a busy one a dozen 1 MiB chunks ahead of ours at 100 Mbit/s.
 */
const MANIFEST_STALL_MS = 1500;
/** Our unproven server sent no manifest block this long while another host sends ours: switch. */
const MANIFEST_EVIDENCE_MS = 300;
/** Announcing servers remembered, and how long one that failed is set aside (doubling, bounded). */
const MAX_CANDIDATES = 16;
const MAX_CANDIDATES_PER_HOST = 2;
const MAX_FAILED_HOSTS = 64;
const FIRST_SET_ASIDE_MS = 1000;
const MAX_SET_ASIDE_MS = 30_000;
/** Refused manifests remembered (by digest) so as not to fetch them again; older ones may be. */
const MAX_REFUSED_MANIFESTS = 16;
/** Manifests beyond this are refused: they would not fit the client's memory bound. */
const MAX_MANIFEST_BYTES = 64 << 20;
assert(QUERY_FIRST_WAIT_MS <= QUERY_MAX_WAIT_MS && MANIFEST_EVIDENCE_MS < MANIFEST_STALL_MS, "waits grow toward their bounds");

export function newCandidates(): Candidates {
  return new Candidates({ maxCandidates: MAX_CANDIDATES, maxPerHost: MAX_CANDIDATES_PER_HOST, maxHosts: MAX_FAILED_HOSTS, firstSetAsideMs: FIRST_SET_ASIDE_MS, maxSetAsideMs: MAX_SET_ASIDE_MS });
}

export function onAnnounce(st: LoadState, p: AnnouncePacket, from: Peer): void {
  const nowMs = st.clock.nowMs();
  if (st.o.imageId !== null && !equalBytes(p.imageId, st.o.imageId)) {
    st.stats.packetsDropped.otherImage++;
    return;
  }
  const keyRefusal = authRefusal(st, p, from);
  if (keyRefusal !== null) {
    // Not fatal: anyone can announce anything; a server we can talk to may still answer.
    st.stats.packetsDropped.otherKey++;
    st.authRefusal = keyRefusal;
    return;
  }
  const c = st.candidates.heard(p, from.address, from.port, nowMs);
  const s = st.server;
  if (s === null) return adoptNext(st, nowMs);
  if (c.key === s.candidate.key) {
    noteEpoch(st, p.sender);
    s.announce.rateBitsPerSecond = p.rateBitsPerSecond;
    return;
  }
  // Committed to a manifest: only the same image served the same way may take over, and only
  // once ours has fell silent (a server moved). Before that, tick() decides on switching.
  if (st.manifest !== null && sameLayout(p, s.announce) && nowMs - s.lastBlockMs >= SERVER_SWITCH_MS) {
    s.candidate = c;
    s.address = from.address;
    s.lastBlockMs = nowMs;
    noteEpoch(st, p.sender);
    st.emit({ kind: "server", atMs: nowMs, server: from.address, imageId: hex(p.imageId) });
    return;
  }
  st.stats.packetsDropped.foreignSource++;
}

/**
 * Why a server that announces its session key's id is no use to us: we have no key, or another.
 * A server without one is open and ignores our tags, so it is always usable.
 */
function authRefusal(st: LoadState, p: AnnouncePacket, from: Peer): string | null {
  const theirs = p.keyId ?? null;
  if (theirs === null) return null;
  const ours = st.o.authKey ?? null;
  if (ours === null) return `${from.address} serves image ${hex(p.imageId)} only to clients with its session key (key id ${hex(theirs)})`;
  if (equalBytes(ours.keyId, theirs)) return null;
  return `${from.address} serves image ${hex(p.imageId)} with another session key (key id ${hex(theirs)}; ours is ${hex(ours.keyId)})`;
}

/** Adopts the best candidate not set aside, if any; refuses those this client cannot take. */
function adoptNext(st: LoadState, nowMs: number): void {
  for (let c = st.candidates.pick(nowMs, null); c !== null; c = st.candidates.pick(nowMs, null)) {
    const a = c.announce;
    const refusedBefore = st.refusedManifests.includes(hex(a.manifestSha256));
    if (a.manifestBytes <= MAX_MANIFEST_BYTES && !refusedBefore) return adopt(st, c, nowMs);
    // A manifest already refused is not fetched again: fetching it would look like progress
    // and keep --give-up from ever ending a load that no server can satisfy.
    if (!refusedBefore) st.lastRefusal = `${c.address} announced image ${hex(a.imageId)} with a ${formatBytes(a.manifestBytes)} manifest, more than this client's ${formatBytes(MAX_MANIFEST_BYTES)} bound (capture it with larger chunks)`;
    st.candidates.failed(c.host, nowMs);
  }
}

function adopt(st: LoadState, c: Candidate, nowMs: number): void {
  const a = c.announce;
  // Refuse a target in use now, before anything is fetched. Its size is checked against the
  // proven manifest, not this announce: a forged announce must not make a client give up.
  st.sink.check?.();
  st.server = { candidate: c, address: c.address, epoch: a.sender, announce: { ...a }, lastBlockMs: nowMs, lastManifestBlockMs: nowMs };
  st.lastImageId = a.imageId;
  st.loss.reset();
  st.stats.imageId = hex(a.imageId);
  st.stats.server = c.address;
  const blockCount = blocksPerChunk(a.chunkBytes, a.blockBytes);
  const g: Geometry = { chunkBytes: a.chunkBytes, blockBytes: a.blockBytes, blockCount, groups: fecGroupCount(blockCount) };
  st.geometry = g;
  st.dataChunks = a.dataChunkCount;
  st.totalChunks = a.dataChunkCount + a.manifestPartCount;
  st.state = new Uint8Array(st.totalChunks);
  st.manifestParts = new ManifestParts(a);
  const bufferCount = Math.max(4, Math.floor(st.o.bufferBytes / a.chunkBytes));
  if (st.buffers?.bufferBytes !== a.chunkBytes) st.buffers = new BufferPool(a.chunkBytes, bufferCount);
  st.order = Uint32Array.from(firstChunkFirst(chunkOrder(a.dataChunkCount, "random", st.o.seed)));
  st.orderCursor = 0;
  st.stats.chunks = a.dataChunkCount;
}

/**
 * A server's manifest is not one this client may use (forged, damaged, unreadable, or signed by
 * another key): not this server, for now. If no other server delivers before --give-up, the
 * load fails with this refusal's own kind (a wrong key still ends with exit 5).
 */
export function refuse(st: LoadState, e: DiscusError): void {
  st.stats.manifestRejected++;
  if (e.kind !== "network") {
    st.refusedWith = e;
    // Its digest proved these bytes: the same announce will bring the same refusal.
    st.refusedManifests.push(hex(st.server!.announce.manifestSha256));
    if (st.refusedManifests.length > MAX_REFUSED_MANIFESTS) st.refusedManifests.shift();
  }
  drop(st, e.why, st.clock.nowMs());
}

/**
 * Drops a server whose manifest is not proven (it did not match its digest, or did not come):
 * sets it aside, frees what was fetched from it, and tries the next candidate or asks again.
 */
function drop(st: LoadState, why: string, nowMs: number): void {
  const s = st.server;
  assert(s !== null && st.manifest === null && !st.sinkOpen, "only an unproven server is dropped");
  st.candidates.failed(s.candidate.host, nowMs);
  st.stats.serversDropped++;
  st.lastRefusal = `${s.address} ${why}`;
  for (const slot of st.slots.values()) st.buffers!.give(slot.buffer);
  for (const ready of st.readyData) st.buffers!.give(ready.buffer);
  st.slots.clear();
  st.readyData.length = 0;
  st.server = null;
  st.geometry = null;
  st.manifestParts = null;
  st.queryWaitMs = QUERY_FIRST_WAIT_MS;
  st.nextQueryMs = nowMs;
  adoptNext(st, nowMs);
}

/** A new epoch is a restarted server: sequence numbers start again. */
export function noteEpoch(st: LoadState, epoch: number): void {
  const s = st.server;
  if (s === null || s.epoch === epoch) return;
  s.epoch = epoch;
  st.stats.serverRestarts++;
  st.loss.reset();
}

/**
 * Another host sends blocks of our manifest while our unproven server sends none: it serves what
 * we asked for, ours (perhaps a forger that answered our query first) does not. Switch, unless
 * that host failed more often than ours (then it may be the forger).
 */
export function manifestElsewhere(st: LoadState, from: Peer): void {
  const s = st.server!;
  const nowMs = st.clock.nowMs();
  if (nowMs - s.lastManifestBlockMs < MANIFEST_EVIDENCE_MS) return;
  const host = `${from.address}:${from.port}`;
  if (!st.candidates.announced(host, nowMs) || st.candidates.failuresOf(host) > st.candidates.failuresOf(s.candidate.host)) return;
  drop(st, `sent no manifest block while ${from.address} did`, nowMs);
}

/**
 * Each tick: an unproven server whose manifest stalled gives way to another that announced and has
 * not failed more often (a forger that failed before cannot take over from a busy real server);
 * and until a manifest is proven, ask who serves: a real server may answer after a forger.
 */
export function reconsider(st: LoadState, nowMs: number): void {
  const s = st.server;
  if (s !== null && st.manifest === null && nowMs - s.lastManifestBlockMs > MANIFEST_STALL_MS) {
    const next = st.candidates.pick(nowMs, s.candidate.host);
    if (next !== null && st.candidates.failuresOf(next.host) <= st.candidates.failuresOf(s.candidate.host)) {
      drop(st, `delivered no manifest block for ${MANIFEST_STALL_MS} ms`, nowMs);
    }
  }
  if (st.manifest === null && nowMs >= st.nextQueryMs) {
    st.send(encodeQuery({ imageId: st.o.imageId ?? new Uint8Array(16), sender: st.me }));
    st.nextQueryMs = nowMs + st.queryWaitMs;
    st.queryWaitMs = Math.min(QUERY_MAX_WAIT_MS, st.queryWaitMs * 2);
  }
}

/** Why the load ends after --give-up without progress, from what it saw of the servers. */
export function giveUp(st: LoadState): DiscusError {
  const s = st.server;
  const seconds = (st.o.giveUpMs / 1000).toFixed(0);
  if (s === null && st.lastRefusal === null && st.authRefusal !== null) {
    return new DiscusError("network", `${st.o.group}:${st.o.port}`, `${st.authRefusal}, and no other server answered within ${seconds} s`, "Pass --auth-key-file with the key the server was started with (for `discus server`, the discus.auth= word of the node's boot script)");
  }
  if (s === null && st.lastRefusal === null) {
    return new DiscusError("network", `${st.o.group}:${st.o.port}`, `no discus server answered within ${seconds} s`, "Start `discus serve` for this group and port, and check --iface names the interface on that network");
  }
  const r = st.refusedWith;
  if ((s === null || st.manifest === null) && r !== null) {
    return new DiscusError(r.kind, r.thing, `${r.why}, and no other server offered a usable image within ${seconds} s`, r.action);
  }
  if (s === null || st.manifest === null) {
    const why = st.lastRefusal === null ? "" : ` (last: ${st.lastRefusal})`;
    return new DiscusError("network", `${st.o.group}:${st.o.port}`, `no server delivered a manifest matching its announcement within ${seconds} s${why}`, "Check that only one `discus serve` serves this group, and pass --image-id and --key where the network is not trusted");
  }
  return new DiscusError("network", `server ${s.address}`, `no progress for ${seconds} s with ${st.chunksDone}/${st.dataChunks} chunks written`, "Restart `discus serve` with the same image (clients waiting within --give-up carry on); then run `discus load` again here");
}
