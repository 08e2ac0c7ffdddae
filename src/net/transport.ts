// What an engine needs of the network: send a datagram to its group, hear the group's datagrams.
// The real transport is a UDP multicast socket (net/socket.ts); the simulator (scripts/sim) gives
// the same shape over an in-memory LAN with virtual time.

export interface Peer {
  address: string;
  port: number;
}

export interface GroupTransport {
  /** Sends to the whole group; like multicast with loopback on, the sender hears it too. */
  send(bytes: Uint8Array): void;
  /**
   * Sends a burst to the whole group at once (one system call on the real network); returns how
   * many, from the first, the network took. The rest were not sent (socket buffer full): offer
   * them again later. What it took is copied by the time it returns (the caller reuses the
   * buffers); `send` may keep its bytes. Unlike `send`, the sender's own host need not hear them (the UDP transport
   * turns loopback off for them). A transport without it takes every datagram through `send`.
   */
  sendMany?(packets: readonly Uint8Array[]): number;
  close(): void;
}

/** Opens a transport that hands every datagram heard on the group to `onMessage`. */
export type OpenTransport = (onMessage: (bytes: Uint8Array, from: Peer) => void) => Promise<GroupTransport>;

/** Sends a burst through the transport's sendMany, or one by one; how many it took. */
export function sendBurst(t: GroupTransport, packets: readonly Uint8Array[]): number {
  if (t.sendMany !== undefined) return t.sendMany(packets);
  for (const p of packets) t.send(p);
  return packets.length;
}
