// Half-open ranges of bytes or sectors: [start, start + length). Pure helpers.
import { assert } from "./assert.ts";

export interface Range {
  start: number;
  length: number;
}

export function rangeEnd(r: Range): number {
  return r.start + r.length;
}

/** Sorts, drops empty ranges and merges overlapping or touching ones. Returns a new array. */
export function normalizeRanges(ranges: readonly Range[]): Range[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.start - b.start);
  const out: Range[] = [];
  for (const r of sorted) {
    assert(r.start >= 0 && Number.isSafeInteger(r.start) && Number.isSafeInteger(r.length), "range is a safe integer");
    const last = out[out.length - 1];
    if (last !== undefined && r.start <= rangeEnd(last)) {
      last.length = Math.max(rangeEnd(last), rangeEnd(r)) - last.start;
    } else {
      out.push({ start: r.start, length: r.length });
    }
  }
  return out;
}

/** The parts of [0, total) not covered by normalized `ranges`. */
export function invertRanges(ranges: readonly Range[], total: number): Range[] {
  const out: Range[] = [];
  let cursor = 0;
  for (const r of ranges) {
    const start = Math.min(r.start, total);
    if (start > cursor) out.push({ start: cursor, length: start - cursor });
    cursor = Math.max(cursor, Math.min(rangeEnd(r), total));
  }
  if (cursor < total) out.push({ start: cursor, length: total - cursor });
  return out;
}

/** Clips normalized ranges to [0, total). */
export function clipRanges(ranges: readonly Range[], total: number): Range[] {
  const out: Range[] = [];
  for (const r of ranges) {
    const start = Math.min(r.start, total);
    const end = Math.min(rangeEnd(r), total);
    if (end > start) out.push({ start, length: end - start });
  }
  return out;
}

/** Moves every range by `delta` (e.g. from partition-relative to disk-absolute). */
export function shiftRanges(ranges: readonly Range[], delta: number): Range[] {
  return ranges.map((r) => ({ start: r.start + delta, length: r.length }));
}

/** Grows ranges outward to multiples of `unit` (e.g. bytes to whole sectors). */
export function alignRangesOutward(ranges: readonly Range[], unit: number): Range[] {
  const aligned = ranges.map((r) => {
    const start = Math.floor(r.start / unit) * unit;
    const end = Math.ceil(rangeEnd(r) / unit) * unit;
    return { start, length: end - start };
  });
  return normalizeRanges(aligned);
}

/** Sum of lengths. */
export function totalLength(ranges: readonly Range[]): number {
  let sum = 0;
  for (const r of ranges) sum += r.length;
  return sum;
}

/**
 * Closes gaps shorter than `minGap` between normalized ranges: fewer, longer writes
 * are worth more than skipping a few free blocks (Frisbee kept free runs < 32 KiB).
 */
export function closeSmallGaps(ranges: readonly Range[], minGap: number): Range[] {
  const out: Range[] = [];
  for (const r of ranges) {
    const last = out[out.length - 1];
    if (last !== undefined && r.start - rangeEnd(last) < minGap) {
      last.length = rangeEnd(r) - last.start;
    } else {
      out.push({ start: r.start, length: r.length });
    }
  }
  return out;
}

/** Converts a bitmap (bit i of byte i>>3, LSB first) into runs of set bits, as unit indices. */
export function bitmapRuns(bitmap: Uint8Array, bitCount: number, firstIndex = 0): Range[] {
  const out: Range[] = [];
  let runStart = -1;
  for (let i = 0; i < bitCount; i++) {
    const byte = bitmap[i >>> 3]!;
    // Skip whole bytes quickly when no run is open and the byte is empty, or a run is open and it is full.
    if ((i & 7) === 0 && i + 8 <= bitCount) {
      if (byte === 0 && runStart < 0) {
        i += 7;
        continue;
      }
      if (byte === 0xff && runStart >= 0) {
        i += 7;
        continue;
      }
    }
    const set = (byte >>> (i & 7)) & 1;
    if (set && runStart < 0) runStart = i;
    if (!set && runStart >= 0) {
      out.push({ start: firstIndex + runStart, length: i - runStart });
      runStart = -1;
    }
  }
  if (runStart >= 0) out.push({ start: firstIndex + runStart, length: bitCount - runStart });
  return out;
}
