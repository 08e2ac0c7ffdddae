// Authenticated control packets (issue 11): the trailer's layout and tag, the replay window, the
// cost of a verify, and the key file options. The attacks on a real LAN are in auth-lan.test.ts.
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolveSettings, describeSettings } from "../../src/agent/settings.ts";
import { Loader } from "../../src/client/loader.ts";
import { TargetSink } from "../../src/client/sink.ts";
import { closeImage, openImage } from "../../src/image/reader.ts";
import { ServeSession, type ServeEvent } from "../../src/server/session.ts";
import { MemoryLan, VIRTUAL_GROUP, VIRTUAL_PORT, VIRTUAL_SERVER_ADDRESS, VirtualClock } from "./virtual.ts";
import { deriveSessionKey, ReplayWindow, REPLAY_WINDOW_PACKETS, SessionKey, sessionKeyFromHex } from "../../src/net/auth.ts";
import {
  AUTH_TAG_BYTES,
  AUTH_TRAILER_BYTES,
  decodePacket,
  encodeAnnounce,
  encodeQuery,
  encodeReport,
  encodeRequest,
  FLAG_AUTH,
  HEADER_BYTES,
  KEY_ID_BYTES,
  PacketType,
  ReportState,
  REQUEST_FIXED_BYTES,
} from "../../src/net/wire.ts";
import { view } from "../../src/util/bytes.ts";
import { discus, discusOk, sha256File, tmpDir } from "../helpers.ts";

const imageId = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const common = { imageId, sender: 0x1234567 };
const keyBytes = Uint8Array.from({ length: 32 }, (_, i) => i * 3);
const key = new SessionKey(keyBytes);
const otherKey = new SessionKey(keyBytes.map((b) => b ^ 1));
const EPOCH = 0xcafe0001;

function request(): Uint8Array {
  return encodeRequest(common, 7, 12, Uint8Array.of(0xff, 0x0f));
}

describe("the authentication trailer", () => {
  test("a signed request: flag, trailer fields at their documented offsets, and it decodes to the same request", () => {
    const plain = request();
    const signed = key.sign(plain, EPOCH, 5);
    expect(signed.length).toBe(plain.length + AUTH_TRAILER_BYTES);
    const dv = view(signed);
    expect(dv.getUint16(6, true)).toBe(FLAG_AUTH);
    const t = plain.length;
    expect(dv.getUint32(t, true)).toBe(EPOCH);
    expect(dv.getUint32(t + 4, true)).toBe(0);
    expect(Number(dv.getBigUint64(t + 8, true))).toBe(5);
    expect(signed.length - (t + 16)).toBe(AUTH_TAG_BYTES);
    const d = decodePacket(signed);
    if (!d.ok || d.packet.type !== PacketType.request) throw new Error(`decoded ${JSON.stringify(d)}`);
    expect(d.packet.chunk).toBe(7);
    expect([...d.packet.bitmap]).toEqual([0xff, 0x0f]);
    expect(d.packet.auth?.epoch).toBe(EPOCH);
    expect(d.packet.auth?.counter).toBe(5);
    expect(key.verify(signed, d.packet.auth!)).toBe("ok");
    expect(otherKey.verify(signed, d.packet.auth!)).toBe("badTag");
    // The tag is HMAC-SHA256 over the header before the CRC and everything after it up to the tag.
    const h = new Bun.CryptoHasher("sha256", keyBytes);
    h.update(signed.subarray(0, 28));
    h.update(signed.subarray(HEADER_BYTES, signed.length - AUTH_TAG_BYTES));
    expect([...signed.subarray(signed.length - AUTH_TAG_BYTES)]).toEqual([...h.digest().subarray(0, AUTH_TAG_BYTES)]);
  });

  test("every byte is covered: a change anywhere (CRC fixed up) fails the tag or the decode", () => {
    const signed = key.sign(request(), EPOCH, 9);
    for (let i = 0; i < signed.length; i++) {
      if (i >= 28 && i < 32) continue; // the CRC itself, recomputed below
      const bad = signed.slice();
      bad[i]! ^= 0x01;
      // Re-seal the CRC as a forger would: only the tag can tell.
      const head = Bun.hash.crc32(bad.subarray(0, 28));
      view(bad).setUint32(28, Number(Bun.hash.crc32(bad.subarray(32), head)) >>> 0, true);
      const d = decodePacket(bad);
      if (!d.ok) continue;
      const auth = (d.packet as { auth?: { tag: Uint8Array } | null }).auth ?? null;
      if (auth === null) continue; // the flag bit cleared: an unauthenticated packet, dropped as such
      expect(key.verify(bad, d.packet.type === PacketType.request ? d.packet.auth! : (d.packet as never))).toBe("badTag");
    }
  });

  test("queries and reports sign too; blocks may not carry the flag; unknown flags are dropped", () => {
    for (const p of [encodeQuery(common), encodeReport(common, { state: ReportState.failed, elapsedMs: 1, chunksDone: 0, chunksTotal: 1, bytesWritten: 0, blocksReceived: 0, duplicateBlocks: 0, requestsSent: 0, rerequests: 0, chunksRejected: 0, intervalReceived: 0, intervalSeqSpan: 0, message: "disk on fire" })]) {
      const d = decodePacket(key.sign(p, 0, 1));
      expect(d.ok).toBe(true);
      if (d.ok && d.packet.type === PacketType.report) expect(d.packet.message).toBe("disk on fire");
    }
    const plain = request();
    const other = plain.slice();
    view(other).setUint16(6, 0x0002, true);
    const head = Bun.hash.crc32(other.subarray(0, 28));
    view(other).setUint32(28, Number(Bun.hash.crc32(other.subarray(32), head)) >>> 0, true);
    expect(decodePacket(other)).toEqual({ ok: false, reason: "field" });
    // A flagged packet too short for its trailer.
    const short = plain.slice(0, HEADER_BYTES + REQUEST_FIXED_BYTES);
    view(short).setUint16(6, FLAG_AUTH, true);
    const h2 = Bun.hash.crc32(short.subarray(0, 28));
    view(short).setUint32(28, Number(Bun.hash.crc32(short.subarray(32), h2)) >>> 0, true);
    expect(decodePacket(short).ok).toBe(false);
  });

  test("an announce names the key by its id; the id is not the key and differs per key", () => {
    const body = { chunkBytes: 1 << 20, blockBytes: 1424, dataChunkCount: 4, manifestPartCount: 1, manifestBytes: 4 * 64 + 600, sourceBytes: 1 << 30, rateBitsPerSecond: 1e8, manifestSha256: new Uint8Array(32) };
    const d = decodePacket(encodeAnnounce(common, body, key.keyId));
    if (!d.ok || d.packet.type !== PacketType.announce) throw new Error("announce did not decode");
    expect([...d.packet.keyId!]).toEqual([...key.keyId]);
    expect(key.keyId.length).toBe(KEY_ID_BYTES);
    expect(Buffer.from(keyBytes).toString("hex")).not.toContain(Buffer.from(key.keyId).toString("hex"));
    expect(otherKey.keyId).not.toEqual(key.keyId);
    const open = decodePacket(encodeAnnounce(common, body));
    expect(open.ok && open.packet.type === PacketType.announce && open.packet.keyId).toBe(null);
  });

  test("keys from hex; the daemon's derived keys are stable and differ per image and group", () => {
    expect(sessionKeyFromHex("zz")).toBe(null);
    expect(sessionKeyFromHex(`${"ab".repeat(32)}\n`)).not.toBe(null);
    const secret = new Uint8Array(32).fill(7);
    const a = deriveSessionKey(secret, "00".repeat(16), "239.192.77.1");
    expect(deriveSessionKey(secret, "00".repeat(16), "239.192.77.1")).toEqual(a);
    expect(deriveSessionKey(secret, "00".repeat(16), "239.192.77.2")).not.toEqual(a);
    expect(deriveSessionKey(secret, "01".repeat(16), "239.192.77.1")).not.toEqual(a);
  });

  test("verifying is cheap: µs per verify of a full request", () => {
    const signed = key.sign(encodeRequest(common, 3, 737, new Uint8Array(93).fill(0xff)), EPOCH, 1);
    const d = decodePacket(signed);
    if (!d.ok || d.packet.type !== PacketType.request) throw new Error("no request");
    const n = 20_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) key.verify(signed, d.packet.auth!);
    const us = ((performance.now() - t0) * 1000) / n;
    console.log(`auth: ${us.toFixed(2)} µs per verify (${signed.length}-byte request)`);
    // Generous: a 2-core machine shared with others; at 100 µs a core still checks 10,000 a second.
    expect(us).toBeLessThan(100);
  });
});

describe("the replay window", () => {
  test("each counter once; reordering within the window admitted once; older ones refused", () => {
    const w = new ReplayWindow(8);
    expect(w.admit(1, 10)).toBe(true);
    expect(w.admit(1, 10)).toBe(false);
    expect(w.admit(1, 12)).toBe(true);
    expect(w.admit(1, 11)).toBe(true); // late, within the window
    expect(w.admit(1, 11)).toBe(false);
    expect(w.admit(1, 12)).toBe(false);
    expect(w.admit(1, 12 + REPLAY_WINDOW_PACKETS)).toBe(true);
    expect(w.admit(1, 12)).toBe(false); // now exactly the window's width behind, seen
    expect(w.admit(1, 11)).toBe(false); // past the window
    expect(w.admit(1, 13)).toBe(true); // within it, unseen
    expect(w.admit(1, 13)).toBe(false);
    // A jump of exactly the width keeps the old highest as the last bit.
    const v = new ReplayWindow(8);
    v.admit(5, 100);
    expect(v.admit(5, 100 + REPLAY_WINDOW_PACKETS)).toBe(true);
    expect(v.admit(5, 100)).toBe(false);
    expect(v.admit(5, 101)).toBe(true);
    // Senders are independent.
    expect(w.admit(2, 10)).toBe(true);
  });

  test("bounded: the least recently admitted sender makes room", () => {
    const w = new ReplayWindow(3);
    for (const s of [1, 2, 3]) w.admit(s, 1);
    w.admit(1, 2); // 1 is recent again
    w.admit(4, 1); // evicts 2
    expect(w.senders).toBe(3);
    expect(w.admit(1, 2)).toBe(false);
    expect(w.admit(3, 1)).toBe(false);
    expect(w.admit(2, 1)).toBe(true); // forgotten: what docs/PROTOCOL.md says remains
  });
});

describe("--auth-key-file", () => {
  test("refused with exit 2 when readable by others, malformed, or missing; named in the message", async () => {
    const dir = await tmpDir();
    const path = join(dir, "session.key");
    writeFileSync(path, `${"ab".repeat(32)}\n`, { mode: 0o644 });
    chmodSync(path, 0o644);
    const args = (f: string) => ["serve", "/nonexistent.dsc", "--group", "239.192.0.9", "--iface", "127.0.0.1", "--auth-key-file", f];
    const open = await discus(args(path));
    expect(open.code).toBe(2);
    expect(open.stderr).toContain("readable by others (mode 0644)");
    chmodSync(path, 0o600);
    writeFileSync(path, "not hex\n");
    const bad = await discus(args(path));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("does not hold a session key (64 hex digits)");
    const missing = await discus(["load", join(dir, "t.img"), "--group", "239.192.0.9", "--iface", "127.0.0.1", "--auth-key-file", join(dir, "none")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--auth-key-file");
    expect(missing.stderr).toContain("no such file");
  });
});

describe("the agent's discus.auth", () => {
  test("64 hex digits become the key; anything else is a usage error that does not echo it; never described", () => {
    const hexKey = "c0".repeat(32);
    const s = resolveSettings(`discus.action=load discus.group=239.192.0.1 discus.disk=only discus.auth=${hexKey}`, null);
    expect(Buffer.from(s.auth!).toString("hex")).toBe(hexKey);
    expect(describeSettings(s).join("\n")).not.toContain("c0c0");
    expect(() => resolveSettings("discus.auth=secretsecret", null)).toThrow("discus.auth: is not 64 hex digits");
    try {
      resolveSettings("discus.auth=secretsecret", null);
    } catch (e) {
      expect((e as Error).message).not.toContain("secretsecret");
    }
  });
});

describe("a keyed session restarted mid-load (virtual time)", () => {
  test("clients with the key follow the new epoch from its announce and finish with the right disk", async () => {
    const dir = await tmpDir();
    writeFileSync(join(dir, "source.img"), randomBytes(8 << 20));
    const imagePath = join(dir, "disk.dsc");
    await discusOk(["create", join(dir, "source.img"), imagePath, "--raw", "--chunk-size", "256K", "--quiet"]);
    const image = openImage(imagePath);
    const clock = new VirtualClock();
    const lan = new MemoryLan(clock, 0.2);
    const session = (seed: number) =>
      new ServeSession(
        image,
        { imageName: imagePath, group: VIRTUAL_GROUP, port: VIRTUAL_PORT, rateBitsPerSecond: 100e6, adaptiveRate: true, mtuBytes: 1500, idleMs: null, seed, authKey: key },
        { clock, openTransport: lan.transport(VIRTUAL_SERVER_ADDRESS, VIRTUAL_PORT) },
      );
    try {
      const first = session(1);
      await first.start();
      const targets = [0, 1].map((i) => join(dir, `t${i}.img`));
      let settled = 0;
      let progress = 0;
      const runs = targets.map((target, i) => {
        const loader = new Loader(
          { group: VIRTUAL_GROUP, port: VIRTUAL_PORT, publicKey: null, keyPath: null, imageId: null, giveUpMs: 30_000, bufferBytes: 2 << 20, requestWindowChunks: 4, seed: 10 + i, authKey: key },
          { clock, openTransport: lan.transport(`198.18.0.${10 + i}`, VIRTUAL_PORT), sink: new TargetSink({ target, freeMode: "skip", workers: 0 }) },
        );
        loader.on((e) => e.kind === "progress" && e.chunksDone > 0 && progress++);
        return loader.run().finally(() => settled++);
      });
      await clock.runUntil(() => progress >= 6, 60_000);
      expect(settled).toBe(0);
      await first.stop();
      const second = session(2);
      const events: ServeEvent[] = [];
      second.on((e) => events.push(e));
      await second.start();
      await clock.runUntil(() => settled === 2, clock.nowMs() + 60_000);
      const stats = await Promise.all(runs);
      for (const s of stats) expect(s.serverRestarts).toBeGreaterThanOrEqual(1);
      for (const t of targets) expect(await sha256File(t)).toBe(await sha256File(join(dir, "source.img")));
      await second.stop();
      // The clients' first requests to the new server named the old epoch: dropped, answered with an announce.
      const dropped = events.filter((e) => e.kind === "auth-dropped").reduce((n, e) => n + (e.kind === "auth-dropped" ? e.packets.staleEpoch : 0), 0);
      expect(dropped).toBeGreaterThan(0);
    } finally {
      closeImage(image);
    }
  }, 120_000);
});
