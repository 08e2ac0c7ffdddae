// How a batch of datagrams becomes the messages of one sendmmsg(2) call: with UDP GSO, a run of
// equal-sized datagrams (the last may be shorter) rides in one message that the kernel cuts at the
// segment size; without it, one datagram per message. Pure: lengths in, plan out.
import { assert } from "../util/assert.ts";

/** UDP_MAX_SEGMENTS of Linux 4.18..6.x (later kernels allow 128): segments per GSO message, at most. */
export const MAX_GSO_SEGMENTS = 64;
/** One GSO message is one IPv4 packet before segmentation: 65535 less the IPv4 and UDP headers. */
export const MAX_GSO_MESSAGE_BYTES = 65535 - 20 - 8;
/** Messages in one sendmmsg call, at most (UIO_MAXIOV is 1024; a burst needs far fewer). */
export const MAX_BATCH_MESSAGES = 64;

export interface PlannedMessage {
  /** Index of its first datagram in the batch. */
  first: number;
  /** Datagrams it carries. */
  count: number;
  /** Bytes of all of them. */
  bytes: number;
  /** The GSO segment size (the first datagram's length); null for a single datagram. */
  segmentBytes: number | null;
}

/**
 * Messages for datagrams of these lengths, in order, starting at `start`: no more than
 * MAX_BATCH_MESSAGES messages and `maxBytes` bytes in all (at least one datagram, whatever its size).
 */
export function planMessages(lengths: readonly number[], start: number, gso: boolean, maxBytes: number): PlannedMessage[] {
  const plan: PlannedMessage[] = [];
  let total = 0;
  let i = start;
  while (i < lengths.length && plan.length < MAX_BATCH_MESSAGES) {
    const size = lengths[i]!;
    assert(size > 0 && size <= MAX_GSO_MESSAGE_BYTES, "a datagram fits one IPv4 packet");
    if (plan.length > 0 && total + size > maxBytes) break;
    let count = 1;
    let bytes = size;
    // Equal sizes join; a shorter one may end the run (the kernel's last segment), a longer one may not.
    while (gso && i + count < lengths.length && count < MAX_GSO_SEGMENTS) {
      const next = lengths[i + count]!;
      if (next > size || bytes + next > MAX_GSO_MESSAGE_BYTES || total + bytes + next > maxBytes) break;
      bytes += next;
      count++;
      if (next < size) break;
    }
    plan.push({ first: i, count, bytes, segmentBytes: count > 1 ? size : null });
    total += bytes;
    i += count;
  }
  return plan;
}

/** Datagrams carried by the first `messagesSent` messages of a plan. */
export function datagramsIn(plan: readonly PlannedMessage[], messagesSent: number): number {
  let n = 0;
  for (let m = 0; m < messagesSent && m < plan.length; m++) n += plan[m]!.count;
  return n;
}
