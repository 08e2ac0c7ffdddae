// Seeded randomness where a run must be reproducible: a chunk order (restore --order random, and
// each multicast client's own order, so clients ask for different chunks first), simulations and
// fuzz tests.

export type ChunkOrder = "sequential" | "random";

/** mulberry32: a small, fast generator of floats in [0, 1); the same seed gives the same stream. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function chunkOrder(count: number, order: ChunkOrder, seed: number): number[] {
  const indices = Array.from({ length: count }, (_, i) => i);
  if (order === "sequential") return indices;
  const next = mulberry32(seed);
  // Fisher–Yates.
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [indices[i], indices[j]] = [indices[j]!, indices[i]!];
  }
  return indices;
}

/** A non-zero 32-bit id drawn from a seed (sender ids: reproducible in a simulation). */
export function idFromSeed(seed: number, salt: number): number {
  let t = (seed ^ Math.imul(salt, 0x9e3779b9)) >>> 0;
  t = Math.imul(t ^ (t >>> 16), 0x85ebca6b);
  t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35);
  return ((t ^ (t >>> 16)) | 1) >>> 0;
}
