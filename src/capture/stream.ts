// The capture stream: the concatenation of every data region's sectors, in disk order.
// Maps stream positions to disk sectors and reads stream bytes through a small page cache.
import { readFully } from "../util/io.ts";
import { assert } from "../util/assert.ts";
import type { Range } from "../util/ranges.ts";

/** Stream bytes are cached in pages of this many sectors (4 MiB of 512-byte sectors). */
export const STREAM_PAGE_SECTORS = 8192;
/** Pages kept at most: bounds the reader's memory at 64 MiB. */
export const MAX_CACHED_PAGES = 16;

export class CaptureStream {
  /** streamStart[i]: stream sector where region i begins. */
  private readonly streamStart: number[] = [];
  readonly streamSectors: number;
  private readonly pages = new Map<number, Uint8Array>();

  constructor(
    private readonly fd: number,
    readonly regions: readonly Range[],
    readonly sectorBytes: number,
  ) {
    let total = 0;
    for (const r of regions) {
      this.streamStart.push(total);
      total += r.length;
    }
    this.streamSectors = total;
  }

  /** Index of the region holding stream sector `s` (binary search). */
  regionAt(s: number): number {
    assert(s >= 0 && s < this.streamSectors, "stream sector in range");
    let lo = 0;
    let hi = this.regions.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.streamStart[mid]! <= s) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Disk sector of stream sector `s`. */
  diskSector(s: number): number {
    const i = this.regionAt(s);
    return this.regions[i]!.start + (s - this.streamStart[i]!);
  }

  /** Disk sector just past stream sector `s - 1` (the disk end of stream range [.., s)). */
  diskEnd(s: number): number {
    return this.diskSector(s - 1) + 1;
  }

  /** Disk regions covered by stream range [startS, endS). */
  diskRegions(startS: number, endS: number): Range[] {
    const out: Range[] = [];
    if (endS <= startS) return out;
    let i = this.regionAt(startS);
    let s = startS;
    while (s < endS) {
      const regionEndS = this.streamStart[i]! + this.regions[i]!.length;
      const take = Math.min(regionEndS, endS) - s;
      out.push({ start: this.regions[i]!.start + (s - this.streamStart[i]!), length: take });
      s += take;
      i++;
    }
    return out;
  }

  /** Number of regions stream range [startS, endS) touches (without building them). */
  regionCount(startS: number, endS: number): number {
    if (endS <= startS) return 0;
    return this.regionAt(endS - 1) - this.regionAt(startS) + 1;
  }

  /** Stream sector where region index `i` starts. */
  regionStartStream(i: number): number {
    return this.streamStart[i]!;
  }

  /** Bytes of stream range [startS, endS); a view when it lies in one page, else a copy. */
  read(startS: number, endS: number): Uint8Array {
    assert(startS < endS && endS <= this.streamSectors, "stream read in range");
    const firstPage = Math.floor(startS / STREAM_PAGE_SECTORS);
    const lastPage = Math.floor((endS - 1) / STREAM_PAGE_SECTORS);
    const sb = this.sectorBytes;
    if (firstPage === lastPage) {
      const page = this.page(firstPage);
      const base = firstPage * STREAM_PAGE_SECTORS;
      return page.subarray((startS - base) * sb, (endS - base) * sb);
    }
    const out = new Uint8Array((endS - startS) * sb);
    for (let p = firstPage; p <= lastPage; p++) {
      const base = p * STREAM_PAGE_SECTORS;
      const from = Math.max(startS, base);
      const to = Math.min(endS, base + STREAM_PAGE_SECTORS);
      out.set(this.page(p).subarray((from - base) * sb, (to - base) * sb), (from - startS) * sb);
    }
    return out;
  }

  /** Calls `fn` with views of stream range [startS, endS), in order, page by page (no copy). */
  forEachView(startS: number, endS: number, fn: (bytes: Uint8Array) => void): void {
    assert(startS < endS && endS <= this.streamSectors, "stream range in range");
    const sb = this.sectorBytes;
    for (let p = Math.floor(startS / STREAM_PAGE_SECTORS); p * STREAM_PAGE_SECTORS < endS; p++) {
      const base = p * STREAM_PAGE_SECTORS;
      const from = Math.max(startS, base);
      const to = Math.min(endS, base + STREAM_PAGE_SECTORS);
      fn(this.page(p).subarray((from - base) * sb, (to - base) * sb));
    }
  }

  /** Reads the pages of [startS, endS) into the cache now, while a compressor works on earlier data. */
  prefetch(startS: number, endS: number): void {
    const end = Math.min(endS, this.streamSectors);
    for (let p = Math.floor(startS / STREAM_PAGE_SECTORS); p * STREAM_PAGE_SECTORS < end; p++) this.page(p);
  }

  /** Forgets pages that end before stream sector `s`: the packer never reads behind a chunk start. */
  releaseBefore(s: number): void {
    for (const p of this.pages.keys()) if ((p + 1) * STREAM_PAGE_SECTORS <= s) this.pages.delete(p);
  }

  private page(p: number): Uint8Array {
    const cached = this.pages.get(p);
    if (cached) return cached;
    if (this.pages.size >= MAX_CACHED_PAGES) {
      const oldest = this.pages.keys().next().value as number;
      this.pages.delete(oldest);
    }
    const startS = p * STREAM_PAGE_SECTORS;
    const endS = Math.min(this.streamSectors, startS + STREAM_PAGE_SECTORS);
    const bytes = new Uint8Array((endS - startS) * this.sectorBytes);
    let s = startS;
    for (const r of this.diskRegions(startS, endS)) {
      readFully(this.fd, bytes.subarray((s - startS) * this.sectorBytes, (s - startS + r.length) * this.sectorBytes), r.start * this.sectorBytes);
      s += r.length;
    }
    this.pages.set(p, bytes);
    return bytes;
  }
}
