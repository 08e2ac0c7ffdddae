// Job failures are counted by a bounded set of reasons: the daemon's own causes by source, the
// agent's FAILED lines by what they name.
import { describe, expect, test } from "bun:test";
import { FAILURE_REASONS, failureReason } from "../../src/daemon/fleet-metrics.ts";

describe("failureReason", () => {
  test("the daemon's own causes keep their source; the agent's lines are classed by what they name", () => {
    expect(failureReason("power", "anything")).toBe("power");
    expect(failureReason("boot-loop", "")).toBe("boot-loop");
    expect(failureReason("image-gone", "")).toBe("image-gone");
    const cases: [string, string][] = [
      ["discus.disk=serial:NO-SUCH-DISK: matches no disk. This machine has: /dev/vda", "disk-rule"],
      ["image signature does not verify with discus.key", "signature"],
      ["server 198.18.0.1 silent for 60 s: gave up", "server-silent"],
      ["server 198.18.0.1: no progress for 60 s with 3/25 chunks written", "server-silent"],
      ["/dev/vda: EIO while writing chunk 17", "disk-write"],
      ["something nobody foresaw", "other"],
    ];
    for (const [message, reason] of cases) expect(failureReason("agent", message)).toBe(reason as (typeof FAILURE_REASONS)[number]);
    for (const [message] of cases) expect(FAILURE_REASONS).toContain(failureReason("agent", message));
  });
});
