// One `discus serve` child process of the daemon: its events arrive as JSON lines on stdout
// (`--events json`), its log on stderr (the last few KiB kept for error messages), and its stdin
// is a pipe the daemon never closes until it stops the child (`--exit-with-stdin`): when the
// daemon dies, even by SIGKILL, the kernel closes that pipe and the child stops serving.
import { join } from "node:path";
import type { ServeEvent, ServeSnapshot } from "../server/events.ts";
import { MAX_CLIENT_ROWS } from "../server/session.ts";
import { assert } from "../util/assert.ts";

/** A snapshot lists at most MAX_CLIENT_ROWS clients of about 250 bytes each; a longer line is a broken child. */
export const MAX_EVENT_LINE_BYTES = 4 << 20;
/** The child's last stderr kept for error messages. */
export const STDERR_TAIL_BYTES = 4096;
/** After closing stdin and SIGTERM, wait this long for the child before SIGKILL. */
export const STOP_TIMEOUT_MS = 5000;
assert(MAX_CLIENT_ROWS * 1024 <= MAX_EVENT_LINE_BYTES, "a full snapshot fits in one event line");

/** A compiled executable (`bun build --compile`, dist/discus) sees its own modules under /$bunfs/. */
const COMPILED = import.meta.path.startsWith("/$bunfs/");

/**
 * How to run `discus` again: the compiled executable itself, or the running bun with the CLI
 * next to this module (not Bun.main: a test or script that embeds the daemon is its own main).
 */
export function discusCommand(): string[] {
  return COMPILED ? [process.execPath] : [process.execPath, join(import.meta.dir, "..", "cli.ts")];
}

export type StartedEvent = Extract<ServeEvent, { kind: "started" }>;

/** Why a child ended or could not start, for the daemon's errors and log. */
export interface ChildExit {
  code: number | null;
  signal: string | null;
  /** Set when the daemon itself ended the child (a broken event line, stop()). */
  reason: string | null;
  stderrTail: string;
}

export class SessionChild {
  private readonly proc: Bun.Subprocess<"pipe", "pipe", "pipe">;
  private tail = "";
  private reason: string | null = null;
  private lastSnapshot: ServeSnapshot | null = null;
  private startedEvent: StartedEvent | null = null;
  private readonly startedSignal = Promise.withResolvers<StartedEvent>();
  /** Resolves once the child is gone and both its pipes are drained. */
  readonly ended: Promise<ChildExit>;

  constructor(
    args: string[],
    private readonly onEvent: (e: ServeEvent) => void,
  ) {
    const proc = Bun.spawn([...discusCommand(), ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    this.proc = proc;
    const drained = Promise.all([this.readEvents(proc.stdout), this.readLog(proc.stderr)]);
    this.ended = (async () => {
      await proc.exited;
      await drained;
      const signal = proc.signalCode === null ? null : String(proc.signalCode);
      return { code: proc.exitCode, signal, reason: this.reason, stderrTail: this.tail.trim() };
    })();
  }

  get pid(): number {
    return this.proc.pid;
  }

  get started(): StartedEvent | null {
    return this.startedEvent;
  }

  get snapshot(): ServeSnapshot | null {
    return this.lastSnapshot;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The started event, or the child's exit if it comes first, or null after `timeoutMs`. */
  async waitStarted(timeoutMs: number): Promise<StartedEvent | ChildExit | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
    try {
      return await Promise.race([this.startedSignal.promise, this.ended, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes stdin and sends SIGTERM; SIGKILL if the child is still there after STOP_TIMEOUT_MS. */
  async stop(reason: string): Promise<ChildExit> {
    this.reason ??= reason;
    if (this.running) {
      try {
        this.proc.stdin.end();
      } catch {
        // Already closed: the child is on its way out.
      }
      this.proc.kill("SIGTERM");
      const timer = setTimeout(() => this.proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await this.proc.exited;
      clearTimeout(timer);
    }
    return this.ended;
  }

  private async readEvents(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    try {
      for await (const chunk of stream) {
        const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
        partial = lines.pop()!;
        for (const line of lines) if (line.length > 0) this.take(line);
        if (partial.length > MAX_EVENT_LINE_BYTES) {
          partial = "";
          void this.stop(`it wrote an event line longer than ${MAX_EVENT_LINE_BYTES} bytes`);
        }
      }
    } catch {
      // The pipe broke: the child is gone, and `ended` tells how.
    }
  }

  private take(line: string): void {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      this.keepLog(`(not an event on stdout) ${line.slice(0, 200)}\n`);
      return;
    }
    if (typeof v !== "object" || v === null || typeof (v as { kind?: unknown }).kind !== "string") return;
    const e = v as ServeEvent | ({ kind: "snapshot" } & ServeSnapshot);
    if (e.kind === "snapshot") {
      this.lastSnapshot = e;
      return;
    }
    if (e.kind === "started") {
      this.startedEvent = e;
      this.startedSignal.resolve(e);
    }
    this.onEvent(e);
  }

  private async readLog(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) this.keepLog(decoder.decode(chunk, { stream: true }));
    } catch {
      // As for stdout: the child is gone.
    }
  }

  private keepLog(text: string): void {
    this.tail = (this.tail + text).slice(-STDERR_TAIL_BYTES);
  }
}

/** How a child's end reads in an error or a log line. */
export function describeExit(e: ChildExit): string {
  const how = e.reason ?? (e.signal !== null ? `it was killed by ${e.signal}` : `it exited with code ${e.code}`);
  return e.stderrTail.length > 0 ? `${how}; its last words: ${e.stderrTail}` : how;
}
