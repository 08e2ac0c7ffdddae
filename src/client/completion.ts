// Whole chunks to their end: manifest parts assembled, checked against the announced digest and
// the key (or refused), data chunks handed to the sink within its in-flight bound, the sink's
// verdicts counted (a rejected chunk is asked for again), and the sink finished once every data
// chunk is written. Steps over a LoadState; the Loader runs the asynchronous results (Runner).
import { checkSignature } from "../image/signing.ts";
import { assert } from "../util/assert.ts";
import { hex } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";
import type { Slot } from "./assembly.ts";
import { ChunkState, type LoadState } from "./load-state.ts";
import type { ManifestParts } from "./manifest-parts.ts";
import { refuse } from "./server-choice.ts";
import { DEFAULT_SINK_IN_FLIGHT, type ChunkSink } from "./sink.ts";

/** What the Loader lends to asynchronous results: its error guard, its failure, its ending. */
export interface Runner {
  /** Runs a step; an error it throws ends the load. */
  guard(step: () => void): void;
  fail(e: Error): void;
  /** The sink finished: every chunk is written. */
  finished(gptMoved: boolean): void;
}

type Applied = Awaited<ReturnType<ChunkSink["apply"]>>;

export function completed(st: LoadState, run: Runner, slot: Slot): void {
  st.slots.delete(slot.chunk);
  st.state[slot.chunk] = ChunkState.complete;
  if (slot.chunk >= st.dataChunks) return manifestPart(st, run, slot);
  st.readyData.push({ chunk: slot.chunk, buffer: slot.buffer });
  pump(st, run);
}

function manifestPart(st: LoadState, run: Runner, slot: Slot): void {
  const parts = st.manifestParts!;
  parts.store(slot.chunk - st.dataChunks, slot.buffer);
  st.buffers!.give(slot.buffer);
  st.state[slot.chunk] = ChunkState.done;
  if (parts.complete) manifestComplete(st, run, parts);
}

function manifestComplete(st: LoadState, run: Runner, parts: ManifestParts): void {
  const s = st.server!;
  const where = `image ${hex(s.announce.imageId)} from ${s.address}`;
  const decoded = parts.verify(where);
  if (decoded instanceof DiscusError) return refuse(st, decoded);
  const { manifest: m, body } = decoded;
  try {
    st.stats.signature = checkSignature(m, body, where, st.o.publicKey, st.o.keyPath);
  } catch (e) {
    if (e instanceof DiscusError && e.kind === "signature") return refuse(st, e);
    throw e;
  }
  st.candidates.proven(s.candidate.host);
  const nowMs = st.clock.nowMs();
  st.lastProgressMs = nowMs;
  st.manifest = m;
  st.manifestParts = null;
  st.emit({ kind: "server", atMs: nowMs, server: s.address, imageId: st.stats.imageId });
  const opening = st.sink.open(m);
  if (opening instanceof Promise) opening.then(() => run.guard(() => sinkOpened(st, run)), (e: Error) => run.fail(e));
  else sinkOpened(st, run);
}

function sinkOpened(st: LoadState, run: Runner): void {
  st.sinkOpen = true;
  st.stats.targetBytes = st.sink.targetBytes ?? 0;
  st.emit({ kind: "progress", atMs: st.clock.nowMs(), chunksDone: st.chunksDone, chunksTotal: st.dataChunks, bytesWritten: st.stats.writtenBytes });
  pump(st, run);
}

/** Hands complete chunks to the sink, as many as it may hold. */
function pump(st: LoadState, run: Runner): void {
  if (!st.sinkOpen) return;
  const limit = Math.max(1, st.sink.maxInFlight ?? DEFAULT_SINK_IN_FLIGHT);
  while (st.readyData.length > 0 && st.applying < limit) {
    const { chunk, buffer } = st.readyData.shift()!;
    // The sink checks the chunk's digests before anything reaches the disk.
    st.applying++;
    st.sink.apply(chunk, buffer).then(
      (r) => run.guard(() => applied(st, run, chunk, r)),
      (e: Error) => run.fail(e),
    );
  }
}

function applied(st: LoadState, run: Runner, chunk: number, r: Applied): void {
  st.applying--;
  st.buffers!.give(r.container);
  if (r.rejected !== null || r.result === null) {
    // Damaged in transit or forged, or held back by the sink: it never reached the disk. Ask again.
    if (r.deferred !== true) st.stats.chunksRejected++;
    st.state[chunk] = ChunkState.missing;
    pump(st, run);
    return;
  }
  st.state[chunk] = ChunkState.done;
  st.chunksDone++;
  const nowMs = st.clock.nowMs();
  st.lastProgressMs = nowMs;
  st.stats.writtenBytes += r.result.writtenBytes;
  st.stats.freeBytes += r.result.freeBytes;
  st.stats.zeroedBytes += r.result.zeroedBytes;
  st.stats.discardedBytes += r.result.discardedBytes;
  st.emit({ kind: "progress", atMs: nowMs, chunksDone: st.chunksDone, chunksTotal: st.dataChunks, bytesWritten: st.stats.writtenBytes });
  if (st.chunksDone === st.dataChunks) return finish(st, run);
  pump(st, run);
}

function finish(st: LoadState, run: Runner): void {
  assert(st.manifest !== null && st.sinkOpen, "finishing an opened sink");
  const finishing = st.sink.finish();
  if (finishing instanceof Promise) finishing.then((r) => run.guard(() => run.finished(r.gptMoved)), (e: Error) => run.fail(e));
  else run.finished(finishing.gptMoved);
}
