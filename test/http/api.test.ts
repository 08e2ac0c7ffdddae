// The HTTP face (src/http/) over a real socket on 127.0.0.1: authentication, body limits, errors
// and their statuses, boot and agent routes. The daemon behind it is a TEST DOUBLE for the HTTP
// layer only (memory-daemon.ts: records in memory, behaving per DaemonApi's comments); these
// tests switch to the real daemon when src/daemon/daemon.ts lands.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHttp } from "../../src/http/api.ts";
import { MAX_BODY_BYTES } from "../../src/http/bodies.ts";
import { DiscusError } from "../../src/util/errors.ts";
import { MemoryDaemon } from "./memory-daemon.ts";

const ADMIN = "adm-" + "7f3c9a1e5b2d4c6f8a0b1c2d3e4f5a6b";
const MAC = "52:54:00:12:34:56";
const daemon = new MemoryDaemon();
const logLines: string[] = [];
/** Every response body and header seen, to prove no token leaks; boot scripts are kept apart (they carry job tokens by design). */
const seen: string[] = [];
let server: { url: string; stop(): Promise<void> };
const bootDir = mkdtempSync(join(tmpdir(), "discus-http-boot-"));
const kernelBytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) & 0xff));

async function call(method: string, path: string, o: { token?: string | null; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: Headers; text: string; body: any }> {
  const headers: Record<string, string> = { ...o.headers };
  const token = o.token === undefined ? ADMIN : o.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const res = await fetch(server.url + path, { method, headers, body: o.body });
  const text = await res.text();
  if (!path.startsWith("/boot.ipxe")) seen.push(text, JSON.stringify([...res.headers]));
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, text, body };
}

/** Sends raw bytes over TCP and returns what came back before `untilMs`; `more` is called until the response starts. */
async function raw(head: string, more: (() => Buffer | null) | null, untilMs = 5000): Promise<{ response: string; sentBytes: number }> {
  const url = new URL(server.url);
  const sock = connect(Number(url.port), url.hostname);
  let response = "";
  let sentBytes = 0;
  sock.on("data", (d) => (response += d.toString("latin1")));
  sock.on("error", () => {});
  await new Promise<void>((r) => sock.once("connect", () => r()));
  sock.write(head);
  const deadline = Date.now() + untilMs;
  while (Date.now() < deadline && !response.includes("\r\n\r\n")) {
    const chunk = more?.() ?? null;
    if (chunk !== null && !sock.destroyed) {
      sock.write(chunk);
      sentBytes += chunk.length;
    }
    await Bun.sleep(5);
  }
  await Bun.sleep(50);
  sock.destroy();
  return { response, sentBytes };
}

beforeAll(() => {
  daemon.images.set("deb12", { name: "deb12", path: "/srv/deb12.dsc", imageId: "ab".repeat(16), sourceBytes: 1 << 30, fileBytes: 1 << 28, dataChunks: 256, signed: false, group: "239.192.77.1", port: 3564, addedMs: 0 });
  writeFileSync(join(bootDir, "vmlinuz"), kernelBytes);
  writeFileSync(join(bootDir, "..secret"), "no");
  server = startHttp(daemon, { listen: { hostname: "127.0.0.1", port: 0 }, adminToken: ADMIN, bootDir, log: (l) => logLines.push(l) });
});

afterAll(async () => {
  await server.stop();
  rmSync(bootDir, { recursive: true, force: true });
});

const node = { name: "n1", mac: MAC, tags: ["rack1"], diskRule: "only", image: "deb12", power: { driver: "none" } };

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
});

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
    expect((await call("GET", "/")).status).toBe(404);
    const r = await call("PUT", "/api/nodes");
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")).toBe("GET, POST");
    expect((await call("DELETE", "/boot.ipxe", { token: null })).status).toBe(405);
  });

  test("status, images, events (the query is not logged)", async () => {
    expect((await call("GET", "/api/status")).body.images[0].name).toBe("deb12");
    expect((await call("GET", "/api/images/deb12")).body.group).toBe("239.192.77.1");
    expect((await call("GET", "/api/images/none")).status).toBe(404);
    expect((await call("POST", "/api/images/rescan")).status).toBe(200);
    const ev = await call("GET", "/api/events?limit=2");
    expect(ev.body.length).toBe(2);
    expect(logLines.at(-1)).toMatch(/^GET \/api\/events 200 \d+\.\dms$/);
  });
});

describe("boot and agent", () => {
  let jobToken = "";

  test("boot.ipxe needs no token and answers text/plain; unknown nodes are recorded as new", async () => {
    const r = await call("GET", "/boot.ipxe?mac=52:54:00:aa:bb:cc", { token: null, headers: { host: "198.18.0.1:8080" } });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toStartWith("text/plain");
    expect(r.text).toBe("#!ipxe\nexit\n");
    expect(daemon.nodes.get("52:54:00:aa:bb:cc")?.state).toBe("new");
    expect((await call("GET", "/boot.ipxe", { token: null })).status).toBe(400);
    expect((await call("GET", "/boot.ipxe?mac=zz", { token: null })).status).toBe(400);
  });

  test("a reload puts a job token into the node's boot script, using the Host it came by", async () => {
    const jobs = await call("POST", "/api/reload", { body: JSON.stringify({ selectors: ["n1"], image: null }) });
    expect(jobs.status).toBe(200);
    expect(jobs.body[0].state).toBe("queued");
    const r = await call("GET", `/boot.ipxe?mac=${MAC}`, { token: null, headers: { host: "198.18.0.1:8080" } });
    expect(r.text).toContain("kernel http://198.18.0.1:8080/vmlinuz");
    jobToken = /discus\.token=(\S+)/.exec(r.text)![1]!;
    expect((await call("GET", `/boot.ipxe?mac=${MAC}`, { token: null, headers: { host: "a\"b" } })).status).toBe(400);
  });

  test("boot files are served without a token, and only plain names in the boot directory", async () => {
    const res = await fetch(`${server.url}/boot/vmlinuz`);
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
    expect(daemon.jobs[0]!.percent).toBe(0);
    const plan = await call("GET", `/api/agent/plan?mac=${MAC}`, { token: jobToken });
    expect(plan.status).toBe(200);
    expect(plan.body).toMatchObject({ action: "load", image: "deb12", group: "239.192.77.1" });
    expect((await call("POST", `/api/agent/report?mac=${MAC}`, { token: jobToken, body: report })).status).toBe(200);
    expect((await call("GET", "/api/jobs/1")).body).toMatchObject({ state: "loading", percent: 40 });
    const bad = await call("POST", `/api/agent/report?mac=${MAC}`, { token: jobToken, body: JSON.stringify({ state: "done", percent: 40, bytesPerSecond: 0, message: "" }) });
    expect(bad.body.error).toContain("state should be");
    const hw = { disks: [{ path: "/dev/sda", model: "QEMU", serial: "S1", wwn: "", sizeBytes: 1 << 30, removable: false }], nics: [{ name: "eth0", mac: MAC, speedMbit: null }], cpu: { model: "x", cores: 2 }, memoryBytes: 1 << 30 };
    expect((await call("POST", `/api/agent/inventory?mac=${MAC}`, { token: jobToken, body: JSON.stringify(hw) })).status).toBe(200);
    expect((await call("POST", `/api/agent/inventory?mac=${MAC}`, { token: "0".repeat(64), body: JSON.stringify(hw) })).status).toBe(403);
  });

  test("a reload of an image not in the catalog (DiscusError usage) is 400", async () => {
    const r = await call("POST", "/api/reload", { body: JSON.stringify({ selectors: ["n1"], image: "nope" }) });
    expect(r.status).toBe(400);
    expect(r.body.error).toContain("not in the catalog");
  });

  test("job token kept for the leak check", () => {
    expect(jobToken).toMatch(/^[0-9a-f]{64}$/);
    seenJobToken.push(jobToken);
  });
});

const seenJobToken: string[] = [];

describe("failures inside the daemon", () => {
  test("an unexpected throw is 500 with a generic message, details in the log, and the server answers the next request", async () => {
    daemon.failNext = new Error(`disk on fire while holding ${ADMIN}`);
    const r = await call("GET", "/api/nodes");
    expect(r.status).toBe(500);
    expect(r.body.error).toMatch(/^internal error; the details are in the server log under request \d+$/);
    expect(r.text).not.toContain("fire");
    const detail = logLines.find((l) => l.includes("disk on fire"));
    expect(detail).toContain("[redacted]");
    expect((await call("GET", "/api/nodes")).status).toBe(200);
    daemon.failNext = new DiscusError("io", "/srv/images", "read failed", "Check the disk");
    const io = await call("POST", "/api/images/rescan");
    expect(io.status).toBe(500);
    expect(io.body.error).toContain("io error");
    expect(io.text).not.toContain("/srv/images");
    daemon.failNext = "a thrown string";
    expect((await call("GET", "/api/status")).status).toBe(500);
    expect((await call("GET", "/api/status")).status).toBe(200);
  });
});

describe("secrets", () => {
  test("neither the admin token nor a job token appears in any response or log line", () => {
    expect(seen.length).toBeGreaterThan(50);
    expect(logLines.length).toBeGreaterThan(50);
    for (const secret of [ADMIN, ...seenJobToken]) {
      for (const s of [...seen, ...logLines]) expect(s).not.toContain(secret);
    }
    for (const l of logLines.filter((l) => !l.startsWith("request "))) expect(l).toMatch(/^(GET|POST|PATCH|DELETE|PUT) \/\S* \d{3} \d+\.\dms$/);
  });
});
