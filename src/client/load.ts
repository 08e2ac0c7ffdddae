// `discus load`: one Loader (loader.ts) on the real network and the wall clock, writing a disk or
// file through the worker-pool sink, with a progress bar drawn from its events.
import type { FreeMode } from "../target/apply.ts";
import { wallClock } from "../util/clock.ts";
import { DiscusError } from "../util/errors.ts";
import { progressBar, type Progress } from "../util/progress.ts";
import { idFromSeed } from "../util/shuffle.ts";
import { groupTransport } from "../net/socket.ts";
import { Loader, type LoaderOptions, type LoadEvent } from "./loader.ts";
import { TargetSink } from "./sink.ts";
import type { LoadStats } from "./stats.ts";

export type { LoadEvent } from "./loader.ts";

export interface LoadOptions extends LoaderOptions {
  iface: string;
  ttl: number;
  target: string;
  freeMode: FreeMode;
  workers: number;
  showProgress: boolean;
  onEvent?: (e: LoadEvent) => void;
  /** Fail with NoAnnounceError when no usable server has announced within this long; null: wait up to giveUpMs. */
  announceWaitMs?: number | null;
}

/** No server announced the image in time (IGMP snooping without a querier, a routed network): a caller may fall back to HTTP. */
export class NoAnnounceError extends DiscusError {}

const SOCKET_RECEIVE_BYTES = 16 << 20;
const SOCKET_SEND_BYTES = 1 << 20;

export async function loadImage(o: LoadOptions): Promise<LoadStats> {
  const loader = new Loader(
    // The machine's address goes into the seed: clients given the same --seed still differ.
    { ...o, seed: idFromSeed(o.seed, addressNumber(o.iface)) },
    {
      clock: wallClock,
      openTransport: groupTransport({ group: o.group, port: o.port, iface: o.iface, ttl: o.ttl, receiveBufferBytes: SOCKET_RECEIVE_BYTES, sendBufferBytes: SOCKET_SEND_BYTES }),
      sink: new TargetSink({ target: o.target, freeMode: o.freeMode, workers: Math.max(1, o.workers) }),
    },
  );
  let bar: Progress | null = null;
  loader.on((e) => {
    o.onEvent?.(e);
    if (e.kind === "progress") {
      bar ??= progressBar("load", e.chunksTotal, "chunks", o.showProgress);
      bar.update(e.chunksDone);
    } else if (e.kind === "done") bar?.finish();
  });
  const waitMs = o.announceWaitMs ?? null;
  const timer =
    waitMs === null
      ? null
      : wallClock.setTimer(waitMs, () => {
          if (!loader.announced) loader.stop(new NoAnnounceError("network", `${o.group}:${o.port}`, `no server announced the image within ${waitMs / 1000} s`, "Check that a server serves this group and that multicast reaches this machine (IGMP snooping needs a querier)"));
        });
  try {
    return await loader.run();
  } finally {
    timer?.cancel();
  }
}

function addressNumber(address: string): number {
  return address.split(".").reduce((n, part) => ((n << 8) | (Number(part) & 0xff)) >>> 0, 0);
}
