// The manifest's info JSON (docs/FORMAT.md, "Info JSON"): validated field by field at decode, so
// a well-formed manifest with a missing or mistyped field is refused when the image is opened,
// never found later by the code that reads the field (after a restore has written the disk).
import { arrayOf, int, nullable, object, oneOf, str, type Validator } from "../util/schema.ts";

export interface AreaSummary {
  /** Partition number as Linux names it, or null for table structures / the whole disk. */
  partition: number | null;
  startBytes: number;
  sizeBytes: number;
  /** Partition type (MBR "0x83", GPT GUID) or "table" / "disk". */
  type: string;
  /** Filesystem found, or null when captured raw. */
  fs: string | null;
  label: string | null;
  uuid: string | null;
  /** How it was captured: "fs" (allocated blocks only), "raw" (every byte), "table" (partition table / boot code). */
  captured: "fs" | "raw" | "table";
  capturedBytes: number;
  warning: string | null;
}

export interface ImageInfo {
  created: { tool: string; version: string; at: string | null; host: string; source: string };
  codec: string;
  level: number;
  partitionTable: { kind: "mbr" | "gpt" | "none"; partitionCount: number; diskGuid: string | null };
  areas: AreaSummary[];
  /** Free runs shorter than this were kept as data. */
  minFreeBytes: number;
}

/** Largest byte count an info field may hold: 2^53 - 1, what a JavaScript number holds exactly. */
const MAX_INFO_BYTES_FIELD = Number.MAX_SAFE_INTEGER;
/** GPT allows 128 entries by default and at most what fits its entry array; MBR far fewer. */
const MAX_PARTITIONS = 1024;

const created = object<ImageInfo["created"]>({
  tool: str,
  version: str,
  at: nullable(str),
  host: str,
  source: str,
});

const partitionTable = object<ImageInfo["partitionTable"]>({
  kind: oneOf(["mbr", "gpt", "none"] as const),
  partitionCount: int(0, MAX_PARTITIONS),
  diskGuid: nullable(str),
});

const area = object<ImageInfo["areas"][number]>({
  partition: nullable(int(1, MAX_PARTITIONS)),
  startBytes: int(0, MAX_INFO_BYTES_FIELD),
  sizeBytes: int(0, MAX_INFO_BYTES_FIELD),
  type: str,
  fs: nullable(str),
  label: nullable(str),
  uuid: nullable(str),
  captured: oneOf(["fs", "raw", "table"] as const),
  capturedBytes: int(0, MAX_INFO_BYTES_FIELD),
  warning: nullable(str),
});

export const imageInfo: Validator<ImageInfo> = object<ImageInfo>({
  created,
  codec: str,
  level: int(0, 22),
  partitionTable,
  areas: arrayOf(area, MAX_PARTITIONS + 1),
  minFreeBytes: int(0, MAX_INFO_BYTES_FIELD),
});
