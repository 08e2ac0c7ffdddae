// Servers a test or script runs (dnsmasq, httpd, discus server, prometheus): their stdout and
// stderr are read all along, since a full pipe would stall them, and kept as one text; stop()
// signals them and waits until they have exited and their output is read.
type Piped = Bun.Subprocess<"pipe" | "ignore", "pipe", "pipe">;

export interface Drained {
  /** Everything they printed so far. */
  text(): string;
  /** Whether one of them has exited already. */
  exited(): boolean;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function drain(procs: Piped[]): Drained {
  let text = "";
  const decoder = new TextDecoder();
  const readers = procs.flatMap((p) => [p.stdout, p.stderr]).map(async (s) => {
    for await (const chunk of s) text += decoder.decode(chunk);
  });
  return {
    text: () => text,
    exited: () => procs.some((p) => p.exitCode !== null || p.signalCode !== null),
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      for (const p of procs) p.kill(signal);
      await Promise.all(procs.map((p) => p.exited));
      await Promise.allSettled(readers);
    },
  };
}
