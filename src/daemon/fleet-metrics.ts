// What the daemon counts for monitoring (the HTTP face formats it for Prometheus at /metrics):
// job failures by a bounded set of reasons, and what the sessions' clients told (chunks rejected,
// clients done or failed, the latest loss each session heard). Counts live in memory and start
// at zero with the daemon, as Prometheus counters may. The classifier is pure.
import type { ServeEvent } from "../server/events.ts";
import type { JobState, NodeState } from "./model.ts";

/** Why jobs failed, as few labels as a dashboard needs: a free-text reason would be unbounded. */
export const FAILURE_REASONS = ["power", "boot-loop", "image-gone", "disk-rule", "signature", "server-silent", "disk-write", "other"] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];
export type FailureSource = "power" | "boot-loop" | "image-gone" | "agent";

/** The agent's FAILED lines name the thing first (src/agent): a few words tell the class. Pure. */
export function failureReason(source: FailureSource, message: string): FailureReason {
  if (source !== "agent") return source;
  const m = message.toLowerCase();
  if (/discus\.disk|disk rule|no disk|matched|matches/.test(m)) return "disk-rule";
  if (/signature|signed|discus\.key/.test(m)) return "signature";
  if (/silent|no server|no image server|no progress|gave up|give up|no answer/.test(m)) return "server-silent";
  if (/\bwrit|eio|enospc|read-only|erofs|i\/o/.test(m)) return "disk-write";
  return "other";
}

export interface SessionFigures {
  image: string;
  group: string;
  rateBitsPerSecond: number;
  clients: number;
  bytesSent: number;
  /** The latest loss fraction a client reported to this session (0..1). */
  lossFraction: number;
}

export interface FleetMetrics {
  nodesByState: Record<NodeState, number>;
  /** Each node's newest job, by state. */
  jobsByState: Record<JobState, number>;
  sessions: SessionFigures[];
  jobFailures: Record<FailureReason, number>;
  chunksRejected: number;
  clientsDone: number;
  clientsFailed: number;
}

export class FleetCounters {
  readonly jobFailures = Object.fromEntries(FAILURE_REASONS.map((r) => [r, 0])) as Record<FailureReason, number>;
  chunksRejected = 0;
  clientsDone = 0;
  clientsFailed = 0;
  /** By image name; one entry per catalog image at most. */
  private readonly loss = new Map<string, number>();

  jobFailed(source: FailureSource, message: string): void {
    this.jobFailures[failureReason(source, message)]++;
  }

  onServeEvent(image: string, e: ServeEvent): void {
    if (e.kind === "client-done") {
      this.clientsDone++;
      this.chunksRejected += e.chunksRejected;
    } else if (e.kind === "client-failed") this.clientsFailed++;
    else if (e.kind === "client-progress" || e.kind === "rate-changed") this.loss.set(image, e.lossFraction);
  }

  lossOf(image: string): number {
    return this.loss.get(image) ?? 0;
  }
}
