// A reproducible order of chunk indices: in order, or shuffled from a seed (restore --order
// random, and each multicast client's own order, so clients ask for different chunks first).

export type ChunkOrder = "sequential" | "random";

export function chunkOrder(count: number, order: ChunkOrder, seed: number): number[] {
  const indices = Array.from({ length: count }, (_, i) => i);
  if (order === "sequential") return indices;
  // Fisher–Yates with mulberry32: reproducible for a given seed.
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [indices[i], indices[j]] = [indices[j]!, indices[i]!];
  }
  return indices;
}
