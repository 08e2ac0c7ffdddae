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
  close(): void;
}

/** Opens a transport that hands every datagram heard on the group to `onMessage`. */
export type OpenTransport = (onMessage: (bytes: Uint8Array, from: Peer) => void) => Promise<GroupTransport>;
