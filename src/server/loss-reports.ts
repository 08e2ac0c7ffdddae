// Which loss reports the rate law may listen to (docs/PROTOCOL.md, "Pacing"). Reports are not
// authenticated, so one host sending many (under as many sender ids as it likes) must count as
// one client; a host that has not asked for blocks lately is not a client being served at all;
// and the law waits until more than half of the hosts asking for blocks have reported, so a host
// reporting more often than the others (or first) cannot decide a step alone. Pure: time comes in
// as an argument.
import { assert } from "../util/assert.ts";
import type { LossSample } from "./pacer.ts";

export interface LossReportLimits {
  /** A host is a client, whose reports count and whose report is waited for, this long after its last request. */
  recentRequestMs: number;
  /** A report not used within this long is stale (clients report once a second). */
  reportMemoryMs: number;
  /** Hosts remembered at most (requesters and reporters each); beyond it new ones are ignored. */
  maxHosts: number;
}

export class LossReports {
  private readonly lastRequestMs = new Map<string, number>();
  private samples = new Map<string, { sample: LossSample; atMs: number }>();

  constructor(private readonly limits: LossReportLimits) {
    assert(limits.recentRequestMs > 0 && limits.reportMemoryMs > 0 && limits.maxHosts >= 1, "positive windows and host bound");
  }

  /** A request from `host` (its source address): it is a client for a while. */
  requested(host: string, nowMs: number): void {
    if (this.lastRequestMs.has(host) || this.lastRequestMs.size < this.limits.maxHosts) this.lastRequestMs.set(host, nowMs);
  }

  /** A report from `host`: the latest one stands for the host until the law uses it. */
  reported(host: string, sample: LossSample, nowMs: number): void {
    if (this.samples.has(host) || this.samples.size < this.limits.maxHosts) this.samples.set(host, { sample, atMs: nowMs });
  }

  /**
   * The samples for one step of the law, one per client, once more than half of the clients have
   * reported since the last step; else none (the reports wait for the next step).
   */
  take(nowMs: number): LossSample[] {
    for (const [host, at] of this.lastRequestMs) if (nowMs - at > this.limits.recentRequestMs) this.lastRequestMs.delete(host);
    const fresh: LossSample[] = [];
    for (const [host, s] of this.samples) {
      if (nowMs - s.atMs > this.limits.reportMemoryMs) this.samples.delete(host);
      else if (this.lastRequestMs.has(host)) fresh.push(s.sample);
    }
    if (fresh.length * 2 <= this.lastRequestMs.size) return [];
    this.samples = new Map();
    return fresh;
  }
}
