// Launch QEMU with its serial console captured to a file, and wait for a console line.
// Shared by the boot tests: everything machine-specific comes in through `args`.
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface BootOptions {
  /** QEMU arguments (machine, firmware, disks...). Do not pass -serial: the console goes to a file. */
  args: string[];
  /** Kill QEMU after this long; the result then has timedOut = true. */
  timeoutMs: number;
  /** Stop waiting once the console matches this. Without it, wait for QEMU to exit. */
  until?: RegExp;
  /** After `until` matched, how long QEMU may take to exit by itself (e.g. guest poweroff) before it is killed. */
  exitGraceMs?: number;
  /** Where the console goes (kept after the call); a temp file (removed afterwards) by default. */
  consolePath?: string;
  /** QEMU binary. */
  qemu?: string;
  /** Words before the QEMU binary, e.g. ["ip", "netns", "exec", NS] to run it in a namespace. */
  prefix?: string[];
  /** Console patterns to time: the result's marks say when each first matched (s from launch). */
  marks?: Record<string, RegExp>;
  /** Called with each new piece of console text as it arrives (a demo shows the guest live). */
  onConsole?: (text: string) => void;
}

export interface BootResult {
  /** The whole serial console text. */
  console: string;
  /** Seconds from launch until `until` matched, or until QEMU exited / was killed. */
  seconds: number;
  /** QEMU's exit code; null if it was killed. */
  exitCode: number | null;
  matched: boolean;
  timedOut: boolean;
  /** QEMU's own stderr (argument errors, missing files). */
  stderr: string;
  /** Seconds from launch to the first match of each of BootOptions.marks (absent: never matched). */
  marks: Record<string, number>;
}

const POLL_MS = 250;

function readText(path: string): string {
  return existsSync(path) ? readFileSync(path, "latin1") : "";
}

export async function bootQemu(opts: BootOptions): Promise<BootResult> {
  const tempDir = opts.consolePath ? undefined : mkdtempSync(join(tmpdir(), "qemu-console-"));
  const consolePath = opts.consolePath ?? join(tempDir!, "console.log");
  const exitGraceMs = opts.exitGraceMs ?? 10_000;
  // -display none / -monitor none: nothing on stdio, so QEMU never waits on a terminal.
  const argv = [...(opts.prefix ?? []), opts.qemu ?? "qemu-system-x86_64", "-display", "none", "-monitor", "none",
    "-serial", `file:${consolePath}`, ...opts.args];

  const startMs = performance.now();
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const stderrText = new Response(proc.stderr).text();
  const stdoutText = new Response(proc.stdout).text();
  let exited = false;
  void proc.exited.then(() => { exited = true; });

  let matched = false;
  let timedOut = false;
  const marks: Record<string, number> = {};
  const markPending = Object.entries(opts.marks ?? {});
  let shownBytes = 0;
  const checkMarks = (text: string) => {
    if (opts.onConsole && text.length > shownBytes) {
      opts.onConsole(text.slice(shownBytes));
      shownBytes = text.length;
    }
    for (let i = markPending.length - 1; i >= 0; i--) {
      const [name, re] = markPending[i]!;
      if (!re.test(text)) continue;
      marks[name] = Math.round((performance.now() - startMs) / 100) / 10;
      markPending.splice(i, 1);
    }
  };
  let endMs = startMs;
  try {
    const deadlineMs = startMs + opts.timeoutMs;
    while (!exited) {
      const text = readText(consolePath);
      checkMarks(text);
      if (opts.until && opts.until.test(text)) {
        matched = true;
        break;
      }
      if (performance.now() >= deadlineMs) {
        timedOut = true;
        break;
      }
      await Bun.sleep(POLL_MS);
    }
    endMs = performance.now();
    // The console may have got its last line between the last poll and the exit.
    if (!matched && opts.until) matched = opts.until.test(readText(consolePath));
    if (matched && !exited) {
      const graceEnd = performance.now() + exitGraceMs;
      while (!exited && performance.now() < graceEnd) await Bun.sleep(POLL_MS);
    }
    checkMarks(readText(consolePath));
  } finally {
    if (!exited) proc.kill("SIGKILL");
    await proc.exited;
  }

  const consoleText = readText(consolePath);
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  const killed = proc.signalCode !== null;
  return {
    console: consoleText,
    seconds: Math.round((endMs - startMs) / 100) / 10,
    exitCode: killed ? null : proc.exitCode,
    matched,
    timedOut,
    stderr: (await stderrText) + (await stdoutText),
    marks,
  };
}
