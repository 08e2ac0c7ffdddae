// The daemon's state store: one implementation of Store over Bun.SQL for both SQLite (the
// default: one file, WAL mode) and PostgreSQL. Every method is one statement or one short
// transaction, so nothing holds the database while a caller awaits something else.
import { SQL } from "bun";
import { closeSync, constants, openSync } from "node:fs";
import { DiscusError, ioError, osErrorCode } from "../util/errors.ts";
import { FINISHED_JOB_STATES, MAX_NODES, type NodeState, type EventRecord, type ImageRecord, type JobPatch, type JobRecord, type NodeRecord, type Store } from "./model.ts";
import {
  SCHEMA_VERSION,
  checkEvent,
  checkImage,
  checkJob,
  checkJobPatch,
  checkNode,
  decodeEvent,
  decodeImage,
  decodeJob,
  decodeNode,
  migrationStatements,
  schemaStatements,
  type Dialect,
  type Row,
} from "./schema.ts";

/** listJobs / listEvents return at least one and at most this many rows. */
export const MAX_LIST_LIMIT = 10_000;
/** How long SQLite waits for another connection's write lock before giving up. */
const SQLITE_BUSY_TIMEOUT_MS = 5_000;
/** PostgreSQL: connections the daemon may hold, and how long it waits for one. */
const PG_POOL_MAX = 10;
const PG_CONNECT_TIMEOUT_S = 10;
const PG_IDLE_TIMEOUT_S = 60;
/** SQLite database files hold token digests and the inventory: owner only. */
const DB_FILE_MODE = 0o600;

/** Clamps a list limit to 1..MAX_LIST_LIMIT (a NaN gives 1). */
export function clampLimit(limit: number): number {
  if (!(limit >= 1)) return 1;
  return Math.min(MAX_LIST_LIMIT, Math.floor(limit));
}

/** The URL fit for messages: a password in the authority or the query is dropped. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:/@?]*):[^@/?]*@/i, "$1@").replace(/([?&]password=)[^&]*/i, "$1***");
}

interface Target {
  dialect: Dialect;
  sql: SQL;
}

/** Creates the SQLite file owner-only before SQLite opens it (SQLite would create it 0644). */
function createPrivateFile(path: string, label: string): void {
  try {
    closeSync(openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, DB_FILE_MODE));
  } catch (e) {
    if (osErrorCode(e) !== "EEXIST") throw ioError(e, label, "creating the database file");
  }
}

function connect(url: string, label: string): Target {
  if (url.startsWith("sqlite://")) {
    const path = url.slice("sqlite://".length);
    if (path === "") throw new DiscusError("usage", label, "it names no file", "Write sqlite://PATH, e.g. sqlite:///var/lib/discus/state.db");
    if (path !== ":memory:") createPrivateFile(path, label);
    return { dialect: "sqlite", sql: new SQL({ adapter: "sqlite", filename: path }) };
  }
  if (url.startsWith("postgres://") || url.startsWith("postgresql://")) {
    const options = { max: PG_POOL_MAX, connectionTimeout: PG_CONNECT_TIMEOUT_S, idleTimeout: PG_IDLE_TIMEOUT_S };
    return { dialect: "postgres", sql: new SQL(url, options) };
  }
  throw new DiscusError("usage", label, "it is not a sqlite:// or postgres:// URL", "Write sqlite://PATH or postgres://USER@HOST/DB");
}

/**
 * A database's own failure (disk full, file damaged, server gone) as a DiscusError naming the
 * database. Anything that is not a database error is a bug and passes through with its stack.
 */
function dbError(e: unknown, label: string, doing: string): unknown {
  if (e instanceof DiscusError || !(e instanceof SQL.SQLError)) return e;
  const code = (e as { code?: unknown }).code;
  const detail = `${doing} failed: ${e.message}${typeof code === "string" ? ` (${code})` : ""}`;
  if (e instanceof SQL.PostgresError && (e.errno === undefined || e.errno.startsWith("08"))) {
    return new DiscusError("network", label, detail, "Check that the PostgreSQL server is running and reachable, and the URL (user, host, database)");
  }
  if (e instanceof SQL.SQLiteError && /NOTADB|CORRUPT/.test(e.code)) {
    return new DiscusError("input", label, detail, "The file is not a discus database or is damaged: restore a backup, or point --db elsewhere");
  }
  return new DiscusError("io", label, detail, "Check the database (free space, permissions, server log) and try again");
}

/** Whether an error is the database refusing a second row with the same unique key. */
function isUniqueViolation(e: unknown): boolean {
  if (e instanceof SQL.PostgresError) return e.errno === "23505";
  if (e instanceof SQL.SQLiteError) return e.code === "SQLITE_CONSTRAINT_UNIQUE" || e.code === "SQLITE_CONSTRAINT_PRIMARYKEY";
  return false;
}

async function setUpSqlite(sql: SQL): Promise<void> {
  // WAL: readers never wait for the writer; busy_timeout: a second process waits instead of failing.
  await sql.unsafe("PRAGMA journal_mode=WAL");
  // Bun.SQL runs SQLite on the event loop's thread, so every fsync stalls HTTP and the in-process
  // sessions' pacing. NORMAL syncs the WAL at checkpoints, not at every commit: still safe from
  // corruption, and a killed daemon loses nothing (the WAL is in the page cache); only a power cut
  // may roll back the last commits. scripts/bench-daemon.ts measured it (docs/BENCHMARKS.md).
  await sql.unsafe("PRAGMA synchronous=NORMAL");
  await sql.unsafe(`PRAGMA busy_timeout=${SQLITE_BUSY_TIMEOUT_MS}`);
  await sql.unsafe("PRAGMA foreign_keys=ON");
}

/** The version the first discus server wrote; every later one migrates from it. */
const FIRST_SCHEMA_VERSION = 1;

/** Creates the schema on an empty database, migrates an older one, refuses a newer one. */
async function migrate(sql: SQL, dialect: Dialect, label: string): Promise<void> {
  await sql.begin(async (tx) => {
    await tx.unsafe("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    const rows: Row[] = await tx`SELECT value FROM meta WHERE key = ${"schema_version"}`;
    const stored = rows[0]?.value;
    if (stored === undefined) {
      for (const statement of schemaStatements(dialect)) await tx.unsafe(statement);
      await tx`INSERT INTO meta (key, value) VALUES (${"schema_version"}, ${String(SCHEMA_VERSION)})`;
      return;
    }
    const version = typeof stored === "string" && /^\d+$/.test(stored) ? Number(stored) : NaN;
    if (version > SCHEMA_VERSION) {
      throw new DiscusError(
        "usage",
        label,
        `its schema is version ${version}, newer than this discus knows (${SCHEMA_VERSION})`,
        "Run the newer discus that wrote it, or point --db at another database",
      );
    }
    if (!(version >= FIRST_SCHEMA_VERSION)) {
      throw new DiscusError("input", label, `its meta table holds schema version "${String(stored).slice(0, 20)}", which no discus wrote`, "Restore a backup, or point --db at another database");
    }
    // Older versions step up one at a time, inside this transaction: a failure leaves the old schema whole.
    for (let from = version; from < SCHEMA_VERSION; from++) {
      for (const statement of migrationStatements(dialect, from)) await tx.unsafe(statement);
    }
    if (version < SCHEMA_VERSION) await tx`UPDATE meta SET value = ${String(SCHEMA_VERSION)} WHERE key = ${"schema_version"}`;
  });
}

/** Opens (and on first use creates) the store at `url`: `sqlite://PATH` or `postgres://...`. */
export async function openStore(url: string): Promise<Store> {
  const label = redactUrl(url);
  const { dialect, sql } = connect(url, label);
  try {
    if (dialect === "sqlite") await setUpSqlite(sql);
    await migrate(sql, dialect, label);
  } catch (e) {
    await sql.close().catch(() => undefined);
    throw dbError(e, label, "opening the database");
  }
  return new SqlStore(dialect, sql, label);
}

class SqlStore implements Store {
  constructor(
    readonly kind: Dialect,
    private readonly sql: SQL,
    private readonly label: string,
  ) {}

  /** Runs one operation, turning the database's failures into DiscusErrors. */
  private async run<T>(doing: string, op: (sql: SQL) => Promise<T>): Promise<T> {
    try {
      return await op(this.sql);
    } catch (e) {
      throw dbError(e, this.label, doing);
    }
  }

  async close(): Promise<void> {
    await this.sql.close();
  }

  async putImage(image: ImageRecord): Promise<void> {
    checkImage(image);
    const i = image;
    await this.run(`saving image ${i.name}`, (sql) => sql`
      INSERT INTO images (name, path, image_id, source_bytes, file_bytes, data_chunks, signed, mcast_group, port, added_ms)
      VALUES (${i.name}, ${i.path}, ${i.imageId}, ${i.sourceBytes}, ${i.fileBytes}, ${i.dataChunks}, ${i.signed ? 1 : 0}, ${i.group}, ${i.port}, ${i.addedMs})
      ON CONFLICT (name) DO UPDATE SET path = excluded.path, image_id = excluded.image_id, source_bytes = excluded.source_bytes,
        file_bytes = excluded.file_bytes, data_chunks = excluded.data_chunks, signed = excluded.signed,
        mcast_group = excluded.mcast_group, port = excluded.port, added_ms = excluded.added_ms`);
  }

  async getImage(name: string): Promise<ImageRecord | null> {
    const rows: Row[] = await this.run(`reading image ${name}`, (sql) => sql`SELECT * FROM images WHERE name = ${name}`);
    return rows[0] === undefined ? null : decodeImage(rows[0], this.label);
  }

  async listImages(): Promise<ImageRecord[]> {
    const rows: Row[] = await this.run("listing images", (sql) => sql`SELECT * FROM images ORDER BY name`);
    return rows.map((r) => decodeImage(r, this.label));
  }

  async deleteImage(name: string): Promise<boolean> {
    const rows: Row[] = await this.run(`deleting image ${name}`, (sql) => sql`DELETE FROM images WHERE name = ${name} RETURNING name`);
    return rows.length > 0;
  }

  /** The node name clash as the user should see it: who holds the name. */
  private async nameTaken(node: NodeRecord): Promise<DiscusError | null> {
    const rows: Row[] = await this.run(`reading node ${node.name}`, (sql) => sql`SELECT mac FROM nodes WHERE name = ${node.name} AND mac <> ${node.mac}`);
    const holder = rows[0]?.mac;
    if (holder === undefined) return null;
    return new DiscusError("usage", `node ${node.mac}`, `node name ${node.name} is taken by ${String(holder)}`, "Pick another name");
  }

  async putNode(node: NodeRecord): Promise<void> {
    checkNode(node);
    const clash = await this.nameTaken(node);
    if (clash !== null) throw clash;
    const n = node;
    const tags = JSON.stringify(n.tags);
    const power = JSON.stringify(n.power);
    const hardware = n.hardware === null ? null : JSON.stringify(n.hardware);
    try {
      await this.sql`
        INSERT INTO nodes (mac, name, tags, disk_rule, image, power, state, last_seen_ms, hardware)
        VALUES (${n.mac}, ${n.name}, ${tags}, ${n.diskRule}, ${n.image}, ${power}, ${n.state}, ${n.lastSeenMs}, ${hardware})
        ON CONFLICT (mac) DO UPDATE SET name = excluded.name, tags = excluded.tags, disk_rule = excluded.disk_rule,
          image = excluded.image, power = excluded.power, state = excluded.state,
          last_seen_ms = excluded.last_seen_ms, hardware = excluded.hardware`;
    } catch (e) {
      // Another writer took the name between the check and the write.
      if (isUniqueViolation(e)) throw (await this.nameTaken(node)) ?? dbError(e, this.label, `saving node ${n.name}`);
      throw dbError(e, this.label, `saving node ${n.name}`);
    }
  }

  async getNode(mac: string): Promise<NodeRecord | null> {
    const rows: Row[] = await this.run(`reading node ${mac}`, (sql) => sql`SELECT * FROM nodes WHERE mac = ${mac}`);
    return rows[0] === undefined ? null : decodeNode(rows[0], this.label);
  }

  async getNodeByName(name: string): Promise<NodeRecord | null> {
    const rows: Row[] = await this.run(`reading node ${name}`, (sql) => sql`SELECT * FROM nodes WHERE name = ${name}`);
    return rows[0] === undefined ? null : decodeNode(rows[0], this.label);
  }

  async listNodes(): Promise<NodeRecord[]> {
    const rows: Row[] = await this.run("listing nodes", (sql) => sql`SELECT * FROM nodes ORDER BY name`);
    return rows.map((r) => decodeNode(r, this.label));
  }

  /**
   * Removes the node but keeps its jobs as history. Its unfinished jobs are cancelled in the
   * same transaction, so a node re-added with the same MAC does not pick up a stale reload.
   */
  async deleteNode(mac: string): Promise<boolean> {
    return await this.run(`deleting node ${mac}`, (sql) =>
      sql.begin(async (tx) => {
        const rows: Row[] = await tx`DELETE FROM nodes WHERE mac = ${mac} RETURNING mac`;
        if (rows.length === 0) return false;
        await tx`UPDATE jobs SET state = ${"cancelled"}, finished = 1, error = ${"node deleted"}, updated_ms = ${Date.now()}
          WHERE mac = ${mac} AND finished = 0`;
        return true;
      }),
    );
  }

  async createJob(job: Omit<JobRecord, "id">): Promise<JobRecord> {
    checkJob(job);
    const j = job;
    const finished = FINISHED_JOB_STATES.includes(j.state) ? 1 : 0;
    const rows: Row[] = await this.run(`creating a job for ${j.mac}`, (sql) => sql`
      INSERT INTO jobs (mac, kind, image, state, finished, token_sha256, agent_boots, percent, bytes_per_second, error, created_ms, updated_ms)
      VALUES (${j.mac}, ${j.kind}, ${j.image}, ${j.state}, ${finished}, ${j.tokenSha256}, ${j.agentBoots}, ${j.percent}, ${j.bytesPerSecond}, ${j.error}, ${j.createdMs}, ${j.updatedMs})
      RETURNING *`);
    return decodeJob(rows[0]!, this.label);
  }

  async getJob(id: number): Promise<JobRecord | null> {
    if (!Number.isSafeInteger(id)) return null;
    const rows: Row[] = await this.run(`reading job ${id}`, (sql) => sql`SELECT * FROM jobs WHERE id = ${id}`);
    return rows[0] === undefined ? null : decodeJob(rows[0], this.label);
  }

  async activeJob(mac: string): Promise<JobRecord | null> {
    const rows: Row[] = await this.run(`reading the jobs of ${mac}`, (sql) => sql`
      SELECT * FROM jobs WHERE mac = ${mac} AND finished = 0 ORDER BY id DESC LIMIT 1`);
    return rows[0] === undefined ? null : decodeJob(rows[0], this.label);
  }

  /** One UPDATE of just the patched columns, so concurrent patches of other fields are not lost. */
  async updateJob(id: number, patch: JobPatch): Promise<JobRecord | null> {
    checkJobPatch(`job ${id}`, patch);
    if (!Number.isSafeInteger(id)) return null;
    const set: Record<string, unknown> = {};
    if (patch.state !== undefined) {
      set.state = patch.state;
      set.finished = FINISHED_JOB_STATES.includes(patch.state) ? 1 : 0;
    }
    if (patch.percent !== undefined) set.percent = patch.percent;
    if (patch.bytesPerSecond !== undefined) set.bytes_per_second = patch.bytesPerSecond;
    if (patch.error !== undefined) set.error = patch.error;
    if (patch.updatedMs !== undefined) set.updated_ms = patch.updatedMs;
    if (patch.tokenSha256 !== undefined) set.token_sha256 = patch.tokenSha256;
    if (patch.agentBoots !== undefined) set.agent_boots = patch.agentBoots;
    if (Object.keys(set).length === 0) return await this.getJob(id);
    const rows: Row[] = await this.run(`updating job ${id}`, (sql) => sql`UPDATE jobs SET ${sql(set)} WHERE id = ${id} RETURNING *`);
    return rows[0] === undefined ? null : decodeJob(rows[0], this.label);
  }

  async listJobs(limit: number): Promise<JobRecord[]> {
    const rows: Row[] = await this.run("listing jobs", (sql) => sql`SELECT * FROM jobs ORDER BY id DESC LIMIT ${clampLimit(limit)}`);
    return rows.map((r) => decodeJob(r, this.label));
  }

  async latestJobs(): Promise<JobRecord[]> {
    // One indexed MAX per node (jobs_by_node), not a scan of the whole history.
    const rows: Row[] = await this.run("reading each node's newest job", (sql) => sql`
      SELECT * FROM jobs WHERE id IN (SELECT MAX(id) FROM jobs GROUP BY mac) ORDER BY id DESC LIMIT ${MAX_NODES}`);
    return rows.map((r) => decodeJob(r, this.label));
  }

  async latestJob(mac: string): Promise<JobRecord | null> {
    const rows: Row[] = await this.run(`reading the newest job of ${mac}`, (sql) => sql`
      SELECT * FROM jobs WHERE mac = ${mac} ORDER BY id DESC LIMIT 1`);
    return rows[0] === undefined ? null : decodeJob(rows[0], this.label);
  }

  async unfinishedJobs(): Promise<JobRecord[]> {
    const rows: Row[] = await this.run("reading the unfinished jobs", (sql) => sql`
      SELECT * FROM jobs WHERE finished = 0 ORDER BY id LIMIT ${MAX_NODES}`);
    return rows.map((r) => decodeJob(r, this.label));
  }

  async countNodes(state: NodeState | null): Promise<number> {
    const rows: Row[] = await this.run("counting nodes", (sql) =>
      state === null ? sql`SELECT COUNT(*) AS n FROM nodes` : sql`SELECT COUNT(*) AS n FROM nodes WHERE state = ${state}`);
    return Number(rows[0]?.n ?? 0);
  }

  async addEvent(event: Omit<EventRecord, "id">): Promise<void> {
    checkEvent(event);
    const e = event;
    await this.run(`recording event ${e.action}`, (sql) => sql`
      INSERT INTO events (at_ms, actor, action, subject, detail) VALUES (${e.atMs}, ${e.actor}, ${e.action}, ${e.subject}, ${e.detail})`);
  }

  async listEvents(limit: number): Promise<EventRecord[]> {
    const rows: Row[] = await this.run("listing events", (sql) => sql`SELECT * FROM events ORDER BY id DESC LIMIT ${clampLimit(limit)}`);
    return rows.map((r) => decodeEvent(r, this.label));
  }
}
