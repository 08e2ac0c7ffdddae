// A send-only UDP socket made through bun:ffi, so a burst of blocks costs one sendmmsg(2) call and,
// where the kernel and device have UDP GSO, a few 64 KiB messages the kernel cuts into ordinary
// datagrams (node:dgram makes one sendto per datagram). Bound to the interface's address and the
// group's port, so blocks come from the same address and port as the group socket's own packets.
import { dlopen, FFIType, ptr, read } from "bun:ffi";
import { assert } from "../util/assert.ts";
import { DiscusError } from "../util/errors.ts";
import { datagramsIn, MAX_BATCH_MESSAGES, MAX_GSO_MESSAGE_BYTES, planMessages, type PlannedMessage } from "./batch.ts";

// <sys/socket.h>, <netinet/in.h>, <linux/udp.h>, <errno.h>: the same on x86-64 and arm64.
const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_SNDBUF = 7;
const SO_SNDBUFFORCE = 32;
const IPPROTO_IP = 0;
const IP_MULTICAST_IF = 32;
const IP_MULTICAST_TTL = 33;
const IP_MULTICAST_LOOP = 34;
const SOL_UDP = 17;
const UDP_SEGMENT = 103;
const EINTR = 4;
const EIO = 5;
const EAGAIN = 11;
const EINVAL = 22;
const ENOBUFS = 105;

// LP64 layouts: struct mmsghdr (msghdr + msg_len, padded), struct iovec, one cmsghdr carrying a u16.
const MMSGHDR_BYTES = 64;
const IOVEC_BYTES = 16;
const CMSG_HEADER_BYTES = 16;
const CMSG_SPACE_U16 = 24;
const SOCKADDR_IN_BYTES = 16;
/** Bytes staged per sendmmsg call: a few GSO messages, or MAX_BATCH_MESSAGES jumbo datagrams. */
export const STAGING_BYTES = 1 << 20;
assert(STAGING_BYTES >= MAX_GSO_MESSAGE_BYTES && STAGING_BYTES >= MAX_BATCH_MESSAGES * 9000, "one call can carry a whole GSO message or a full batch of jumbo datagrams");

let libc: ReturnType<typeof openLibc> | null = null;

function openLibc() {
  return dlopen("libc.so.6", {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    setsockopt: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    connect: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    sendmmsg: { args: [FFIType.i32, FFIType.ptr, FFIType.u32, FFIType.i32], returns: FFIType.i32 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
    __errno_location: { args: [], returns: FFIType.ptr },
  }).symbols;
}

function c() {
  libc ??= openLibc();
  return libc;
}

function errno(): number {
  const p = c().__errno_location();
  return p === null ? 0 : read.i32(p, 0);
}

function errnoText(e: number): string {
  return c().strerror(e)?.toString() ?? `errno ${e}`;
}

function sockaddrIn(address: string, port: number): Uint8Array {
  const sa = new Uint8Array(SOCKADDR_IN_BYTES);
  const v = new DataView(sa.buffer);
  v.setUint16(0, AF_INET, true);
  v.setUint16(2, port, false);
  address.split(".").forEach((o, i) => (sa[4 + i] = Number(o)));
  return sa;
}

/** Where the sender sends from and to. */
export interface BatchSocketOptions {
  group: string;
  port: number;
  iface: string;
  ttl: number;
  sendBufferBytes: number;
  /** Whether this host's own sockets on the group hear the datagrams too. */
  loopback: boolean;
}

/** What the kernel said about one sendmmsg call: messages taken, or the errno of the first. */
export type SendResult = { sent: number } | { errno: number };

/** The system call, replaceable so tests can make the kernel take only part of a batch. */
export type SendMessages = (fd: number, headers: Uint8Array, count: number) => SendResult;

const realSendMessages: SendMessages = (fd, headers, count) => {
  const n = c().sendmmsg(fd, ptr(headers), count, 0);
  return n >= 0 ? { sent: n } : { errno: errno() };
};

/** Whether an errno means "later": the socket buffer or the device queue is full, or a signal came. */
function isTransient(e: number): boolean {
  return e === EAGAIN || e === ENOBUFS || e === EINTR;
}

export class BatchSocket {
  private readonly headers = new Uint8Array(MAX_BATCH_MESSAGES * MMSGHDR_BYTES);
  private readonly iovecs = new Uint8Array(MAX_BATCH_MESSAGES * IOVEC_BYTES);
  private readonly cmsgs = new Uint8Array(MAX_BATCH_MESSAGES * CMSG_SPACE_U16);
  private readonly staging = new Uint8Array(STAGING_BYTES);
  /** Cleared for good when the kernel or the device refuses a GSO message (EIO, EINVAL). */
  private gsoOn: boolean;
  /** sendmmsg calls made, and the messages they carried: how well batches pack. */
  systemCalls = 0;
  messages = 0;

  constructor(
    private fd: number,
    gso: boolean,
    private readonly sendMessages: SendMessages = realSendMessages,
    private readonly where = "the group",
  ) {
    this.gsoOn = gso;
  }

  get gso(): boolean {
    return this.gsoOn;
  }

  /**
   * Offers the datagrams in order; returns how many, from the first, the kernel took. Fewer than
   * all means the socket buffer or the device queue is full (EAGAIN, ENOBUFS): offer the rest later.
   */
  sendMany(packets: readonly Uint8Array[]): number {
    const lengths = packets.map((p) => p.length);
    let done = 0;
    while (done < packets.length) {
      const plan = planMessages(lengths, done, this.gsoOn, STAGING_BYTES);
      this.stage(packets, plan);
      this.systemCalls++;
      const r = this.sendMessages(this.fd, this.headers, plan.length);
      if ("sent" in r) {
        this.messages += r.sent;
        done += datagramsIn(plan, r.sent);
        if (r.sent === 0) return done;
        continue; // a short count: the next call says why (usually EAGAIN)
      }
      if (isTransient(r.errno)) return done;
      if (this.gsoOn && (r.errno === EIO || r.errno === EINVAL) && plan[0]!.segmentBytes !== null) {
        this.gsoOn = false; // no checksum offload on the device, or segments above its MTU: plain datagrams
        continue;
      }
      const why = errnoText(r.errno);
      throw new DiscusError("network", this.where, `the kernel refused to send blocks (${why})`, "Check the interface is up and no firewall rule rejects multicast output");
    }
    return done;
  }

  /** Copies the planned datagrams into the staging buffer and points the message headers at them. */
  private stage(packets: readonly Uint8Array[], plan: readonly PlannedMessage[]): void {
    const base = ptr(this.staging);
    const iovBase = ptr(this.iovecs);
    const cmsgBase = ptr(this.cmsgs);
    const h = new DataView(this.headers.buffer);
    const iov = new DataView(this.iovecs.buffer);
    const cm = new DataView(this.cmsgs.buffer);
    this.headers.fill(0);
    let at = 0;
    plan.forEach((m, k) => {
      // Datagrams already side by side in one buffer (a burst's blocks) are sent from where they are.
      let address: number;
      if (contiguous(packets, m.first, m.count)) address = ptr(packets[m.first]!);
      else {
        address = base + at;
        for (let i = m.first; i < m.first + m.count; i++) {
          this.staging.set(packets[i]!, at);
          at += packets[i]!.length;
        }
      }
      setPointer(iov, k * IOVEC_BYTES, address);
      iov.setBigUint64(k * IOVEC_BYTES + 8, BigInt(m.bytes), true);
      const o = k * MMSGHDR_BYTES; // msg_name stays NULL: the socket is connected to the group
      setPointer(h, o + 16, iovBase + k * IOVEC_BYTES);
      h.setBigUint64(o + 24, 1n, true);
      if (m.segmentBytes !== null) {
        const co = k * CMSG_SPACE_U16;
        cm.setBigUint64(co, BigInt(CMSG_HEADER_BYTES + 2), true);
        cm.setInt32(co + 8, SOL_UDP, true);
        cm.setInt32(co + 12, UDP_SEGMENT, true);
        cm.setUint16(co + CMSG_HEADER_BYTES, m.segmentBytes, true);
        setPointer(h, o + 32, cmsgBase + co);
        h.setBigUint64(o + 40, BigInt(CMSG_SPACE_U16), true);
      }
    });
  }

  close(): void {
    if (this.fd < 0) return;
    c().close(this.fd);
    this.fd = -1;
  }
}

/** Whether packets[first..first+count) lie back to back in one buffer. */
function contiguous(packets: readonly Uint8Array[], first: number, count: number): boolean {
  const head = packets[first]!;
  let end = head.byteOffset + head.length;
  for (let i = first + 1; i < first + count; i++) {
    const p = packets[i]!;
    if (p.buffer !== head.buffer || p.byteOffset !== end) return false;
    end += p.length;
  }
  return true;
}

function setPointer(v: DataView, offset: number, address: number): void {
  v.setBigUint64(offset, BigInt(address), true);
}

function setIntOption(fd: number, level: number, option: number, value: number): boolean {
  const v = new Int32Array([value]);
  return c().setsockopt(fd, level, option, ptr(v), 4) === 0;
}

/**
 * Opens the group's send-only socket: bound to iface:port (SO_REUSEADDR, so sessions of other
 * groups on the same port can do the same), connected to group:port, multicast out of iface.
 */
export function openBatchSocket(o: BatchSocketOptions): BatchSocket {
  const where = `${o.group}:${o.port} via ${o.iface}`;
  const fd = c().socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new DiscusError("network", where, `cannot make a UDP socket (errno ${errno()})`, "Check the process may open sockets");
  const fail = (what: string): never => {
    const e = errno();
    c().close(fd);
    throw new DiscusError("network", where, `cannot ${what} (${errnoText(e)})`, "Name with --iface the IPv4 address of an interface that has a multicast route");
  };
  if (!setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)) fail("set SO_REUSEADDR");
  // Root may exceed net.core.wmem_max; anyone else gets what the limit allows.
  if (!setIntOption(fd, SOL_SOCKET, SO_SNDBUFFORCE, o.sendBufferBytes)) setIntOption(fd, SOL_SOCKET, SO_SNDBUF, o.sendBufferBytes);
  const ifaceAddr = sockaddrIn(o.iface, 0).subarray(4, 8);
  if (c().setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, ptr(ifaceAddr), 4) !== 0) fail("send multicast out of the interface");
  if (!setIntOption(fd, IPPROTO_IP, IP_MULTICAST_TTL, o.ttl)) fail("set the multicast TTL");
  if (!setIntOption(fd, IPPROTO_IP, IP_MULTICAST_LOOP, o.loopback ? 1 : 0)) fail("set multicast loopback");
  if (c().bind(fd, ptr(sockaddrIn(o.iface, o.port)), SOCKADDR_IN_BYTES) !== 0) fail(`bind ${o.iface}:${o.port}`);
  if (c().connect(fd, ptr(sockaddrIn(o.group, o.port)), SOCKADDR_IN_BYTES) !== 0) fail("connect to the group");
  // A kernel without UDP GSO (before 4.18) refuses the option; 0 leaves sends unsegmented until a message asks.
  const gso = setIntOption(fd, SOL_UDP, UDP_SEGMENT, 0);
  return new BatchSocket(fd, gso, realSendMessages, where);
}
