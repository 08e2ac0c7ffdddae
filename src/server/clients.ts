// The clients a server has heard from lately, for display only (snapshot()): the protocol keeps
// no client state, and nothing the server does depends on this table. Bounded: the least recently
// heard client makes room for a new one. Pure: time comes in as an argument.
import { assert } from "../util/assert.ts";

export interface ClientSnapshot {
  /** "address (sender id in hex)": how events and logs name the client. */
  client: string;
  address: string;
  sender: number;
  lastHeardMs: number;
  state: "loading" | "done" | "failed";
  /** From its last report (zeros until it sent one). */
  chunksDone: number;
  chunksTotal: number;
  bytesWritten: number;
  lossFraction: number;
}

export function clientName(address: string, sender: number): string {
  return `${address} (${sender.toString(16).padStart(8, "0")})`;
}

export class ClientTable {
  /** Map order is insertion order: re-inserting on each hearing keeps the stalest first. */
  private readonly byKey = new Map<string, ClientSnapshot>();

  constructor(private readonly maxRows: number) {
    assert(maxRows >= 1, "the client table holds at least one row");
  }

  /** The row of a client just heard (made, or moved to the most recent end). */
  heard(address: string, sender: number, nowMs: number): ClientSnapshot {
    const key = `${address}/${sender}`;
    let row = this.byKey.get(key);
    if (row !== undefined) this.byKey.delete(key);
    else {
      row = { client: clientName(address, sender), address, sender, lastHeardMs: nowMs, state: "loading", chunksDone: 0, chunksTotal: 0, bytesWritten: 0, lossFraction: 0 };
      if (this.byKey.size >= this.maxRows) this.byKey.delete(this.byKey.keys().next().value as string);
    }
    row.lastHeardMs = nowMs;
    this.byKey.set(key, row);
    return row;
  }

  /** Copies of the rows, most recently heard first. */
  rows(): ClientSnapshot[] {
    return [...this.byKey.values()].reverse().map((r) => ({ ...r }));
  }
}
