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
