// Assertions state invariants the code relies on; a failed one is a bug in discus, not bad input.
export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(`assertion failed: ${message}`);
}

/** A whole, non-negative number that JavaScript represents exactly (< 2^53). */
export function assertCount(value: number, what: string): void {
  assert(Number.isSafeInteger(value) && value >= 0, `${what} must be a safe non-negative integer, got ${value}`);
}
