// The HTTP API against the real daemon: `discus server` runs as its own process in a lab
// namespace (its image sessions send multicast there, on 198.18.x), on SQLite in a state
// directory on a small tmpfs; the test talks to it over the daemon's local socket (STATE/api.sock),
// which serves the same routes. Authentication, body limits, errors and their statuses, the boot
// and agent routes, a full disk under the database, and no secret in any response or log line.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { MAX_BODY_BYTES } from "../../src/http/bodies.ts";
import { MAX_NEW_NODES } from "../../src/daemon/model.ts";
import { createLab, destroyStaleLabs, type Lab } from "../../scripts/lib/netlab.ts";
import { LAB_DAEMON_HTTP_PORT, startLabDaemon, type LabDaemon } from "../../scripts/lib/lab-daemon.ts";
import { discusOk, FIXTURE_TIMEOUT_MS, tmpDir } from "../helpers.ts";

const cli = join(import.meta.dir, "..", "..", "src", "cli.ts");
const STATE_TMPFS_BYTES = 64 << 20;
const POWER_CONCURRENCY_IN_TEST = 3;
const POWER_NODES = 12;
const MAC = "52:54:00:12:34:56";
let ADMIN = "";
let dir = "";
let state = "";
let sock = "";
let lab: Lab;
let daemon: LabDaemon;
/** Every response body and header seen, to prove no token leaks; boot scripts are kept apart (they carry job tokens by design). */
const seen: string[] = [];
const kernelBytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) & 0xff));
const logLines = () => daemon.log().split("\n").filter((l) => l.length > 0);

async function call(method: string, path: string, o: { token?: string | null; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: Headers; text: string; body: any }> {
  const headers: Record<string, string> = { ...o.headers };
  const token = o.token === undefined ? ADMIN : o.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`http://localhost${path}`, { method, headers, body: o.body, unix: sock });
  const text = await res.text();
  if (!path.startsWith("/boot.ipxe")) seen.push(text, JSON.stringify([...res.headers]));
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, text, body };
}

/** Sends raw bytes over the socket and returns what came back before `untilMs`; `more` is called until the response starts. */
async function raw(head: string, more: (() => Buffer | null) | null, untilMs = 5000): Promise<{ response: string; sentBytes: number }> {
  const conn = connect(sock);
  let response = "";
  let sentBytes = 0;
  conn.on("data", (d) => (response += d.toString("latin1")));
  conn.on("error", () => {});
  await new Promise<void>((r) => conn.once("connect", () => r()));
  conn.write(head);
  const deadline = Date.now() + untilMs;
  while (Date.now() < deadline && !response.includes("\r\n\r\n")) {
    const chunk = more?.() ?? null;
    if (chunk !== null && !conn.destroyed) {
      conn.write(chunk);
      sentBytes += chunk.length;
    }
    await Bun.sleep(5);
  }
  await Bun.sleep(50);
  conn.destroy();
  return { response, sentBytes };
}

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  const images = join(dir, "images");
  const bootDir = join(dir, "boot");
  mkdirSync(images);
  mkdirSync(bootDir);
  writeFileSync(join(dir, "source.img"), Buffer.alloc(2 << 20, 7));
  await discusOk(["create", "--raw", "--quiet", join(dir, "source.img"), join(images, "deb12.dsc")]);
  writeFileSync(join(bootDir, "vmlinuz"), kernelBytes);
  writeFileSync(join(bootDir, "..secret"), "no");
  // The state on a small tmpfs: the disk-full test fills it.
  state = join(dir, "state");
  mkdirSync(state);
  await $`mount -t tmpfs -o size=${STATE_TMPFS_BYTES},mode=0700 discus-api-test ${state}`;
  sock = join(state, "api.sock");
  lab = await createLab({ clients: 0 });
  const s = lab.server;
  daemon = await startLabDaemon(lab, { state, images, args: ["--boot-dir", bootDir, "--power-concurrency", String(POWER_CONCURRENCY_IN_TEST)] });
  ADMIN = daemon.adminToken();
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  await daemon?.stop();
  await lab?.destroy();
  if (state) await $`umount ${state}`.quiet().nothrow();
  if (dir) await $`rm -rf ${dir}`.quiet().nothrow();
});

const node = { name: "n1", mac: MAC, tags: ["rack1"], diskRule: "only", image: "deb12", power: { driver: "none" } };

describe("the local socket", () => {
  test("is the owner's only, and a second daemon on the same state directory is refused", async () => {
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    const s = lab.server;
    const second = await lab.exec(s, ["bun", cli, "server", "--state", state, "--listen", `${s.address}:${LAB_DAEMON_HTTP_PORT + 1}`, "--images", join(dir, "images"), "--iface", s.address]);
    expect(second.exitCode).toBe(2);
    expect(second.stderr).toContain("another discus server is running on this state directory");
    expect((await call("GET", "/api/nodes")).status).toBe(200);
  });
});

describe("admin token", () => {
  test("no token and a wrong token are 401 with WWW-Authenticate; the right one passes", async () => {
    for (const token of [null, "wrong-token-000000", ADMIN.slice(0, -1), `${ADMIN}x`]) {
      const r = await call("GET", "/api/nodes", { token });
      expect(r.status).toBe(401);
      expect(r.headers.get("www-authenticate")).toBe("Bearer");
      expect(r.body.error).toContain("admin token");
    }
    const basic = await call("GET", "/api/status", { token: null, headers: { authorization: `Basic ${btoa("admin:" + ADMIN)}` } });
    expect(basic.status).toBe(401);
    expect((await call("GET", "/api/nodes")).status).toBe(200);
  });

  test("the viewer token reads (the API, /metrics) and is refused every change (403)", async () => {
    const viewer = readFileSync(join(state, "viewer.token"), "utf8").trim();
    expect(statSync(join(state, "viewer.token")).mode & 0o777).toBe(0o600);
    expect(viewer).not.toBe(ADMIN);
    for (const path of ["/api/nodes", "/api/status", "/api/images", "/api/events", "/metrics"]) expect([path, (await call("GET", path, { token: viewer })).status]).toEqual([path, 200]);
    const changes: [string, string, string][] = [
      ["POST", "/api/nodes", JSON.stringify(node)],
      ["POST", "/api/reload", JSON.stringify({ selectors: ["x"], image: null })],
      ["POST", "/api/power", JSON.stringify({ selectors: ["x"] })],
      ["POST", "/api/images/rescan", ""],
      ["DELETE", "/api/nodes/x", ""],
    ];
    for (const [method, path, body] of changes) {
      const r = await call(method, path, { token: viewer, body: body === "" ? undefined : body });
      expect([path, r.status, r.body.error]).toEqual([path, 403, "the viewer token may only look; this call needs the admin token"]);
    }
  });
});

/** How many power actions of a start/end log ran at once, at most: its lines replayed in time order. */
function peakOf(logText: string): number {
  const lines = logText.trim().split("\n").map((l) => l.split(" ")) as [string, string, string][];
  let running = 0;
  let peak = 0;
  for (const [what] of lines.sort((a, b) => Number(BigInt(a[2]) - BigInt(b[2])))) {
    running += what === "start" ? 1 : -1;
    peak = Math.max(peak, running);
  }
  return peak;
}

describe("nodes", () => {
  test("add, show by name and by MAC, change, remove; missing is 404", async () => {
    const added = await call("POST", "/api/nodes", { body: JSON.stringify(node) });
    expect(added.status).toBe(201);
    expect(added.body.mac).toBe(MAC);
    expect((await call("GET", "/api/nodes/n1")).body.node.name).toBe("n1");
    expect((await call("GET", `/api/nodes/${encodeURIComponent("52-54-00-12-34-56")}`)).body.node.mac).toBe(MAC);
    const changed = await call("PATCH", "/api/nodes/n1", { body: JSON.stringify({ tags: ["rack2"], diskRule: "serial:S3Z9" }) });
    expect(changed.status).toBe(200);
    expect(changed.body.tags).toEqual(["rack2"]);
    expect((await call("POST", "/api/nodes", { body: JSON.stringify({ ...node, name: "n2", mac: "52:54:00:00:00:02" }) })).status).toBe(201);
    expect((await call("DELETE", "/api/nodes/n2")).status).toBe(200);
    expect((await call("GET", "/api/nodes/n2")).status).toBe(404);
    expect((await call("DELETE", "/api/nodes/n2")).status).toBe(404);
    expect((await call("PATCH", "/api/nodes/n2", { body: "{}" })).status).toBe(404);
  });

  test("CSV import", async () => {
    const csv = "name,mac,disk,image,tags,power\nc1,52:54:00:00:00:11,only,deb12,lab a,none\nc2,52:54:00:00:00:12,only,deb12,lab,none\n";
    const r = await call("POST", "/api/nodes/import", { body: csv, headers: { "content-type": "text/csv" } });
    expect(r.status).toBe(201);
    expect(r.body.map((n: { name: string }) => n.name)).toEqual(["c1", "c2"]);
    expect((await call("GET", "/api/nodes/import")).status).toBe(404);
  });

  test("a clash from the daemon (DiscusError usage) is 400 with its message", async () => {
    const r = await call("POST", "/api/nodes", { body: JSON.stringify(node) });
    expect(r.status).toBe(400);
    expect(r.body.error).toContain("exists already");
  });
});

describe("bad bodies", () => {
  test("malformed JSON is 400", async () => {
    for (const body of ["{\"name\": ", "not json", ""]) {
      const r = await call("POST", "/api/nodes", { body });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatch(/JSON/);
    }
  });

  test("a field of the wrong type, a missing field, an unknown field: 400 naming the field", async () => {
    const cases: [string, object, string][] = [
      ["/api/nodes", { ...node, tags: "rack1" }, "tags"],
      ["/api/nodes", { ...node, power: { driver: "ipmi", host: "10.0.0.1", user: "root" } }, "power.passwordFile"],
      ["/api/nodes", { ...node, power: { driver: "telnet" } }, "power.driver"],
      ["/api/nodes", { ...node, mac: undefined }, "mac"],
      ["/api/nodes", { ...node, diskrule: "x" }, "diskrule"],
      ["/api/reload", { selectors: ["n1", 7], image: null }, "selectors[1]"],
      ["/api/reload", { selectors: Array(1001).fill("n1"), image: null }, "selectors"],
      ["/api/reload", { selectors: ["x".repeat(129)], image: null }, "selectors[0]"],
      ["/api/cancel", { selectors: "n1" }, "selectors"],
    ];
    for (const [path, body, field] of cases) {
      const r = await call("POST", path, { body: JSON.stringify(body) });
      expect(r.status).toBe(400);
      expect(r.body.error).toContain(`${field} should be`);
    }
    const patch = await call("PATCH", "/api/nodes/n1", { body: JSON.stringify({ mac: "52:54:00:00:00:99" }) });
    expect(patch.status).toBe(400);
    expect(patch.body.error).toContain("mac should be absent");
  });

  test("bad path and query values are 400", async () => {
    expect((await call("GET", "/api/jobs/abc")).status).toBe(400);
    expect((await call("GET", "/api/jobs/0")).status).toBe(400);
    expect((await call("GET", "/api/events?limit=100000")).body.error).toContain("limit");
    expect((await call("GET", "/api/nodes/%E0%A4%A")).status).toBe(400);
  });
});

describe("oversized bodies", () => {
  test("an honest Content-Length over the limit is 413 before the body is sent", async () => {
    const head = `POST /api/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: ${MAX_BODY_BYTES + 1}\r\n\r\n`;
    const { response, sentBytes } = await raw(head, null);
    expect(sentBytes).toBe(0);
    expect(response).toMatch(/^HTTP\/1\.1 413 /);
    const big = await call("POST", "/api/nodes", { body: JSON.stringify({ ...node, name: "x".repeat(MAX_BODY_BYTES) }) });
    expect(big.status).toBe(413);
  });

  test("a chunked body is cut off once it passes the limit", async () => {
    const head = `POST /api/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const capBytes = 64 * MAX_BODY_BYTES;
    const piece = Buffer.alloc(4096, 0x20);
    let offered = 0;
    const { response, sentBytes } = await raw(head, () => {
      if (offered >= capBytes) return null;
      offered += piece.length;
      return Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n")]);
    }, 20_000);
    expect(response).toMatch(/^HTTP\/1\.1 413 /);
    expect(sentBytes).toBeGreaterThan(MAX_BODY_BYTES);
    expect(sentBytes).toBeLessThan(capBytes);
  });
});

describe("routes", () => {
  test("unknown route 404, wrong method 405 with Allow", async () => {
    expect((await call("GET", "/api/nothing")).status).toBe(404);
    expect((await call("GET", "/nothing")).status).toBe(404);
    const r = await call("PUT", "/api/nodes");
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")).toBe("GET, POST");
    expect((await call("DELETE", "/boot.ipxe", { token: null })).status).toBe(405);
  });

  test("status, images, events (the query is not logged)", async () => {
    expect((await call("GET", "/api/status")).body.images[0].name).toBe("deb12");
    expect((await call("GET", "/api/images/deb12")).body.group).toMatch(/^239\.192\.77\.\d+$/);
    expect((await call("GET", "/api/images/none")).status).toBe(404);
    expect((await call("POST", "/api/images/rescan")).status).toBe(200);
    const ev = await call("GET", "/api/events?limit=2");
    expect(ev.body.length).toBe(2);
    await Bun.sleep(100);
    expect(logLines().findLast((l) => l.startsWith("GET /api/events"))).toMatch(/^GET \/api\/events 200 \d+\.\dms$/);
  });
});

describe("boot and agent", () => {
  let jobToken = "";
  let jobId = 0;

  test("boot.ipxe needs no token and answers text/plain; unknown nodes are recorded as new", async () => {
    const r = await call("GET", "/boot.ipxe?mac=52:54:00:aa:bb:cc", { token: null, headers: { host: "198.18.0.1:8080" } });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toStartWith("text/plain");
    expect(r.text).toStartWith("#!ipxe\n");
    expect((await call("GET", "/api/nodes/52:54:00:aa:bb:cc")).body.node.state).toBe("new");
    expect((await call("GET", "/boot.ipxe", { token: null })).status).toBe(400);
    // A MAC iPXE mangled: the machine still boots, from its own disk.
    const mangled = await call("GET", "/boot.ipxe?mac=zz", { token: null });
    expect(mangled.status).toBe(200);
    expect(mangled.text).toMatch(/^#!ipxe\n.*no MAC.*\nexit\n$/s);
  });

  test("a reload puts a job token into the node's boot script, using the Host it came by", async () => {
    const jobs = await call("POST", "/api/reload", { body: JSON.stringify({ selectors: ["n1"], image: null }) });
    expect(jobs.status).toBe(200);
    expect(jobs.body[0].state).toBe("queued");
    jobId = jobs.body[0].id;
    const r = await call("GET", `/boot.ipxe?mac=${MAC}`, { token: null, headers: { host: "198.18.0.1:8080" } });
    expect(r.text).toContain("kernel http://198.18.0.1:8080/boot/vmlinuz");
    jobToken = /discus\.token=([A-Za-z0-9_-]+)/.exec(r.text)![1]!;
    expect((await call("GET", `/boot.ipxe?mac=${MAC}`, { token: null, headers: { host: "a\"b" } })).status).toBe(400);
  });

  test("boot files are served without a token, and only plain names in the boot directory", async () => {
    const res = await fetch("http://localhost/boot/vmlinuz", { unix: sock });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(kernelBytes)).toBe(true);
    expect((await call("GET", "/boot/initramfs", { token: null })).status).toBe(404);
    expect((await call("GET", "/boot/..secret", { token: null })).status).toBe(400);
    expect((await call("GET", "/boot/..%2Fetc%2Fpasswd", { token: null })).status).toBe(400);
    expect((await call("POST", "/boot/vmlinuz", { token: null })).status).toBe(405);
  });

  test("agent calls: 401 without a token, 403 with a wrong one, 200 with the job's", async () => {
    const report = JSON.stringify({ state: "loading", percent: 40, bytesPerSecond: 1e8, message: "" });
    expect((await call("GET", `/api/agent/plan?mac=${MAC}`, { token: null })).status).toBe(401);
    for (const token of ["f".repeat(64), ADMIN]) {
      expect((await call("GET", `/api/agent/plan?mac=${MAC}`, { token })).status).toBe(403);
      expect((await call("POST", `/api/agent/report?mac=${MAC}`, { token, body: report })).status).toBe(403);
    }
    expect((await call("GET", `/api/jobs/${jobId}`)).body.percent).toBe(0);
    const plan = await call("GET", `/api/agent/plan?mac=${MAC}`, { token: jobToken });
    expect(plan.status).toBe(200);
    expect(plan.body).toMatchObject({ action: "load", image: "deb12", jobId });
    expect(plan.body.group).toMatch(/^239\.192\.77\.\d+$/);
    expect((await call("POST", `/api/agent/report?mac=${MAC}`, { token: jobToken, body: report })).status).toBe(200);
    expect((await call("GET", `/api/jobs/${jobId}`)).body).toMatchObject({ state: "loading", percent: 40 });
    const bad = await call("POST", `/api/agent/report?mac=${MAC}`, { token: jobToken, body: JSON.stringify({ state: "done", percent: 40, bytesPerSecond: 0, message: "" }) });
    expect(bad.body.error).toContain("state should be");
    const hw = { disks: [{ path: "/dev/sda", model: "QEMU", serial: "S1", wwn: "", sizeBytes: 1 << 30, removable: false }], nics: [{ name: "eth0", mac: MAC, speedMbit: null }], cpu: { model: "x", cores: 2 }, memoryBytes: 1 << 30 };
    expect((await call("POST", `/api/agent/inventory?mac=${MAC}`, { token: "0".repeat(64), body: JSON.stringify(hw) })).status).toBe(403);
  });

  test("cancel stops a reload that has not begun to write, and refuses one that has", async () => {
    const c1 = "52:54:00:00:00:11";
    expect((await call("POST", "/api/reload", { body: JSON.stringify({ selectors: ["c1"], image: null }) })).status).toBe(200);
    const cancelled = await call("POST", "/api/cancel", { body: JSON.stringify({ selectors: ["c1"] }) });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.map((j: { state: string }) => j.state)).toEqual(["cancelled"]);
    expect((await call("GET", `/boot.ipxe?mac=${c1}`, { token: null })).text).toMatch(/\nexit\n$/);
    expect((await call("GET", "/api/nodes/c1")).body.node.state).toBe("ready");
    // n1's agent reported loading: stopping it now would leave a half-written disk.
    const refused = await call("POST", "/api/cancel", { body: JSON.stringify({ selectors: ["n1"] }) });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toContain("has begun to write");
    expect((await call("GET", `/api/jobs/${jobId}`)).body.state).toBe("loading");
  });

  test("discus inventory: a known node boots the inventory action, reports its hardware with its token, and then boots its disk", async () => {
    const c2 = "52:54:00:00:00:12";
    const jobs = await call("POST", "/api/inventory", { body: JSON.stringify({ selectors: ["c2"] }) });
    expect(jobs.status).toBe(200);
    expect(jobs.body[0]).toMatchObject({ kind: "inventory", image: null, state: "queued" });
    const script = (await call("GET", `/boot.ipxe?mac=${c2}`, { token: null })).text;
    expect(script).toContain("discus.action=inventory");
    expect(script).not.toContain("discus.disk=");
    const token = /discus\.token=([A-Za-z0-9_-]+)/.exec(script)![1]!;
    seenJobToken.push(token);
    const hw = { disks: [{ path: "/dev/vda", model: "QEMU", serial: "SER-C2", wwn: "", sizeBytes: 1 << 30, removable: false }], nics: [{ name: "eth0", mac: c2, speedMbit: 1000 }], cpu: { model: "x", cores: 2 }, memoryBytes: 1 << 30 };
    expect((await call("POST", `/api/agent/inventory?mac=${c2}`, { token: jobToken, body: JSON.stringify(hw) })).status).toBe(403);
    expect((await call("POST", `/api/agent/inventory?mac=${c2}`, { token, body: JSON.stringify(hw) })).status).toBe(200);
    const shown = (await call("GET", "/api/nodes/c2")).body;
    expect(shown.node.hardware.disks[0].serial).toBe("SER-C2");
    expect(shown.job).toMatchObject({ kind: "inventory", state: "done" });
    expect((await call("GET", `/boot.ipxe?mac=${c2}`, { token: null })).text).toMatch(/\nexit\n$/);
    // n1 is writing its disk: no inventory now.
    expect((await call("POST", "/api/inventory", { body: JSON.stringify({ selectors: ["n1"] }) })).status).toBe(400);
  });

  test("a reload of an image not in the catalog (DiscusError usage) is 400", async () => {
    const r = await call("POST", "/api/reload", { body: JSON.stringify({ selectors: ["n1"], image: "nope" }) });
    expect(r.status).toBe(400);
    expect(r.body.error).toContain("not in the catalog");
  });

  test("job token kept for the leak check", () => {
    expect(jobToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    seenJobToken.push(jobToken);
  });
});

const seenJobToken: string[] = [];

describe("failures inside the daemon", () => {
  test("a full disk under the database: writes get 500 naming no detail, reads go on, and writes work again once there is room", async () => {
    await $`head -c ${STATE_TMPFS_BYTES} /dev/zero > ${join(state, "filler")}`.quiet().nothrow();
    const full = await call("POST", "/api/nodes", { body: JSON.stringify({ ...node, name: "full1", mac: "52:54:00:00:00:31" }) });
    expect(full.status).toBe(500);
    // A disk's failure, not a bug: named as the database's (io), with the cause in the log.
    expect(full.body.error).toMatch(/^the server failed \(io error\); the details are in the server log under request \d+$/);
    const id = /request (\d+)$/.exec(full.body.error)![1];
    await Bun.sleep(100);
    expect(logLines().find((l) => l.startsWith(`request ${id} `))).toMatch(/database.*full.*free space/is);
    expect((await call("GET", "/api/nodes")).status).toBe(200);
    await $`rm ${join(state, "filler")}`;
    expect((await call("POST", "/api/nodes", { body: JSON.stringify({ ...node, name: "full1", mac: "52:54:00:00:00:31" }) })).status).toBe(201);
    expect(daemon.proc.exitCode).toBeNull();
  });
});

describe("bounds", () => {
  test("a bulk reload power-cycles its nodes at most --power-concurrency at a time, and every one of them", async () => {
    const log = join(dir, "power.log");
    const script = join(dir, "power.sh");
    writeFileSync(script, `#!/bin/sh\necho "start $2 $(date +%s%N)" >> ${log}\nsleep 0.3\necho "end $2 $(date +%s%N)" >> ${log}\n`, { mode: 0o755 });
    const names = Array.from({ length: POWER_NODES }, (_, i) => `p${i}`);
    for (const [i, name] of names.entries()) {
      const mac = `52:54:00:00:01:${i.toString(16).padStart(2, "0")}`;
      const added = await call("POST", "/api/nodes", { body: JSON.stringify({ ...node, name, mac, tags: ["power"], power: { driver: "command", command: script } }) });
      expect(added.status).toBe(201);
    }
    expect((await call("POST", "/api/reload", { body: JSON.stringify({ selectors: ["tag:power"], image: null }) })).status).toBe(200);
    const ends = () => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter((l) => l.startsWith("end ")).length : 0);
    for (let i = 0; i < 300 && ends() < POWER_NODES; i++) await Bun.sleep(100);
    const lines = readFileSync(log, "utf8").trim().split("\n").map((l) => l.split(" "));
    expect(new Set(lines.filter((l) => l[0] === "end").map((l) => l[1]))).toEqual(new Set(names));
    expect(peakOf(readFileSync(log, "utf8"))).toBe(POWER_CONCURRENCY_IN_TEST);
    await Bun.sleep(200);
    const cycled = (await call("GET", "/api/events?limit=1000")).body.filter((e: { action: string }) => e.action === "power.cycle");
    expect(cycled.length).toBeGreaterThanOrEqual(POWER_NODES);
    expect((await call("POST", "/api/cancel", { body: JSON.stringify({ selectors: ["tag:power"] }) })).status).toBe(200);

    // A power cycle alone (the dashboard's action): no job, the same bound, an event per node.
    rmSync(log);
    const power = await call("POST", "/api/power", { body: JSON.stringify({ selectors: ["tag:power"] }) });
    expect(power.status).toBe(200);
    expect(new Set(power.body.nodes)).toEqual(new Set(names));
    for (let i = 0; i < 300 && ends() < POWER_NODES; i++) await Bun.sleep(100);
    expect(peakOf(readFileSync(log, "utf8"))).toBe(POWER_CONCURRENCY_IN_TEST);
    await Bun.sleep(200);
    const events = (await call("GET", "/api/events?limit=1000")).body as { action: string }[];
    expect(events.filter((e) => e.action === "power.request").length).toBe(POWER_NODES);
    expect(events.filter((e) => e.action === "power.cycle").length).toBeGreaterThanOrEqual(2 * POWER_NODES);
    expect((await call("GET", "/api/nodes/p0")).body.job.state).toBe("cancelled");
  }, 60_000);

  test("strangers cannot fill the inventory: past MAX_NEW_NODES unknown MACs boot their disks unrecorded", async () => {
    const before = (await call("GET", "/api/nodes")).body;
    const known = before.filter((n: { node: { state: string } }) => n.node.state === "new").length;
    const mac = (i: number) => `02:00:00:${((i >> 16) & 0xff).toString(16).padStart(2, "0")}:${((i >> 8) & 0xff).toString(16).padStart(2, "0")}:${(i & 0xff).toString(16).padStart(2, "0")}`;
    for (let i = known; i < MAX_NEW_NODES; i++) expect((await call("GET", `/boot.ipxe?mac=${mac(i)}`, { token: null })).text).toContain("discus.action=inventory");
    const refused = await call("GET", `/boot.ipxe?mac=${mac(MAX_NEW_NODES)}`, { token: null });
    expect(refused.text).toMatch(/not recorded.*\nexit\n$/s);
    expect((await call("GET", `/api/nodes/${mac(MAX_NEW_NODES)}`)).status).toBe(404);
    expect((await call("GET", "/api/nodes")).body.length).toBe(before.length + MAX_NEW_NODES - known);
    expect(logLines().some((l) => l.includes("not recorded"))).toBe(true);
    // An admin can still add nodes, and known nodes still boot as before.
    expect((await call("POST", "/api/nodes", { body: JSON.stringify({ ...node, name: "late", mac: "52:54:00:00:00:77" }) })).status).toBe(201);
  }, 120_000);
});

describe("secrets", () => {
  test("neither the admin token nor a job token appears in any response or log line", () => {
    const lines = logLines();
    expect(seen.length).toBeGreaterThan(50);
    expect(lines.length).toBeGreaterThan(50);
    for (const secret of [ADMIN, readFileSync(join(state, "viewer.token"), "utf8").trim(), ...seenJobToken]) {
      for (const s of [...seen, ...lines]) expect(s).not.toContain(secret);
    }
    // One line per request, and never its query string (tokens could travel there by mistake).
    for (const l of lines.filter((l) => /^(GET|POST|PATCH|DELETE|PUT) /.test(l))) expect(l).toMatch(/^(GET|POST|PATCH|DELETE|PUT) \/\S* \d{3} \d+\.\dms$/);
  });
});
