// The control server's records (issue 11): images in the catalog, nodes in the inventory, reload
// jobs and the audit trail, and the Store that keeps them (SQLite by default, PostgreSQL at scale,
// both through Bun.SQL). Types only, and the few pure rules every part agrees on.

/** Where a node stands. `new`: PXE-booted unknown, recorded, never written. */
export const NODE_STATES = ["new", "ready", "queued", "booting", "loading", "written", "booted", "failed"] as const;
export type NodeState = (typeof NODE_STATES)[number];

/** `done`: an inventory job whose agent reported the hardware (load jobs end `booted`). */
export const JOB_STATES = ["queued", "booting", "loading", "written", "booted", "done", "failed", "cancelled"] as const;
export type JobState = (typeof JOB_STATES)[number];
/** A job in one of these states is over: the node boots its local disk. */
export const FINISHED_JOB_STATES: readonly JobState[] = ["booted", "done", "failed", "cancelled"];

/** `load`: write the disk with an image. `inventory`: collect the hardware, write nothing, power off. */
export const JOB_KINDS = ["load", "inventory"] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** Nodes the inventory holds at most: a bound on every list the daemon reads whole. */
export const MAX_NODES = 100_000;
/**
 * Unknown nodes recorded as `new` at most: any host can PXE-boot with a made-up MAC, so this
 * bounds what strangers can add. Past it, unknown nodes boot their disks unrecorded (and logged).
 */
export const MAX_NEW_NODES = 1_000;

export type PowerSpec =
  | { driver: "none" }
  /** IPMI over LAN (ipmitool -I lanplus); the password lives in a file (mode 0600), never in the database. */
  | { driver: "ipmi"; host: string; user: string; passwordFile: string }
  /**
   * Redfish over HTTPS (src/daemon/redfish.ts); `host` may carry a port (HOST:PORT). The password
   * lives in a file (mode 0600). `systemId` names the ComputerSystem when the service has several.
   * TLS: the BMC's certificate is checked against `caFile` (PEM) if set, else the system's CAs;
   * `tlsVerify: false` (with no caFile) checks nothing, for BMCs whose certificate cannot be known.
   */
  | { driver: "redfish"; host: string; user: string; passwordFile: string; systemId: string | null; caFile: string | null; tlsVerify: boolean }
  /** Any program: run as `command on|off|cycle|status NODE-NAME`. */
  | { driver: "command"; command: string };

/** What the agent's `inventory` action found (MAAS: commissioning, Ironic: introspection). */
export interface Hardware {
  disks: { path: string; model: string; serial: string; wwn: string; sizeBytes: number; removable: boolean }[];
  nics: { name: string; mac: string; speedMbit: number | null }[];
  cpu: { model: string; cores: number };
  memoryBytes: number;
}

export interface ImageRecord {
  /** Catalog name: the file name without `.dsc`; unique. */
  name: string;
  path: string;
  /** Hex of the image's 16-byte id. */
  imageId: string;
  sourceBytes: number;
  fileBytes: number;
  dataChunks: number;
  signed: boolean;
  /** Multicast group from the pool, persisted so a restarted daemon serves the image on it again. */
  group: string;
  port: number;
  addedMs: number;
}

export interface NodeRecord {
  /** Lower-case, colon-separated: aa:bb:cc:dd:ee:ff. The key. */
  mac: string;
  /** Unique; `new-aabbccddeeff` for nodes that showed up unknown. */
  name: string;
  tags: string[];
  /** An agent disk rule (src/agent/disks.ts), e.g. `serial:S3Z9NB0K`; null: not yet set (never written). */
  diskRule: string | null;
  /** The catalog image its next reload writes, unless the reload names another. */
  image: string | null;
  power: PowerSpec;
  state: NodeState;
  lastSeenMs: number | null;
  hardware: Hardware | null;
}

export interface JobRecord {
  id: number;
  mac: string;
  kind: JobKind;
  /** The catalog image a load writes; null for inventory jobs. */
  image: string | null;
  state: JobState;
  /** SHA-256 (hex) of the job's token: the token itself goes only into the node's boot script. */
  tokenSha256: string;
  /** Boot scripts served for this job: an agent that boots again and again without reporting is failed, not looped. */
  agentBoots: number;
  /** 0..100, and the rate the agent last reported. */
  percent: number;
  bytesPerSecond: number;
  error: string | null;
  createdMs: number;
  updatedMs: number;
}

export interface EventRecord {
  id: number;
  atMs: number;
  /** `admin`, `agent:MAC`, `daemon`. */
  actor: string;
  /** e.g. `node.add`, `job.state`, `image.add`. */
  action: string;
  /** What it was done to: a node name, an image name, `job 12`. */
  subject: string;
  /** Short human text; never a secret. */
  detail: string;
}

export type JobPatch = Partial<Pick<JobRecord, "state" | "percent" | "bytesPerSecond" | "error" | "updatedMs" | "tokenSha256" | "agentBoots">>;

/** Every read and write of the daemon's state. All methods are atomic; none keeps a transaction open across awaits of callers. */
export interface Store {
  /** `sqlite` or `postgres`, for messages. */
  readonly kind: "sqlite" | "postgres";
  close(): Promise<void>;

  putImage(image: ImageRecord): Promise<void>;
  getImage(name: string): Promise<ImageRecord | null>;
  listImages(): Promise<ImageRecord[]>;
  deleteImage(name: string): Promise<boolean>;

  /** Inserts, or replaces the node with the same MAC. Names are unique: a clash throws a DiscusError (kind usage). */
  putNode(node: NodeRecord): Promise<void>;
  getNode(mac: string): Promise<NodeRecord | null>;
  getNodeByName(name: string): Promise<NodeRecord | null>;
  listNodes(): Promise<NodeRecord[]>;
  deleteNode(mac: string): Promise<boolean>;

  /** A new job; its id is assigned by the database. */
  createJob(job: Omit<JobRecord, "id">): Promise<JobRecord>;
  getJob(id: number): Promise<JobRecord | null>;
  /** The node's newest job not yet finished (FINISHED_JOB_STATES), if any. */
  activeJob(mac: string): Promise<JobRecord | null>;
  updateJob(id: number, patch: JobPatch): Promise<JobRecord | null>;
  /** Newest first, at most `limit`. */
  listJobs(limit: number): Promise<JobRecord[]>;
  /** Every node's newest job (one per node that has any), whatever the length of the history. */
  latestJobs(): Promise<JobRecord[]>;
  /** The node's newest job, finished or not. */
  latestJob(mac: string): Promise<JobRecord | null>;
  /** Every job not yet finished, oldest first (at most one per node is live; MAX_NODES bounds it). */
  unfinishedJobs(): Promise<JobRecord[]>;
  /** How many nodes there are, or how many in one state. */
  countNodes(state: NodeState | null): Promise<number>;

  addEvent(event: Omit<EventRecord, "id">): Promise<void>;
  /** Newest first, at most `limit`. */
  listEvents(limit: number): Promise<EventRecord[]>;
}

/** Normalizes a MAC address (any case, `-` or `:` separators); null when it is not one. */
export function normalizeMac(text: string): string | null {
  const hex = text.trim().toLowerCase().replace(/[-:]/g, "");
  if (!/^[0-9a-f]{12}$/.test(hex)) return null;
  return hex.match(/../g)!.join(":");
}

/** Node names and tags: what a shell, a URL path and a glob can carry without quoting. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
