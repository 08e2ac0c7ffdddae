// A TEST DOUBLE for the HTTP layer only: a small but real DaemonApi that keeps its records in
// memory and behaves as src/daemon/api-types.ts describes (usage errors for bad input, null for
// missing things, job tokens checked by their SHA-256). It powers nothing and serves no image.
// The HTTP tests run against it until the real daemon (src/daemon/daemon.ts) lands; then they
// switch to that. `failNext` makes the next call throw, to test how the face survives it.
import { createHash, randomBytes } from "node:crypto";
import type { AgentPlan, AgentReport, DaemonApi, NodeInput, NodeStatus, StatusView } from "../../src/daemon/api-types.ts";
import { FINISHED_JOB_STATES, NAME_PATTERN, normalizeMac, type EventRecord, type Hardware, type ImageRecord, type JobRecord, type NodeRecord } from "../../src/daemon/model.ts";
import { DiscusError } from "../../src/util/errors.ts";

const sha256Hex = (s: string): string => createHash("sha256").update(s).digest("hex");

export class MemoryDaemon implements DaemonApi {
  readonly nodes = new Map<string, NodeRecord>();
  readonly images = new Map<string, ImageRecord>();
  readonly jobs: JobRecord[] = [];
  readonly events: EventRecord[] = [];
  /** Thrown by the next call, once. */
  failNext: unknown = null;

  private trip(): void {
    const e = this.failNext;
    if (e === null) return;
    this.failNext = null;
    throw e;
  }

  private event(actor: string, action: string, subject: string, detail = ""): void {
    this.events.push({ id: this.events.length + 1, atMs: Date.now(), actor, action, subject, detail });
  }

  private find(nameOrMac: string): NodeRecord | null {
    const mac = normalizeMac(nameOrMac);
    if (mac !== null && this.nodes.has(mac)) return this.nodes.get(mac)!;
    return [...this.nodes.values()].find((n) => n.name === nameOrMac) ?? null;
  }

  private activeJob(mac: string): JobRecord | null {
    return this.jobs.findLast((j) => j.mac === mac && !FINISHED_JOB_STATES.includes(j.state)) ?? null;
  }

  private statusOf(node: NodeRecord): NodeStatus {
    return { node, job: this.jobs.findLast((j) => j.mac === node.mac) ?? null };
  }

  private checkName(name: string): void {
    if (!NAME_PATTERN.test(name)) throw new DiscusError("usage", `node name "${name}"`, "it is not a name", "Use lower-case letters, digits, '.', '_' and '-'");
  }

  async listNodes(): Promise<NodeStatus[]> {
    this.trip();
    return [...this.nodes.values()].map((n) => this.statusOf(n));
  }
  async getNode(nameOrMac: string): Promise<NodeStatus | null> {
    this.trip();
    const n = this.find(nameOrMac);
    return n === null ? null : this.statusOf(n);
  }
  async addNode(input: NodeInput, actor: string): Promise<NodeRecord> {
    this.trip();
    const mac = normalizeMac(input.mac);
    if (mac === null) throw new DiscusError("usage", `MAC "${input.mac}"`, "it is not a MAC address", "Write it as aa:bb:cc:dd:ee:ff");
    this.checkName(input.name);
    if (this.find(input.name) !== null || this.nodes.has(mac)) throw new DiscusError("usage", `node ${input.name}`, "it exists already", "Choose another name or MAC");
    const node: NodeRecord = { ...input, mac, state: "ready", lastSeenMs: null, hardware: null };
    this.nodes.set(mac, node);
    this.event(actor, "node.add", node.name);
    return node;
  }
  async updateNode(nameOrMac: string, change: Partial<Omit<NodeInput, "mac">>, actor: string): Promise<NodeRecord | null> {
    this.trip();
    const n = this.find(nameOrMac);
    if (n === null) return null;
    if (change.name !== undefined) this.checkName(change.name);
    const updated = { ...n, ...change };
    this.nodes.set(n.mac, updated);
    this.event(actor, "node.update", updated.name);
    return updated;
  }
  async removeNode(nameOrMac: string, actor: string): Promise<boolean> {
    this.trip();
    const n = this.find(nameOrMac);
    if (n === null) return false;
    this.nodes.delete(n.mac);
    this.event(actor, "node.remove", n.name);
    return true;
  }
  async importNodes(csv: string, actor: string): Promise<NodeRecord[]> {
    this.trip();
    const [header, ...lines] = csv.trim().split("\n");
    if (header?.trim() !== "name,mac,disk,image,tags,power") throw new DiscusError("usage", "the CSV", "its header is not name,mac,disk,image,tags,power", "Start it with that line");
    const out: NodeRecord[] = [];
    for (const line of lines) {
      const [name = "", mac = "", disk = "", image = "", tags = ""] = line.split(",");
      out.push(await this.addNode({ name, mac, diskRule: disk || null, image: image || null, tags: tags.split(" ").filter(Boolean), power: { driver: "none" } }, actor));
    }
    return out;
  }

  async listImages(): Promise<ImageRecord[]> {
    this.trip();
    return [...this.images.values()];
  }
  async getImage(name: string): Promise<ImageRecord | null> {
    this.trip();
    return this.images.get(name) ?? null;
  }
  async rescanImages(actor: string): Promise<ImageRecord[]> {
    this.trip();
    this.event(actor, "image.rescan", "images");
    return [...this.images.values()];
  }

  private select(selectors: string[]): NodeRecord[] {
    const all = [...this.nodes.values()];
    const chosen = all.filter((n) => selectors.some((s) => s === n.name || normalizeMac(s) === n.mac || (s.startsWith("tag:") && n.tags.includes(s.slice(4)))));
    if (chosen.length === 0) throw new DiscusError("usage", `selectors ${selectors.join(" ")}`, "they name no node", "Check `discus node list`");
    return chosen;
  }

  /** The tokens the boot scripts carry, by job id (the real daemon keeps only their digests). */
  private readonly tokens = new Map<number, string>();

  async reload(selectors: string[], image: string | null, actor: string): Promise<JobRecord[]> {
    this.trip();
    const nodes = this.select(selectors);
    return nodes.map((n) => {
      const name = image ?? n.image;
      if (name === null || !this.images.has(name)) throw new DiscusError("usage", `image ${name ?? "(none)"}`, "it is not in the catalog", "Run `discus image list`");
      const token = randomBytes(32).toString("hex");
      const job: JobRecord = { id: this.jobs.length + 1, mac: n.mac, kind: "load", image: name, state: "queued", agentBoots: 0, tokenSha256: sha256Hex(token), percent: 0, bytesPerSecond: 0, error: null, createdMs: Date.now(), updatedMs: Date.now() };
      this.jobs.push(job);
      this.tokens.set(job.id, token);
      this.event(actor, "job.create", `job ${job.id}`, `${n.name} ← ${name}`);
      return job;
    });
  }
  async inventory(selectors: string[], actor: string): Promise<JobRecord[]> {
    this.trip();
    this.event(actor, "job.create", selectors.join(" "), "inventory");
    return [];
  }
  async cancel(selectors: string[], actor: string): Promise<JobRecord[]> {
    this.trip();
    const jobs = this.select(selectors).flatMap((n) => {
      const j = this.activeJob(n.mac);
      return j !== null && (j.state === "queued" || j.state === "booting") ? [j] : [];
    });
    for (const j of jobs) j.state = "cancelled";
    this.event(actor, "job.cancel", selectors.join(" "));
    return jobs;
  }
  async status(): Promise<StatusView> {
    this.trip();
    return { nodes: await this.listNodes(), images: [...this.images.values()], sessions: [] };
  }
  async getJob(id: number): Promise<JobRecord | null> {
    this.trip();
    return this.jobs.find((j) => j.id === id) ?? null;
  }
  async listEvents(limit: number): Promise<EventRecord[]> {
    this.trip();
    return this.events.slice(-limit).reverse();
  }

  async bootScript(macText: string, baseUrl: string): Promise<string> {
    this.trip();
    const mac = normalizeMac(macText);
    if (mac === null) throw new DiscusError("usage", `MAC "${macText}"`, "it is not a MAC address", "Chain iPXE with ?mac=${net0/mac}");
    let node = this.nodes.get(mac);
    if (node === undefined) {
      node = { mac, name: `new-${mac.replaceAll(":", "")}`, tags: [], diskRule: null, image: null, power: { driver: "none" }, state: "new", lastSeenMs: Date.now(), hardware: null };
      this.nodes.set(mac, node);
      this.event("daemon", "node.new", node.name);
    }
    const job = this.activeJob(mac);
    if (job === null) return "#!ipxe\nexit\n";
    job.state = "booting";
    const token = this.tokens.get(job.id)!;
    return `#!ipxe\nkernel ${baseUrl}/vmlinuz discus.job=${job.id} discus.token=${token}\ninitrd ${baseUrl}/initramfs.img\nboot\n`;
  }

  private jobFor(macText: string, token: string): JobRecord | null {
    const mac = normalizeMac(macText);
    if (mac === null) return null;
    const job = this.activeJob(mac);
    return job !== null && job.tokenSha256 === sha256Hex(token) ? job : null;
  }

  async agentPlan(macText: string, token: string): Promise<AgentPlan | null> {
    this.trip();
    const job = this.jobFor(macText, token);
    if (job === null) return null;
    const image = this.images.get(job.image!)!;
    const node = this.nodes.get(job.mac)!;
    return { action: "load", jobId: job.id, image: job.image, imageId: image.imageId, group: image.group, port: image.port, diskRule: node.diskRule };
  }
  async agentReport(macText: string, token: string, report: AgentReport): Promise<boolean> {
    this.trip();
    const job = this.jobFor(macText, token);
    if (job === null) return false;
    Object.assign(job, { state: report.state, percent: report.percent, bytesPerSecond: report.bytesPerSecond, error: report.state === "failed" ? report.message : null, updatedMs: Date.now() });
    this.event(`agent:${job.mac}`, "job.state", `job ${job.id}`, report.state);
    return true;
  }
  async agentInventory(macText: string, token: string, hardware: Hardware): Promise<boolean> {
    this.trip();
    const job = this.jobFor(macText, token);
    if (job === null) return false;
    this.nodes.get(job.mac)!.hardware = hardware;
    return true;
  }
}
