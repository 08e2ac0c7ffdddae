// One "machine" of the demo, run inside a lab namespace: what iPXE and the agent do on a real
// node, minus the kernel and the disk scan. It asks the daemon what to boot (GET /boot.ipxe, as
// the chain script does); given the agent, it loads the image over the daemon's multicast session
// into TARGET with the settings and session key from the boot script, reports to the daemon with
// the job's token (the agent's own reporter: progress as it loads, then done or failed), and
// "reboots": asks again, and gets `exit`.
// Usage: bun namespace-node.ts SERVER_URL MAC IFACE_ADDRESS TARGET. Prints one line per step.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DaemonReporter } from "../../src/agent/daemon-client.ts";
import { bootWords } from "./lab-daemon.ts";

const CALL_TIMEOUT_MS = 10_000;
const LOAD_GIVE_UP = "60s";
const cli = join(import.meta.dir, "..", "..", "src", "cli.ts");
const [server, mac, iface, target] = process.argv.slice(2) as [string, string, string, string];

async function bootScript(): Promise<string> {
  const res = await fetch(`${server}/boot.ipxe?mac=${encodeURIComponent(mac)}`, { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  return res.text();
}

/** The load's progress events, told to the daemon as the agent tells them (the reporter paces them). */
async function forwardProgress(events: ReadableStream<Uint8Array>): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const piece of events) {
    const lines = (pending + decoder.decode(piece, { stream: true })).split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      const e = JSON.parse(line) as { kind: string; chunksDone?: number; chunksTotal?: number; bytesWritten?: number };
      if (e.kind !== "progress" || !e.chunksTotal) continue;
      reporter.progress((100 * e.chunksDone!) / e.chunksTotal, e.bytesWritten! / Math.max(0.001, (performance.now() - startMs) / 1000));
    }
  }
}

const first = await bootScript();
if (!first.includes("\nkernel ")) {
  console.log(`${mac}: the daemon answered exit: booting the local disk`);
  process.exit(0);
}
const w = bootWords(first);
console.log(`${mac}: the daemon answered the agent: load image ${w.image} from ${w.group} onto ${target}`);
const reporter = new DaemonReporter({ server, token: w.token!, mac });
reporter.progress(0, 0);
const keyDir = mkdtempSync(join(tmpdir(), "discus-node-"));
const keyFile = join(keyDir, "session.key");
writeFileSync(keyFile, `${w.auth}\n`, { mode: 0o600 });
const load = Bun.spawn(["bun", cli, "load", target, "--group", w.group!, "--port", w.port!, "--image-id", w.image!, "--iface", iface, "--auth-key-file", keyFile, "--give-up", LOAD_GIVE_UP, "--events", "json"], { stdout: "pipe", stderr: "pipe" });
const startMs = performance.now();
const [code, stderr] = await Promise.all([load.exited, new Response(load.stderr).text(), forwardProgress(load.stdout)]);
rmSync(keyDir, { recursive: true, force: true });
const heard = await reporter.finish(code === 0 ? "written" : "failed", 0, code === 0 ? "" : stderr.trim());
console.log(`${mac}: ${code === 0 ? "disk written" : `load failed: ${stderr.trim()}`}; the daemon ${heard ? "heard" : "did NOT hear"} the report`);
const second = await bootScript();
console.log(`${mac}: rebooted; the daemon answered ${second.includes("\nkernel ") ? "the agent AGAIN" : "exit: booting the new system from the local disk"}`);
process.exit(code === 0 && heard && !second.includes("\nkernel ") ? 0 : 1);
