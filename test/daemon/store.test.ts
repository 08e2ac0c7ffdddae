// The daemon's state store on both of its backends: SQLite in a temp dir and a throwaway
// PostgreSQL cluster (test/daemon/postgres.ts), each test on a fresh database.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { DiscusError } from "../../src/util/errors.ts";
import type { Hardware, ImageRecord, JobRecord, NodeRecord, Store } from "../../src/daemon/model.ts";
import { openStore } from "../../src/daemon/store.ts";
import { tmpDir } from "../helpers.ts";
import { startPostgres, type Postgres } from "./postgres.ts";

interface Backend {
  name: "sqlite" | "postgres";
  start(): Promise<void>;
  /** A URL for a new, empty database. */
  fresh(): Promise<string>;
  /** A raw connection to the same database, for editing rows behind the store's back. */
  raw(url: string): SQL;
  stop(): Promise<void>;
}

function sqliteBackend(): Backend {
  let dir = "";
  let n = 0;
  return {
    name: "sqlite",
    start: async () => void (dir = await tmpDir()),
    fresh: async () => `sqlite://${join(dir, `state${++n}.db`)}`,
    raw: (url) => new SQL({ adapter: "sqlite", filename: url.slice("sqlite://".length) }),
    stop: async () => void (await Bun.$`rm -rf ${dir}`.quiet()),
  };
}

function postgresBackend(): Backend {
  let pg: Postgres | null = null;
  return {
    name: "postgres",
    start: async () => void (pg = await startPostgres()),
    fresh: async () => pg!.newDatabase(),
    raw: (url) => new SQL(url),
    stop: async () => await pg?.stop(),
  };
}

const hardware: Hardware = {
  disks: [{ path: "/dev/sda", model: "Samsung SSD 860", serial: "S3Z9NB0K", wwn: "0x5002538e", sizeBytes: 500107862016, removable: false }],
  nics: [{ name: "eth0", mac: "52:54:00:12:34:56", speedMbit: 1000 }],
  cpu: { model: "Xeon E5-2630", cores: 16 },
  memoryBytes: 68719476736,
};

const image = (name: string): ImageRecord => ({
  name,
  path: `/srv/images/${name}.dsc`,
  imageId: "00112233445566778899aabbccddeeff",
  sourceBytes: 8 * 2 ** 30,
  fileBytes: 1_234_567_890,
  dataChunks: 1178,
  signed: true,
  group: "239.192.77.3",
  port: 7709,
  addedMs: 1_764_614_820_123,
});

const node = (mac: string, name: string, extra: Partial<NodeRecord> = {}): NodeRecord => ({
  mac,
  name,
  tags: ["rack1", "gpu"],
  diskRule: "serial:S3Z9NB0K",
  image: "ubuntu-24.04",
  power: { driver: "ipmi", host: "198.18.0.10", user: "admin", passwordFile: "/etc/discus/ipmi/n1" },
  state: "ready",
  lastSeenMs: 1_764_614_820_456,
  hardware,
  ...extra,
});

const TOKEN = "ab".repeat(32);
const job = (mac: string, state: JobRecord["state"], createdMs = 1_764_614_820_000): Omit<JobRecord, "id"> => ({
  mac,
  kind: "load",
  image: "ubuntu-24.04",
  state,
  tokenSha256: TOKEN,
  agentBoots: 0,
  percent: 0,
  bytesPerSecond: 0,
  error: null,
  createdMs,
  updatedMs: createdMs,
});

/** The DiscusError a promise rejects with (fails the test if it resolves or throws anything else). */
async function rejection(p: Promise<unknown>): Promise<DiscusError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(DiscusError);
  return e as DiscusError;
}

describe.each([sqliteBackend(), postgresBackend()])("store on $name", (backend) => {
  const open: Store[] = [];
  const fresh = async (): Promise<{ url: string; store: Store }> => {
    const url = await backend.fresh();
    const store = await openStore(url);
    open.push(store);
    return { url, store };
  };

  beforeAll(async () => await backend.start());
  // Each Postgres store holds a pool of connections: close them before the next test opens more.
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close().catch(() => undefined);
  });
  afterAll(async () => await backend.stop());

  test("images: put, get, list, replace, delete", async () => {
    const { store } = await fresh();
    expect(store.kind).toBe(backend.name);
    await store.putImage(image("ubuntu-24.04"));
    await store.putImage(image("debian-12"));
    expect(await store.getImage("ubuntu-24.04")).toEqual(image("ubuntu-24.04"));
    expect((await store.listImages()).map((i) => i.name)).toEqual(["debian-12", "ubuntu-24.04"]);
    const moved = { ...image("debian-12"), path: "/srv/other/debian-12.dsc", signed: false, port: 7710 };
    await store.putImage(moved);
    expect(await store.getImage("debian-12")).toEqual(moved);
    expect(await store.deleteImage("debian-12")).toBe(true);
    expect(await store.deleteImage("debian-12")).toBe(false);
    expect(await store.getImage("debian-12")).toBeNull();
    expect(await store.listImages()).toEqual([image("ubuntu-24.04")]);
  });

  test("nodes: put, get by MAC and name, list, replace, nulls, delete", async () => {
    const { store } = await fresh();
    const a = node("52:54:00:00:00:01", "n1");
    const b = node("52:54:00:00:00:02", "new-525400000002", { tags: [], diskRule: null, image: null, power: { driver: "none" }, state: "new", lastSeenMs: null, hardware: null });
    await store.putNode(a);
    await store.putNode(b);
    expect(await store.getNode(a.mac)).toEqual(a);
    expect(await store.getNodeByName("new-525400000002")).toEqual(b);
    expect(await store.getNode("52:54:00:00:00:09")).toBeNull();
    expect((await store.listNodes()).map((n) => n.name)).toEqual(["n1", "new-525400000002"]);
    const renamed = { ...b, name: "n2", power: { driver: "command" as const, command: "/usr/local/bin/pdu" } };
    await store.putNode(renamed);
    expect(await store.getNode(b.mac)).toEqual(renamed);
    expect(await store.getNodeByName("new-525400000002")).toBeNull();
    expect(await store.deleteNode(a.mac)).toBe(true);
    expect(await store.deleteNode(a.mac)).toBe(false);
    expect(await store.listNodes()).toEqual([renamed]);
  });

  test("a node name another MAC holds is refused, and nothing changes", async () => {
    const { store } = await fresh();
    await store.putNode(node("52:54:00:00:00:01", "n1"));
    await store.putNode(node("52:54:00:00:00:02", "n2"));
    const e = await rejection(store.putNode(node("52:54:00:00:00:02", "n1")));
    expect(e.kind).toBe("usage");
    expect(e.message).toContain("node name n1 is taken by 52:54:00:00:00:01");
    expect(e.message).toContain("Pick another name");
    expect((await store.getNode("52:54:00:00:00:02"))?.name).toBe("n2");
    await rejection(store.putNode(node("52:54:00:00:00:03", "n2")));
    expect(await store.getNode("52:54:00:00:00:03")).toBeNull();
  });

  test("jobs: ids increase, activeJob is the newest unfinished, updateJob patches only what it names", async () => {
    const { store } = await fresh();
    const mac = "52:54:00:00:00:01";
    const j1 = await store.createJob(job(mac, "queued"));
    const j2 = await store.createJob({ ...job(mac, "loading"), percent: 42.5, bytesPerSecond: 118e6 });
    const j3 = await store.createJob({ ...job(mac, "failed"), error: "disk rule matched no disk" });
    const other = await store.createJob(job("52:54:00:00:00:02", "queued"));
    expect(j1.id).toBeLessThan(j2.id);
    expect(j2.id).toBeLessThan(j3.id);
    expect(j3.id).toBeLessThan(other.id);
    expect(await store.getJob(j2.id)).toEqual({ ...job(mac, "loading"), id: j2.id, percent: 42.5, bytesPerSecond: 118e6 });
    expect(await store.activeJob(mac)).toEqual(j2);
    const done = await store.updateJob(j2.id, { state: "booted", percent: 100, updatedMs: 1_764_614_829_999 });
    expect(done).toEqual({ ...j2, state: "booted", percent: 100, updatedMs: 1_764_614_829_999 });
    expect(await store.getJob(j2.id)).toEqual(done);
    expect(await store.activeJob(mac)).toEqual(j1);
    expect(await store.updateJob(j1.id, { error: "power cycle failed", state: "failed" })).toEqual({ ...j1, error: "power cycle failed", state: "failed" });
    expect(await store.activeJob(mac)).toBeNull();
    expect(await store.updateJob(j1.id, { error: null })).toEqual({ ...j1, state: "failed", error: null });
    const rebooted = await store.updateJob(j1.id, { tokenSha256: "cd".repeat(32) });
    expect(rebooted).toEqual({ ...j1, state: "failed", error: null, tokenSha256: "cd".repeat(32) });
    expect((await rejection(store.updateJob(j1.id, { tokenSha256: "not a digest" }))).kind).toBe("usage");
    expect((await store.updateJob(j1.id, { agentBoots: 2 }))!.agentBoots).toBe(2);
    expect((await rejection(store.updateJob(j1.id, { agentBoots: -1 }))).kind).toBe("usage");
    expect(await store.updateJob(999_999, { percent: 5 })).toBeNull();
    expect(await store.getJob(999_999)).toBeNull();
    expect((await store.listJobs(10)).map((j) => j.id)).toEqual([other.id, j3.id, j2.id, j1.id]);
    expect((await store.listJobs(2)).map((j) => j.id)).toEqual([other.id, j3.id]);
    expect((await store.listJobs(0)).map((j) => j.id)).toEqual([other.id]);
    expect(await store.listJobs(1e12)).toHaveLength(4);
  });

  test("each node's newest job, the unfinished ones and node counts come from the database, whatever the history's length", async () => {
    const { store } = await fresh();
    const [a, b, c] = ["52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"];
    await store.putNode(node(a, "n1"));
    await store.putNode(node(b, "n2"));
    await store.putNode(node(c, "new-525400000003", { tags: [], diskRule: null, image: null, power: { driver: "none" }, state: "new", lastSeenMs: null, hardware: null }));
    const live = await store.createJob(job(a, "loading"));
    // A long history after it: a list of the newest N jobs would have lost a's live job.
    for (let i = 0; i < 30; i++) await store.createJob(job(b, "booted"));
    const newestB = await store.createJob(job(b, "failed"));
    expect((await store.latestJobs()).map((j) => j.id).sort((x, y) => x - y)).toEqual([live.id, newestB.id]);
    expect(await store.latestJob(a)).toEqual(live);
    expect(await store.latestJob(b)).toEqual(newestB);
    expect(await store.latestJob(c)).toBeNull();
    expect(await store.unfinishedJobs()).toEqual([live]);
    expect((await store.listJobs(10)).map((j) => j.id)).not.toContain(live.id);
    expect(await store.countNodes(null)).toBe(3);
    expect(await store.countNodes("new")).toBe(1);
    expect(await store.countNodes("failed")).toBe(0);
  });

  test("deleting a node keeps its jobs as history and cancels the unfinished ones", async () => {
    const { store } = await fresh();
    const mac = "52:54:00:00:00:01";
    await store.putNode(node(mac, "n1"));
    const old = await store.createJob(job(mac, "booted"));
    const live = await store.createJob(job(mac, "loading"));
    expect(await store.deleteNode(mac)).toBe(true);
    expect(await store.getJob(old.id)).toEqual(old);
    const cancelled = await store.getJob(live.id);
    expect(cancelled?.state).toBe("cancelled");
    expect(cancelled?.error).toBe("node deleted");
    await store.putNode(node(mac, "n1"));
    expect(await store.activeJob(mac)).toBeNull();
  });

  test("20 concurrent createJob calls all get distinct ids", async () => {
    const { store } = await fresh();
    const jobs = await Promise.all(Array.from({ length: 20 }, (_, i) => store.createJob(job(`52:54:00:00:01:${String(i).padStart(2, "0")}`, "queued"))));
    expect(new Set(jobs.map((j) => j.id)).size).toBe(20);
    expect(await store.listJobs(100)).toHaveLength(20);
  });

  test("events: newest first, limit clamped to 1..10000", async () => {
    const { store } = await fresh();
    for (let i = 0; i < 5; i++) {
      await store.addEvent({ atMs: 1_764_614_820_000 + i, actor: "admin", action: "node.add", subject: `n${i}`, detail: `added n${i}` });
    }
    const all = await store.listEvents(10);
    expect(all.map((e) => e.subject)).toEqual(["n4", "n3", "n2", "n1", "n0"]);
    expect(all[0]).toEqual({ id: all[0]!.id, atMs: 1_764_614_820_004, actor: "admin", action: "node.add", subject: "n4", detail: "added n4" });
    expect(all[0]!.id).toBeGreaterThan(all[1]!.id);
    expect((await store.listEvents(3)).map((e) => e.subject)).toEqual(["n4", "n3", "n2"]);
    expect(await store.listEvents(0)).toHaveLength(1);
    expect(await store.listEvents(-7)).toHaveLength(1);
    expect(await store.listEvents(Number.NaN)).toHaveLength(1);
    expect(await store.listEvents(1e9)).toHaveLength(5);
  });

  test("text beyond its bound is refused before anything is written", async () => {
    const { store } = await fresh();
    const mac = "52:54:00:00:00:01";
    expect((await rejection(store.putNode(node(mac, "n".repeat(64))))).kind).toBe("usage");
    expect((await rejection(store.putNode(node(mac, "n1", { diskRule: "x".repeat(513) })))).message).toContain("more than 512");
    const huge: Hardware = { ...hardware, disks: Array.from({ length: 700 }, () => hardware.disks[0]!) };
    expect((await rejection(store.putNode(node(mac, "n1", { hardware: huge })))).message).toContain("more than 65536");
    expect(await store.listNodes()).toEqual([]);
    await store.putNode(node(mac, "n1", { diskRule: "x".repeat(512) }));
    const j = await store.createJob(job(mac, "queued"));
    expect((await rejection(store.updateJob(j.id, { error: "e".repeat(1025) }))).message).toContain("more than 1024");
    expect((await rejection(store.createJob({ ...job(mac, "failed"), error: "e".repeat(1025) }))).kind).toBe("usage");
    expect(await store.getJob(j.id)).toEqual(j);
    const event = { atMs: 1, actor: "admin", action: "node.add", subject: "n1", detail: "d".repeat(1025) };
    expect((await rejection(store.addEvent(event))).message).toContain("more than 1024");
    expect(await store.listEvents(10)).toEqual([]);
    expect((await store.listJobs(10)).length).toBe(1);
  });

  test("reopening a database keeps its data", async () => {
    const { url, store } = await fresh();
    await store.putImage(image("ubuntu-24.04"));
    await store.putNode(node("52:54:00:00:00:01", "n1"));
    const j = await store.createJob(job("52:54:00:00:00:01", "queued"));
    await store.close();
    const again = await openStore(url);
    open.push(again);
    expect(await again.getImage("ubuntu-24.04")).toEqual(image("ubuntu-24.04"));
    expect(await again.getNode("52:54:00:00:00:01")).toEqual(node("52:54:00:00:00:01", "n1"));
    expect(await again.activeJob("52:54:00:00:00:01")).toEqual(j);
    expect((await again.createJob(job("52:54:00:00:00:01", "queued"))).id).toBeGreaterThan(j.id);
  });

  test("a version 1 database (as the first discus server wrote it) is migrated to version 2", async () => {
    const url = await backend.fresh();
    const [id, int, real] = backend.name === "sqlite" ? ["INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER", "REAL"] : ["BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BIGINT", "DOUBLE PRECISION"];
    const raw = backend.raw(url);
    // Version 1's jobs table, verbatim, with two jobs in it.
    await raw.unsafe("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    await raw.unsafe(`CREATE TABLE jobs (id ${id}, mac TEXT NOT NULL, image TEXT NOT NULL, state TEXT NOT NULL,
      finished INTEGER NOT NULL, token_sha256 TEXT NOT NULL, agent_boots INTEGER NOT NULL, percent ${real} NOT NULL,
      bytes_per_second ${real} NOT NULL, error TEXT, created_ms ${int} NOT NULL, updated_ms ${int} NOT NULL)`);
    await raw.unsafe("CREATE INDEX jobs_by_node ON jobs (mac, finished, id)");
    await raw.unsafe(`CREATE TABLE images (name TEXT PRIMARY KEY, path TEXT NOT NULL, image_id TEXT NOT NULL,
      source_bytes ${int} NOT NULL, file_bytes ${int} NOT NULL, data_chunks ${int} NOT NULL,
      signed INTEGER NOT NULL, mcast_group TEXT NOT NULL, port INTEGER NOT NULL, added_ms ${int} NOT NULL)`);
    await raw.unsafe(`CREATE TABLE nodes (mac TEXT PRIMARY KEY, name TEXT NOT NULL, tags TEXT NOT NULL, disk_rule TEXT,
      image TEXT, power TEXT NOT NULL, state TEXT NOT NULL, last_seen_ms ${int}, hardware TEXT)`);
    await raw.unsafe("CREATE UNIQUE INDEX nodes_name ON nodes (name)");
    await raw.unsafe(`CREATE TABLE events (id ${id}, at_ms ${int} NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL)`);
    await raw`INSERT INTO meta (key, value) VALUES (${"schema_version"}, ${"1"})`;
    const mac = "52:54:00:00:00:01";
    for (const [state, finished] of [["booted", 1], ["loading", 0]] as const) {
      await raw`INSERT INTO jobs (mac, image, state, finished, token_sha256, agent_boots, percent, bytes_per_second, error, created_ms, updated_ms)
        VALUES (${mac}, ${"ubuntu-24.04"}, ${state}, ${finished}, ${TOKEN}, ${1}, ${42.5}, ${1e6}, ${null}, ${1_764_614_820_000}, ${1_764_614_820_001})`;
    }
    await raw.close();

    const store = await openStore(url);
    open.push(store);
    const jobs = await store.listJobs(10);
    expect(jobs.map((j) => [j.id, j.kind, j.image, j.state])).toEqual([[2, "load", "ubuntu-24.04", "loading"], [1, "load", "ubuntu-24.04", "booted"]]);
    expect(jobs[0]).toEqual({ ...job(mac, "loading"), id: 2, agentBoots: 1, percent: 42.5, bytesPerSecond: 1e6, updatedMs: 1_764_614_820_001 });
    expect((await store.activeJob(mac))?.id).toBe(2);
    // Version 2's inventory jobs: no image. Ids go on from the old ones.
    const inv = await store.createJob({ ...job(mac, "queued"), kind: "inventory", image: null });
    expect(inv.id).toBe(3);
    expect(await store.getJob(3)).toEqual(inv);
    expect((await store.updateJob(3, { state: "done" }))?.state).toBe("done");
    expect((await store.activeJob(mac))?.id).toBe(2);
    const check = backend.raw(url);
    expect(await check`SELECT value FROM meta WHERE key = ${"schema_version"}`).toEqual([{ value: "2" }]);
    await check.close();
    // Opened again, it is simply version 2.
    await store.close();
    const again = await openStore(url);
    open.push(again);
    expect((await again.listJobs(10)).length).toBe(3);
  });

  test("a load job needs an image and an inventory job has none", async () => {
    const { store } = await fresh();
    const mac = "52:54:00:00:00:01";
    expect((await rejection(store.createJob({ ...job(mac, "queued"), image: null }))).message).toContain("a load job writes an image");
    expect((await rejection(store.createJob({ ...job(mac, "queued"), kind: "inventory" }))).message).toContain("an inventory job writes none");
    expect(await store.listJobs(10)).toEqual([]);
  });

  test("a database with a newer schema is refused, naming it without its password", async () => {
    const { url, store } = await fresh();
    await store.close();
    const raw = backend.raw(url);
    await raw`UPDATE meta SET value = ${"99"} WHERE key = ${"schema_version"}`;
    await raw.close();
    // A password in the URL (the test cluster trusts local users, so it is never asked for).
    const withPassword = url.replace("://postgres@", "://postgres:s3cret@");
    const e = await rejection(openStore(withPassword));
    expect(e.kind).toBe("usage");
    expect(e.message).toContain("version 99");
    expect(e.message).not.toContain("s3cret");
    expect(e.thing).toBe(url);
  });

  test("a damaged row gives a DiscusError naming the row", async () => {
    const { url, store } = await fresh();
    await store.putNode(node("52:54:00:00:00:01", "n1"));
    await store.putNode(node("52:54:00:00:00:02", "n2"));
    const j = await store.createJob(job("52:54:00:00:00:01", "queued"));
    const raw = backend.raw(url);
    await raw`UPDATE nodes SET tags = ${"[\"rack1\", "} WHERE mac = ${"52:54:00:00:00:01"}`;
    await raw`UPDATE nodes SET hardware = ${'{"disks": 3}'} WHERE mac = ${"52:54:00:00:00:02"}`;
    await raw`UPDATE jobs SET state = ${"exploded"} WHERE id = ${j.id}`;
    await raw.close();
    const tags = await rejection(store.getNode("52:54:00:00:00:01"));
    expect(tags.kind).toBe("input");
    expect(tags.message).toContain("node 52:54:00:00:00:01");
    expect(tags.message).toContain("tags is not valid JSON");
    expect((await rejection(store.getNodeByName("n2"))).message).toContain("node 52:54:00:00:00:02");
    expect((await rejection(store.listNodes())).kind).toBe("input");
    expect((await rejection(store.getJob(j.id))).message).toContain(`job ${j.id}`);
  });

  test("a URL of another kind is refused", async () => {
    const e = await rejection(openStore("mysql://root@localhost/discus"));
    expect(e.kind).toBe("usage");
    expect(e.message).toContain("sqlite://PATH or postgres://");
  });
});

describe("store on sqlite: the file", () => {
  let dir = "";
  beforeAll(async () => void (dir = await tmpDir()));
  afterAll(async () => void (await Bun.$`rm -rf ${dir}`.quiet()));

  test("is created owner-only (0600), WAL file too, in WAL mode", async () => {
    const path = join(dir, "state.db");
    const store = await openStore(`sqlite://${path}`);
    await store.putNode(node("52:54:00:00:00:01", "n1"));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(existsSync(`${path}-wal`)).toBe(true);
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    await store.close();
    const raw = new SQL({ adapter: "sqlite", filename: path });
    expect(await raw`PRAGMA journal_mode`).toEqual([{ journal_mode: "wal" }]);
    await raw.close();
  });

  test("a file that is not a database gives a DiscusError", async () => {
    const path = join(dir, "notes.txt");
    await Bun.write(path, "these are not the tables you are looking for\n".repeat(100));
    const e = await rejection(openStore(`sqlite://${path}`));
    expect(e.kind).toBe("input");
    expect(e.message).toContain(path);
  });

  test("a directory that does not exist gives a DiscusError", async () => {
    const e = await rejection(openStore(`sqlite://${join(dir, "missing", "state.db")}`));
    expect(e.kind).toBe("io");
    expect(e.message).toContain("ENOENT");
  });
});

describe("store on postgres: no server", () => {
  test("a server that is not there gives a network DiscusError without the password", async () => {
    const dir = await tmpDir();
    try {
      const e = await rejection(openStore(`postgres://discus:s3cret@/discus?host=${dir}`));
      expect(e.kind).toBe("network");
      expect(e.message).not.toContain("s3cret");
      expect(e.thing).toBe(`postgres://discus@/discus?host=${dir}`);
    } finally {
      await Bun.$`rm -rf ${dir}`.quiet();
    }
  });
});
