// `discus serve` for a supervising parent (issue 11: the daemon runs one per image): with
// `--events json` stdout carries every event and a snapshot each second as JSON lines, and
// nothing else; with `--exit-with-stdin` the server stops cleanly (exit 0, an `ended` event)
// when stdin reaches EOF, and also when its parent is killed with SIGKILL (the kernel closes the
// parent's end), so no orphan keeps serving the group; SIGINT is left to the parent. `--idle-event`
// tells idleness and serves on.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab, type Lab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT, runClient } from "../../scripts/lib/mcast.ts";
import { SNAPSHOT_INTERVAL_MS } from "../../src/server/serve.ts";
import { cli, discus, discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";
import { alive, waitUntil } from "../daemon/serve-children.ts";

const TEST_TIMEOUT_MS = 120_000;
/** A server whose stdin closed (or whose parent died) is gone within this, generously. */
const EXIT_BOUND_MS = 5000;
const START_BOUND_MS = 10_000;
const IDLE_EVENT = "1s";
/** Long enough for a server that would stop at SIGINT to have stopped. */
const SIGINT_GRACE_MS = 1000;

let dir = "";
let image = "";
let referenceSha = "";

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  writeFileSync(join(dir, "source.img"), randomBytes(6 << 20));
  image = join(dir, "disk.dsc");
  await discusOk(["create", join(dir, "source.img"), image, "--raw", "--quiet"]);
  await discusOk(["restore", image, join(dir, "reference.img"), "--quiet"]);
  referenceSha = await sha256File(join(dir, "reference.img"));
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (dir) await $`rm -rf ${dir}`;
});

type Line = { kind: string } & Record<string, unknown>;

/** Every line of stdout, parsed (a line that is not JSON fails the test), as they come. */
function readLines(stream: ReadableStream<Uint8Array>): { lines: Line[]; done: Promise<string> } {
  const lines: Line[] = [];
  const done = (async () => {
    let all = "";
    let partial = "";
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      all += text;
      const parts = (partial + text).split("\n");
      partial = parts.pop()!;
      for (const p of parts) lines.push(JSON.parse(p) as Line);
    }
    return all;
  })();
  return { lines, done };
}

function serveArgs(lab: Lab, group: string): string[] {
  return [image, "--group", group, "--port", String(MCAST_PORT), "--iface", lab.server.address, "--rate", "100mbit"];
}

describe("discus serve --events json --exit-with-stdin", () => {
  test("stdout is JSON lines only (events and snapshots), idle is told without stopping, and closing stdin ends it with exit 0", async () => {
    await withLab({ clients: 1, linkMbit: 100 }, async (lab) => {
      const group = lab.group(0);
      const proc = lab.spawn(lab.server, ["bun", cli, "serve", ...serveArgs(lab, group), "--events", "json", "--exit-with-stdin", "--idle-event", IDLE_EVENT], { stdin: "pipe" });
      const out = readLines(proc.stdout);
      const stderr = new Response(proc.stderr).text();
      try {
        expect(await waitUntil(() => out.lines.some((l) => l.kind === "started"), START_BOUND_MS)).toBe(true);
        const loaded = await runClient(lab, lab.clients[0]!, group, join(dir, "a.img"), ["--give-up", "30s"]);
        expect(loaded.exitCode).toBe(0);
        expect(await sha256File(join(dir, "a.img"))).toBe(referenceSha);
        // Idle after the load, told once, and the server serves on: snapshots keep coming.
        expect(await waitUntil(() => out.lines.some((l) => l.kind === "idle"), START_BOUND_MS)).toBe(true);
        const idleAt = out.lines.findIndex((l) => l.kind === "idle");
        expect(await waitUntil(() => out.lines.slice(idleAt).filter((l) => l.kind === "snapshot").length >= 2, 3 * SNAPSHOT_INTERVAL_MS + 2000)).toBe(true);
        expect(proc.exitCode).toBeNull();
        // Ctrl-C at a terminal reaches the parent's whole process group: the parent decides, not the child.
        proc.kill("SIGINT");
        await Bun.sleep(SIGINT_GRACE_MS);
        expect(proc.exitCode).toBeNull();
      } finally {
        (proc.stdin as import("bun").FileSink).end();
      }
      const t0 = performance.now();
      const code = await Promise.race([proc.exited, Bun.sleep(EXIT_BOUND_MS).then(() => "still running")]);
      expect(code).toBe(0);
      expect(performance.now() - t0).toBeLessThan(EXIT_BOUND_MS);
      await out.done;
      const kinds = out.lines.map((l) => l.kind);
      expect(kinds[0]).toBe("started");
      expect(kinds.at(-1)).toBe("ended");
      for (const k of ["transfer-started", "client-progress", "client-done", "transfer-ended", "idle"]) expect(kinds).toContain(k);
      const snapshot = out.lines.find((l) => l.kind === "snapshot" && (l.bytesSent as number) > 0)!;
      expect(snapshot.group).toBe(group);
      expect(Array.isArray(snapshot.clients)).toBe(true);
      const done = out.lines.find((l) => l.kind === "client-done")!;
      expect(done.chunksDone).toBe(done.chunksTotal);
      // The human log stays on stderr.
      expect(await stderr).toContain("idle: no request for the --idle-event time, serving on");
    });
  }, TEST_TIMEOUT_MS);

  test("a parent killed with SIGKILL leaves no server behind", async () => {
    await withLab({ clients: 0 }, async (lab) => {
      const parent = lab.spawn(lab.server, ["bun", join(import.meta.dir, "serve-parent.ts"), ...serveArgs(lab, lab.group(1))]);
      const reader = parent.stdout.getReader();
      const first = await Promise.race([reader.read(), Bun.sleep(START_BOUND_MS).then(() => null)]);
      const childPid = Number(new TextDecoder().decode(first?.value ?? new Uint8Array()).trim());
      expect(childPid).toBeGreaterThan(0);
      expect(alive(childPid)).toBe(true);
      parent.kill("SIGKILL");
      await parent.exited;
      expect(await waitUntil(() => !alive(childPid), EXIT_BOUND_MS)).toBe(true);
    });
  }, TEST_TIMEOUT_MS);

  test("--events json with --json, and --idle-event with --idle-exit, are refused (exit 2) before serving", async () => {
    const base = [image, "--group", "239.77.250.1", "--iface", "127.0.0.1"];
    const both = await discus(["serve", ...base, "--events", "json", "--json"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("--json: cannot be combined with --events json");
    const idle = await discus(["serve", ...base, "--idle-event", "5s", "--idle-exit", "5s"]);
    expect(idle.code).toBe(2);
    expect(idle.stderr).toContain("--idle-event: cannot be combined with --idle-exit");
    expect((await discus(["serve", ...base, "--events", "xml"])).code).toBe(2);
  });
});
