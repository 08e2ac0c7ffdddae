// zstd chunks are one frame each, compressed as a stream: checked with zstd(1) itself, against the
// container size, across worker counts, and against images in the earlier layout (several frames
// per chunk), which must still restore.
import { beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { closeSync, lstatSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chunkHeaderBytes, chunkPayload, decodeChunkHeader } from "../../src/image/chunk.ts";
import { compressPiece } from "../../src/image/codec.ts";
import { Codec, DEFAULT_CHUNK_BYTES, SECTOR_BYTES } from "../../src/image/constants.ts";
import { closeImage, openImage, readChunk } from "../../src/image/reader.ts";
import { ImageWriter } from "../../src/image/writer.ts";
import { planCapture } from "../../src/capture/layout.ts";
import { CaptureStream } from "../../src/capture/stream.ts";
import { defaultPackParams, packStream } from "../../src/capture/pack.ts";
import { discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";

const MIB = 1 << 20;
const env = { SOURCE_DATE_EPOCH: "1700000000" };

/** Real text and program files, zeros and random bytes in turn: ratios that change inside chunks. */
function buildSource(path: string): void {
  const real = realFiles(["/usr/share/perl5", "/usr/share/doc", "/usr/bin"], 16 * MIB);
  const out = new Uint8Array(24 * MIB);
  let realAt = 0;
  for (let i = 0, pos = 0; pos < out.length; i++) {
    const kind = i % 3;
    const len = Math.min(out.length - pos, kind === 0 ? 4 * MIB : kind === 1 ? MIB / 2 : MIB / 4 + 12345 * 512);
    if (kind === 0) {
      out.set(real.subarray(realAt, realAt + len), pos);
      realAt += len;
    }
    if (kind === 2) for (let o = 0; o < len; o += 65536) crypto.getRandomValues(out.subarray(pos + o, pos + Math.min(len, o + 65536)));
    pos += len;
  }
  writeFileSync(path, out);
}

/** The first `bytes` of the regular files under `roots`, in name order, concatenated. */
function realFiles(roots: readonly string[], bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let off = 0;
  const visit = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      if (off >= bytes) return;
      const f = join(dir, name);
      let st;
      try {
        st = lstatSync(f);
      } catch {
        continue;
      }
      if (st.isDirectory()) visit(f);
      else if (st.isFile()) {
        const data = readFileSync(f).subarray(0, bytes - off);
        out.set(data, off);
        off += data.length;
      }
    }
  };
  for (const r of roots) visit(r);
  expect(off).toBe(bytes);
  return out;
}

/** Number of zstd frames in a file, as zstd(1) counts them. */
async function frameCount(path: string): Promise<number> {
  const text = await $`zstd -lv ${path}`.quiet().text();
  return Number(/# Zstandard Frames: (\d+)/.exec(text)![1]);
}

describe("zstd chunks: one frame per chunk", () => {
  let dir: string;
  let source: string;
  let image: string;
  beforeAll(async () => {
    dir = await tmpDir();
    source = join(dir, "source.img");
    buildSource(source);
    image = join(dir, "a.dsc");
    await discusOk(["create", "--quiet", "--raw", source, image], env);
  }, FIXTURE_TIMEOUT_MS);

  test("every chunk is a single zstd frame that zstd(1) decodes alone to the chunk's data", async () => {
    const img = openImage(image);
    try {
      const m = img.manifest;
      expect(m.dataChunkCount).toBeGreaterThan(4);
      for (let i = 0; i < m.dataChunkCount; i++) {
        const container = readChunk(img, i);
        const h = decodeChunkHeader(container, m.chunkBytes);
        const file = join(dir, `chunk-${i}.zst`);
        writeFileSync(file, chunkPayload(container, h));
        expect({ chunk: i, frames: await frameCount(file) }).toEqual({ chunk: i, frames: 1 });
        const digest = (await $`zstd -dc ${file} | sha256sum`.text()).split(" ")[0];
        expect({ chunk: i, digest }).toEqual({ chunk: i, digest: Buffer.from(m.digests.subarray(i * 64 + 32, i * 64 + 64)).toString("hex") });
      }
    } finally {
      closeImage(img);
    }
  });

  test("every chunk but the last is filled to within 1 % of its container", () => {
    const img = openImage(image);
    try {
      const m = img.manifest;
      for (let i = 0; i < m.dataChunkCount - 1; i++) {
        const h = decodeChunkHeader(readChunk(img, i), m.chunkBytes);
        const used = chunkHeaderBytes(h.regions.length) + h.payloadBytes;
        expect({ chunk: i, full: used >= 0.99 * m.chunkBytes }).toEqual({ chunk: i, full: true });
      }
    } finally {
      closeImage(img);
    }
  });

  test("the payloads are within 2 % of one continuous zstd -3 stream of the same data", async () => {
    const img = openImage(image);
    let payloadBytes = 0;
    try {
      for (let i = 0; i < img.manifest.dataChunkCount; i++) payloadBytes += decodeChunkHeader(readChunk(img, i), img.manifest.chunkBytes).payloadBytes;
    } finally {
      closeImage(img);
    }
    const continuous = Number((await $`zstd -3 -q -c ${source} | wc -c`.text()).trim());
    expect(payloadBytes / continuous).toBeLessThan(1.02);
  });

  test("the image is byte-identical whatever the number of workers, and restores the source", async () => {
    const digests: string[] = [await sha256File(image)];
    for (const workers of ["0", "2"]) {
      const other = join(dir, `w${workers}.dsc`);
      await discusOk(["create", "--quiet", "--raw", "--workers", workers, source, other], env);
      digests.push(await sha256File(other));
    }
    expect(new Set(digests).size).toBe(1);
    const restored = join(dir, "restored.img");
    await discusOk(["restore", "--quiet", image, restored]);
    expect(await sha256File(restored)).toBe(await sha256File(source));
  });

  test("an image in the earlier layout (independent frames per piece) still restores", async () => {
    const old = join(dir, "old.dsc");
    await writeEarlierLayout(source, old);
    const img = openImage(old);
    const first = readChunk(img, 0);
    writeFileSync(join(dir, "old-0.zst"), chunkPayload(first, decodeChunkHeader(first, img.manifest.chunkBytes)));
    closeImage(img);
    expect(await frameCount(join(dir, "old-0.zst"))).toBeGreaterThan(1);
    const restored = join(dir, "old-restored.img");
    await discusOk(["restore", "--quiet", old, restored]);
    expect(await sha256File(restored)).toBe(await sha256File(source));
  });
});

/** Writes `source` raw the way discus did before chunks were one stream: a frame per grid piece. */
async function writeEarlierLayout(source: string, path: string): Promise<void> {
  const fd = openSync(source, "r");
  try {
    const sourceBytes = statSync(source).size;
    const plan = planCapture(fd, sourceBytes, { raw: true, minFreeBytes: 0, sectorBytes: SECTOR_BYTES });
    const stream = new CaptureStream(fd, plan.regions, SECTOR_BYTES);
    const writer = new ImageWriter({ path, chunkBytes: DEFAULT_CHUNK_BYTES, codec: Codec.zstd, level: 3, sourceBytes });
    const params = defaultPackParams(Codec.zstd, DEFAULT_CHUNK_BYTES, SECTOR_BYTES);
    await packStream(stream, sourceBytes / SECTOR_BYTES, params, async (data) => compressPiece(Codec.zstd, 3, data, null), async (c) => writer.writeChunk(c));
    const created = { tool: "discus", version: "0.1.0", at: null, host: "test", source };
    writer.finish({ created, codec: "zstd", level: 3, partitionTable: plan.table, areas: plan.areas, minFreeBytes: 0 }, null);
  } finally {
    closeSync(fd);
  }
}
