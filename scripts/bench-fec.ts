// Repair-block codec speed (src/net/fec.ts), one thread, 1400-byte blocks: encoding one repair
// over K sources, and decoding m missing of K = 192. MB/s counts source bytes processed
// (K × blockBytes per operation), so encode and decode figures compare directly.
import { decodeMissing, encodeRepair, FEC_MAX_SOURCE_BLOCKS } from "../src/net/fec.ts";
import { rng } from "../test/rng.ts";

const BLOCK_BYTES = 1400;
const MIN_RUN_MS = 500; // long enough to average out timer noise and JIT warm-up

function rate(what: string, sourceBytes: number, op: () => void): void {
  for (let i = 0; i < 5; i++) op(); // warm up the JIT
  let runs = 0;
  const start = performance.now();
  let elapsedMs = 0;
  while (elapsedMs < MIN_RUN_MS) {
    op();
    runs++;
    elapsedMs = performance.now() - start;
  }
  const mbs = (sourceBytes * runs) / 1e6 / (elapsedMs / 1000);
  console.log(`${what.padEnd(34)} ${mbs.toFixed(0).padStart(6)} MB/s  (${((elapsedMs * 1000) / runs).toFixed(0)} µs/op)`);
}

const r = rng(1);
for (const k of [47, FEC_MAX_SOURCE_BLOCKS]) {
  const sources = Array.from({ length: k }, () => r.bytes(BLOCK_BYTES));
  rate(`encode 1 repair, K = ${k}`, k * BLOCK_BYTES, () => encodeRepair(sources, 5, BLOCK_BYTES));
}

const k = FEC_MAX_SOURCE_BLOCKS;
const sources = Array.from({ length: k }, () => r.bytes(BLOCK_BYTES));
for (const m of [1, 4, 16]) {
  const have = new Map(sources.map((s, i) => [i, s] as const).filter(([i]) => i % 12 !== 0 || i / 12 >= m));
  const repairs = new Map(Array.from({ length: m }, (_, j) => [j * 3, encodeRepair(sources, j * 3, BLOCK_BYTES)] as const));
  const check = decodeMissing(k, BLOCK_BYTES, have, repairs);
  if (check === null || check.size !== m) throw new Error(`decode m = ${m}: set-up lost ${k - have.size} sources`);
  rate(`decode ${m} missing of K = ${k}`, k * BLOCK_BYTES, () => decodeMissing(k, BLOCK_BYTES, have, repairs));
}
