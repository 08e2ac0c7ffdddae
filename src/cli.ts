#!/usr/bin/env bun
// The discus command line: one entry point for every command.
import { availableParallelism } from "node:os";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { createImage } from "./capture/create.ts";
import { DEFAULT_MIN_FREE_BYTES } from "./capture/layout.ts";
import { DEFAULT_LEVEL, levelBounds } from "./image/codec.ts";
import { DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, parseCodec } from "./image/constants.ts";
import { closeImage, openImage } from "./image/reader.ts";
import { generateKeyPair, loadPrivateKey, loadPublicKey, keyFingerprint, rawPublicKey } from "./image/signing.ts";
import { verifyImage } from "./image/verify.ts";
import { restoreImage, type ChunkOrder } from "./restore/restore.ts";
import type { FreeMode } from "./restore/apply.ts";
import { DiscusError, exitCodeByKind } from "./util/errors.ts";
import { formatBytes, parseBytes, parseDurationMs, parseRate } from "./util/units.ts";
import { serveImage } from "./server/serve.ts";
import { loadImage } from "./client/load.ts";
import { isIpv4Address, isMulticastAddress } from "./net/socket.ts";
import { MAX_MTU_BYTES, MIN_MTU_BYTES } from "./net/wire.ts";
import { fromHex, hex } from "./util/bytes.ts";
import { DEFAULT_PATHS, runAgent } from "./agent/agent.ts";
import { DEFAULT_PORT } from "./agent/settings.ts";


/** Runs a parser from units.ts, turning its complaint into a usage error naming the option. */
function parsed<T>(option: string, parse: (text: string) => T, text: string): T {
  try {
    return parse(text);
  } catch (e) {
    usage(option, (e as Error).message, "See `discus --help`");
  }
}

function checkGroupOptions(a: { group: string; iface: string; port: number; ttl: number }): void {
  if (!isMulticastAddress(a.group)) usage("--group", `${a.group} is not an IPv4 multicast address`, "Use one in 239.0.0.0/8 (site-local), one group per image");
  if (!isIpv4Address(a.iface)) usage("--iface", `${a.iface} is not an IPv4 address`, "Give the address of the interface on the imaging network, e.g. 10.0.0.1");
  if (!Number.isInteger(a.port) || a.port < 1 || a.port > 65535) usage("--port", `${a.port} is not a UDP port`, "Pick a port in 1..65535");
  if (!Number.isInteger(a.ttl) || a.ttl < 1 || a.ttl > 255) usage("--ttl", `${a.ttl} is outside 1..255`, "Use 1 for one LAN");
}
import { formatSummary, imageSummary } from "./cli/info.ts";
import { VERSION } from "./version.ts";

const defaultWorkers = Math.max(1, Math.min(availableParallelism(), 16));

function usage(thing: string, why: string, action: string): never {
  throw new DiscusError("usage", thing, why, action);
}

function readKeyFile(path: string): string {
  if (!existsSync(path)) usage(path, "no such key file", "Make a key pair with `discus keygen NAME`");
  return readFileSync(path, "utf8");
}

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

async function main(argv: string[]): Promise<void> {
  await yargs(argv)
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
          .option("level", { type: "number", describe: "Compression level (zstd 1-19, default 3; zlib 1-9, default 6)" })
          .option("chunk-size", { type: "string", default: `${DEFAULT_CHUNK_BYTES >> 20}M`, describe: "Chunk container size" })
          .option("raw", { type: "boolean", default: false, describe: "Capture every sector; do not interpret tables or filesystems" })
          .option("min-free", { type: "string", default: `${DEFAULT_MIN_FREE_BYTES / 1024}K`, describe: "Free runs shorter than this are kept as data" })
          .option("workers", { type: "number", default: defaultWorkers, describe: "Compression threads (0: main thread)" })
          .option("sign", { type: "string", describe: "Ed25519 private key (PEM) to sign the manifest" })
          .option("force", { type: "boolean", default: false, describe: "Overwrite an existing image file" }),
      async (a) => {
        const codec = parseCodec(a.codec);
        const level = a.level ?? DEFAULT_LEVEL[codec];
        const [lo, hi] = levelBounds(codec);
        if (!Number.isInteger(level) || level < lo || level > hi) usage("--level", `${level} is outside ${lo}..${hi} for ${a.codec}`, `Pick a level in ${lo}..${hi}`);
        const chunkBytes = parseBytes(a["chunk-size"]);
        if (chunkBytes < MIN_CHUNK_BYTES || chunkBytes > MAX_CHUNK_BYTES || chunkBytes % 4096 !== 0) {
          usage("--chunk-size", `${a["chunk-size"]} is outside ${formatBytes(MIN_CHUNK_BYTES)}..${formatBytes(MAX_CHUNK_BYTES)} or not a multiple of 4 KiB`, "Use the default 1M unless you know why");
        }
        if (!Number.isInteger(a.workers) || a.workers < 0 || a.workers > 64) usage("--workers", `${a.workers} is outside 0..64`, "Pick a thread count in 0..64");
        if (existsSync(a.image) && !a.force) usage(a.image, "already exists", "Pass --force to overwrite it, or name a new file");
        const signingKey = a.sign ? loadPrivateKey(readKeyFile(a.sign), a.sign) : null;
        const r = await createImage({
          source: a.source,
          image: a.image,
          codec,
          level,
          chunkBytes,
          raw: a.raw,
          minFreeBytes: parseBytes(a["min-free"]),
          workers: a.workers,
          signingKey,
          showProgress: !a.quiet && !a.json,
        });
        const dataBytes = r.manifest.dataSectors * r.manifest.sectorBytes;
        const result = {
          image: a.image,
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
          a.json,
          result,
          `${a.image}: ${result.chunks} chunks, ${formatBytes(dataBytes)} of ${formatBytes(result.sourceBytes)} captured into ${formatBytes(result.imageBytes)} in ${r.seconds.toFixed(2)} s (${result.megabytesPerSecond.toFixed(0)} MB/s)`,
        );
      },
    )
    .command(
      "restore <image> <target>",
      "Write an image to a disk, partition or file",
      (y) =>
        y
          .positional("image", { type: "string", demandOption: true })
          .positional("target", { type: "string", demandOption: true, describe: "Disk (/dev/sdb, /dev/nvme0n1) or file (created if missing)" })
          .option("free", { choices: ["skip", "zero", "discard"], default: "skip", describe: "What to do with free space" })
          .option("workers", { type: "number", default: defaultWorkers, describe: "Decompression threads" })
          .option("order", { choices: ["sequential", "random"], default: "sequential", describe: "Chunk order (any order gives the same disk)" })
          .option("seed", { type: "number", default: 1, describe: "Seed for --order random" })
          .option("key", { type: "string", describe: "Ed25519 public key (PEM): refuse an image it did not sign" }),
      async (a) => {
        if (!Number.isInteger(a.workers) || a.workers < 1 || a.workers > 64) usage("--workers", `${a.workers} is outside 1..64`, "Pick a thread count in 1..64");
        const publicKey = a.key ? loadPublicKey(readKeyFile(a.key), a.key) : null;
        const s = await restoreImage({
          image: a.image,
          target: a.target,
          freeMode: a.free as FreeMode,
          workers: a.workers,
          order: a.order as ChunkOrder,
          seed: a.seed,
          publicKey,
          keyPath: a.key ?? null,
          showProgress: !a.quiet && !a.json,
        });
        print(
          a.json,
          { image: a.image, target: a.target, ...s, megabytesPerSecond: s.writtenBytes / 1e6 / s.seconds },
          `${a.target}: ${formatBytes(s.writtenBytes)} written from ${s.chunks} chunks in ${s.seconds.toFixed(2)} s (${(s.writtenBytes / 1e6 / s.seconds).toFixed(0)} MB/s); free space ${formatBytes(s.freeBytes)} ${a.free === "skip" ? "skipped" : `${formatBytes(s.zeroedBytes)} zeroed, ${formatBytes(s.discardedBytes)} discarded`}${s.gptMoved ? "; backup GPT moved to the end of the larger target" : ""}; signature ${s.signature}`,
        );
      },
    )
    .command(
      "serve <image>",
      "Serve an image to any number of `discus load` clients over multicast",
      (y) =>
        y
          .positional("image", { type: "string", demandOption: true })
          .option("group", { type: "string", demandOption: true, describe: "Multicast group of this image, e.g. 239.192.0.1" })
          .option("port", { type: "number", default: DEFAULT_PORT })
          .option("iface", { type: "string", demandOption: true, describe: "IPv4 address of the interface to serve on" })
          .option("rate", { type: "string", default: "100mbit", describe: "Send rate ceiling (wire bits per second): the rate starts here and adapts below it" })
          .option("fixed-rate", { type: "boolean", default: false, describe: "Always send at --rate; do not adapt to the loss clients report" })
          .option("mtu", { type: "number", default: 1500, describe: "Link MTU: sets the block size (9000 for jumbo frames)" })
          .option("ttl", { type: "number", default: 1, describe: "Multicast TTL (1: this LAN only)" })
          .option("idle-exit", { type: "string", default: "0", describe: "Exit after this long with no client (0: never), e.g. 10m" }),
      async (a) => {
        checkGroupOptions(a);
        const rateBitsPerSecond = parsed("--rate", parseRate, a.rate);
        if (rateBitsPerSecond < 1e6 || rateBitsPerSecond > 100e9) usage("--rate", `${a.rate} is outside 1mbit..100gbit`, "Give the link speed, e.g. 100mbit or 1gbit");
        if (!Number.isInteger(a.mtu) || a.mtu < MIN_MTU_BYTES || a.mtu > MAX_MTU_BYTES) usage("--mtu", `${a.mtu} is outside ${MIN_MTU_BYTES}..${MAX_MTU_BYTES}`, "Use the link's MTU, 1500 unless jumbo frames are on");
        const idleMs = parsed("--idle-exit", parseDurationMs, a["idle-exit"]);
        const abort = new AbortController();
        for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => abort.abort());
        const stats = await serveImage({
          image: a.image,
          group: a.group,
          port: a.port,
          iface: a.iface,
          ttl: a.ttl,
          rateBitsPerSecond,
          adaptiveRate: !a["fixed-rate"],
          mtuBytes: a.mtu,
          idleExitMs: idleMs > 0 ? idleMs : null,
          log: (line) => process.stderr.write(`discus serve: ${line}\n`),
          signal: abort.signal,
        });
        if (a.json) print(true, stats, "");
      },
    )
    .command(
      "load <target>",
      "Join a served image's multicast group and write the image to a disk or file",
      (y) =>
        y
          .positional("target", { type: "string", demandOption: true, describe: "Disk (/dev/sdb, /dev/nvme0n1) or file (created if missing)" })
          .option("group", { type: "string", demandOption: true })
          .option("port", { type: "number", default: DEFAULT_PORT })
          .option("iface", { type: "string", demandOption: true, describe: "IPv4 address of the interface on the imaging network" })
          .option("ttl", { type: "number", default: 1 })
          .option("free", { choices: ["skip", "zero", "discard"], default: "skip", describe: "What to do with free space" })
          .option("workers", { type: "number", default: defaultWorkers, describe: "Decompression threads" })
          .option("key", { type: "string", describe: "Ed25519 public key (PEM): refuse an image it did not sign" })
          .option("image-id", { type: "string", describe: "Accept only this image (32 hex digits, from `discus info`)" })
          .option("give-up", { type: "string", default: "60s", describe: "Fail when the server is silent this long" })
          .option("memory", { type: "string", default: "64M", describe: "Chunk buffer budget (the client stays within about 4x this)" })
          .option("window", { type: "number", default: 4, describe: "Chunks this client asks for at once" })
          .option("seed", { type: "number", describe: "Seed of this client's random chunk order (default: random)" }),
      async (a) => {
        checkGroupOptions(a);
        if (!Number.isInteger(a.workers) || a.workers < 1 || a.workers > 64) usage("--workers", `${a.workers} is outside 1..64`, "Pick a thread count in 1..64");
        if (!Number.isInteger(a.window) || a.window < 1 || a.window > 64) usage("--window", `${a.window} is outside 1..64`, "The default 4 suits a LAN");
        const giveUpMs = parsed("--give-up", parseDurationMs, a["give-up"]);
        if (giveUpMs < 1000) usage("--give-up", `${a["give-up"]} is under a second`, "Allow the server at least a few seconds, e.g. 60s");
        const bufferBytes = parsed("--memory", parseBytes, a.memory);
        if (bufferBytes < 8 << 20 || bufferBytes > 4 * 2 ** 30) usage("--memory", `${a.memory} is outside 8M..4G`, "The default 64M suits most clients");
        if (a["image-id"] !== undefined && !/^[0-9a-f]{32}$/i.test(a["image-id"])) usage("--image-id", `${a["image-id"]} is not 32 hex digits`, "Copy the id from `discus info IMAGE`");
        const publicKey = a.key ? loadPublicKey(readKeyFile(a.key), a.key) : null;
        const s = await loadImage({
          group: a.group,
          port: a.port,
          iface: a.iface,
          ttl: a.ttl,
          target: a.target,
          freeMode: a.free as FreeMode,
          workers: a.workers,
          publicKey,
          keyPath: a.key ?? null,
          imageId: a["image-id"] ? fromHex(a["image-id"]) : null,
          giveUpMs,
          bufferBytes,
          requestWindowChunks: a.window,
          seed: a.seed ?? crypto.getRandomValues(new Uint32Array(1))[0]!,
          showProgress: !a.quiet && !a.json,
        });
        const dupPercent = s.blocksReceived > 0 ? (100 * s.duplicateBlocks) / s.blocksReceived : 0;
        print(
          a.json,
          { target: a.target, ...s },
          `${a.target}: ${formatBytes(s.writtenBytes)} written from ${s.chunks} chunks of image ${s.imageId} (server ${s.server}) in ${s.seconds.toFixed(2)} s (${s.megabytesPerSecond.toFixed(1)} MB/s); ` +
            `free space ${formatBytes(s.freeBytes)} ${a.free === "skip" ? "skipped" : `(${formatBytes(s.zeroedBytes)} zeroed, ${formatBytes(s.discardedBytes)} discarded)`}; ` +
            `${s.requestsSent} requests (${s.rerequests} repeats), ${s.blocksReceived} blocks received (${dupPercent.toFixed(1)}% duplicates), ${s.chunksRejected} chunks rejected; signature ${s.signature}`,
        );
      },
    )
    .command(
      "info <image>",
      "Describe an image: chunks, partitions, filesystems, ratios, signature",
      (y) => y.positional("image", { type: "string", demandOption: true }),
      (a) => {
        const image = openImage(a.image);
        try {
          const s = imageSummary(image, Bun.file(a.image).size);
          print(a.json, s, formatSummary(s));
        } finally {
          closeImage(image);
        }
      },
    )
    .command(
      "verify <image>",
      "Check every chunk against the manifest, and the signature with --key",
      (y) =>
        y
          .positional("image", { type: "string", demandOption: true })
          .option("key", { type: "string", describe: "Ed25519 public key (PEM) the image must be signed with" })
          .option("workers", { type: "number", default: defaultWorkers }),
      async (a) => {
        const publicKey = a.key ? loadPublicKey(readKeyFile(a.key), a.key) : null;
        const r = await verifyImage(a.image, publicKey, a.key ?? null, a.workers);
        const text = [
          `${a.image}: ${r.chunks} chunks checked in ${r.seconds.toFixed(2)} s, ${r.badChunks.length} bad; signature ${r.signature}`,
          ...r.badChunks.map((b) => `  chunk ${b.index}: ${b.why}`),
        ].join("\n");
        print(a.json, r, text);
        if (r.badChunks.length > 0) {
          throw new DiscusError("input", a.image, `${r.badChunks.length} chunk(s) are damaged`, "Copy the image again from its source");
        }
      },
    )
    .command(
      "keygen <name>",
      "Make an Ed25519 key pair: NAME.key (private) and NAME.pub (public)",
      (y) => y.positional("name", { type: "string", demandOption: true }),
      (a) => {
        const keyPath = `${a.name}.key`;
        const pubPath = `${a.name}.pub`;
        for (const p of [keyPath, pubPath]) if (existsSync(p)) usage(p, "already exists", "Choose another name; discus never overwrites a key");
        const pair = generateKeyPair();
        writeFileSync(keyPath, pair.privatePem, { mode: 0o600 });
        writeFileSync(pubPath, pair.publicPem, { mode: 0o644 });
        const raw = rawPublicKey(loadPublicKey(pair.publicPem, pubPath));
        const fp = keyFingerprint(raw);
        print(a.json, { privateKey: keyPath, publicKey: pubPath, fingerprint: fp, kernelArg: `discus.key=${hex(raw)}` }, `wrote ${keyPath} (keep it secret) and ${pubPath}; fingerprint ${fp}\nfor netboot: discus.key=${hex(raw)}`);
      },
    )
    .command(
      "key <public>",
      "Print a public key's fingerprint and its kernel command-line form (discus.key=...)",
      (y) => y.positional("public", { type: "string", demandOption: true }),
      (a) => {
        const raw = rawPublicKey(loadPublicKey(readKeyFile(a.public), a.public));
        print(a.json, { fingerprint: keyFingerprint(raw), kernelArg: `discus.key=${hex(raw)}` }, `fingerprint ${keyFingerprint(raw)}\ndiscus.key=${hex(raw)}`);
      },
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
    )
    .fail((msg, err) => {
      if (err) throw err;
      throw new DiscusError("usage", "discus", msg, "See `discus --help`");
    })
    .parseAsync();
}

try {
  await main(hideBin(process.argv));
} catch (e) {
  if (e instanceof DiscusError) {
    process.stderr.write(`discus: ${e.message}\n`);
    process.exit(exitCodeByKind[e.kind]);
  }
  process.stderr.write(`discus: internal error: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
}
