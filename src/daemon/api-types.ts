// What the daemon offers its faces (the HTTP API now, the web dashboard next): every admin action,
// the boot decision, and the agent's calls. The HTTP face (src/http/) maps these to routes; it
// checks the admin token itself, while agent calls carry their job token, which only the daemon
// can check. Errors a caller can cause are DiscusErrors: kind "usage" (bad input, a clash) maps
// to 400, "missing" results come back as null (404).
import type { BootLoader } from "./boot-script.ts";
import type { FleetMetrics } from "./fleet-metrics.ts";
import type { ImageSummary } from "../image/summary.ts";
import type { ClientSnapshot } from "../server/clients.ts";
import type { EventRecord, Hardware, ImageRecord, JobRecord, NodeRecord, PowerSpec } from "./model.ts";

/** A node as the admin describes it (`discus node add`, the CSV import, POST /api/nodes). */
export interface NodeInput {
  name: string;
  mac: string;
  tags: string[];
  diskRule: string | null;
  image: string | null;
  power: PowerSpec;
}

/** One line of `discus status`: a node and its newest job. */
export interface NodeStatus {
  node: NodeRecord;
  job: JobRecord | null;
}

export interface StatusView {
  nodes: NodeStatus[];
  images: ImageRecord[];
  /** Sessions being served now: image name, group, clients heard, bytes sent. */
  sessions: { image: string; group: string; port: number; rateBitsPerSecond: number; clients: number; bytesSent: number }[];
}

/** A session being served, with the clients its child last told of (the dashboard's session view). */
export interface LiveSession {
  image: string;
  group: string;
  port: number;
  rateBitsPerSecond: number;
  bytesSent: number;
  /** The most recently heard clients, at most MAX_CLIENT_ROWS (src/server/session.ts). */
  clients: ClientSnapshot[];
}

/** What an agent learns when it asks (GET /api/agent/plan): the settings its boot script carried, confirmed. */
export interface AgentPlan {
  action: "load" | "inventory" | "boot";
  jobId: number | null;
  image: string | null;
  imageId: string | null;
  group: string | null;
  port: number | null;
  diskRule: string | null;
}

/** An agent's report (POST /api/agent/report): progress every few seconds, then done or failed. */
export interface AgentReport {
  state: "loading" | "written" | "failed";
  percent: number;
  bytesPerSecond: number;
  /** The agent's FAILED line (thing, cause, fix) when state is failed. */
  message: string;
}

export interface DaemonApi {
  listNodes(): Promise<NodeStatus[]>;
  /** By name or MAC. */
  getNode(nameOrMac: string): Promise<NodeStatus | null>;
  addNode(input: NodeInput, actor: string): Promise<NodeRecord>;
  /** Changes what is given; the MAC and name identify the node (name may be changed by giving `rename`). */
  updateNode(nameOrMac: string, change: Partial<Omit<NodeInput, "mac">>, actor: string): Promise<NodeRecord | null>;
  removeNode(nameOrMac: string, actor: string): Promise<boolean>;
  /** CSV with a header line: name,mac,disk,image,tags (tags separated by spaces), power (e.g. none). */
  importNodes(csv: string, actor: string): Promise<NodeRecord[]>;

  listImages(): Promise<ImageRecord[]>;
  getImage(name: string): Promise<ImageRecord | null>;
  /** What `discus info` says of a catalog image; null when there is no such image (or its file is gone). */
  imageInfo(name: string): Promise<ImageSummary | null>;
  /** Re-reads the images directory: new files are added, missing ones dropped. */
  rescanImages(actor: string): Promise<ImageRecord[]>;

  /** Marks the nodes the selectors name (names, MACs, `tag:T`, globs on names) and power-cycles them. */
  reload(selectors: string[], image: string | null, actor: string): Promise<JobRecord[]>;
  /** Inventories the nodes the selectors name again (nothing written): an inventory job each, then a power cycle. */
  inventory(selectors: string[], actor: string): Promise<JobRecord[]>;
  /** Power-cycles the nodes the selectors name, no job made (refused while one writes its disk); returns their names. */
  powerCycle(selectors: string[], actor: string): Promise<string[]>;
  /** Sessions served now, with their clients. */
  liveSessions(): LiveSession[];
  /** Cancels those nodes' jobs that have not begun to write. */
  cancel(selectors: string[], actor: string): Promise<JobRecord[]>;
  status(): Promise<StatusView>;
  /** Counts for monitoring: GET /metrics formats them for Prometheus. */
  metrics(): Promise<FleetMetrics>;
  getJob(id: number): Promise<JobRecord | null>;
  listEvents(limit: number): Promise<EventRecord[]>;

  /** The iPXE (or GRUB) script for a node network-booting now; records unknown nodes as new. `baseUrl`: how the node reaches us. */
  bootScript(macText: string, baseUrl: string, loader?: BootLoader): Promise<string>;
  /** null: no such job, or the token does not match it. */
  agentPlan(macText: string, token: string): Promise<AgentPlan | null>;
  agentReport(macText: string, token: string, report: AgentReport): Promise<boolean>;
  agentInventory(macText: string, token: string, hardware: Hardware): Promise<boolean>;
}
