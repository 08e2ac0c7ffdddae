// The dashboard's pure parts: which client holds a session back, the rows' bounds, ETAs and rate
// plots, the stream's row diff, login cookies (expiry on an injected clock, the bound on logins),
// and the JSON log line.
import { describe, expect, test } from "bun:test";
import type { ClientSnapshot } from "../../src/server/clients.ts";
import { HOLDING_BACK_LOSS_FRACTION, MAX_SESSION_CLIENT_ROWS, holdingBack, sessionRow } from "../../src/web/fleet-view.ts";
import { etaSeconds, plotPoints } from "../../src/web/app/format.ts";
import { diffRows } from "../../src/web/stream.ts";
import { COOKIE_NAME, LOGIN_TTL_MS, Logins, MAX_LOGINS, cookieValue } from "../../src/web/login.ts";
import { jsonLine, makeLog, MAX_LOG_MESSAGE_CHARS } from "../../src/util/log.ts";
import { acceptsGzip } from "../../src/web/routes.ts";

function client(name: string, done: number, loss: number, state: ClientSnapshot["state"] = "loading"): ClientSnapshot {
  return { client: name, address: name, sender: 1, lastHeardMs: 0, state, chunksDone: done, chunksTotal: 100, bytesWritten: 0, lossFraction: loss };
}

describe("the client holding a session back", () => {
  test("the slowest loading client when none is lossy; done and failed clients never", () => {
    expect(holdingBack([client("a", 80, 0), client("b", 30, 0.002), client("c", 10, 0, "done"), client("d", 0, 0.5, "failed")])).toEqual({ client: "b", why: "slowest: 30 % done" });
  });
  test("the client with the most loss once one reaches the threshold: the rate law slows for it", () => {
    expect(holdingBack([client("a", 10, 0), client("b", 90, HOLDING_BACK_LOSS_FRACTION), client("c", 50, 0.03)])).toEqual({ client: "c", why: "most loss: 3.0 %" });
  });
  test("nobody when no client is loading", () => {
    expect(holdingBack([])).toBeNull();
    expect(holdingBack([client("a", 100, 0, "done")])).toBeNull();
  });
  test("a session row lists the worst clients first, at most MAX_SESSION_CLIENT_ROWS, and counts them all", () => {
    const clients = Array.from({ length: 40 }, (_, i) => client(`c${i}`, i, i === 7 ? 0.2 : 0));
    const row = sessionRow({ image: "os", group: "239.1.1.1", port: 4520, rateBitsPerSecond: 1e8, bytesSent: 5, clients }, 10, [1, 2]);
    expect(row.clientCount).toBe(40);
    expect(row.clients.length).toBe(MAX_SESSION_CLIENT_ROWS);
    expect(row.clients[0]!.client).toBe("c7");
    expect(row.clients.slice(1, 4).map((c) => c.client)).toEqual(["c0", "c1", "c2"]);
  });
});

describe("the page's figures", () => {
  test("ETA from the average pace since the page first saw the load", () => {
    expect(etaSeconds({ atMs: 0, percent: 10 }, { atMs: 10_000, percent: 30 })).toBe(35);
    expect(etaSeconds({ atMs: 0, percent: 10 }, { atMs: 10_000, percent: 10 })).toBeNull();
    expect(etaSeconds({ atMs: 0, percent: 10 }, { atMs: 10_000, percent: 100 })).toBeNull();
  });
  test("the rate plot spans the width, newest at the right, with headroom above the peak", () => {
    const points = plotPoints([0, 50, 100], 200, 40).split(" ").map((p) => p.split(",").map(Number));
    expect(points.map((p) => p[0])).toEqual([0, 100, 200]);
    expect(points[0]![1]).toBe(40);
    expect(points[2]![1]).toBeGreaterThan(0);
    expect(points[2]![1]).toBeLessThan(points[1]![1]!);
    expect(plotPoints([], 200, 40)).toBe("");
  });
});

describe("the stream's row diff", () => {
  test("only changed rows go out, removed ids are named, and unchanged rows cost nothing", () => {
    const known = new Map();
    expect(diffRows(known, [{ id: "a", v: 1 }, { id: "b", v: 1 }]).changed.length).toBe(2);
    expect(diffRows(known, [{ id: "a", v: 1 }, { id: "b", v: 1 }])).toEqual({ changed: [], removed: [] });
    expect(diffRows(known, [{ id: "a", v: 2 }])).toEqual({ changed: [{ id: "a", v: 2 }], removed: ["b"] });
    expect([...known.keys()]).toEqual(["a"]);
  });
});

describe("dashboard logins", () => {
  test("the cookie is HttpOnly and SameSite=Strict, and names the role until it expires", () => {
    let now = 1_000;
    const logins = new Logins(() => now);
    const set = logins.create("viewer");
    expect(set).toContain("HttpOnly");
    expect(set).toContain("SameSite=Strict");
    const cookie = `other=1; ${set.split(";")[0]}`;
    expect(logins.roleOf(cookie)).toBe("viewer");
    expect(logins.roleOf(`${COOKIE_NAME}=${"A".repeat(43)}`)).toBeNull();
    now += LOGIN_TTL_MS;
    expect(logins.roleOf(cookie)).toBeNull();
  });
  test("logout ends the login; the oldest login goes past MAX_LOGINS", () => {
    const logins = new Logins(() => 0);
    const first = logins.create("admin").split(";")[0]!;
    const second = logins.create("admin").split(";")[0]!;
    expect(logins.end(second)).toContain("Max-Age=0");
    expect(logins.roleOf(second)).toBeNull();
    for (let i = 0; i < MAX_LOGINS; i++) logins.create("viewer");
    expect(logins.roleOf(first)).toBeNull();
  });
  test("cookie values are read exactly, and oversized ones refused", () => {
    expect(cookieValue("a=1; discus_session=xyz", "discus_session")).toBe("xyz");
    expect(cookieValue("discus_sessionx=xyz", "discus_session")).toBeNull();
    expect(cookieValue(`discus_session=${"x".repeat(65)}`, "discus_session")).toBeNull();
    expect(cookieValue(null, "discus_session")).toBeNull();
  });
});

describe("JSON log lines", () => {
  test("one object per line with time, level, msg and the fields; newlines stay inside the string", () => {
    const line = jsonLine("two\nlines", { level: "error", status: 500 }, Date.UTC(2026, 11, 1));
    expect(line.includes("\n")).toBe(false);
    expect(JSON.parse(line)).toEqual({ time: "2026-12-01T00:00:00.000Z", level: "error", msg: "two\nlines", status: 500 });
  });
  test("text format writes the message; both formats cut a huge message and redact", () => {
    const out: string[] = [];
    makeLog("text", (l) => out.push(l), (l) => l.replace("SECRET", "[redacted]"))("token SECRET", { status: 1 });
    makeLog("json", (l) => out.push(l), (l) => l.replace("SECRET", "[redacted]"), () => 0)("x".repeat(MAX_LOG_MESSAGE_CHARS * 2) + "SECRET");
    expect(out[0]).toBe("token [redacted]");
    expect(JSON.parse(out[1]!).msg.length).toBeLessThan(MAX_LOG_MESSAGE_CHARS + 20);
  });
});

describe("the page's files", () => {
  test("gzip only for a client that takes it", () => {
    const req = (v: string | null) => new Request("http://x/", { headers: v === null ? {} : { "accept-encoding": v } });
    expect([req("gzip, deflate, br"), req("br;q=1, gzip;q=0.5"), req("GZIP")].map(acceptsGzip)).toEqual([true, true, true]);
    expect([req(null), req("br"), req("gzip;q=0"), req("x-gzip2")].map(acceptsGzip)).toEqual([false, false, false, false]);
  });
});
