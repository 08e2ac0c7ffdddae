// Where a client's time goes per byte (issue 13, "Client cost per byte"): every chunk of an image
// run through the load path's stages one at a time, on one thread, each timed on its own: the
// container's SHA-256, the header's decode and checks, decompression, the raw data's SHA-256,
// and the positional write to a target on tmpfs. Chunks are read into memory first (the network
// hands the client bytes, not a file), so reading is not counted. Seconds per GB of the image's
// raw data and each stage's share. Decides whether the raw-data digest earns its cost on the load
// path.
// Usage: bun scripts/profile-load.ts [IMAGE.dsc] (default: the paper image, captured with zstd
//   into .cache/bench/ if missing) [--runs 3]
import { $ } from "bun";
import { closeSync, existsSync, openSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cpus, loadavg } from "node:os";
import { closeImage, openImage, readChunk } from "../src/image/reader.ts";
import { chunkPayload, decodeChunkHeader } from "../src/image/chunk.ts";
import { checkChunkAgainstManifest } from "../src/image/tiling.ts";
import { decompressPayload } from "../src/image/codec.ts";
import { chunkDigest, rawDigest } from "../src/image/manifest.ts";
import { equalBytes, sha256 } from "../src/util/bytes.ts";
import { writeFully } from "../src/util/io.ts";
import { benchDir, paperFixture } from "./lib/paper.ts";
import { cli } from "../test/helpers.ts";

const TARGET = "/dev/shm/discus-profile-load.img";
const GB = 1e9;
const STAGES = ["container sha256", "header decode + checks", "decompress", "raw sha256", "write (tmpfs)"] as const;
type Stage = (typeof STAGES)[number];

const args = process.argv.slice(2);
const runsAt = args.indexOf("--runs");
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
let imagePath = args.find((a, i) => a.endsWith(".dsc") && args[i - 1] !== "--runs") ?? null;
if (imagePath === null) {
  imagePath = join(benchDir, "paper-zstd.dsc");
  if (!existsSync(imagePath)) await $`bun ${cli} create ${await paperFixture()} ${imagePath} --codec zstd --quiet`;
}

const image = openImage(imagePath);
const m = image.manifest;
const containers = Array.from({ length: m.dataChunkCount }, (_, i) => readChunk(image, i).slice());
const sourceBytes = m.sourceBytes;
closeImage(image);

function once(): Record<Stage, number> {
  const ms: Record<Stage, number> = Object.fromEntries(STAGES.map((s) => [s, 0])) as Record<Stage, number>;
  const fd = openSync(TARGET, "w");
  let rawBytes = 0;
  try {
    for (const [i, container] of containers.entries()) {
      let t = performance.now();
      const okContainer = equalBytes(sha256(container), chunkDigest(m, i));
      ms["container sha256"] += performance.now() - (t = t);
      t = performance.now();
      const header = decodeChunkHeader(container, m.chunkBytes);
      checkChunkAgainstManifest(header, i, m);
      ms["header decode + checks"] += performance.now() - t;
      t = performance.now();
      const raw = decompressPayload(header.codec, chunkPayload(container, header), header.rawBytes);
      ms.decompress += performance.now() - t;
      t = performance.now();
      const okRaw = equalBytes(sha256(raw), rawDigest(m, i));
      ms["raw sha256"] += performance.now() - t;
      if (!okContainer || !okRaw) throw new Error(`chunk ${i} fails its digests: the image is damaged`);
      t = performance.now();
      let offset = 0;
      for (const r of header.regions) {
        const bytes = r.length * header.sectorBytes;
        writeFully(fd, raw.subarray(offset, offset + bytes), r.start * header.sectorBytes);
        offset += bytes;
      }
      ms["write (tmpfs)"] += performance.now() - t;
      rawBytes += raw.length;
    }
  } finally {
    closeSync(fd);
    rmSync(TARGET, { force: true });
  }
  if (rawBytes === 0) throw new Error("the image holds no data");
  lastRawBytes = rawBytes;
  return ms;
}
let lastRawBytes = 0;

console.log(`image ${imagePath}: ${containers.length} chunks, ${(sourceBytes / GB).toFixed(2)} GB disk; ${cpus()[0]?.model}; load ${loadavg()[0]!.toFixed(2)}`);
const all = Array.from({ length: runs }, once);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const perStage = STAGES.map((s) => ({ stage: s, ms: median(all.map((r) => r[s])) }));
const totalMs = perStage.reduce((n, s) => n + s.ms, 0);
const rawGb = lastRawBytes / GB;
console.log(`raw data ${rawGb.toFixed(3)} GB, compressed ${(containers.reduce((n, c) => n + c.length, 0) / GB).toFixed(3)} GB; median of ${runs} runs, one thread\n`);
console.log("| stage | s/GB of raw data | share |\n|---|---:|---:|");
for (const s of perStage) console.log(`| ${s.stage} | ${(s.ms / 1000 / rawGb).toFixed(3)} | ${((100 * s.ms) / totalMs).toFixed(1)} % |`);
console.log(`| **all** | **${(totalMs / 1000 / rawGb).toFixed(3)}** | 100 % |`);
