// Ed25519 keys (PEM: PKCS#8 private, SPKI public, as openssl writes them) and manifest signatures.
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { DiscusError } from "../util/errors.ts";
import { equalBytes } from "../util/bytes.ts";
import type { Manifest } from "./manifest.ts";

export interface KeyPairPem {
  privatePem: string;
  publicPem: string;
}

export function generateKeyPair(): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

function keyKind(key: KeyObject, path: string, want: "private" | "public"): KeyObject {
  if (key.asymmetricKeyType !== "ed25519") {
    throw new DiscusError("signature", path, `is a ${key.asymmetricKeyType ?? "non-asymmetric"} key, not Ed25519`, "Make keys with `discus keygen`");
  }
  if (key.type !== want) throw new DiscusError("signature", path, `is a ${key.type} key`, `Pass the ${want} key file`);
  return key;
}

export function loadPrivateKey(pem: string, path: string): KeyObject {
  try {
    return keyKind(createPrivateKey(pem), path, "private");
  } catch (e) {
    if (e instanceof DiscusError) throw e;
    throw new DiscusError("signature", path, "is not a PEM private key", "Make keys with `discus keygen`");
  }
}

export function loadPublicKey(pem: string, path: string): KeyObject {
  try {
    return keyKind(createPublicKey(pem), path, "public");
  } catch (e) {
    if (e instanceof DiscusError) throw e;
    throw new DiscusError("signature", path, "is not a PEM public key", "Pass the .pub file written by `discus keygen`");
  }
}

/** SPKI DER header of every Ed25519 public key (RFC 8410): the raw 32 bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** A public key from its raw 32 bytes, as the netboot agent gets it on the kernel command line. */
export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new DiscusError("signature", "public key", `is ${raw.length} bytes, not 32`, "Give the 64 hex digits `discus keygen` prints");
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: "der", type: "spki" });
}

/** The raw 32-byte Ed25519 public key (the last 32 bytes of its SPKI DER form). */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const der = key.type === "private" ? createPublicKey(key).export({ type: "spki", format: "der" }) : key.export({ type: "spki", format: "der" });
  return new Uint8Array(der.subarray(der.length - 32));
}

export function signBytes(privateKey: KeyObject, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, privateKey));
}

/** True when `signature` over `message` verifies with `publicKey` and names that same key. */
export function verifySignature(publicKey: KeyObject, message: Uint8Array, signature: { publicKey: Uint8Array; signature: Uint8Array }): boolean {
  if (!equalBytes(rawPublicKey(publicKey), signature.publicKey)) return false;
  return verify(null, message, publicKey, signature.signature);
}

/** Short fingerprint of a raw public key for messages: first 8 bytes of its SHA-256, hex. */
export function keyFingerprint(raw: Uint8Array): string {
  const h = new Bun.CryptoHasher("sha256");
  h.update(raw);
  return h.digest("hex").slice(0, 16);
}

/** What a signature check found: checked against a key, no signature, or not asked to check. */
export type SignatureCheck = "verified" | "unsigned" | "not checked";

/** Checks the manifest's signature against a trusted key; `imageName` is for messages. */
export function checkSignature(
  manifest: Manifest,
  manifestBody: Uint8Array,
  imageName: string,
  publicKey: KeyObject | null,
  keyPath: string | null,
): SignatureCheck {
  const sig = manifest.signature;
  if (publicKey === null) return sig ? "not checked" : "unsigned";
  if (sig === null) {
    throw new DiscusError("signature", imageName, "is not signed, but a key was given", "Use the signed image, or drop --key to accept an unsigned one");
  }
  if (!verifySignature(publicKey, manifestBody, sig)) {
    throw new DiscusError("signature", imageName, `signature does not verify with ${keyPath} (image signed by key ${keyFingerprint(sig.publicKey)})`, "Use the public key of whoever signed the image; do not install an image you cannot verify");
  }
  return "verified";
}
