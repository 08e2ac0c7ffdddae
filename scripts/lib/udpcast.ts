// The Clonezilla multicast pipeline over a netlab Lab, for benchmarks against discus:
//   server:  udp-sender --file IMAGE
//   clients: udp-receiver | <decompress> | partclone.restore (or a plain write)
// udpcast defaults are kept (Clonezilla does not tune them): the sender polls for receivers about
// every 2 s before starting, and each receiver lingers 500 ms (--exit-wait) after the last data.
import type { Host, Lab } from "./netlab.ts";

export interface UdpcastRun { seconds: number; clientSeconds: number[]; failures: string[]; senderStderr: string }

/**
 * Sends `file` with udp-sender from lab.server to the given clients; each client runs
 *   udp-receiver ... | <receiverPipeline(target)>
 * Returns wall time until every receiver pipeline exited, and each client's own time (from its own
 * start to its pipeline's exit; NaN for a client that never started). Failed clients are listed in
 * `failures` rather than thrown.
 *
 * Session start, as Clonezilla drives udp-sender: `--min-receivers N` ("clients-to-wait") waits for
 * every client, so one late client delays all. With maxWaitSeconds it adds `--max-wait S`
 * ("clients+time-to-wait"): start once all N are connected, or S s after the first one connected.
 * A udpcast session is fixed when it starts: a receiver that connects afterwards is ignored and
 * would wait forever (tested: no data, no error), so once the sender has exited such receivers are
 * killed and reported as having missed the session, and clients not yet started are not started.
 */
const lastLines = (text: string): string => text.trim().split(/[\r\n]+/).slice(-3).join(" | ");

export async function runUdpcast(lab: Lab, opts: {
  file: string;
  clients: Host[];
  receiverPipeline: (target: string) => string;
  targets: string[];
  maxBitrateMbit: number;
  startDelaysMs?: number[];
  maxWaitSeconds?: number;
  timeoutMs: number;
  portbase?: number;
}): Promise<UdpcastRun> {
  const { clients, targets } = opts;
  if (clients.length === 0 || targets.length !== clients.length) throw new Error("runUdpcast: need one target per client, at least one client");
  const portbase = String(opts.portbase ?? 9000);
  // High group indexes keep clear of groups a caller numbers from 0; nothing leaves the lab anyway.
  const rdv = lab.group(250);
  const senderCmd = [
    "udp-sender", "--interface", "eth0", "--nokbd", "--min-receivers", String(clients.length),
    ...(opts.maxWaitSeconds !== undefined ? ["--max-wait", String(opts.maxWaitSeconds)] : []),
    "--max-bitrate", `${opts.maxBitrateMbit}m`, "--portbase", portbase,
    "--mcast-rdv-address", rdv, "--mcast-data-address", lab.group(251), "--file", opts.file,
  ];
  const receiverCmd = `udp-receiver --interface eth0 --nokbd --no-progress --portbase ${portbase} --mcast-rdv-address ${rdv}`;

  const alive = new Set<Bun.Subprocess>();
  // Each command runs under setsid (no fork: the pid stays ours) so killing its process group also
  // takes udp-receiver and the pipeline behind the shell.
  const start = (h: Host, cmd: string[]): Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe"> => {
    const p = lab.spawn(h, ["setsid", "-w", ...cmd]);
    alive.add(p);
    void p.exited.then(() => alive.delete(p));
    return p;
  };
  const kill = (p: Bun.Subprocess): void => {
    try { process.kill(-p.pid, "SIGKILL"); } catch { p.kill("SIGKILL"); }
  };
  /** Accumulates a stream's text as it arrives, so a still-running receiver's state can be read. */
  const tail = (stream: ReadableStream<Uint8Array>) => {
    const acc = { text: "", done: Promise.resolve() };
    const dec = new TextDecoder();
    acc.done = (async () => { for await (const chunk of stream) acc.text += dec.decode(chunk, { stream: true }); })();
    return acc;
  };

  const failures: string[] = [];
  const clientSeconds = clients.map(() => NaN);
  const t0 = performance.now();
  let timedOut = false;
  let senderDone = false;
  const sender = start(lab.server, senderCmd);
  const senderErr = tail(sender.stderr);
  void new Response(sender.stdout).text();
  const receivers: { p: Bun.Subprocess; err: { text: string } }[] = [];
  const timer = setTimeout(() => {
    timedOut = true;
    for (const p of alive) kill(p);
  }, opts.timeoutMs);

  const senderExit = sender.exited.then((code) => {
    senderDone = true;
    if (code !== 0) failures.push(`sender: ${timedOut ? "timed out" : `exit ${code}`}: ${lastLines(senderErr.text)}`);
    // Whoever is not connected now missed the session (or the session failed): stop waiting for them.
    for (const r of receivers) if (alive.has(r.p) && (code !== 0 || !r.err.text.includes("Connected as"))) kill(r.p);
  });

  await Promise.all(clients.map(async (c, i) => {
    await Bun.sleep(opts.startDelaysMs?.[i] ?? 0);
    if (timedOut || senderDone) {
      failures.push(`${c.name}: ${timedOut ? "timed out" : "session already over"} before its start`);
      return;
    }
    const t = performance.now();
    const p = start(c, ["bash", "-o", "pipefail", "-c", `${receiverCmd} | ${opts.receiverPipeline(targets[i] ?? "")}`]);
    const err = tail(p.stderr);
    receivers.push({ p, err });
    void new Response(p.stdout).text();
    const code = await p.exited;
    await err.done;
    clientSeconds[i] = (performance.now() - t) / 1000;
    if (code === 0) return;
    const why = timedOut ? "timed out" : senderDone && !err.text.includes("Connected as") ? "missed the session" : `exit ${code}`;
    failures.push(`${c.name}: ${why}: ${lastLines(err.text)}`);
  }));
  const seconds = (performance.now() - t0) / 1000;
  if (!senderDone && !timedOut) {
    // Every receiver is done, so a sender still running waits for nobody; give it a moment to say goodbye.
    const late = setTimeout(() => kill(sender), 3000);
    await senderExit;
    clearTimeout(late);
  } else await senderExit;
  await senderErr.done;
  clearTimeout(timer);
  return { seconds, clientSeconds, failures, senderStderr: senderErr.text };
}
