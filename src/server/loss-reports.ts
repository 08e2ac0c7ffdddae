// Which loss reports the rate law may listen to (docs/PROTOCOL.md, "Pacing"). Reports are not
// authenticated, so one host sending many (under as many sender ids as it likes) must count as
// one client, and a host that has not asked for blocks lately is not a client being served at
// all. Pure: time comes in as an argument.
import { assert } from "../util/assert.ts";
import type { LossSample } from "./pacer.ts";

export interface LossReportLimits {
  /** A host's reports count only while its last request is at most this old. */
  recentRequestMs: number;
  /** Hosts remembered at most (requesters and reporters each); beyond it new ones are ignored. */
  maxHosts: number;
}

export class LossReports {
  private readonly lastRequestMs = new Map<string, number>();
  private samples = new Map<string, LossSample>();

  constructor(private readonly limits: LossReportLimits) {
    assert(limits.recentRequestMs > 0 && limits.maxHosts >= 1, "positive recency window and host bound");
  }

  /** A request from `host` (its source address): its reports count for a while. */
  requested(host: string, nowMs: number): void {
    if (this.lastRequestMs.has(host) || this.lastRequestMs.size < this.limits.maxHosts) this.lastRequestMs.set(host, nowMs);
  }

  /** A report from `host`: the latest one in an interval stands for the host. */
  reported(host: string, sample: LossSample): void {
    if (this.samples.has(host) || this.samples.size < this.limits.maxHosts) this.samples.set(host, sample);
  }

  /** The interval's samples, one per host that asked for blocks lately; starts the next interval. */
  take(nowMs: number): LossSample[] {
    const out: LossSample[] = [];
    for (const [host, sample] of this.samples) {
      const at = this.lastRequestMs.get(host);
      if (at !== undefined && nowMs - at <= this.limits.recentRequestMs) out.push(sample);
    }
    this.samples = new Map();
    for (const [host, at] of this.lastRequestMs) if (nowMs - at > this.limits.recentRequestMs) this.lastRequestMs.delete(host);
    return out;
  }
}
