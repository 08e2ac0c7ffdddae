// pako vs native zlib vs zstd on 64 MiB of this machine's real files, in 1 MiB-chunk-sized pieces
// (the unit discus compresses), single thread. Prints a Markdown table for docs/FORMAT.md.
import { $ } from "bun";
import zlib from "node:zlib";
import * as pako from "pako";

const SAMPLE_BYTES = 64 << 20;
const PIECE_BYTES = 2 << 20; // about what one 1 MiB chunk holds at a ~2:1 ratio

const tar = await $`tar -C /usr/share -cf - doc man 2>/dev/null | head -c ${SAMPLE_BYTES}`.quiet().nothrow().arrayBuffer();
const data = new Uint8Array(tar);
const pieces: Uint8Array[] = [];
for (let off = 0; off < data.length; off += PIECE_BYTES) pieces.push(data.subarray(off, off + PIECE_BYTES));

function measure(name: string, compress: (p: Uint8Array) => Uint8Array, decompress: (c: Uint8Array) => Uint8Array) {
  let t = performance.now();
  const packed = pieces.map(compress);
  const cSec = (performance.now() - t) / 1000;
  t = performance.now();
  let outBytes = 0;
  for (const c of packed) outBytes += decompress(c).length;
  const dSec = (performance.now() - t) / 1000;
  if (outBytes !== data.length) throw new Error(`${name}: round trip lost bytes`);
  const size = packed.reduce((s, c) => s + c.length, 0);
  return { name, ratio: size / data.length, cMBs: data.length / 1e6 / cSec, dMBs: data.length / 1e6 / dSec };
}

const rows = [
  measure("zlib-6, pako", (p) => pako.deflate(p, { level: 6 }), (c) => pako.inflate(c)),
  measure("zlib-6, native (node:zlib)", (p) => zlib.deflateSync(p, { level: 6 }), (c) => zlib.inflateSync(c)),
  measure("zstd-3, native (Bun)", (p) => Bun.zstdCompressSync(p, { level: 3 }), (c) => Bun.zstdDecompressSync(c)),
  measure("zstd-1, native (Bun)", (p) => Bun.zstdCompressSync(p, { level: 1 }), (c) => Bun.zstdDecompressSync(c)),
];
console.log(`${(data.length / 2 ** 20).toFixed(0)} MiB of /usr/share/{doc,man}, ${PIECE_BYTES >> 20} MiB pieces, one thread\n`);
console.log("| codec | size / input | compress MB/s | decompress MB/s |");
console.log("|---|---:|---:|---:|");
for (const r of rows) console.log(`| ${r.name} | ${r.ratio.toFixed(3)} | ${r.cMBs.toFixed(0)} | ${r.dMBs.toFixed(0)} |`);
