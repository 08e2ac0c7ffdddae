// What an image holds (`discus info`, the dashboard's image view): one summary, in words or as JSON.
import { codecName } from "./constants.ts";
import type { Manifest } from "./manifest.ts";
import { keyFingerprint } from "./signing.ts";
import type { OpenImage } from "./reader.ts";
import { hex } from "../util/bytes.ts";
import { formatBytes } from "../util/units.ts";

export type ImageSummary = ReturnType<typeof imageSummary>;

export function imageSummary(image: OpenImage, fileBytes: number) {
  const m: Manifest = image.manifest;
  const dataBytes = m.dataSectors * m.sectorBytes;
  return {
    image: image.path,
    imageId: hex(m.imageId),
    formatVersion: 1,
    sourceBytes: m.sourceBytes,
    sectorBytes: m.sectorBytes,
    chunkBytes: m.chunkBytes,
    chunks: m.dataChunkCount,
    manifestParts: image.trailer.manifestPartCount,
    codec: codecName(m.codec),
    level: m.info.level,
    dataBytes,
    skippedBytes: m.sourceBytes - dataBytes,
    imageBytes: fileBytes,
    compressionRatio: dataBytes > 0 ? fileBytes / dataBytes : 0,
    signedBy: m.signature ? keyFingerprint(m.signature.publicKey) : null,
    created: m.info.created,
    partitionTable: m.info.partitionTable,
    areas: m.info.areas,
  };
}

export function formatSummary(s: ReturnType<typeof imageSummary>): string {
  const lines = [
    `image        ${s.image}`,
    `id           ${s.imageId}`,
    `source       ${s.created.source} (${formatBytes(s.sourceBytes)}), captured ${s.created.at ?? "(no date)"} on ${s.created.host} by discus ${s.created.version}`,
    `chunks       ${s.chunks} x ${formatBytes(s.chunkBytes)}, ${s.codec} level ${s.level}, manifest ${s.manifestParts} part(s)`,
    `data         ${formatBytes(s.dataBytes)} captured, ${formatBytes(s.skippedBytes)} free space skipped`,
    `image size   ${formatBytes(s.imageBytes)} (${(s.compressionRatio * 100).toFixed(1)}% of the data captured)`,
    `signature    ${s.signedBy ? `Ed25519, key ${s.signedBy}` : "none"}`,
    `table        ${s.partitionTable.kind}${s.partitionTable.kind !== "none" ? `, ${s.partitionTable.partitionCount} partition(s)` : ""}${s.partitionTable.diskGuid ? `, disk GUID ${s.partitionTable.diskGuid}` : ""}`,
  ];
  for (const a of s.areas) {
    const name = a.partition === null ? a.type : `part ${a.partition}`;
    const fs = a.fs ? `${a.fs}${a.label ? ` "${a.label}"` : ""}` : a.captured;
    lines.push(
      `  ${name.padEnd(8)} at ${formatBytes(a.startBytes).padStart(10)}  size ${formatBytes(a.sizeBytes).padStart(10)}  ${fs.padEnd(18)} captured ${formatBytes(a.capturedBytes)}${a.warning ? `  (${a.warning})` : ""}`,
    );
  }
  return lines.join("\n");
}
