// The daemon's log lines, in words for a terminal or as JSON lines for a site's own log stack
// (`discus server --log-format json`): one object per line with time, level, message, and the
// fields a line has (an HTTP request's method, route, status and duration). Callers pass what
// they know; the format is chosen once, at start.

export type LogLevel = "info" | "warn" | "error";
export type LogFields = Record<string, string | number | boolean | null>;
/** Writes one line. `fields` may set `level` (default info). */
export type Log = (message: string, fields?: LogFields & { level?: LogLevel }) => void;
export type LogFormat = "text" | "json";
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];
/** A line longer than this is cut: a log must not grow by a megabyte because a message did. */
export const MAX_LOG_MESSAGE_CHARS = 8192;

function bounded(text: string): string {
  return text.length <= MAX_LOG_MESSAGE_CHARS ? text : `${text.slice(0, MAX_LOG_MESSAGE_CHARS)}... (cut)`;
}

/** The JSON line for one message (pure). Multi-line messages stay one line: JSON escapes the newlines. */
export function jsonLine(message: string, fields: LogFields & { level?: LogLevel }, atMs: number): string {
  const { level, ...rest } = fields;
  return JSON.stringify({ time: new Date(atMs).toISOString(), level: level ?? "info", msg: bounded(message), ...rest });
}

/** A Log that writes `write(line)` in the chosen format; `redact` runs on the finished line. */
export function makeLog(format: LogFormat, write: (line: string) => void, redact: (line: string) => string = (l) => l, nowMs: () => number = Date.now): Log {
  if (format === "json") return (message, fields = {}) => write(redact(jsonLine(message, fields, nowMs())));
  return (message) => write(redact(bounded(message)));
}
