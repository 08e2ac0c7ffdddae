// `discus server`'s core: the catalog, the inventory, reload jobs, boot decisions and the agent's
// calls, over a Store (SQLite or PostgreSQL) and multicast sessions (one `discus serve` child
// per image, sessions.ts). Faces (the HTTP API) call it through DaemonApi; every change goes to
// the events table (who, what, when).
import { randomBytes, timingSafeEqual } from "node:crypto";
import { fromHex, hex, sha256, utf8 } from "../util/bytes.ts";
import { wallClock, type Clock } from "../util/clock.ts";
import { DiscusError } from "../util/errors.ts";
import { Limiter } from "../util/limiter.ts";
import { FleetCounters, type FailureSource, type FleetMetrics } from "./fleet-metrics.ts";
import type { ServeEvent } from "../server/session.ts";
import type { AgentPlan, AgentReport, DaemonApi, LiveSession, NodeInput, NodeStatus, StatusView } from "./api-types.ts";
import { agentScript, exitScript, type BootLoader } from "./boot-script.ts";
import { mergeCatalog, scanImagesDir, summarizeImage } from "./catalog.ts";
import type { ImageSummary } from "../image/summary.ts";
import { parseNodesCsv } from "./csv.ts";
import type { GroupPool } from "./groups.ts";
import { JOB_STATES, MAX_NEW_NODES, MAX_NODES, NODE_STATES, normalizeMac, type EventRecord, type Hardware, type ImageRecord, type JobKind, type JobRecord, type NodeRecord, type Store } from "./model.ts";
import { nodeFromInput } from "./nodes.ts";
import { powerCycle } from "./power.ts";
import { selectNodes } from "./selectors.ts";
import { Sessions, type SessionOptions } from "./sessions.ts";

export interface DaemonOptions {
  imagesDir: string;
  pool: GroupPool;
  /** UDP port of every session. */
  port: number;
  /** Raw Ed25519 public key (hex) agents must check images against; null: unsigned images load. */
  keyHex: string | null;
  sessions: SessionOptions;
  /** The sessions' clock (monotonic). */
  clock?: Clock;
  /** Wall-clock time of records, epoch milliseconds (whole). Default Date.now. */
  epochMs?: () => number;
  log?: (line: string) => void;
  /** Power control; tests may pass a driver of their own. Default: src/daemon/power.ts. */
  power?: (node: NodeRecord) => Promise<string>;
  /** Power actions at once, at most, across every reload (default POWER_CONCURRENCY). */
  powerConcurrency?: number;
}

/** A reload of forty nodes must not switch them all in the same second on one PDU or BMC network. */
export const POWER_CONCURRENCY = 8;
export const MAX_POWER_CONCURRENCY = 256;

/** Jobs and events listed at most (newest first). */
const MAX_LISTED = 10_000;
/** A job's token: 32 random bytes, base64url, shown only in the node's boot script. */
const TOKEN_BYTES = 32;
/**
 * Boot scripts served for one job before it is failed: an agent that cannot reach the daemon (or
 * dies before reporting) would otherwise reload its disk on every boot, for ever.
 */
export const MAX_AGENT_BOOTS = 3;
/** Jobs in these states have not begun to write: they may be cancelled or replaced. */
const NOT_WRITING: readonly string[] = ["queued", "booting"];

function tokenDigest(token: string): string {
  return hex(sha256(utf8(token)));
}

/** Compared digest to digest, in constant time: the token itself is never stored. */
function sameToken(token: string, job: JobRecord): boolean {
  return timingSafeEqual(sha256(utf8(token)), fromHex(job.tokenSha256));
}

export class Daemon implements DaemonApi {
  private readonly clock: Clock;
  private readonly sessions: Sessions;
  private readonly power: Limiter;
  private readonly counters = new FleetCounters();
  private images = new Map<string, ImageRecord>();

  constructor(
    private readonly store: Store,
    private readonly o: DaemonOptions,
  ) {
    this.clock = o.clock ?? wallClock;
    // Waiting power actions are bounded by the nodes there can be: one per node at most.
    this.power = new Limiter(o.powerConcurrency ?? POWER_CONCURRENCY, MAX_NODES);
    this.sessions = new Sessions(o.sessions, (name) => this.imageNeeded(name), (name, e) => this.onServeEvent(name, e), this.clock);
  }

  /** Loads the catalog and serves again every image an unfinished job needs (after a restart). */
  async start(): Promise<void> {
    for (const i of await this.store.listImages()) this.images.set(i.name, i);
    await this.rescanImages("daemon");
    for (const job of await this.unfinishedJobs()) {
      const image = job.image === null ? undefined : this.images.get(job.image);
      if (image !== undefined) await this.sessions.ensure(image);
    }
  }

  async stop(): Promise<void> {
    await this.sessions.stopAll();
  }

  private now(): number {
    return Math.floor((this.o.epochMs ?? Date.now)());
  }

  private async event(actor: string, action: string, subject: string, detail: string): Promise<void> {
    await this.store.addEvent({ atMs: this.now(), actor, action, subject, detail });
    this.o.log?.(`${actor} ${action} ${subject}${detail ? `: ${detail}` : ""}`);
  }

  // ---- images -------------------------------------------------------------------------------

  async listImages(): Promise<ImageRecord[]> {
    return [...this.images.values()];
  }

  async getImage(name: string): Promise<ImageRecord | null> {
    return this.images.get(name) ?? null;
  }

  async imageInfo(name: string): Promise<ImageSummary | null> {
    const record = this.images.get(name);
    return record === undefined ? null : summarizeImage(record);
  }

  async rescanImages(actor: string): Promise<ImageRecord[]> {
    const scan = scanImagesDir(this.o.imagesDir);
    const { images, dropped } = mergeCatalog([...this.images.values()], scan, this.o.pool, this.o.port, this.now());
    for (const i of images) {
      if (!this.images.has(i.name)) await this.event(actor, "image.add", i.name, `${i.path} on ${i.group}:${i.port}`);
      await this.store.putImage(i);
    }
    for (const i of dropped) {
      await this.store.deleteImage(i.name);
      await this.event(actor, "image.remove", i.name, `${i.path} is gone`);
    }
    for (const s of scan.skipped) this.o.log?.(`images: skipped ${s.path}: ${s.why}`);
    this.images = new Map(images.map((i) => [i.name, i]));
    return images;
  }

  private async imageNeeded(name: string): Promise<boolean> {
    return (await this.unfinishedJobs()).some((j) => j.image === name);
  }

  private onServeEvent(image: string, e: ServeEvent): void {
    this.counters.onServeEvent(image, e);
    if (e.kind === "started" || e.kind === "ended" || e.kind === "client-failed") this.o.log?.(`session ${image}: ${e.kind}`);
  }

  // ---- nodes --------------------------------------------------------------------------------

  private async findNode(nameOrMac: string): Promise<NodeRecord | null> {
    const mac = normalizeMac(nameOrMac);
    return (mac === null ? null : await this.store.getNode(mac)) ?? (await this.store.getNodeByName(nameOrMac.toLowerCase()));
  }

  async listNodes(): Promise<NodeStatus[]> {
    const [nodes, jobs] = await Promise.all([this.store.listNodes(), this.store.latestJobs()]);
    const byMac = new Map(jobs.map((j) => [j.mac, j]));
    return nodes.map((node) => ({ node, job: byMac.get(node.mac) ?? null }));
  }

  async getNode(nameOrMac: string): Promise<NodeStatus | null> {
    const node = await this.findNode(nameOrMac);
    return node === null ? null : { node, job: await this.store.latestJob(node.mac) };
  }

  async addNode(input: NodeInput, actor: string): Promise<NodeRecord> {
    const mac = normalizeMac(input.mac);
    const old = mac === null ? null : await this.store.getNode(mac);
    if (old !== null && old.state !== "new") throw new DiscusError("usage", `node ${old.name} (${old.mac})`, "exists already", "Change it with `discus node set`, or remove it first");
    if (old === null && (await this.store.countNodes(null)) >= MAX_NODES) {
      throw new DiscusError("usage", `node ${input.name}`, `cannot be added: the inventory holds ${MAX_NODES} nodes, its limit`, "Remove nodes that are gone (`discus node rm`), or run another daemon for another part of the fleet");
    }
    const node = nodeFromInput(input, (n) => this.images.has(n), old);
    await this.store.putNode(node);
    await this.event(actor, "node.add", node.name, `${node.mac}${old !== null ? " (was new)" : ""}`);
    return node;
  }

  async updateNode(nameOrMac: string, change: Partial<Omit<NodeInput, "mac">>, actor: string): Promise<NodeRecord | null> {
    const old = await this.findNode(nameOrMac);
    if (old === null) return null;
    const input: NodeInput = { name: old.name, mac: old.mac, tags: old.tags, diskRule: old.diskRule, image: old.image, power: old.power, ...change };
    const node = nodeFromInput(input, (n) => this.images.has(n), old);
    await this.store.putNode(node);
    await this.event(actor, "node.set", node.name, Object.keys(change).join(", "));
    return node;
  }

  async removeNode(nameOrMac: string, actor: string): Promise<boolean> {
    const node = await this.findNode(nameOrMac);
    if (node === null) return false;
    const job = await this.store.activeJob(node.mac);
    if (job !== null) throw new DiscusError("usage", `node ${node.name}`, `has job ${job.id} ${job.state}`, "Cancel it first (`discus cancel`), or wait for it to end");
    await this.store.deleteNode(node.mac);
    await this.event(actor, "node.remove", node.name, node.mac);
    return true;
  }

  async importNodes(csv: string, actor: string): Promise<NodeRecord[]> {
    const inputs = parseNodesCsv(csv);
    // Every line is checked before any is written: an import is all or nothing.
    const names = new Set<string>();
    for (const input of inputs) {
      const name = input.name.toLowerCase();
      if (names.has(name)) throw new DiscusError("usage", `node CSV name ${name}`, "appears twice", "Give each node its own name");
      names.add(name);
      nodeFromInput(input, (n) => this.images.has(n), null);
    }
    const added: NodeRecord[] = [];
    for (const input of inputs) added.push(await this.addNode(input, actor));
    return added;
  }

  // ---- jobs ---------------------------------------------------------------------------------

  private unfinishedJobs(): Promise<JobRecord[]> {
    return this.store.unfinishedJobs();
  }

  async reload(selectors: string[], image: string | null, actor: string): Promise<JobRecord[]> {
    const nodes = selectNodes(selectors, await this.store.listNodes());
    // Every node is checked before any job is made: a reload is all or nothing.
    const plans = await Promise.all(nodes.map((n) => this.planReload(n, image)));
    // Sessions first: one that cannot start fails the reload before any job exists.
    for (const record of new Set(plans.map((p) => p.record))) await this.sessions.ensure(record);
    const jobs: JobRecord[] = [];
    for (const { node, record, old } of plans) {
      if (old !== null) await this.store.updateJob(old.id, { state: "cancelled", error: "replaced by a new reload", updatedMs: this.now() });
      const job = await this.newJob(node.mac, "load", record.name);
      await this.store.putNode({ ...node, state: "queued" });
      await this.event(actor, "job.create", node.name, `job ${job.id}: ${record.name}`);
      jobs.push(job);
    }
    for (const { node } of plans) void this.powerOn(node, jobs.find((j) => j.mac === node.mac)!);
    return jobs;
  }

  /** A queued job. No token yet: each boot script makes one (the random digest here matches none). */
  private async newJob(mac: string, kind: JobKind, image: string | null): Promise<JobRecord> {
    const at = this.now();
    return this.store.createJob({ mac, kind, image, state: "queued", tokenSha256: hex(randomBytes(TOKEN_BYTES)), agentBoots: 0, percent: 0, bytesPerSecond: 0, error: null, createdMs: at, updatedMs: at });
  }

  /** Re-inventories known nodes: each gets an inventory job (nothing written) and is power-cycled. */
  async inventory(selectors: string[], actor: string): Promise<JobRecord[]> {
    const nodes = selectNodes(selectors, await this.store.listNodes());
    const olds = await Promise.all(nodes.map((n) => this.store.activeJob(n.mac)));
    // Every node is checked before any job is made, as for reloads.
    nodes.forEach((n, i) => {
      const old = olds[i]!;
      if (old !== null && !NOT_WRITING.includes(old.state)) throw new DiscusError("usage", `node ${n.name}`, `is writing its disk (job ${old.id} ${old.state})`, "Wait for it to end");
    });
    const jobs: JobRecord[] = [];
    for (const [i, node] of nodes.entries()) {
      const old = olds[i]!;
      if (old !== null) await this.store.updateJob(old.id, { state: "cancelled", error: "replaced by an inventory", updatedMs: this.now() });
      const job = await this.newJob(node.mac, "inventory", null);
      await this.event(actor, "job.create", node.name, `job ${job.id}: inventory`);
      jobs.push(job);
    }
    for (const [i, node] of nodes.entries()) void this.powerOn(node, jobs[i]!);
    return jobs;
  }

  private async planReload(node: NodeRecord, image: string | null): Promise<{ node: NodeRecord; record: ImageRecord; old: JobRecord | null }> {
    const name = image ?? node.image;
    if (name === null) throw new DiscusError("usage", `node ${node.name}`, "has no image and the reload names none", "Pass --image NAME, or set the node's image");
    const record = this.images.get(name);
    if (record === undefined) throw new DiscusError("usage", `image ${name}`, "is not in the catalog", "See `discus image list`");
    if (node.diskRule === null) throw new DiscusError("usage", `node ${node.name}`, "has no disk rule: discus never guesses which disk to write", "Set one, e.g. `discus node set NAME --disk serial:...` (see its hardware with `discus node show`)");
    const old = await this.store.activeJob(node.mac);
    if (old !== null && !NOT_WRITING.includes(old.state)) throw new DiscusError("usage", `node ${node.name}`, `is writing its disk (job ${old.id} ${old.state})`, "Wait for it to end");
    return { node, record, old };
  }

  private async powerOn(node: NodeRecord, job: JobRecord): Promise<void> {
    try {
      const did = await this.power.run(() => this.drivePower(node));
      await this.event("daemon", "power.cycle", node.name, did);
    } catch (e) {
      const why = e instanceof DiscusError ? e.message : String(e);
      await this.failJob(job, node, `power control failed: ${why}`, "daemon", "power");
    }
  }

  /** An inventory job's failure leaves the node's state alone: its disk was never at stake. */
  private async failJob(job: JobRecord, node: NodeRecord, why: string, actor: string, source: FailureSource): Promise<void> {
    this.counters.jobFailed(source, why);
    await this.store.updateJob(job.id, { state: "failed", error: why, updatedMs: this.now() });
    if (job.kind === "load") await this.store.putNode({ ...node, state: "failed" });
    await this.event(actor, "job.failed", node.name, `job ${job.id}: ${why}`);
  }

  /** Power-cycles the nodes (no job made); refused for any node writing its disk, before any is touched. */
  async powerCycle(selectors: string[], actor: string): Promise<string[]> {
    const nodes = selectNodes(selectors, await this.store.listNodes());
    const active = await Promise.all(nodes.map((n) => this.store.activeJob(n.mac)));
    nodes.forEach((node, i) => {
      const job = active[i]!;
      if (job !== null && !NOT_WRITING.includes(job.state)) throw new DiscusError("usage", `node ${node.name}`, `is writing its disk (job ${job.id} ${job.state}); a power cycle now would leave it half-written`, "Wait for it to end, or reload it");
    });
    for (const node of nodes) {
      await this.event(actor, "power.request", node.name, `power cycle (${node.power.driver})`);
      void this.power.run(() => this.drivePower(node)).then(
        (did) => this.event("daemon", "power.cycle", node.name, did),
        (e) => this.event("daemon", "power.failed", node.name, e instanceof DiscusError ? e.message : String(e)),
      );
    }
    return nodes.map((n) => n.name);
  }

  private drivePower(node: NodeRecord): Promise<string> {
    return (this.o.power ?? ((n: NodeRecord) => powerCycle(n.power, n.name)))(node);
  }

  async cancel(selectors: string[], actor: string): Promise<JobRecord[]> {
    const nodes = selectNodes(selectors, await this.store.listNodes());
    const active = await Promise.all(nodes.map((n) => this.store.activeJob(n.mac)));
    // Every node is checked before any job changes: a cancel is all or nothing.
    nodes.forEach((node, i) => {
      const job = active[i]!;
      if (job !== null && !NOT_WRITING.includes(job.state)) throw new DiscusError("usage", `node ${node.name}`, `has begun to write (job ${job.id} ${job.state}); stopping now would leave a half-written disk`, "Let it finish, then reload again");
    });
    const out: JobRecord[] = [];
    for (const [i, node] of nodes.entries()) {
      const job = active[i]!;
      if (job === null) continue;
      out.push((await this.store.updateJob(job.id, { state: "cancelled", updatedMs: this.now() }))!);
      if (job.kind === "load") await this.store.putNode({ ...node, state: "ready" });
      await this.event(actor, "job.cancel", node.name, `job ${job.id}`);
    }
    return out;
  }

  /** Counts for monitoring (GET /metrics): nodes and newest jobs by state, sessions, failures. */
  async metrics(): Promise<FleetMetrics> {
    const nodes = await this.listNodes();
    const nodesByState = Object.fromEntries(NODE_STATES.map((st) => [st, 0])) as FleetMetrics["nodesByState"];
    const jobsByState = Object.fromEntries(JOB_STATES.map((st) => [st, 0])) as FleetMetrics["jobsByState"];
    for (const { node, job } of nodes) {
      nodesByState[node.state]++;
      if (job !== null) jobsByState[job.state]++;
    }
    const c = this.counters;
    const sessions = this.sessions.list().map((s) => ({ image: s.image, group: s.group, rateBitsPerSecond: s.rateBitsPerSecond, clients: s.clients, bytesSent: s.bytesSent, lossFraction: c.lossOf(s.image) }));
    return { nodesByState, jobsByState, sessions, jobFailures: { ...c.jobFailures }, chunksRejected: c.chunksRejected, clientsDone: c.clientsDone, clientsFailed: c.clientsFailed };
  }

  liveSessions(): LiveSession[] {
    return this.sessions.live();
  }

  async status(): Promise<StatusView> {
    return { nodes: await this.listNodes(), images: await this.listImages(), sessions: this.sessions.list() };
  }

  async getJob(id: number): Promise<JobRecord | null> {
    return this.store.getJob(id);
  }

  async listEvents(limit: number): Promise<EventRecord[]> {
    return this.store.listEvents(Math.max(1, Math.min(MAX_LISTED, limit)));
  }

  // ---- boot decisions and agents --------------------------------------------------------------

  async bootScript(macText: string, baseUrl: string, loader: BootLoader = "ipxe"): Promise<string> {
    const mac = normalizeMac(macText);
    if (mac === null) return exitScript("no MAC in the request: booting the local disk", loader);
    const node = await this.store.getNode(mac);
    if (node === null) return this.firstBoot(mac, baseUrl, loader);
    const seen = { ...node, lastSeenMs: this.now() };
    await this.store.putNode(seen);
    const job = await this.store.activeJob(mac);
    if (job === null) return exitScript("no reload asked: booting the local disk", loader);
    if (job.state === "written") return this.bootedAfterWrite(job, seen, loader);
    if (job.kind === "inventory") return this.inventoryBoot(job, seen, baseUrl, loader);
    return this.agentBoot(job, seen, baseUrl, loader);
  }

  /** An unknown node: recorded as new and inventoried (MAAS: commissioning); never written. */
  private async firstBoot(mac: string, baseUrl: string, loader: BootLoader): Promise<string> {
    const name = `new-${mac.replace(/:/g, "")}`;
    if ((await this.store.countNodes("new")) >= MAX_NEW_NODES || (await this.store.countNodes(null)) >= MAX_NODES) {
      this.o.log?.(`boot: ${mac} PXE-booted unknown, not recorded: ${MAX_NEW_NODES} new nodes wait already (add or remove them)`);
      return exitScript("unknown node, not recorded (too many new nodes): booting the local disk", loader);
    }
    const node: NodeRecord = { mac, name, tags: [], diskRule: null, image: null, power: { driver: "none" }, state: "new", lastSeenMs: this.now(), hardware: null };
    await this.store.putNode(node);
    await this.event("daemon", "node.new", name, `${mac} PXE-booted unknown; recorded, to be inventoried, not written`);
    const job = await this.newJob(mac, "inventory", null);
    await this.event("daemon", "job.create", name, `job ${job.id}: inventory`);
    return this.inventoryBoot(job, node, baseUrl, loader);
  }

  /** Counts the boot and makes its token; null when the job has booted too often (it is failed). */
  private async countBoot(job: JobRecord, node: NodeRecord, baseUrl: string, what: string): Promise<string | null> {
    if (job.agentBoots >= MAX_AGENT_BOOTS) {
      await this.failJob(job, node, `the agent booted ${job.agentBoots} times without reporting ${what}; check that nodes reach ${baseUrl}`, "daemon", "boot-loop");
      return null;
    }
    // A fresh token per boot: only the agent this script starts can act for the job.
    const token = randomBytes(TOKEN_BYTES).toString("base64url");
    await this.store.updateJob(job.id, { state: job.state === "queued" ? "booting" : job.state, tokenSha256: tokenDigest(token), agentBoots: job.agentBoots + 1, updatedMs: this.now() });
    return token;
  }

  private async inventoryBoot(job: JobRecord, node: NodeRecord, baseUrl: string, loader: BootLoader): Promise<string> {
    const token = await this.countBoot(job, node, baseUrl, "the hardware");
    if (token === null) return exitScript("the inventory failed (see discus job show): booting the local disk", loader);
    await this.event("daemon", "job.boot", node.name, `job ${job.id}: agent for inventory`);
    return agentScript({ baseUrl, action: "inventory", group: null, port: null, imageId: null, diskRule: null, keyHex: null, token, mac: node.mac }, loader);
  }

  /** The agent wrote the disk and rebooted: this boot is the new OS's, from the local disk. */
  private async bootedAfterWrite(job: JobRecord, node: NodeRecord, loader: BootLoader): Promise<string> {
    await this.store.updateJob(job.id, { state: "booted", percent: 100, updatedMs: this.now() });
    await this.store.putNode({ ...node, state: "booted" });
    await this.event("daemon", "job.booted", node.name, `job ${job.id}`);
    return exitScript("reloaded: booting the new system from the local disk", loader);
  }

  private async agentBoot(job: JobRecord, node: NodeRecord, baseUrl: string, loader: BootLoader): Promise<string> {
    const image = job.image === null ? undefined : this.images.get(job.image);
    if (image === undefined) {
      await this.failJob(job, node, `image ${job.image} left the catalog`, "daemon", "image-gone");
      return exitScript("the job's image is gone: booting the local disk", loader);
    }
    const token = await this.countBoot(job, node, baseUrl, "the disk written");
    if (token === null) return exitScript("the reload failed (see discus job show): booting the local disk", loader);
    await this.sessions.ensure(image);
    await this.store.putNode({ ...node, state: "booting" });
    await this.event("daemon", "job.boot", node.name, `job ${job.id}: agent for ${image.name} on ${image.group}`);
    return agentScript({ baseUrl, action: "load", group: image.group, port: image.port, imageId: image.imageId, diskRule: node.diskRule, keyHex: this.o.keyHex, token, mac: node.mac, authHex: this.sessions.authKeyHex(image), imageName: image.name }, loader);
  }

  /** The job the token belongs to, if it is the node's unfinished job and the token matches. */
  private async jobFor(macText: string, token: string): Promise<{ job: JobRecord; node: NodeRecord } | null> {
    const mac = normalizeMac(macText);
    if (mac === null || token.length === 0) return null;
    const [job, node] = await Promise.all([this.store.activeJob(mac), this.store.getNode(mac)]);
    if (job === null || node === null || !sameToken(token, job)) return null;
    return { job, node };
  }

  async agentPlan(macText: string, token: string): Promise<AgentPlan | null> {
    const found = await this.jobFor(macText, token);
    if (found === null) return null;
    const image = found.job.image === null ? null : (this.images.get(found.job.image) ?? null);
    return { action: found.job.kind, jobId: found.job.id, image: found.job.image, imageId: image?.imageId ?? null, group: image?.group ?? null, port: image?.port ?? null, diskRule: found.node.diskRule };
  }

  async agentReport(macText: string, token: string, r: AgentReport): Promise<boolean> {
    const found = await this.jobFor(macText, token);
    if (found === null) return false;
    const { job, node } = found;
    const actor = `agent:${node.mac}`;
    if (r.state === "failed") {
      await this.failJob(job, node, r.message || "the agent reported a failure without a reason", actor, "agent");
      return true;
    }
    if (job.kind === "inventory") throw new DiscusError("usage", `job ${job.id}`, `is an inventory: it writes no disk, so "${r.state}" does not apply`, "Report the hardware (POST /api/agent/inventory), or failed with the reason");
    await this.store.updateJob(job.id, { state: r.state, percent: r.state === "written" ? 100 : r.percent, bytesPerSecond: r.bytesPerSecond, updatedMs: this.now() });
    if (r.state !== job.state) {
      await this.store.putNode({ ...node, state: r.state });
      await this.event(actor, "job.state", node.name, `job ${job.id}: ${r.state}${r.message === "" ? "" : ` (${r.message})`}`);
    }
    return true;
  }

  async agentInventory(macText: string, token: string, hardware: Hardware): Promise<boolean> {
    const found = await this.jobFor(macText, token);
    if (found === null) return false;
    const { job, node } = found;
    await this.store.putNode({ ...node, hardware });
    await this.event(`agent:${node.mac}`, "node.inventory", node.name, `${hardware.disks.length} disks, ${hardware.nics.length} NICs`);
    // An inventory job is over once the hardware is in: the node's next boots go to its disk.
    if (job.kind === "inventory") {
      await this.store.updateJob(job.id, { state: "done", percent: 100, updatedMs: this.now() });
      await this.event(`agent:${node.mac}`, "job.done", node.name, `job ${job.id}: inventory`);
    }
    return true;
  }
}
