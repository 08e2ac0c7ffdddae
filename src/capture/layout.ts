// Decides what to capture: partition table structures, each partition's allocated blocks (or all of
// it, raw), nothing of the gaps between partitions. Pure apart from the reads it makes.
import { fdReader } from "../fs/reader.ts";
import type { BlockReader, FsAllocation, FsParser } from "../fs/types.ts";
import type { AreaSummary } from "../image/info.ts";
import { readPartitionTable } from "../part/table.ts";
import { PartitionTableError, type PartitionTable } from "../part/types.ts";
import { FsUnsupportedError } from "../util/errors.ts";
import {
  alignRangesOutward,
  clipRanges,
  closeSmallGaps,
  normalizeRanges,
  shiftRanges,
  totalLength,
  type Range,
} from "../util/ranges.ts";
import { extParser } from "../fs/ext.ts";
import { fatParser } from "../fs/fat.ts";
import { ntfsParser } from "../fs/ntfs.ts";
import { swapParser } from "../fs/swap.ts";
import { xfsParser } from "../fs/xfs.ts";

export const PARSERS: readonly FsParser[] = [extParser, xfsParser, ntfsParser, fatParser, swapParser];

/** Frisbee's threshold: free runs shorter than this are kept as data (fewer, longer writes). */
export const DEFAULT_MIN_FREE_BYTES = 32 << 10;

export interface CapturePlan {
  diskBytes: number;
  sectorBytes: number;
  /** Sector regions to capture, normalized. */
  regions: Range[];
  areas: AreaSummary[];
  table: { kind: "mbr" | "gpt" | "none"; partitionCount: number; diskGuid: string | null };
  warnings: string[];
}

export interface PlanOptions {
  raw: boolean;
  minFreeBytes: number;
  sectorBytes: number;
}

export function planCapture(fd: number, diskBytes: number, opts: PlanOptions): CapturePlan {
  const disk = fdReader(fd, 0, diskBytes);
  const warnings: string[] = [];
  const areas: AreaSummary[] = [];
  const byteRanges: Range[] = [];
  let table: PartitionTable | null = null;
  if (!opts.raw) {
    try {
      table = readPartitionTable(disk, opts.sectorBytes);
    } catch (e) {
      if (!(e instanceof PartitionTableError)) throw e;
      warnings.push(`partition table: ${e.message}; capturing the whole disk raw`);
      opts = { ...opts, raw: true };
    }
  }
  if (opts.raw || table === null) {
    const area = opts.raw ? rawArea(null, 0, diskBytes, "disk", null) : analyzeArea(fd, null, 0, diskBytes, "disk", warnings);
    areas.push(area.summary);
    byteRanges.push(...area.ranges);
  } else {
    const keep = normalizeRanges(table.keep);
    byteRanges.push(...keep);
    areas.push({
      partition: null,
      startBytes: 0,
      sizeBytes: diskBytes,
      type: "table",
      fs: null,
      label: null,
      uuid: null,
      captured: "table",
      capturedBytes: totalLength(keep),
      warning: null,
    });
    for (const p of table.partitions) {
      const area = analyzeArea(fd, p.index, p.startBytes, p.sizeBytes, p.type, warnings);
      areas.push(area.summary);
      byteRanges.push(...area.ranges);
    }
  }
  const sectors = alignRangesOutward(normalizeRanges(byteRanges), opts.sectorBytes).map((r) => ({
    start: r.start / opts.sectorBytes,
    length: r.length / opts.sectorBytes,
  }));
  const diskSectors = diskBytes / opts.sectorBytes;
  const minGapSectors = Math.floor(opts.minFreeBytes / opts.sectorBytes);
  const regions = clipRanges(closeSmallGaps(sectors, minGapSectors), diskSectors);
  return {
    diskBytes,
    sectorBytes: opts.sectorBytes,
    regions,
    areas,
    table: {
      kind: table?.kind ?? "none",
      partitionCount: table?.partitions.length ?? 0,
      diskGuid: table?.gpt?.diskGuid ?? null,
    },
    warnings,
  };
}

interface AnalyzedArea {
  summary: AreaSummary;
  ranges: Range[];
}

function rawArea(partition: number | null, start: number, size: number, type: string, warning: string | null): AnalyzedArea {
  return {
    summary: { partition, startBytes: start, sizeBytes: size, type, fs: null, label: null, uuid: null, captured: "raw", capturedBytes: size, warning },
    ranges: [{ start, length: size }],
  };
}

/** Finds the filesystem of one area and its allocated ranges; anything doubtful is captured raw. */
function analyzeArea(fd: number, partition: number | null, start: number, size: number, type: string, warnings: string[]): AnalyzedArea {
  const name = partition === null ? "disk" : `partition ${partition}`;
  const reader = fdReader(fd, start, size);
  const found = PARSERS.filter((p) => safeDetect(p, reader));
  if (found.length === 0) return rawArea(partition, start, size, type, null);
  if (found.length > 1) {
    const warning = `${name}: looks like ${found.map((p) => p.name).join(" and ")}; ambiguous, captured raw`;
    warnings.push(warning);
    return rawArea(partition, start, size, type, warning);
  }
  const parser = found[0]!;
  let alloc: FsAllocation;
  try {
    alloc = parser.allocation(reader);
  } catch (e) {
    // Any failure, expected (unsupported feature) or not (a read past the area), means we are not sure.
    const why = e instanceof FsUnsupportedError ? e.message : `${(e as Error).name}: ${(e as Error).message}`;
    const warning = `${name}: ${parser.name} filesystem not fully understood (${why}); captured raw`;
    warnings.push(warning);
    return rawArea(partition, start, size, type, warning);
  }
  const ranges = clipRanges(normalizeRanges(alloc.allocated), size);
  return {
    summary: {
      partition,
      startBytes: start,
      sizeBytes: size,
      type,
      fs: alloc.kind,
      label: alloc.label,
      uuid: alloc.uuid,
      captured: "fs",
      capturedBytes: totalLength(ranges),
      warning: null,
    },
    ranges: shiftRanges(ranges, start),
  };
}

function safeDetect(parser: FsParser, reader: BlockReader): boolean {
  try {
    return parser.detect(reader);
  } catch {
    return false;
  }
}
