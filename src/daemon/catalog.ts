// The image catalog: every `*.dsc` file in the images directory, with what its trailer and
// manifest say, and a multicast group from the pool. A file that cannot be opened is left out and
// reported (it may still be being copied in); it is never half-registered.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { closeImage, openImage } from "../image/reader.ts";
import { imageSummary, type ImageSummary } from "../image/summary.ts";
import { hex } from "../util/bytes.ts";
import { DiscusError } from "../util/errors.ts";
import { allocateGroup, type GroupPool } from "./groups.ts";
import { NAME_PATTERN, type ImageRecord } from "./model.ts";

/** Images in one catalog, at most: each holds a group and, while served, a session. */
export const MAX_CATALOG_IMAGES = 1024;
const IMAGE_SUFFIX = ".dsc";

export interface ScanResult {
  found: Omit<ImageRecord, "group" | "port" | "addedMs">[];
  /** Files left out, with why (a partial copy, a damaged file, a name not allowed). */
  skipped: { path: string; why: string }[];
}

/** Reads every image file of `dir` (not recursive). */
export function scanImagesDir(dir: string): ScanResult {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(IMAGE_SUFFIX)).sort();
  } catch (e) {
    throw new DiscusError("io", `images directory ${dir}`, (e as Error).message, "Create it, or pass --images DIR");
  }
  const result: ScanResult = { found: [], skipped: [] };
  for (const file of names.slice(0, MAX_CATALOG_IMAGES)) {
    const path = join(dir, file);
    const name = file.slice(0, -IMAGE_SUFFIX.length).toLowerCase();
    if (!NAME_PATTERN.test(name)) {
      result.skipped.push({ path, why: "its name is not a plain catalog name (letters, digits, . _ -)" });
      continue;
    }
    try {
      const image = openImage(path);
      try {
        const t = image.trailer;
        const m = image.manifest;
        result.found.push({ name, path, imageId: hex(m.imageId), sourceBytes: m.sourceBytes, fileBytes: statSync(path).size, dataChunks: t.dataChunkCount, signed: m.signature !== null });
      } finally {
        closeImage(image);
      }
    } catch (e) {
      result.skipped.push({ path, why: e instanceof DiscusError ? e.message : String(e) });
    }
  }
  for (const file of names.slice(MAX_CATALOG_IMAGES)) result.skipped.push({ path: join(dir, file), why: `the catalog holds ${MAX_CATALOG_IMAGES} images at most` });
  return result;
}

/**
 * The catalog after a scan: known images keep their group (so a restarted daemon serves each on
 * the same group); new ones get the lowest free group of the pool.
 */
export function mergeCatalog(known: readonly ImageRecord[], scan: ScanResult, pool: GroupPool, port: number, nowMs: number): { images: ImageRecord[]; dropped: ImageRecord[] } {
  const byName = new Map(known.map((i) => [i.name, i]));
  const used = new Set(known.filter((i) => scan.found.some((f) => f.name === i.name)).map((i) => i.group));
  const images: ImageRecord[] = [];
  for (const f of scan.found) {
    const old = byName.get(f.name);
    if (old !== undefined) {
      images.push({ ...f, group: old.group, port: old.port, addedMs: old.addedMs });
      continue;
    }
    const group = allocateGroup(pool, used);
    if (group === null) throw new DiscusError("usage", `group pool ${pool.text}`, `has no free group for image ${f.name}`, "Give a larger --group-pool or remove images");
    used.add(group);
    images.push({ ...f, group, port, addedMs: nowMs });
  }
  const dropped = known.filter((i) => !scan.found.some((f) => f.name === i.name));
  return { images, dropped };
}

/** What `discus info` says of a catalog image; null when its file is gone or no longer readable. */
export function summarizeImage(record: ImageRecord): ImageSummary | null {
  try {
    const image = openImage(record.path);
    try {
      return imageSummary(image, statSync(record.path).size);
    } finally {
      closeImage(image);
    }
  } catch {
    return null;
  }
}
