#!/usr/bin/env bun
// The discus command line: one entry point for every command. Every value is checked through
// src/cli/options.ts before any work starts; errors map to exit codes by kind (util/errors.ts).
import { availableParallelism } from "node:os";
import { existsSync, writeFileSync } from "node:fs";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { createImage } from "./capture/create.ts";
import { DEFAULT_MIN_FREE_BYTES } from "./capture/layout.ts";
import { DEFAULT_LEVEL, levelBounds } from "./image/codec.ts";
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, parseCodec, SECTOR_BYTES } from "./image/constants.ts";
import { closeImage, openImage } from "./image/reader.ts";
import { generateKeyPair, loadPrivateKey, loadPublicKey, keyFingerprint, rawPublicKey } from "./image/signing.ts";
import { verifyImage } from "./target/verify.ts";
import { restoreImage } from "./target/restore.ts";
import type { ChunkOrder } from "./util/shuffle.ts";
import { progressBar } from "./util/progress.ts";
import { checkTarget } from "./target/target.ts";
import type { FreeMode } from "./target/apply.ts";
import { assert } from "./util/assert.ts";
import { DiscusError, exitCodeByKind, ioError, osErrorCode } from "./util/errors.ts";
import { formatBytes } from "./util/units.ts";
import { serveImage, SNAPSHOT_INTERVAL_MS, type ServeEvent } from "./server/serve.ts";
import { serveImageOverHttp, type HttpImageServer } from "./server/http-serve.ts";
import { loadImage } from "./client/load.ts";
import { httpLoadImage } from "./client/http-load.ts";
import { MAX_URL_CHARS } from "./client/http-source.ts";
import { DEFAULT_PORT, MAX_MTU_BYTES, MIN_MTU_BYTES } from "./net/wire.ts";
import { linkDefaults, linkOf } from "./net/link.ts";
import { fromHex, hex } from "./util/bytes.ts";
import { DEFAULT_PATHS, runAgent } from "./agent/agent.ts";
import { formatSummary, imageSummary } from "./image/summary.ts";
import { MAX_IDLE_EXIT_MS, authKeyFileOption, MAX_RATE_BITS_PER_SECOND, MIN_RATE_BITS_PER_SECOND, bytesOption, durationOption, groupOption, hexOption, inputImagePath, intOption, localAddressOption, rateOption, readSmallFile, usage } from "./cli/options.ts";
import { VERSION } from "./version.ts";
import { fleetCommands } from "./cli/fleet-commands.ts";
import { serverCommand } from "./http/server-command.ts";

/** Worker threads at most (the pool's own bound). */
const MAX_WORKERS = 64;
const defaultWorkers = Math.max(1, Math.min(availableParallelism(), 16));
/** Free runs up to this long may be kept as data; longer would only bloat images. */
const MAX_MIN_FREE_BYTES = 64 << 20;
const MIN_GIVE_UP_MS = 1000;
const MAX_GIVE_UP_MS = 24 * 3_600_000;
const MIN_BUFFER_BYTES = 8 << 20;
const MAX_BUFFER_BYTES = 4 * 2 ** 30;
const MAX_WINDOW_CHUNKS = 64;
const MAX_SEED = 2 ** 32 - 1;
const MAX_TTL = 255;
const MAX_PORT = 65535;
assert(defaultWorkers <= MAX_WORKERS, "default worker count within the bound");
assert(DEFAULT_CHUNK_BYTES >= MIN_CHUNK_BYTES && DEFAULT_CHUNK_BYTES <= MAX_CHUNK_BYTES, "default chunk size within the bounds");
assert(DEFAULT_MIN_FREE_BYTES <= MAX_MIN_FREE_BYTES && DEFAULT_MIN_FREE_BYTES % SECTOR_BYTES === 0, "default --min-free within the bounds");
assert(MIN_GIVE_UP_MS <= 60_000 && 60_000 <= MAX_GIVE_UP_MS, "default --give-up within the bounds");
assert(MIN_BUFFER_BYTES <= 64 << 20 && 64 << 20 <= MAX_BUFFER_BYTES, "default --memory within the bounds");

/** What yargs parsed: option values are checked by the validators, never trusted as typed. */
type Args = Record<string, unknown>;

function str(a: Args, name: string): string {
  return a[name] as string;
}

function workersOption(raw: unknown, lo: 0 | 1): number {
  return intOption("--workers", raw, lo, MAX_WORKERS, `Pick a thread count in ${lo}..${MAX_WORKERS}`);
}

function seedOption(raw: unknown): number {
  return intOption("--seed", raw, 0, MAX_SEED, `Pick a seed in 0..${MAX_SEED}`);
}

function publicKeyOption(raw: unknown): ReturnType<typeof loadPublicKey> | null {
  if (raw === undefined) return null;
  return loadPublicKey(readSmallFile("--key", raw, "Pass the .pub file written by `discus keygen`"), raw as string);
}

/** Multicast options shared by serve and load (the interface is checked last: it depends on this machine). */
function groupOptions(a: Args): { group: string; port: number; ttl: number } {
  return {
    group: groupOption("--group", a.group),
    port: intOption("--port", a.port, 1, MAX_PORT, `Pick a UDP port in 1..${MAX_PORT}`),
    ttl: intOption("--ttl", a.ttl, 1, MAX_TTL, "Use 1 for one LAN"),
  };
}

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

/** The image `create` writes: a directory or an existing file (without --force) is refused before capturing. */
function checkNewImage(path: string, force: boolean): void {
  inputImagePath(path);
  if (existsSync(path) && !force) usage(path, "already exists", "Pass --force to overwrite it, or name a new file");
}

async function runCreate(a: Args): Promise<void> {
  const codec = parseCodec(str(a, "codec"));
  const [lo, hi] = levelBounds(codec);
  const level = a.level === undefined ? DEFAULT_LEVEL[codec] : intOption("--level", a.level, lo, hi, `Pick a level in ${lo}..${hi} for ${str(a, "codec")}`);
  const chunkBytes = bytesOption("--chunk-size", a["chunk-size"], MIN_CHUNK_BYTES, MAX_CHUNK_BYTES, "Use the default 1M unless you know why", 4096);
  const minFreeBytes = bytesOption("--min-free", a["min-free"], 0, MAX_MIN_FREE_BYTES, "The default 32K suits most disks", SECTOR_BYTES);
  const workers = workersOption(a.workers, 0);
  const image = str(a, "image");
  checkNewImage(image, a.force === true);
  const signingKey = a.sign === undefined ? null : loadPrivateKey(readSmallFile("--sign", a.sign, "Make a key pair with `discus keygen NAME`"), str(a, "sign"));
  const quiet = a.quiet === true || a.json === true;
  const r = await createImage({ source: str(a, "source"), image, codec, level, chunkBytes, raw: a.raw === true, minFreeBytes, workers, signingKey, showProgress: !quiet });
  const dataBytes = r.manifest.dataSectors * r.manifest.sectorBytes;
  const result = {
    image,
    imageId: Buffer.from(r.manifest.imageId).toString("hex"),
    sourceBytes: r.manifest.sourceBytes,
    dataBytes,
    imageBytes: r.imageBytes,
    chunks: r.manifest.dataChunkCount,
    seconds: r.seconds,
    megabytesPerSecond: dataBytes / 1e6 / r.seconds,
    warnings: r.plan.warnings,
    signed: r.manifest.signature !== null,
  };
  print(
    a.json === true,
    result,
    `${image}: ${result.chunks} chunks, ${formatBytes(dataBytes)} of ${formatBytes(result.sourceBytes)} captured into ${formatBytes(result.imageBytes)} in ${r.seconds.toFixed(2)} s (${result.megabytesPerSecond.toFixed(0)} MB/s)`,
  );
}

async function runRestore(a: Args): Promise<void> {
  const workers = workersOption(a.workers, 1);
  const seed = seedOption(a.seed);
  const publicKey = publicKeyOption(a.key);
  const image = inputImagePath(str(a, "image"));
  const target = str(a, "target");
  const free = str(a, "free");
  let bar: ReturnType<typeof progressBar> | null = null;
  const s = await restoreImage(
    { image, target, freeMode: free as FreeMode, workers, order: str(a, "order") as ChunkOrder, seed, publicKey, keyPath: (a.key as string | undefined) ?? null },
    {
      progress(done, total) {
        bar ??= progressBar("restore", total, "chunks", a.quiet !== true && a.json !== true);
        bar.update(done);
        if (done === total) bar.finish();
      },
    },
  );
  const rate = s.writtenBytes / 1e6 / s.seconds;
  print(
    a.json === true,
    { image, target, ...s, megabytesPerSecond: rate },
    `${target}: ${formatBytes(s.writtenBytes)} written from ${s.chunks} chunks in ${s.seconds.toFixed(2)} s (${rate.toFixed(0)} MB/s); free space ${formatBytes(s.freeBytes)} ${free === "skip" ? "skipped" : `${formatBytes(s.zeroedBytes)} zeroed, ${formatBytes(s.discardedBytes)} discarded`}${s.gptMoved ? "; backup GPT moved to the end of the larger target" : ""}; signature ${s.signature}`,
  );
}

/** Serve options for a supervising parent: machine events on stdout, idle told not acted on, stdin as a lifeline. */
function serveParentOptions(a: Args, idleExitMs: number): { events: boolean; idleEventMs: number | null; exitWithStdin: boolean } {
  const events = a.events === "json";
  if (events && a.json === true) usage("--json", "cannot be combined with --events json: stdout carries the events", "Drop --json; the `ended` event carries the final stats");
  const idleEventMs = a["idle-event"] === undefined ? 0 : durationOption("--idle-event", a["idle-event"], 0, MAX_IDLE_EXIT_MS, "Give a time such as 60s, or 0 for no idle events");
  if (idleEventMs > 0 && idleExitMs > 0) usage("--idle-event", "cannot be combined with --idle-exit", "Give one: --idle-exit to stop when idle, --idle-event to tell a parent and keep serving");
  return { events, idleEventMs: idleEventMs > 0 ? idleEventMs : null, exitWithStdin: a["exit-with-stdin"] === true };
}

/** Aborts once stdin reaches EOF (the parent closed it, or died: the kernel closes its end). */
function abortAtStdinEof(abort: AbortController): () => void {
  const reader = Bun.stdin.stream().getReader();
  void (async () => {
    try {
      while (!(await reader.read()).done) {
        // The parent sends nothing; anything it writes is drained and ignored.
      }
    } catch {
      // A read error means the parent's end is gone as surely as EOF.
    }
    abort.abort();
  })();
  return () => void reader.cancel().catch(() => {});
}

async function runServe(a: Args): Promise<void> {
  const httpPort = a.http === undefined ? null : intOption("--http", a.http, 1, MAX_PORT, `Pick a TCP port in 1..${MAX_PORT}`);
  if (a.group === undefined) {
    if (httpPort === null) usage("--group", "is missing", "Give the image's multicast group, or --http PORT to serve over HTTP only");
    return serveHttpOnly(inputImagePath(str(a, "image")), localAddressOption("--iface", a.iface), httpPort);
  }
  const g = groupOptions(a);
  const rateCeiling = a.rate === undefined ? null : rateOption("--rate", a.rate, MIN_RATE_BITS_PER_SECOND, MAX_RATE_BITS_PER_SECOND, "Give the link speed, e.g. 100mbit or 1gbit");
  const mtuGiven = a.mtu === undefined ? null : intOption("--mtu", a.mtu, MIN_MTU_BYTES, MAX_MTU_BYTES, "Use the link's MTU, 1500 unless jumbo frames are on");
  const idleMs = durationOption("--idle-exit", a["idle-exit"], 0, MAX_IDLE_EXIT_MS, "Give a time such as 10m, or 0 to serve until stopped");
  const parent = serveParentOptions(a, idleMs);
  const iface = localAddressOption("--iface", a.iface);
  // Unless given, the block size follows the link's MTU and the rate starts at its speed.
  const link = linkDefaults(linkOf(iface), rateCeiling, mtuGiven);
  const rateBitsPerSecond = Math.min(MAX_RATE_BITS_PER_SECOND, link.rateBitsPerSecond);
  const mtuBytes = link.mtuBytes;
  process.stderr.write(`discus serve: ${link.note}\n`);
  const image = inputImagePath(str(a, "image"));
  const authKey = authKeyFileOption("--auth-key-file", a["auth-key-file"]);
  const abort = new AbortController();
  // Ctrl-C reaches a terminal's whole process group: a supervised server leaves it to its parent.
  if (parent.exitWithStdin) process.on("SIGINT", () => {});
  else process.once("SIGINT", () => abort.abort());
  process.once("SIGTERM", () => abort.abort());
  // With nobody left to read the events, serving on would only orphan the group.
  if (parent.events) process.stdout.on("error", () => abort.abort());
  const releaseStdin = parent.exitWithStdin ? abortAtStdinEof(abort) : () => {};
  const http = httpPort === null ? null : startHttpServe(image, iface, httpPort);
  const jsonLine = (v: unknown) => void process.stdout.write(`${JSON.stringify(v)}\n`);
  try {
    const stats = await serveImage({
      image,
      ...g,
      iface,
      rateBitsPerSecond,
      adaptiveRate: a["fixed-rate"] !== true,
      mtuBytes,
      idleExitMs: idleMs > 0 ? idleMs : null,
      idleEventMs: parent.idleEventMs,
      snapshots: parent.events ? { everyMs: SNAPSHOT_INTERVAL_MS, emit: (s) => jsonLine({ kind: "snapshot", ...s }) } : undefined,
      authKey,
      onEvent: (e) => {
        if (parent.events) jsonLine(e);
        const line = serveEventLine(e, image, iface, idleMs > 0);
        if (line !== null) process.stderr.write(`discus serve: ${line}\n`);
      },
      signal: abort.signal,
    });
    if (a.json === true) print(true, stats, "");
  } finally {
    http?.stop();
    releaseStdin();
  }
}

function startHttpServe(image: string, iface: string, port: number): HttpImageServer {
  const http = serveImageOverHttp({ image, hostname: iface, port });
  process.stderr.write(`discus serve: serving ${image} over HTTP at ${http.url}\n`);
  return http;
}

/** `serve IMAGE --http PORT` without --group: HTTP only, until SIGINT or SIGTERM. */
async function serveHttpOnly(image: string, iface: string, port: number): Promise<void> {
  closeImage(openImage(image)); // a damaged image is refused now, not by each client
  const http = startHttpServe(image, iface, port);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  http.stop();
}

/** The server's log: one line per event worth a line (progress reports are not). */
function serveEventLine(e: ServeEvent, image: string, iface: string, idleExits: boolean): string | null {
  const mbit = (bitsPerSecond: number) => (bitsPerSecond / 1e6).toFixed(1);
  switch (e.kind) {
    case "started":
      return (
        `serving ${image} (image ${e.imageId}, ${e.dataChunkCount} chunks + ${e.manifestPartCount} manifest part(s) of ${e.chunkBytes} bytes) on ${e.group}:${e.port} via ${iface}, ` +
        `${e.blockBytes}-byte blocks, up to ${mbit(e.rateBitsPerSecond)} Mbit/s${e.adaptiveRate ? " (adaptive)" : ""}${e.authenticated ? ", authenticated control packets only" : ""}`
      );
    case "auth-dropped": {
      const d = e.packets;
      return `dropped control packets: ${d.unauthenticated} unauthenticated, ${d.badTag} bad tag, ${d.staleEpoch} stale epoch, ${d.replayed} replayed (last from ${e.lastFrom})`;
    }
    case "transfer-started":
      return `session started: ${mbit(e.rateBitsPerSecond)} Mbit/s`;
    case "transfer-ended": {
      const s = e.summary;
      return (
        `session ended: ${s.clients} clients (${s.clientsDone} done, ${s.clientsFailed} failed), ${(s.bytesSent / 1e6).toFixed(1)} MB in ${s.blocksSent} blocks over ${s.seconds.toFixed(1)} s ` +
        `(${s.megabitsPerSecond.toFixed(1)} Mbit/s), ${s.requests} requests, ${s.mergedBlocks} of ${s.requestedBlocks} requested blocks merged, ${s.requestsDropped} dropped (queue full), rate now ${s.finalRateMegabits.toFixed(1)} Mbit/s`
      );
    }
    case "client-done": {
      const dupPercent = e.blocksReceived > 0 ? (100 * e.duplicateBlocks) / e.blocksReceived : 0;
      const mb = e.bytesWritten / 1e6;
      return `client ${e.client} done: ${mb.toFixed(1)} MB written, ${e.chunksDone} chunks in ${e.seconds.toFixed(1)} s (${(mb / Math.max(e.seconds, 0.001)).toFixed(1)} MB/s), ${e.requestsSent} requests (${e.rerequests} repeats), ${dupPercent.toFixed(1)}% duplicate blocks, ${e.chunksRejected} chunks rejected`;
    }
    case "client-failed":
      return `client ${e.client} failed after ${e.seconds.toFixed(1)} s at ${e.chunksDone}/${e.chunksTotal} chunks: ${e.message}`;
    case "rate-changed":
      return `rate ${mbit(e.previousBitsPerSecond)} -> ${mbit(e.rateBitsPerSecond)} Mbit/s (median client loss ${(e.lossFraction * 100).toFixed(1)}% over ${e.reports} reports)`;
    case "idle":
      return idleExits ? "idle: no request for the --idle-exit time, stopping" : "idle: no request for the --idle-event time, serving on";
    case "client-progress":
    case "ended":
      return null;
  }
}

/** Checks every `load` option (and that the target could be written) before joining the group. */
function loadOptions(a: Args) {
  const g = groupOptions(a);
  const o = {
    ...g,
    workers: workersOption(a.workers, 1),
    requestWindowChunks: intOption("--window", a.window, 1, MAX_WINDOW_CHUNKS, "The default 4 suits a LAN"),
    giveUpMs: durationOption("--give-up", a["give-up"], MIN_GIVE_UP_MS, MAX_GIVE_UP_MS, "Allow the server at least a few seconds, e.g. 60s"),
    bufferBytes: bytesOption("--memory", a.memory, MIN_BUFFER_BYTES, MAX_BUFFER_BYTES, "The default 64M suits most clients"),
    imageId: a["image-id"] === undefined ? null : fromHex(hexOption("--image-id", a["image-id"], 32, "Copy the id from `discus info IMAGE`")),
    seed: a.seed === undefined ? crypto.getRandomValues(new Uint32Array(1))[0]! : seedOption(a.seed),
    publicKey: publicKeyOption(a.key),
    authKey: authKeyFileOption("--auth-key-file", a["auth-key-file"]),
    iface: localAddressOption("--iface", a.iface),
  };
  // Size is known only from the server; a missing directory, a mount or a holder is known now.
  checkTarget(str(a, "source"), 0);
  return o;
}

async function runLoad(a: Args): Promise<void> {
  const events = a.events === "json";
  if (events && a.json === true) usage("--json", "cannot be combined with --events json: stdout carries the events", "Drop --json; the `done` event carries the figures");
  const url = loadSourceUrl(a);
  if (url !== null) return runHttpLoad(a, url, events);
  if (a.group === undefined || a.iface === undefined) usage(a.group === undefined ? "--group" : "--iface", "is missing", "A multicast load needs --group and --iface; to load over HTTP, give the image's URL before the target");
  const o = loadOptions(a);
  const target = str(a, "source");
  const free = str(a, "free");
  const s = await loadImage({
    ...o,
    target,
    freeMode: free as FreeMode,
    keyPath: (a.key as string | undefined) ?? null,
    showProgress: a.quiet !== true && a.json !== true && events === false,
    // For a supervising parent (a node's agent wrapper, a dashboard's test node): one JSON line per event.
    onEvent: events ? (e) => void process.stdout.write(`${JSON.stringify(e)}\n`) : undefined,
  });
  const dupPercent = s.blocksReceived > 0 ? (100 * s.duplicateBlocks) / s.blocksReceived : 0;
  // With --events json, stdout carries only events: the summary goes to stderr.
  const say = events ? (_json: boolean, _value: unknown, text: string) => void process.stderr.write(`${text}\n`) : print;
  say(
    a.json === true,
    { target, ...s },
    `${target}: ${formatBytes(s.writtenBytes)} written from ${s.chunks} chunks of image ${s.imageId} (server ${s.server}) in ${s.seconds.toFixed(2)} s (${s.megabytesPerSecond.toFixed(1)} MB/s); ` +
      `free space ${formatBytes(s.freeBytes)} ${free === "skip" ? "skipped" : `(${formatBytes(s.zeroedBytes)} zeroed, ${formatBytes(s.discardedBytes)} discarded)`}; ` +
      `${s.requestsSent} requests (${s.rerequests} repeats), ${s.blocksReceived} blocks received (${dupPercent.toFixed(1)}% duplicates), ${s.chunksRejected} chunks rejected; signature ${s.signature}`,
  );
}

/** `load URL TARGET`: the URL, checked; null for a multicast load (`load TARGET`). */
function loadSourceUrl(a: Args): string | null {
  if (a.target === undefined) return null;
  const text = str(a, "source");
  let url: URL | null = null;
  try {
    url = text.length <= MAX_URL_CHARS ? new URL(text) : null;
  } catch {
    url = null;
  }
  if (url === null || (url.protocol !== "http:" && url.protocol !== "https:")) usage(text, "is not an http:// URL", "Give `load http://HOST/PATH/image.dsc TARGET`, or just `load TARGET --group ...` for multicast");
  for (const o of ["group", "iface", "auth-key-file", "seed"]) if (a[o] !== undefined) usage(`--${o}`, "belongs to a multicast load, not one from a URL", `Drop --${o}, or load from the group without the URL`);
  return text;
}

async function runHttpLoad(a: Args, url: string, events: boolean): Promise<void> {
  const target = str(a, "target");
  const free = str(a, "free");
  const o = {
    workers: workersOption(a.workers, 1),
    bufferBytes: bytesOption("--memory", a.memory, MIN_BUFFER_BYTES, MAX_BUFFER_BYTES, "The default 64M suits most clients"),
    imageId: a["image-id"] === undefined ? null : fromHex(hexOption("--image-id", a["image-id"], 32, "Copy the id from `discus info IMAGE`")),
    publicKey: publicKeyOption(a.key),
  };
  checkTarget(target, 0);
  const s = await httpLoadImage({
    ...o,
    url,
    target,
    freeMode: free as FreeMode,
    keyPath: (a.key as string | undefined) ?? null,
    showProgress: a.quiet !== true && a.json !== true && !events,
    onEvent: events ? (e) => void process.stdout.write(`${JSON.stringify(e)}\n`) : undefined,
  });
  const say = events ? (_json: boolean, _value: unknown, text: string) => void process.stderr.write(`${text}\n`) : print;
  say(
    a.json === true,
    { target, ...s },
    `${target}: ${formatBytes(s.writtenBytes)} written from ${s.chunks} chunks of image ${s.imageId} (${url}) in ${s.seconds.toFixed(2)} s (${s.megabytesPerSecond.toFixed(1)} MB/s); ` +
      `free space ${formatBytes(s.freeBytes)} ${free === "skip" ? "skipped" : `(${formatBytes(s.zeroedBytes)} zeroed, ${formatBytes(s.discardedBytes)} discarded)`}; ` +
      `${s.requestsSent} range requests (${s.rerequests} retried), ${s.chunksRejected} chunks rejected and fetched again; signature ${s.signature}`,
  );
}

function runInfo(a: Args): void {
  const path = inputImagePath(str(a, "image"));
  const image = openImage(path);
  try {
    const s = imageSummary(image, Bun.file(path).size);
    print(a.json === true, s, formatSummary(s));
  } finally {
    closeImage(image);
  }
}

async function runVerify(a: Args): Promise<void> {
  const workers = workersOption(a.workers, 1);
  const publicKey = publicKeyOption(a.key);
  const path = inputImagePath(str(a, "image"));
  const r = await verifyImage(path, publicKey, (a.key as string | undefined) ?? null, workers);
  const text = [
    `${path}: ${r.chunks} chunks checked in ${r.seconds.toFixed(2)} s, ${r.badChunks.length} bad; signature ${r.signature}`,
    // A problem of the whole image (e.g. its data-sector count) has no chunk index.
    ...r.badChunks.map((b) => `  ${b.index === null ? "image" : `chunk ${b.index}`}: ${b.why}`),
  ].join("\n");
  print(a.json === true, r, text);
  if (r.badChunks.length > 0) {
    throw new DiscusError("input", path, `${r.badChunks.length} chunk(s) are damaged`, "Copy the image again from its source");
  }
}

function runKeygen(a: Args): void {
  const name = str(a, "name");
  const keyPath = `${name}.key`;
  const pubPath = `${name}.pub`;
  for (const p of [keyPath, pubPath]) if (existsSync(p)) usage(p, "already exists", "Choose another name; discus never overwrites a key");
  const pair = generateKeyPair();
  for (const [path, pem, mode] of [[keyPath, pair.privatePem, 0o600], [pubPath, pair.publicPem, 0o644]] as const) {
    try {
      writeFileSync(path, pem, { mode });
    } catch (e) {
      throw ioError(e, path, "writing the key");
    }
  }
  const raw = rawPublicKey(loadPublicKey(pair.publicPem, pubPath));
  const fp = keyFingerprint(raw);
  print(a.json === true, { privateKey: keyPath, publicKey: pubPath, fingerprint: fp, kernelArg: `discus.key=${hex(raw)}` }, `wrote ${keyPath} (keep it secret) and ${pubPath}; fingerprint ${fp}\nfor netboot: discus.key=${hex(raw)}`);
}

function runKey(a: Args): void {
  const path = str(a, "public");
  const raw = rawPublicKey(loadPublicKey(readSmallFile("key", path, "Pass the .pub file written by `discus keygen`"), path));
  print(a.json === true, { fingerprint: keyFingerprint(raw), kernelArg: `discus.key=${hex(raw)}` }, `fingerprint ${keyFingerprint(raw)}\ndiscus.key=${hex(raw)}`);
}

async function main(argv: string[]): Promise<void> {
  const y = yargs(argv)
    .scriptName("discus")
    .version(VERSION)
    .strict()
    .demandCommand(1, "Name a command; `discus --help` lists them")
    .option("quiet", { type: "boolean", default: false, describe: "No progress output" })
    .option("json", { type: "boolean", default: false, describe: "Print results as JSON" })
    .command(
      "create <source> <image>",
      "Capture a disk, partition or disk-image file into a discus image",
      (y) =>
        y
          .positional("source", { type: "string", demandOption: true, describe: "Disk (/dev/sda), partition or image file" })
          .positional("image", { type: "string", demandOption: true, describe: "Image file to write" })
          .option("codec", { choices: ["zstd", "zlib"], default: "zstd", describe: "Chunk compression" })
          .option("level", { type: "string", describe: "Compression level (zstd 1-19, default 3; zlib 1-9, default 6)" })
          .option("chunk-size", { type: "string", default: `${DEFAULT_CHUNK_BYTES >> 20}M`, describe: "Chunk container size (64K..64M, a multiple of 4K)" })
          .option("raw", { type: "boolean", default: false, describe: "Capture every sector; do not interpret tables or filesystems" })
          .option("min-free", { type: "string", default: `${DEFAULT_MIN_FREE_BYTES / 1024}K`, describe: "Free runs shorter than this are kept as data (0..64M, whole sectors)" })
          .option("workers", { type: "string", default: String(defaultWorkers), describe: "Compression threads (0: main thread)" })
          .option("sign", { type: "string", describe: "Ed25519 private key (PEM) to sign the manifest" })
          .option("force", { type: "boolean", default: false, describe: "Overwrite an existing image file" }),
      (a) => runCreate(a),
    )
    .command(
      "restore <image> <target>",
      "Write an image to a disk, partition or file",
      (y) =>
        y
          .positional("image", { type: "string", demandOption: true })
          .positional("target", { type: "string", demandOption: true, describe: "Disk (/dev/sdb, /dev/nvme0n1) or file (created if missing)" })
          .option("free", { choices: ["skip", "zero", "discard"], default: "skip", describe: "What to do with free space" })
          .option("workers", { type: "string", default: String(defaultWorkers), describe: "Decompression threads (1..64)" })
          .option("order", { choices: ["sequential", "random"], default: "sequential", describe: "Chunk order (any order gives the same disk)" })
          .option("seed", { type: "string", default: "1", describe: "Seed for --order random" })
          .option("key", { type: "string", describe: "Ed25519 public key (PEM): refuse an image it did not sign" }),
      (a) => runRestore(a),
    )
    .command(
      "serve <image>",
      "Serve an image to any number of `discus load` clients over multicast",
      (y) =>
        y
          .positional("image", { type: "string", demandOption: true })
          .option("group", { type: "string", describe: "Multicast group of this image, e.g. 239.192.0.1 (may be left out with --http)" })
          .option("http", { type: "string", describe: "Also serve the image over HTTP with Range on this TCP port, at http://IFACE:PORT/NAME.dsc (`discus load URL TARGET`)" })
          .option("port", { type: "string", default: String(DEFAULT_PORT) })
          .option("iface", { type: "string", demandOption: true, describe: "IPv4 address of this machine's interface to serve on" })
          .option("rate", { type: "string", describe: "Send rate ceiling (wire bits per second): the rate starts at the lower of it and the link speed and adapts below it (default: the link speed; 100mbit when the link does not say)" })
          .option("fixed-rate", { type: "boolean", default: false, describe: "Always send at --rate; do not adapt to the loss clients report" })
          .option("mtu", { type: "string", describe: "Link MTU: sets the block size (default: the interface's MTU, up to 9000 for jumbo frames)" })
          .option("ttl", { type: "string", default: "1", describe: "Multicast TTL (1: this LAN only)" })
          .option("idle-exit", { type: "string", default: "0", describe: "Exit after this long with no client (0: never), e.g. 10m" })
          .option("auth-key-file", { type: "string", describe: "File (mode 0600) holding the session key, 64 hex digits: answer only clients that have it" })
          .option("events", { choices: ["json"], describe: `For a supervising parent: every event as one JSON line on stdout, and a {"kind":"snapshot"} line every ${SNAPSHOT_INTERVAL_MS / 1000} s (stdout carries nothing else; the log stays on stderr)` })
          .option("exit-with-stdin", { type: "boolean", default: false, describe: "For a supervising parent: stop cleanly when stdin reaches EOF, so the server never outlives its parent (SIGINT is then left to the parent; SIGTERM still stops it)" })
          .option("idle-event", { type: "string", describe: "For a supervising parent: tell an idle event after this long with no client, but keep serving (not with --idle-exit)" }),
      (a) => runServe(a),
    )
    .command(
      "load <source> [target]",
      "Write a served image to a disk or file: join its multicast group (`load TARGET --group ...`), or fetch it over HTTP (`load http://HOST/PATH/image.dsc TARGET`)",
      (y) =>
        y
          .positional("source", { type: "string", demandOption: true, describe: "The target (multicast), or the image's http:// URL followed by the target" })
          .positional("target", { type: "string", describe: "Disk (/dev/sdb, /dev/nvme0n1) or file (created if missing)" })
          .option("group", { type: "string", describe: "Multicast group of the image (not with a URL)" })
          .option("port", { type: "string", default: String(DEFAULT_PORT) })
          .option("iface", { type: "string", describe: "IPv4 address of this machine's interface on the imaging network (not with a URL)" })
          .option("ttl", { type: "string", default: "1" })
          .option("free", { choices: ["skip", "zero", "discard"], default: "skip", describe: "What to do with free space" })
          .option("workers", { type: "string", default: String(defaultWorkers), describe: "Decompression threads (1..64)" })
          .option("key", { type: "string", describe: "Ed25519 public key (PEM): refuse an image it did not sign" })
          .option("image-id", { type: "string", describe: "Accept only this image (32 hex digits, from `discus info`)" })
          .option("give-up", { type: "string", default: "60s", describe: "Fail when the server is silent this long" })
          .option("memory", { type: "string", default: "64M", describe: "Chunk buffer budget (the client stays within about 4x this)" })
          .option("window", { type: "string", default: "4", describe: "Chunks this client asks for at once" })
          .option("seed", { type: "string", describe: "Seed of this client's random chunk order (default: random)" })
          .option("auth-key-file", { type: "string", describe: "File (mode 0600) holding the session key of a server started with --auth-key-file" })
          .option("events", { choices: ["json"], describe: "For a supervising parent: every event (progress, done...) as one JSON line on stdout" }),
      (a) => runLoad(a),
    )
    .command(
      "info <image>",
      "Describe an image: chunks, partitions, filesystems, ratios, signature",
      (y) => y.positional("image", { type: "string", demandOption: true }),
      (a) => runInfo(a),
    )
    .command(
      "verify <image>",
      "Check every chunk against the manifest, and the signature with --key",
      (y) =>
        y
          .positional("image", { type: "string", demandOption: true })
          .option("key", { type: "string", describe: "Ed25519 public key (PEM) the image must be signed with" })
          .option("workers", { type: "string", default: String(defaultWorkers), describe: "Checking threads (1..64)" }),
      (a) => runVerify(a),
    )
    .command(
      "keygen <name>",
      "Make an Ed25519 key pair: NAME.key (private) and NAME.pub (public)",
      (y) => y.positional("name", { type: "string", demandOption: true }),
      (a) => runKeygen(a),
    )
    .command(
      "key <public>",
      "Print a public key's fingerprint and its kernel command-line form (discus.key=...)",
      (y) => y.positional("public", { type: "string", demandOption: true }),
      (a) => runKey(a),
    )
    .command(
      "agent",
      "Netboot agent (run by the initramfs /init): reload this machine's disk or boot it, per the kernel command line and DHCP",
      (y) =>
        y
          .option("cmdline", { type: "string", default: DEFAULT_PATHS.cmdline, describe: "Kernel command line to read" })
          .option("net-env", { type: "string", default: DEFAULT_PATHS.netEnv, describe: "DHCP lease file written by /init" })
          .option("sys-block", { type: "string", default: DEFAULT_PATHS.sysBlock })
          .option("next-file", { type: "string", default: DEFAULT_PATHS.nextFile, describe: "Where to write the next step for /init" })
          .option("run-dir", { type: "string", default: DEFAULT_PATHS.runDir }),
      async (a) => {
        const { ok } = await runAgent({ cmdline: a.cmdline, netEnv: a["net-env"], sysBlock: a["sys-block"], nextFile: a["next-file"], runDir: a["run-dir"] });
        // The exit code tells /init (and scripts) whether the disk was written or left alone.
        process.exitCode = ok ? 0 : 1;
      },
    );
  await serverCommand(fleetCommands(y as never, print))
    .fail((msg, err) => {
      if (err) throw err;
      throw new DiscusError("usage", "command line", msg, "See `discus --help`");
    })
    .parseAsync();
}

/** The last net: an operating-system error that no layer named still gets exit 6, not a stack. */
function asDiscusError(e: unknown): DiscusError | null {
  if (e instanceof DiscusError) return e;
  if (osErrorCode(e) === null) return null;
  const path = (e as NodeJS.ErrnoException).path;
  const wrapped = ioError(e, path ?? "discus", (e as NodeJS.ErrnoException).syscall ?? "a system call");
  return wrapped instanceof DiscusError ? wrapped : null;
}

try {
  await main(hideBin(process.argv));
} catch (e) {
  const known = asDiscusError(e);
  if (known !== null) {
    process.stderr.write(`discus: ${known.message}\n`);
    process.exit(exitCodeByKind[known.kind]);
  }
  process.stderr.write(`discus: internal error: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
}
