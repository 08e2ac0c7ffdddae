// `discus server` for real (issue 11): the daemon runs as its own process in the lab's server
// namespace, on SQLite and on PostgreSQL; the CLI and the "agents" run in the nodes' namespaces
// and reach it over HTTP; a real `discus load` writes each node's disk over the daemon's session.
// One reload: the node gets the agent with a job token, reports, is written, and its next PXE boot
// goes to the local disk by itself. The other node is never written. The daemon is killed with
// SIGKILL mid-job and restarted: the session is served again and the job completes, and the
// killed daemon's `discus serve` child does not outlive it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { destroyStaleLabs, withLab, type Host, type Lab } from "../../scripts/lib/netlab.ts";
import { bootWords, startLabDaemon, type LabDaemon } from "../../scripts/lib/lab-daemon.ts";
import { MCAST_PORT, runClient } from "../../scripts/lib/mcast.ts";
import { discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";
import { startPostgres, type Postgres } from "./postgres.ts";
import { MAX_AGENT_BOOTS } from "../../src/daemon/daemon.ts";
import { alive, groupOf, serveChildren, waitUntil } from "./serve-children.ts";

const TEST_TIMEOUT_MS = 300_000;
/** A session's child stops this soon after its daemon is gone (stdin EOF), generously. */
const CHILD_EXIT_MS = 10_000;
const MAC_A = "52:54:00:d1:5c:01";
const MAC_B = "52:54:00:d1:5c:02";
const cli = join(import.meta.dir, "..", "..", "src", "cli.ts");
const agentCall = join(import.meta.dir, "agent-call.ts");
const agentReport = join(import.meta.dir, "agent-report.ts");

let dir = "";
let referenceSha = "";
let pg: Postgres | null = null;

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  mkdirSync(join(dir, "images"));
  const source = join(dir, "source.img");
  await $`head -c 24M /dev/urandom > ${source}`;
  await discusOk(["create", source, join(dir, "images", "lab-os.dsc"), "--raw", "--chunk-size", "256K", "--quiet"]);
  await discusOk(["restore", join(dir, "images", "lab-os.dsc"), join(dir, "reference.img"), "--quiet"]);
  referenceSha = await sha256File(join(dir, "reference.img"));
  pg = await startPostgres();
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  await pg?.stop();
  if (dir) await $`rm -rf ${dir}`;
});

function startDaemon(lab: Lab, state: string, db: string | null): Promise<LabDaemon> {
  return startLabDaemon(lab, { state, images: join(dir, "images"), args: ["--port", String(MCAST_PORT), ...(db ? ["--db", db] : [])] });
}

/** The CLI, run in a node's namespace against the daemon (token from the state dir). */
async function fleet(lab: Lab, state: string, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return lab.exec(lab.clients[0]!, ["bun", cli, ...args, "--state", state]);
}

async function call(lab: Lab, host: Host, method: string, url: string, token: string, body?: unknown): Promise<{ status: number; body: string }> {
  const r = await lab.exec(host, ["bun", agentCall, method, url, token, body === undefined ? "" : JSON.stringify(body)]);
  const space = r.stdout.indexOf(" ");
  return { status: Number(r.stdout.slice(0, space)), body: r.stdout.slice(space + 1) };
}

async function jobState(lab: Lab, state: string, node: string): Promise<string> {
  const r = await fleet(lab, state, ["node", "show", node, "--json"]);
  const s = JSON.parse(r.stdout) as { node: { state: string }; job: { state: string } | null };
  return `${s.node.state}/${s.job?.state ?? "-"}`;
}

async function reloadFlow(db: () => string | null, label: string): Promise<void> {
  await withLab({ clients: 2, linkMbit: 100 }, async (lab) => {
    const state = join(dir, `state-${label}`);
    let daemon = await startDaemon(lab, state, db());
    try {
      const [a, b] = lab.clients as [Host, Host];
      expect(statSync(join(state, "admin.token")).mode & 0o777).toBe(0o600);
      for (const [name, mac] of [["node-a", MAC_A], ["node-b", MAC_B]]) {
        const r = await fleet(lab, state, ["node", "add", name!, "--mac", mac!, "--disk", "serial:QM00001", "--image", "lab-os", "--tag", "lab"]);
        expect(r.exitCode).toBe(0);
      }
      // Without the admin token the API refuses, and says so.
      expect((await call(lab, a, "GET", `${daemon.url}/api/nodes`, "")).status).toBe(401);
      // Nothing asked: both nodes boot their local disks.
      expect((await call(lab, a, "GET", `${daemon.url}/boot.ipxe?mac=${MAC_A}`, "")).body).toContain("exit");
      const reload = await fleet(lab, state, ["reload", "node-a"]);
      expect(reload.exitCode).toBe(0);
      const script = (await call(lab, a, "GET", `${daemon.url}/boot.ipxe?mac=${MAC_A}`, "")).body;
      expect(script).toContain("kernel ");
      const w = bootWords(script);
      expect(w.action).toBe("load");
      expect(w.disk).toBe("serial:QM00001");
      // The session's key travels in the boot script only; its secret is 0600 in the state dir.
      expect(w.auth).toMatch(/^[0-9a-f]{64}$/);
      expect(statSync(join(state, "session.secret")).mode & 0o777).toBe(0o600);
      expect((await call(lab, b, "GET", `${daemon.url}/boot.ipxe?mac=${MAC_B}`, "")).body).toContain("exit");
      expect(await jobState(lab, state, "node-a")).toBe("booting/booting");

      // Another host without the job's token cannot mark the node done.
      const forged = await call(lab, b, "POST", `${daemon.url}/api/agent/report?mac=${MAC_A}`, "x".repeat(43), { state: "written", percent: 100, bytesPerSecond: 1, message: "" });
      expect(forged.status).toBe(403);
      expect((await call(lab, a, "GET", `${daemon.url}/api/agent/plan?mac=${MAC_A}`, w.token!)).status).toBe(200);

      // The image is served by one child process of the daemon, on the image's group.
      const before = serveChildren(daemon.proc.pid);
      expect(before.map(groupOf)).toEqual([w.group!]);
      // Killed mid-job and started again: the job is still there and its session is served again.
      daemon.proc.kill("SIGKILL");
      await daemon.proc.exited;
      // Its child saw stdin close and stopped: no orphan left serving the group.
      expect(await waitUntil(() => !alive(before[0]!.pid), CHILD_EXIT_MS)).toBe(true);
      daemon = await startDaemon(lab, state, db());
      const after = serveChildren(daemon.proc.pid);
      expect(after.map(groupOf)).toEqual([w.group!]);
      expect(after[0]!.pid).not.toBe(before[0]!.pid);
      expect(await jobState(lab, state, "node-a")).toBe("booting/booting");
      await call(lab, a, "POST", `${daemon.url}/api/agent/report?mac=${MAC_A}`, w.token!, { state: "loading", percent: 0, bytesPerSecond: 0, message: "" });
      const target = join(dir, `${label}-a.img`);
      // The key from before the restart still opens the restarted daemon's session (derived, not stored).
      const keyFile = join(dir, `${label}-session.key`);
      writeFileSync(keyFile, `${w.auth!}\n`, { mode: 0o600 });
      const loaded = await runClient(lab, a, w.group!, target, ["--image-id", w.image!, "--give-up", "60s", "--auth-key-file", keyFile]);
      expect(loaded.exitCode).toBe(0);
      expect(await sha256File(target)).toBe(referenceSha);
      // The agent's own reporter tells the daemon the disk is written.
      expect((await lab.exec(a, ["bun", agentReport, daemon.url, w.token!, MAC_A, "written"])).stdout).toBe("heard");
      expect(await jobState(lab, state, "node-a")).toBe("written/written");
      // The next PXE boot goes to the local disk by itself, and the job ends booted.
      expect((await call(lab, a, "GET", `${daemon.url}/boot.ipxe?mac=${MAC_A}`, "")).body).toContain("exit");
      expect(await jobState(lab, state, "node-a")).toBe("booted/booted");
      expect(await jobState(lab, state, "node-b")).toBe("ready/-");
      // The old token is worthless now.
      expect((await call(lab, a, "GET", `${daemon.url}/api/agent/plan?mac=${MAC_A}`, w.token!)).status).toBe(403);
      // An agent that boots again and again without reporting is failed, not reloaded for ever.
      expect((await fleet(lab, state, ["reload", "node-b"])).exitCode).toBe(0);
      for (let boot = 1; boot <= MAX_AGENT_BOOTS; boot++) expect((await call(lab, b, "GET", `${daemon.url}/boot.ipxe?mac=${MAC_B}`, "")).body).toContain("kernel ");
      expect((await call(lab, b, "GET", `${daemon.url}/boot.ipxe?mac=${MAC_B}`, "")).body).toContain("exit");
      expect(await jobState(lab, state, "node-b")).toBe("failed/failed");
      const shown = JSON.parse((await fleet(lab, state, ["node", "show", "node-b", "--json"])).stdout) as { job: { error: string } };
      expect(shown.job.error).toContain("without reporting");
      const events = await fleet(lab, state, ["events", "--json"]);
      const actions = (JSON.parse(events.stdout) as { action: string }[]).map((e) => e.action);
      for (const act of ["node.add", "job.create", "job.boot", "job.state", "job.booted"]) expect(actions).toContain(act);
      // No secret in the daemon's log.
      const served = serveChildren(daemon.proc.pid);
      await daemon.stop();
      const log = daemon.log();
      // A daemon that stops stops its children, and none of them writes its key into a command line.
      expect(served.every((c) => !alive(c.pid))).toBe(true);
      expect(served.flatMap((c) => c.argv).join(" ")).not.toContain(w.auth!);
      expect(log).not.toContain(w.token!);
      expect(log).not.toContain(w.auth!);
      expect(events.stdout).not.toContain(w.auth!);
    } finally {
      daemon.proc.kill("SIGKILL");
    }
  });
}

describe("discus server", () => {
  test("SQLite: reload one node of two, restart the daemon mid-job, the job completes; the other is never written", async () => {
    await reloadFlow(() => null, "sqlite");
    expect(existsSync(join(dir, "state-sqlite", "discus.db"))).toBe(true);
  }, TEST_TIMEOUT_MS);

  test("PostgreSQL: the same flow", async () => {
    const url = await pg!.newDatabase();
    await reloadFlow(() => url, "postgres");
  }, TEST_TIMEOUT_MS);
});
