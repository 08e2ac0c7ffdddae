// The daemon's tables, per SQL dialect, and how each record maps onto a row: checked against the
// bounds before it is written, and checked again when read back, because a database file can be
// edited or damaged behind the daemon's back and a bad row must not surface as a TypeError.
import { DiscusError } from "../util/errors.ts";
import {
  JOB_KINDS,
  JOB_STATES,
  NAME_PATTERN,
  NODE_STATES,
  normalizeMac,
  type EventRecord,
  type Hardware,
  type ImageRecord,
  type JobPatch,
  type JobRecord,
  type NodeRecord,
  type PowerSpec,
} from "./model.ts";

export type Dialect = "sqlite" | "postgres";
export type Row = Record<string, unknown>;

/**
 * Bumped whenever a table changes; a daemon refuses a database written by a newer one and
 * migrates an older one (migrationStatements). 2: jobs gained `kind`, and `image` may be null.
 */
export const SCHEMA_VERSION = 2;

/** Longest text per field, in characters (JSON fields: of their serialized text). */
export const LIMITS = {
  nameChars: 63,
  diskRuleChars: 512,
  errorChars: 1024,
  detailChars: 1024,
  hardwareJsonChars: 64 * 1024,
  powerJsonChars: 4096,
  pathChars: 4096,
  groupChars: 64,
  tagCount: 64,
  /** actor (`agent:MAC`), action and subject of an event. */
  eventWordChars: 128,
} as const;
if (LIMITS.eventWordChars < LIMITS.nameChars + "agent:".length) throw new Error("an event's words must hold a node name and an agent:MAC actor");

/** Column types that differ between the dialects; every other type is written the same in both. */
const TYPES: Record<Dialect, { id: string; int: string; real: string }> = {
  sqlite: { id: "INTEGER PRIMARY KEY AUTOINCREMENT", int: "INTEGER", real: "REAL" },
  postgres: { id: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", int: "BIGINT", real: "DOUBLE PRECISION" },
};

const JOBS_INDEX = "CREATE INDEX jobs_by_node ON jobs (mac, finished, id)";
const JOB_COLUMNS_V1 = "id, mac, image, state, finished, token_sha256, agent_boots, percent, bytes_per_second, error, created_ms, updated_ms";

function jobsTable(name: string, dialect: Dialect): string {
  const { id, int, real } = TYPES[dialect];
  return `CREATE TABLE ${name} (id ${id}, mac TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'load', image TEXT, state TEXT NOT NULL,
      finished INTEGER NOT NULL, token_sha256 TEXT NOT NULL, agent_boots INTEGER NOT NULL, percent ${real} NOT NULL,
      bytes_per_second ${real} NOT NULL, error TEXT, created_ms ${int} NOT NULL, updated_ms ${int} NOT NULL)`;
}

/**
 * The statements that take a database from schema version `from` to `from + 1`, in one
 * transaction with the version bump. 1 -> 2: jobs gain `kind` (every old job is a load) and
 * `image` loses NOT NULL. PostgreSQL alters in place; SQLite cannot drop NOT NULL, so the table
 * is rebuilt with the same ids (AUTOINCREMENT's counter follows the largest id copied).
 */
export function migrationStatements(dialect: Dialect, from: number): string[] {
  if (from !== 1) throw new Error(`no migration from schema version ${from}`);
  if (dialect === "postgres") {
    return ["ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'load'", "ALTER TABLE jobs ALTER COLUMN image DROP NOT NULL"];
  }
  return [
    jobsTable("jobs_v2", dialect),
    `INSERT INTO jobs_v2 (${JOB_COLUMNS_V1}) SELECT ${JOB_COLUMNS_V1} FROM jobs`,
    "DROP TABLE jobs",
    "ALTER TABLE jobs_v2 RENAME TO jobs",
    JOBS_INDEX,
  ];
}

/**
 * The statements that create the current schema on an empty database. Job and event ids are
 * assigned by the database and only grow (AUTOINCREMENT: SQLite never reuses one). Jobs keep a
 * `finished` flag so "the node's newest unfinished job" is one indexed lookup.
 */
export function schemaStatements(dialect: Dialect): string[] {
  const { id, int } = TYPES[dialect];
  return [
    `CREATE TABLE images (name TEXT PRIMARY KEY, path TEXT NOT NULL, image_id TEXT NOT NULL,
      source_bytes ${int} NOT NULL, file_bytes ${int} NOT NULL, data_chunks ${int} NOT NULL,
      signed INTEGER NOT NULL, mcast_group TEXT NOT NULL, port INTEGER NOT NULL, added_ms ${int} NOT NULL)`,
    `CREATE TABLE nodes (mac TEXT PRIMARY KEY, name TEXT NOT NULL, tags TEXT NOT NULL, disk_rule TEXT,
      image TEXT, power TEXT NOT NULL, state TEXT NOT NULL, last_seen_ms ${int}, hardware TEXT)`,
    `CREATE UNIQUE INDEX nodes_name ON nodes (name)`,
    jobsTable("jobs", dialect),
    JOBS_INDEX,
    `CREATE TABLE events (id ${id}, at_ms ${int} NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
      subject TEXT NOT NULL, detail TEXT NOT NULL)`,
  ];
}

// ---- Checks before writing: a record out of bounds is the caller's mistake (kind usage). ----

function tooLong(thing: string, field: string, text: string, max: number): void {
  if (text.length > max) {
    throw new DiscusError("usage", thing, `its ${field} is ${text.length} characters long, more than ${max}`, `Shorten the ${field}`);
  }
}

function badValue(thing: string, field: string, why: string): never {
  throw new DiscusError("usage", thing, `its ${field} ${why}`, `Correct the ${field}`);
}

function checkInt(thing: string, field: string, n: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(n) || n < min || n > max) badValue(thing, field, `is ${n}, not a whole number in ${min}..${max}`);
}

function checkName(thing: string, field: string, name: string): void {
  tooLong(thing, field, name, LIMITS.nameChars);
  if (!NAME_PATTERN.test(name)) badValue(thing, field, `"${name}" is not lower-case letters, digits, '.', '_' and '-'`);
}

function checkMac(thing: string, mac: string): void {
  if (normalizeMac(mac) !== mac) badValue(thing, "MAC", `"${mac.slice(0, 40)}" is not of the form aa:bb:cc:dd:ee:ff`);
}

export function checkImage(image: ImageRecord): void {
  const thing = `image ${image.name.slice(0, LIMITS.nameChars)}`;
  tooLong(thing, "name", image.name, LIMITS.nameChars);
  if (image.name.length === 0) badValue(thing, "name", "is empty");
  tooLong(thing, "path", image.path, LIMITS.pathChars);
  if (!/^[0-9a-f]{32}$/.test(image.imageId)) badValue(thing, "image id", "is not 32 lower-case hex digits");
  for (const f of ["sourceBytes", "fileBytes", "dataChunks", "addedMs"] as const) checkInt(thing, f, image[f], 0);
  tooLong(thing, "multicast group", image.group, LIMITS.groupChars);
  checkInt(thing, "port", image.port, 1, 65535);
}

export function checkNode(node: NodeRecord): void {
  const thing = `node ${node.mac.slice(0, 40)}`;
  checkMac(thing, node.mac);
  checkName(thing, "name", node.name);
  if (node.tags.length > LIMITS.tagCount) badValue(thing, "tags", `number ${node.tags.length}, more than ${LIMITS.tagCount}`);
  for (const tag of node.tags) checkName(thing, "tag", tag);
  if (node.diskRule !== null) tooLong(thing, "disk rule", node.diskRule, LIMITS.diskRuleChars);
  if (node.image !== null) tooLong(thing, "image", node.image, LIMITS.nameChars);
  if (!isPower(node.power)) badValue(thing, "power driver", "is not one of none, ipmi, redfish, command with their fields");
  tooLong(thing, "power driver", JSON.stringify(node.power), LIMITS.powerJsonChars);
  if (!NODE_STATES.includes(node.state)) badValue(thing, "state", `"${node.state}" is not one of ${NODE_STATES.join(", ")}`);
  if (node.lastSeenMs !== null) checkInt(thing, "last-seen time", node.lastSeenMs, 0);
  if (node.hardware !== null) {
    if (!isHardware(node.hardware)) badValue(thing, "hardware", "is not a hardware inventory");
    tooLong(thing, "hardware inventory", JSON.stringify(node.hardware), LIMITS.hardwareJsonChars);
  }
}

export function checkJobPatch(thing: string, patch: JobPatch): void {
  if (patch.state !== undefined && !JOB_STATES.includes(patch.state)) badValue(thing, "state", `"${patch.state}" is not one of ${JOB_STATES.join(", ")}`);
  if (patch.percent !== undefined && !(patch.percent >= 0 && patch.percent <= 100)) badValue(thing, "percent", `is ${patch.percent}, not in 0..100`);
  if (patch.bytesPerSecond !== undefined && !(patch.bytesPerSecond >= 0 && Number.isFinite(patch.bytesPerSecond))) {
    badValue(thing, "rate", `is ${patch.bytesPerSecond}, not a finite number ≥ 0`);
  }
  if (patch.error !== undefined && patch.error !== null) tooLong(thing, "error", patch.error, LIMITS.errorChars);
  if (patch.updatedMs !== undefined) checkInt(thing, "update time", patch.updatedMs, 0);
  if (patch.agentBoots !== undefined) checkInt(thing, "agent boots", patch.agentBoots, 0);
  if (patch.tokenSha256 !== undefined && !/^[0-9a-f]{64}$/.test(patch.tokenSha256)) {
    badValue(thing, "token digest", "is not 64 lower-case hex digits (a SHA-256)");
  }
}

export function checkJob(job: Omit<JobRecord, "id">): void {
  const thing = `job for ${job.mac.slice(0, 40)}`;
  checkMac(thing, job.mac);
  if (!JOB_KINDS.includes(job.kind)) badValue(thing, "kind", `"${job.kind}" is not one of ${JOB_KINDS.join(", ")}`);
  if ((job.kind === "load") !== (job.image !== null)) badValue(thing, "image", job.kind === "load" ? "is missing: a load job writes an image" : "is set: an inventory job writes none");
  if (job.image !== null) tooLong(thing, "image", job.image, LIMITS.nameChars);
  checkInt(thing, "creation time", job.createdMs, 0);
  checkJobPatch(thing, job);
}

export function checkEvent(event: Omit<EventRecord, "id">): void {
  const thing = `event ${event.action.slice(0, LIMITS.eventWordChars)}`;
  checkInt(thing, "time", event.atMs, 0);
  tooLong(thing, "actor", event.actor, LIMITS.eventWordChars);
  tooLong(thing, "action", event.action, LIMITS.eventWordChars);
  tooLong(thing, "subject", event.subject, LIMITS.eventWordChars);
  tooLong(thing, "detail", event.detail, LIMITS.detailChars);
}

// ---- Shapes of the JSON fields. ----

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isStr = (v: unknown): v is string => typeof v === "string";
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

export function isPower(v: unknown): v is PowerSpec {
  if (!isObj(v)) return false;
  switch (v.driver) {
    case "none":
      return true;
    case "ipmi":
      return isStr(v.host) && isStr(v.user) && isStr(v.passwordFile);
    case "redfish":
      return isStr(v.host) && isStr(v.user) && isStr(v.passwordFile) && (v.systemId === null || isStr(v.systemId)) && (v.caFile === null || isStr(v.caFile)) && typeof v.tlsVerify === "boolean";
    case "command":
      return isStr(v.command);
    default:
      return false;
  }
}

export function isHardware(v: unknown): v is Hardware {
  if (!isObj(v) || !Array.isArray(v.disks) || !Array.isArray(v.nics) || !isObj(v.cpu) || !isNum(v.memoryBytes)) return false;
  const diskOk = (d: unknown) =>
    isObj(d) && isStr(d.path) && isStr(d.model) && isStr(d.serial) && isStr(d.wwn) && isNum(d.sizeBytes) && typeof d.removable === "boolean";
  const nicOk = (n: unknown) => isObj(n) && isStr(n.name) && isStr(n.mac) && (n.speedMbit === null || isNum(n.speedMbit));
  return v.disks.every(diskOk) && v.nics.every(nicOk) && isStr(v.cpu.model) && isNum(v.cpu.cores);
}

// ---- Reading rows back: anything unexpected names the row and the column. ----

/** Reads one row's columns; `what` names the row (`node aa:bb:..`) and `db` the database, for errors. */
export class RowReader {
  constructor(
    private readonly row: Row,
    private readonly what: string,
    private readonly db: string,
  ) {}

  corrupt(column: string, why: string): never {
    throw new DiscusError(
      "input",
      `${this.what} in ${this.db}`,
      `its column ${column} ${why}`,
      "The row was damaged or edited by hand: fix or delete it with the database's own tool (sqlite3, psql), or restore a backup",
    );
  }

  text(column: string): string {
    const v = this.row[column];
    return isStr(v) ? v : this.corrupt(column, `holds ${typeof v}, not text`);
  }

  textOrNull(column: string): string | null {
    return this.row[column] === null ? null : this.text(column);
  }

  /** Postgres returns BIGINT as a string (it may not fit a double); ours always do. */
  int(column: string): number {
    const v = this.row[column];
    const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : typeof v === "bigint" ? Number(v) : v;
    return typeof n === "number" && Number.isSafeInteger(n) ? n : this.corrupt(column, `holds ${String(v).slice(0, 40)}, not a whole number`);
  }

  intOrNull(column: string): number | null {
    return this.row[column] === null ? null : this.int(column);
  }

  real(column: string): number {
    const v = this.row[column];
    const n = typeof v === "string" ? Number(v) : v;
    return isNum(n) ? n : this.corrupt(column, `holds ${String(v).slice(0, 40)}, not a number`);
  }

  oneOf<T extends string>(column: string, allowed: readonly T[]): T {
    const v = this.text(column);
    return (allowed as readonly string[]).includes(v) ? (v as T) : this.corrupt(column, `holds "${v.slice(0, 40)}", not one of ${allowed.join(", ")}`);
  }

  json<T>(column: string, valid: (v: unknown) => v is T, shape: string): T {
    let parsed: unknown;
    try {
      parsed = JSON.parse(this.text(column));
    } catch (e) {
      if (e instanceof DiscusError) throw e;
      return this.corrupt(column, "is not valid JSON");
    }
    return valid(parsed) ? parsed : this.corrupt(column, `is not ${shape}`);
  }
}

const isStrArray = (v: unknown): v is string[] => Array.isArray(v) && v.every(isStr);

export function decodeImage(row: Row, db: string): ImageRecord {
  const r = new RowReader(row, `image ${String(row.name).slice(0, LIMITS.nameChars)}`, db);
  return {
    name: r.text("name"),
    path: r.text("path"),
    imageId: r.text("image_id"),
    sourceBytes: r.int("source_bytes"),
    fileBytes: r.int("file_bytes"),
    dataChunks: r.int("data_chunks"),
    signed: r.int("signed") !== 0,
    group: r.text("mcast_group"),
    port: r.int("port"),
    addedMs: r.int("added_ms"),
  };
}

export function decodeNode(row: Row, db: string): NodeRecord {
  const r = new RowReader(row, `node ${String(row.mac).slice(0, 40)}`, db);
  const hardware = row.hardware === null ? null : r.json("hardware", isHardware, "a hardware inventory");
  return {
    mac: r.text("mac"),
    name: r.text("name"),
    tags: r.json("tags", isStrArray, "a list of tags"),
    diskRule: r.textOrNull("disk_rule"),
    image: r.textOrNull("image"),
    power: r.json("power", isPower, "a power driver"),
    state: r.oneOf("state", NODE_STATES),
    lastSeenMs: r.intOrNull("last_seen_ms"),
    hardware,
  };
}

export function decodeJob(row: Row, db: string): JobRecord {
  const r = new RowReader(row, `job ${String(row.id)}`, db);
  return {
    id: r.int("id"),
    mac: r.text("mac"),
    kind: r.oneOf("kind", JOB_KINDS),
    image: r.textOrNull("image"),
    state: r.oneOf("state", JOB_STATES),
    tokenSha256: r.text("token_sha256"),
    agentBoots: r.int("agent_boots"),
    percent: r.real("percent"),
    bytesPerSecond: r.real("bytes_per_second"),
    error: r.textOrNull("error"),
    createdMs: r.int("created_ms"),
    updatedMs: r.int("updated_ms"),
  };
}

export function decodeEvent(row: Row, db: string): EventRecord {
  const r = new RowReader(row, `event ${String(row.id)}`, db);
  return {
    id: r.int("id"),
    atMs: r.int("at_ms"),
    actor: r.text("actor"),
    action: r.text("action"),
    subject: r.text("subject"),
    detail: r.text("detail"),
  };
}
