// A seeded generator for fuzz tests: a failing case reproduces from its seed.
import { mulberry32 } from "../src/util/shuffle.ts";
export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** A whole number in [0, n). */
  below(n: number): number;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Uint8Array;
}

export function rng(seed: number): Rng {
  const next = mulberry32(seed);
  const below = (n: number) => Math.floor(next() * n);
  return {
    next,
    below,
    pick: (items) => items[below(items.length)]!,
    bytes: (n) => Uint8Array.from({ length: n }, () => below(256)),
  };
}
