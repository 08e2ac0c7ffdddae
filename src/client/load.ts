// `discus load`: one Loader (loader.ts) on the real network and the wall clock, writing a disk or
// file through the worker-pool sink, with a progress bar drawn from its events.
import type { FreeMode } from "../target/apply.ts";
import { wallClock } from "../util/clock.ts";
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
}

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
  return loader.run();
}

function addressNumber(address: string): number {
  return address.split(".").reduce((n, part) => ((n << 8) | (Number(part) & 0xff)) >>> 0, 0);
}
