// User-facing errors: each names the thing, the cause, and what to do about it.

export type ErrorKind =
  | "usage" // the command line is wrong
  | "input" // an image or source is corrupt, truncated or not what it claims
  | "target" // the target cannot be written safely (too small, mounted, ambiguous)
  | "signature" // signature missing or wrong
  | "io" // the operating system refused a read or write
  | "network"; // the multicast group cannot be used, or the server went silent

export class DiscusError extends Error {
  override name = "DiscusError";
  constructor(
    readonly kind: ErrorKind,
    readonly thing: string,
    readonly why: string,
    readonly action: string,
  ) {
    super(`${thing}: ${why}. ${action}`);
  }
}

/** Process exit codes, one per kind, so scripts can tell failures apart. */
export const exitCodeByKind: Record<ErrorKind, number> = {
  usage: 2,
  input: 3,
  target: 4,
  signature: 5,
  io: 6,
  network: 7,
};

/**
 * Thrown by a filesystem parser that meets something it does not fully understand.
 * The caller captures that partition raw and warns; a parser never guesses that a block is free.
 */
export class FsUnsupportedError extends Error {
  override name = "FsUnsupportedError";
}

/** What an operating-system error code means for a disk or file, and what the user can do. */
const OS_ERRORS: Record<string, { why: string; action: string }> = {
  ENOSPC: { why: "no space left on the device", action: "Free space on it, or use a larger disk or filesystem" },
  EDQUOT: { why: "disk quota exceeded", action: "Raise the quota or use another filesystem" },
  EIO: { why: "input/output error from the device", action: "The disk (or the storage behind it) is failing or full: check `dmesg`, then use another disk" },
  EROFS: { why: "it is read-only", action: "Use a writable disk, or make it writable (`blockdev --setrw`, remount read-write)" },
  EACCES: { why: "permission denied (read-only or write-protected)", action: "Run as root, and check the device is not read-only (`blockdev --getro`)" },
  EPERM: { why: "operation not permitted (read-only or write-protected)", action: "Run as root, and check the device is not read-only (`blockdev --getro`)" },
  ENOENT: { why: "no such file or directory", action: "Check the path; create the directory first" },
  ENOTDIR: { why: "a part of the path is not a directory", action: "Check the path" },
  EISDIR: { why: "it is a directory", action: "Name a file or a device, not a directory" },
  EFBIG: { why: "the file would be larger than its filesystem allows", action: "Put it on a filesystem that allows files this large, or write to a disk" },
  ENXIO: { why: "the device is gone", action: "Check the disk is still attached" },
  ENODEV: { why: "the device is gone", action: "Check the disk is still attached" },
  EMFILE: { why: "too many open files", action: "Raise the open-file limit (`ulimit -n`)" },
  ENAMETOOLONG: { why: "the path is too long", action: "Use a shorter path" },
  ELOOP: { why: "too many symbolic links in the path", action: "Check the path" },
  EINVAL: { why: "the operating system refused the request as invalid", action: "Check the path names a disk or a regular file" },
};

/** The errno code of an operating-system error ("ENOSPC"), or null for anything else. */
export function osErrorCode(e: unknown): string | null {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : null;
}

/**
 * Turns an operating-system error while `doing` something to `thing` into an I/O DiscusError
 * (exit 6) that says what failed and what to do. A DiscusError passes through; anything that is
 * not an OS error is returned as it was, because it is a bug and must show its stack.
 */
export function ioError(e: unknown, thing: string, doing: string): Error {
  if (e instanceof DiscusError) return e;
  const code = osErrorCode(e);
  if (code === null) return e instanceof Error ? e : new Error(String(e));
  const known = OS_ERRORS[code] ?? { why: "the operating system refused", action: "Check the device and `dmesg`" };
  return new DiscusError("io", thing, `${doing} failed: ${known.why} (${code})`, known.action);
}

/** Errors that already say how far the work got (told once, by whoever knew best). */
const progressTold = new WeakSet<DiscusError>();

/**
 * The same error with what had been done before it failed added to its cause, and `partial`
 * (what the half-done result means for the user) added to its action. Input errors qualify too:
 * a damaged chunk found only while writing (its container matched the manifest, its data did
 * not: the image's maker wrote it so) leaves a target holding part of an image.
 */
export function withProgress(e: unknown, done: string, partial?: string): unknown {
  if (!(e instanceof DiscusError) || (e.kind !== "io" && e.kind !== "input") || progressTold.has(e)) return e;
  const told = new DiscusError(e.kind, e.thing, `${e.why}; ${done}`, partial === undefined ? e.action : `${e.action}. ${partial}`);
  progressTold.add(told);
  return told;
}
