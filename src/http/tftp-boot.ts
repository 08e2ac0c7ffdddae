// The daemon's per-MAC GRUB answer over TFTP (`discus server --tftp ADDRESS:PORT`). Debian's
// signed network GRUB, the one shim will start under Secure Boot, has no http module built in and
// may not load one (lockdown), so TFTP is the only way it can ask the daemon anything. This
// answers one kind of read request, `boot.grub?mac=MAC`, with the same decision GET /boot.grub
// gives; the big files (kernel, initramfs) stay on the site's ordinary TFTP server. Read-only,
// small files only (RFC 1350, with the blksize and tsize options of RFCs 2348 and 2349).
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { assert } from "../util/assert.ts";
import { DiscusError } from "../util/errors.ts";

const OP_RRQ = 1;
const OP_DATA = 3;
const OP_ACK = 4;
const OP_ERROR = 5;
const OP_OACK = 6;
const ERR_NOT_FOUND = 1;
const ERR_ILLEGAL = 4;
const DEFAULT_BLOCK_BYTES = 512;
/** RFC 2348's range is 8..65464; one Ethernet frame's worth is all a script needs. */
const MAX_BLOCK_BYTES = 1428;
const MIN_BLOCK_BYTES = 8;
/** A GRUB script is a few hundred bytes; anything near this is a bug, not a boot script. */
export const MAX_TFTP_FILE_BYTES = 64 << 10;
/** RFC 1350 counts blocks in 16 bits and we never wrap: the largest file must fit. */
assert(Math.ceil(MAX_TFTP_FILE_BYTES / DEFAULT_BLOCK_BYTES) < 0xffff, "the largest answer fits TFTP's block counter");
export const RETRANSMIT_MS = 1000;
export const MAX_RETRANSMITS = 5;
/** Transfers at once; more requests get an error (a node retries), never unbounded sockets. */
export const MAX_TRANSFERS = 64;
const MAX_REQUEST_BYTES = 512;

export interface ReadRequest {
  file: string;
  mode: string;
  options: Map<string, string>;
}

/** A read request, or null for anything else (write requests, junk). Pure. */
export function parseReadRequest(packet: Uint8Array): ReadRequest | null {
  if (packet.length < 4 || packet.length > MAX_REQUEST_BYTES || packet[0] !== 0 || packet[1] !== OP_RRQ) return null;
  const fields = new TextDecoder("latin1").decode(packet.subarray(2)).split("\0");
  if (fields.length < 3 || fields.at(-1) !== "") return null;
  fields.pop();
  const [file, mode, ...rest] = fields as [string, string, ...string[]];
  if (file === "" || rest.length % 2 !== 0) return null;
  const options = new Map<string, string>();
  for (let i = 0; i < rest.length; i += 2) options.set(rest[i]!.toLowerCase(), rest[i + 1]!);
  return { file, mode: mode.toLowerCase(), options };
}

/** The options we accept, as the OACK carries them, and the block size they give. Pure. */
export function negotiate(options: Map<string, string>, fileBytes: number): { blockBytes: number; oack: [string, string][] } {
  const oack: [string, string][] = [];
  let blockBytes = DEFAULT_BLOCK_BYTES;
  const asked = Number(options.get("blksize"));
  if (options.has("blksize") && Number.isInteger(asked) && asked >= MIN_BLOCK_BYTES) {
    blockBytes = Math.min(asked, MAX_BLOCK_BYTES);
    oack.push(["blksize", String(blockBytes)]);
  }
  if (options.has("tsize")) oack.push(["tsize", String(fileBytes)]);
  return { blockBytes, oack };
}

function packet(op: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + body.length);
  out[1] = op;
  out.set(body, 2);
  return out;
}

const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);

export function errorPacket(code: number, message: string): Uint8Array {
  return packet(OP_ERROR, new Uint8Array([0, code, ...latin1(message), 0]));
}

function oackPacket(pairs: [string, string][]): Uint8Array {
  return packet(OP_OACK, latin1(pairs.map(([k, v]) => `${k}\0${v}\0`).join("")));
}

/** DATA block `n` (1-based) of `file`: the last one is shorter than a block, possibly empty. Pure. */
export function dataPacket(file: Uint8Array, n: number, blockBytes: number): Uint8Array {
  const body = file.subarray((n - 1) * blockBytes, n * blockBytes);
  const out = new Uint8Array(4 + body.length);
  out[1] = OP_DATA;
  out[2] = (n >> 8) & 0xff;
  out[3] = n & 0xff;
  out.set(body, 4);
  return out;
}

/** The block an ACK acknowledges, or null. Pure. */
export function ackedBlock(p: Uint8Array): number | null {
  return p.length >= 4 && p[0] === 0 && p[1] === OP_ACK ? (p[2]! << 8) | p[3]! : null;
}

/** What a file name answers: the bytes, or a "file not found" reason. */
export type TftpAnswer = (file: string) => Promise<Uint8Array | { notFound: string }>;

export interface TftpServer {
  port: number;
  stop(): Promise<void>;
}

/** Listens on host:port; each transfer runs from its own socket, as RFC 1350 wants (its TID). */
export async function startTftp(host: string, port: number, answer: TftpAnswer, log: (line: string) => void): Promise<TftpServer> {
  const transfers = new Set<Socket>();
  const main = createSocket("udp4");
  main.on("message", (msg, peer) => {
    const req = parseReadRequest(msg);
    if (req === null) return void main.send(errorPacket(ERR_ILLEGAL, "only read requests are served"), peer.port, peer.address);
    if (transfers.size >= MAX_TRANSFERS) return void main.send(errorPacket(0, "busy, try again"), peer.port, peer.address);
    void transfer(host, req, peer, answer, transfers).catch((e) => log(`tftp: ${req.file} to ${peer.address}: ${(e as Error).message}`));
  });
  await new Promise<void>((resolve, reject) => {
    main.once("error", (e) => reject(new DiscusError("network", `--tftp ${host}:${port}`, `cannot listen: ${e.message}`, "Give an address of this machine and a free UDP port (dnsmasq holds 69; e.g. 6969)")));
    main.bind(port, host, () => resolve());
  });
  main.on("error", (e) => log(`tftp: ${e.message}`));
  return {
    port: main.address().port,
    async stop() {
      for (const s of transfers) s.close();
      await new Promise<void>((resolve) => main.close(() => resolve()));
    },
  };
}

/** One transfer: OACK or the first block, then each block once acknowledged; resent on silence, bounded. */
async function transfer(host: string, req: ReadRequest, peer: RemoteInfo, answer: TftpAnswer, transfers: Set<Socket>): Promise<void> {
  const sock = createSocket("udp4");
  transfers.add(sock);
  try {
    await new Promise<void>((resolve) => sock.bind(0, host, () => resolve()));
    // Sent before the socket closes (a send still queued when it closes is lost).
    const refuse = (code: number, why: string) => new Promise<void>((resolve) => sock.send(errorPacket(code, why), peer.port, peer.address, () => resolve()));
    let file: Uint8Array | { notFound: string };
    try {
      file = await answer(req.file);
    } catch (e) {
      await refuse(0, "the daemon could not decide; see its log");
      throw e;
    }
    if (!(file instanceof Uint8Array)) return await refuse(ERR_NOT_FOUND, file.notFound);
    if (file.length > MAX_TFTP_FILE_BYTES) return await refuse(0, "answer too large");
    const { blockBytes, oack } = negotiate(req.options, file.length);
    const lastBlock = Math.floor(file.length / blockBytes) + 1;
    let block = oack.length > 0 ? 0 : 1;
    while (block <= lastBlock) {
      const out = block === 0 ? oackPacket(oack) : dataPacket(file, block, blockBytes);
      if (!(await sendUntilAcked(sock, out, block, peer))) throw new Error(`no acknowledgement of block ${block} after ${MAX_RETRANSMITS} tries`);
      block++;
    }
  } finally {
    transfers.delete(sock);
    sock.close();
  }
}

/** Sends `out` until the peer acknowledges `block`; false after MAX_RETRANSMITS silences. */
async function sendUntilAcked(sock: Socket, out: Uint8Array, block: number, peer: RemoteInfo): Promise<boolean> {
  for (let attempt = 0; attempt < MAX_RETRANSMITS; attempt++) {
    const acked = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => done(false), RETRANSMIT_MS);
      const onMessage = (msg: Buffer, from: RemoteInfo) => {
        if (from.port === peer.port && from.address === peer.address && ackedBlock(msg) === block) done(true);
      };
      const done = (ok: boolean) => {
        clearTimeout(timer);
        sock.off("message", onMessage);
        resolve(ok);
      };
      sock.on("message", onMessage);
    });
    sock.send(out, peer.port, peer.address);
    if (await acked) return true;
  }
  return false;
}
