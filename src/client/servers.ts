// The servers a client has heard announce, and which of them to try. Announcements are not
// authenticated: until the manifest they describe has been fetched and matched its digest, a
// server is only a candidate. A host whose candidate fails (its manifest does not match, or it
// delivers none) is set aside for a while, longer each time, whatever it announces next, and the
// next candidate is tried; hosts that never failed go first. Pure: no sockets.
import type { AnnouncePacket } from "../net/wire.ts";
import { assert } from "../util/assert.ts";
import { equalBytes, hex } from "../util/bytes.ts";

export interface Candidate {
  /** Source address and layout: one host may announce several images or layouts. */
  key: string;
  /** Source address and port. */
  host: string;
  address: string;
  port: number;
  announce: AnnouncePacket;
  lastHeardMs: number;
}

interface HostRecord {
  failures: number;
  /** Not tried again before this time. */
  setAsideUntilMs: number;
}

export interface CandidateLimits {
  /** Candidates remembered at most: beyond it the one heard least recently is forgotten. */
  maxCandidates: number;
  /** Candidates remembered per host: a host announcing ever new layouts replaces its own. */
  maxPerHost: number;
  /** Hosts whose failures are remembered at most. */
  maxHosts: number;
  /** How long a failed candidate is set aside the first time; doubles with each failure. */
  firstSetAsideMs: number;
  maxSetAsideMs: number;
}

/** The fields two announcements of the same image served the same way agree on. */
export function sameLayout(a: AnnouncePacket, b: AnnouncePacket): boolean {
  return (
    equalBytes(a.imageId, b.imageId) &&
    a.chunkBytes === b.chunkBytes &&
    a.blockBytes === b.blockBytes &&
    a.dataChunkCount === b.dataChunkCount &&
    a.manifestPartCount === b.manifestPartCount &&
    a.manifestBytes === b.manifestBytes &&
    a.sourceBytes === b.sourceBytes &&
    equalBytes(a.manifestSha256, b.manifestSha256)
  );
}

export function candidateKey(a: AnnouncePacket, address: string, port: number): string {
  const layout = [a.chunkBytes, a.blockBytes, a.dataChunkCount, a.manifestPartCount, a.manifestBytes, a.sourceBytes].join(",");
  return `${address}:${port} ${hex(a.imageId)} ${layout} ${hex(a.manifestSha256)}`;
}

export class Candidates {
  private readonly byKey = new Map<string, Candidate>();
  private readonly hosts = new Map<string, HostRecord>();

  constructor(private readonly limits: CandidateLimits) {
    assert(limits.maxCandidates >= 2 && limits.maxPerHost >= 1 && limits.maxPerHost < limits.maxCandidates, "sane candidate bounds");
    assert(limits.maxHosts >= 1 && limits.firstSetAsideMs > 0 && limits.maxSetAsideMs >= limits.firstSetAsideMs, "sane set-aside limits");
  }

  /** Records an announcement (copied: decoded fields are views into the datagram). */
  heard(p: AnnouncePacket, address: string, port: number, nowMs: number): Candidate {
    const key = candidateKey(p, address, port);
    const host = `${address}:${port}`;
    let c = this.byKey.get(key);
    if (c === undefined) {
      const own = [...this.byKey.values()].filter((o) => o.host === host);
      if (own.length >= this.limits.maxPerHost) this.forgetOldest(own);
      else if (this.byKey.size >= this.limits.maxCandidates) this.forgetOldest(this.byKey.values());
      c = { key, host, address, port, announce: copyAnnounce(p), lastHeardMs: nowMs };
      this.byKey.set(key, c);
    }
    c.announce.rateBitsPerSecond = p.rateBitsPerSecond;
    c.announce.sender = p.sender;
    c.lastHeardMs = nowMs;
    return c;
  }

  /** The candidate to try next: its host not set aside and fewest failures, then heard most recently. */
  pick(nowMs: number, exceptHost: string | null): Candidate | null {
    let best: Candidate | null = null;
    let bestFailures = 0;
    for (const c of this.byKey.values()) {
      const h = this.hosts.get(c.host);
      if (c.host === exceptHost || (h !== undefined && h.setAsideUntilMs > nowMs)) continue;
      const failures = h?.failures ?? 0;
      if (best === null || failures < bestFailures || (failures === bestFailures && c.lastHeardMs > best.lastHeardMs)) {
        best = c;
        bestFailures = failures;
      }
    }
    return best;
  }

  /** True when `host` announced a candidate that is not set aside. */
  announced(host: string, nowMs: number): boolean {
    if ((this.hosts.get(host)?.setAsideUntilMs ?? 0) > nowMs) return false;
    for (const c of this.byKey.values()) if (c.host === host) return true;
    return false;
  }

  /** How often a host's candidates failed (since its last success). */
  failuresOf(host: string): number {
    return this.hosts.get(host)?.failures ?? 0;
  }

  /** A host's candidate failed: set the host aside, twice as long as the time before. */
  failed(host: string, nowMs: number): void {
    let h = this.hosts.get(host);
    if (h === undefined) {
      if (this.hosts.size >= this.limits.maxHosts) this.forgetHost();
      h = { failures: 0, setAsideUntilMs: 0 };
      this.hosts.set(host, h);
    }
    h.failures++;
    h.setAsideUntilMs = nowMs + Math.min(this.limits.maxSetAsideMs, this.limits.firstSetAsideMs * 2 ** Math.min(30, h.failures - 1));
  }

  /** Its manifest matched: whatever the host failed before was damage in transit. */
  proven(host: string): void {
    this.hosts.delete(host);
  }

  private forgetOldest(among: Iterable<Candidate>): void {
    let oldest: Candidate | null = null;
    for (const c of among) if (oldest === null || c.lastHeardMs < oldest.lastHeardMs) oldest = c;
    if (oldest !== null) this.byKey.delete(oldest.key);
  }

  /** Makes room among the failed hosts: the one whose time aside ends first goes. */
  private forgetHost(): void {
    let first: [string, HostRecord] | null = null;
    for (const e of this.hosts) if (first === null || e[1].setAsideUntilMs < first[1].setAsideUntilMs) first = e;
    if (first !== null) this.hosts.delete(first[0]);
  }
}

function copyAnnounce(p: AnnouncePacket): AnnouncePacket {
  return { ...p, imageId: p.imageId.slice(), manifestSha256: p.manifestSha256.slice() };
}
