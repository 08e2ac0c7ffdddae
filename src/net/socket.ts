// One UDP socket joined to a multicast group on one interface: how both server and client talk.
import dgram from "node:dgram";
import { DiscusError } from "../util/errors.ts";
import { openBatchSocket, type BatchSocket } from "./sendmmsg.ts";
import type { OpenTransport } from "./transport.ts";

export interface GroupOptions {
  group: string;
  port: number;
  /** IPv4 address of the local interface to send and receive on. */
  iface: string;
  ttl: number;
  /** Kernel socket buffers; large receive buffers ride out bursts while a worker holds the CPU. */
  receiveBufferBytes: number;
  sendBufferBytes: number;
}

export interface GroupSocket {
  socket: dgram.Socket;
  send(bytes: Uint8Array): void;
  close(): void;
}

/** The four parts of a dotted IPv4 address, or null. */
function ipv4Octets(address: string): number[] | null {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(address);
  const octets = m?.slice(1).map(Number) ?? null;
  return octets !== null && octets.every((o) => o <= 255) ? octets : null;
}

export function isIpv4Address(address: string): boolean {
  return ipv4Octets(address) !== null;
}

export function isMulticastAddress(address: string): boolean {
  const first = ipv4Octets(address)?.[0];
  return first !== undefined && first >= 224 && first <= 239;
}

/**
 * Binds to the group address itself (so this socket sees only its group's datagrams, not those
 * of another image served on the same port) and joins the group on `iface`.
 */
export async function openGroupSocket(o: GroupOptions, onMessage: (bytes: Uint8Array, from: dgram.RemoteInfo) => void): Promise<GroupSocket> {
  const socket = dgram.createSocket({ type: "udp4", reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(o.port, o.group, () => {
      socket.off("error", reject);
      resolve();
    });
  }).catch((e: NodeJS.ErrnoException) => {
    socket.close();
    throw new DiscusError("network", `${o.group}:${o.port}`, `cannot bind (${e.code ?? e.message})`, "Check the port is free and the group address is valid");
  });
  try {
    socket.addMembership(o.group, o.iface);
    socket.setMulticastInterface(o.iface);
    socket.setMulticastTTL(o.ttl);
    socket.setMulticastLoopback(true);
    socket.setRecvBufferSize(o.receiveBufferBytes);
    socket.setSendBufferSize(o.sendBufferBytes);
  } catch (e) {
    socket.close();
    throw new DiscusError("network", `${o.group} on ${o.iface}`, `cannot join the group (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, "Name with --iface the IPv4 address of an interface that has a multicast route");
  }
  socket.on("message", (msg, from) => onMessage(msg, from));
  return {
    socket,
    send: (bytes) => socket.send(bytes, o.port, o.group),
    close: () => {
      try {
        socket.close();
      } catch {
        // already closed
      }
    },
  };
}

/**
 * The real transport of the engines (net/transport.ts): this group socket, and for bursts (the
 * server's blocks) a send-only sendmmsg socket from the same address and port, opened on first use.
 */
export function groupTransport(o: GroupOptions): OpenTransport {
  return async (onMessage) => {
    const s = await openGroupSocket(o, (bytes, from) => onMessage(bytes, { address: from.address, port: from.port }));
    let batch: BatchSocket | null = null;
    return {
      send: s.send,
      sendMany: (packets) => {
        // No loopback for bursts: the server would only receive its own blocks again to drop them
        // (a fifth of its CPU); a `discus load` on the server's own host does not hear them.
        batch ??= openBatchSocket({ group: o.group, port: o.port, iface: o.iface, ttl: o.ttl, sendBufferBytes: o.sendBufferBytes, loopback: false });
        return batch.sendMany(packets);
      },
      close: () => {
        batch?.close();
        s.close();
      },
    };
  };
}
