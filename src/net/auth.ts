// Authenticated control packets (docs/PROTOCOL.md, "Authentication"): a session key of 32 bytes,
// the truncated HMAC-SHA256 tag a client's query, request and report carry in their trailer
// (net/wire.ts), the key's public id that announces carry, and the replay window that admits each
// (sender, counter) once. Pure apart from the MAC itself.
import { createHmac, timingSafeEqual } from "node:crypto";
import { assert } from "../util/assert.ts";
import { utf8 } from "../util/bytes.ts";
import { AUTH_TAG_BYTES, KEY_ID_BYTES, sealTag, taggedParts, withAuthTrailer, type AuthTrailer } from "./wire.ts";

export const SESSION_KEY_BYTES = 32;
/** Counters a sender may run ahead of one it sent before, and that one still be admitted (reordering). */
export const REPLAY_WINDOW_PACKETS = 32;
/** Senders remembered by a replay window; the least recently admitted makes room for a new one. */
export const MAX_REPLAY_SENDERS = 65536;
const KEY_ID_LABEL = utf8("discus key id");
const SESSION_KEY_LABEL = "discus session key";
assert(AUTH_TAG_BYTES <= 32 && KEY_ID_BYTES <= 32, "tag and key id are truncations of one SHA-256");
assert(REPLAY_WINDOW_PACKETS >= 1 && REPLAY_WINDOW_PACKETS <= 32, "the window fits one 32-bit bitmap");

export type TagVerdict = "ok" | "badTag";

export class SessionKey {
  /** Public: names the key in announces, so a client with another key can say so. Reveals nothing of it. */
  readonly keyId: Uint8Array;

  constructor(private readonly key: Uint8Array) {
    assert(key.length === SESSION_KEY_BYTES, "a session key is 32 bytes");
    this.key = key.slice();
    this.keyId = this.mac([KEY_ID_LABEL]).subarray(0, KEY_ID_BYTES);
  }

  private mac(parts: Uint8Array[]): Uint8Array {
    const h = createHmac("sha256", this.key);
    for (const p of parts) h.update(p);
    return h.digest();
  }

  /** `packet` (a client's, unauthenticated) with FLAG_AUTH and a trailer whose tag is made with this key. */
  sign(packet: Uint8Array, epoch: number, counter: number): Uint8Array {
    const bytes = withAuthTrailer(packet, epoch, counter);
    return sealTag(bytes, this.mac(taggedParts(bytes)).subarray(0, AUTH_TAG_BYTES));
  }

  /** Whether the trailer's tag (already decoded from `bytes`) was made with this key; constant time. */
  verify(bytes: Uint8Array, trailer: AuthTrailer): TagVerdict {
    const want = this.mac(taggedParts(bytes)).subarray(0, AUTH_TAG_BYTES);
    return trailer.tag.length === AUTH_TAG_BYTES && timingSafeEqual(want, trailer.tag) ? "ok" : "badTag";
  }
}

/** A key from its 64 hex digits; null when the text is not exactly that. */
export function sessionKeyFromHex(text: string): SessionKey | null {
  const t = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(t)) return null;
  return new SessionKey(Uint8Array.from(Buffer.from(t, "hex")));
}

/**
 * The daemon's key for one image's session: HMAC-SHA256(secret, label, image id, group), so it is
 * the same after a restart without being stored, and differs between images and groups.
 */
export function deriveSessionKey(secret: Uint8Array, imageIdHex: string, group: string): Uint8Array {
  assert(secret.length >= SESSION_KEY_BYTES, "a secret of at least 32 bytes");
  return Uint8Array.from(createHmac("sha256", secret).update(`${SESSION_KEY_LABEL}\n${imageIdHex.toLowerCase()}\n${group}`).digest());
}

interface SenderWindow {
  highest: number;
  /** Bit i set: counter highest - 1 - i was admitted. */
  seen: number;
}

/**
 * Admits each (sender, counter) once: a counter above the highest seen from that sender, or one of
 * the REPLAY_WINDOW_PACKETS below it not yet seen. Call it only for packets whose tag verified
 * (then only the key's holders can add senders). Bounded: MAX_REPLAY_SENDERS, least recent out.
 */
export class ReplayWindow {
  private readonly bySender = new Map<number, SenderWindow>();

  constructor(private readonly maxSenders = MAX_REPLAY_SENDERS) {
    assert(maxSenders >= 1, "a replay window remembers at least one sender");
  }

  get senders(): number {
    return this.bySender.size;
  }

  admit(sender: number, counter: number): boolean {
    const w = this.bySender.get(sender);
    if (w === undefined) {
      if (this.bySender.size >= this.maxSenders) this.bySender.delete(this.bySender.keys().next().value as number);
      this.bySender.set(sender, { highest: counter, seen: 0 });
      return true;
    }
    if (!admitInto(w, counter)) return false;
    this.bySender.delete(sender); // re-inserted: Map order keeps the least recent first
    this.bySender.set(sender, w);
    return true;
  }
}

function admitInto(w: SenderWindow, counter: number): boolean {
  if (counter > w.highest) {
    const shift = counter - w.highest;
    // The old highest becomes bit shift-1; anything shifted past the window is forgotten.
    if (shift > REPLAY_WINDOW_PACKETS) w.seen = 0;
    else if (shift === 32) w.seen = (1 << 31) >>> 0;
    else w.seen = ((w.seen << shift) | (1 << (shift - 1))) >>> 0;
    w.highest = counter;
    return true;
  }
  const back = w.highest - counter; // 0: the highest itself, seen
  if (back === 0 || back > REPLAY_WINDOW_PACKETS) return false;
  const bit = 1 << (back - 1);
  if ((w.seen & bit) !== 0) return false;
  w.seen = (w.seen | bit) >>> 0;
  return true;
}
