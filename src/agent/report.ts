// Tells the image server that this node failed before its load began (no disk matched, bad
// settings, ...), so the operator sees it in the server log. Failures during a load are reported
// by the loader itself. Best effort and bounded: it waits for an announce at most `waitMs`.
import { openGroupSocket } from "../net/socket.ts";
import { decodePacket, encodeQuery, encodeReport, PacketType, ReportState } from "../net/wire.ts";

export interface FailureReport {
  group: string;
  port: number;
  iface: string;
  imageId: Uint8Array | null;
  message: string;
  waitMs: number;
}

const QUERY_INTERVAL_MS = 250;
const SOCKET_BUFFER_BYTES = 256 << 10;

/** Returns the announcing server's address, or null when none answered in time. */
export async function reportFailure(r: FailureReport): Promise<string | null> {
  const sender = (crypto.getRandomValues(new Uint32Array(1))[0]! | 1) >>> 0;
  let resolveDone: (server: string | null) => void = () => {};
  let reported = false;
  const done = new Promise<string | null>((resolve) => (resolveDone = resolve));
  const sock = await openGroupSocket(
    { group: r.group, port: r.port, iface: r.iface, ttl: 1, receiveBufferBytes: SOCKET_BUFFER_BYTES, sendBufferBytes: SOCKET_BUFFER_BYTES },
    (bytes, from) => {
      const d = decodePacket(bytes);
      if (reported || !d.ok || d.packet.type !== PacketType.announce) return;
      reported = true;
      const imageId = d.packet.imageId.slice();
      const report = encodeReport(
        { imageId, sender },
        { state: ReportState.failed, elapsedMs: 0, chunksDone: 0, chunksTotal: d.packet.dataChunkCount, bytesWritten: 0, blocksReceived: 0, duplicateBlocks: 0, requestsSent: 0, rerequests: 0, chunksRejected: 0, intervalReceived: 0, intervalSeqSpan: 0, message: r.message },
      );
      // Twice: a report is one datagram and nothing acknowledges it.
      sock.send(report);
      setTimeout(() => sock.send(report), 20);
      setTimeout(() => resolveDone(from.address), 40);
    },
  );
  const query = encodeQuery({ imageId: r.imageId ?? new Uint8Array(16), sender });
  sock.send(query);
  const ticker = setInterval(() => sock.send(query), QUERY_INTERVAL_MS);
  const timer = setTimeout(() => resolveDone(null), r.waitMs);
  try {
    return await done;
  } finally {
    clearInterval(ticker);
    clearTimeout(timer);
    sock.close();
  }
}
