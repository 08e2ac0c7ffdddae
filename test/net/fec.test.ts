// The repair-block codec (src/net/fec.ts): field arithmetic against a from-first-principles
// multiply, encoding against the spec's definition, and erasure recovery on seeded random trials.
import { describe, expect, test } from "bun:test";
import {
  cauchyCoefficient,
  decodeMissing,
  encodeRepair,
  FEC_MAX_REPAIR_BLOCKS,
  FEC_MAX_SOURCE_BLOCKS,
  gfInv,
  gfInvertMatrix,
  gfMul,
} from "../../src/net/fec.ts";
import { AssertionError } from "../../src/util/assert.ts";
import { rng, type Rng } from "../rng.ts";

/** Carry-less shift-and-add multiply reduced by 0x11d: independent of the codec's log tables. */
function slowMul(a: number, b: number): number {
  let product = 0;
  for (let bit = 0; bit < 8; bit++) {
    if (b & (1 << bit)) product ^= a << bit;
  }
  for (let bit = 14; bit >= 8; bit--) {
    if (product & (1 << bit)) product ^= 0x11d << (bit - 8);
  }
  return product;
}

/** Repair j straight from the spec: Σ_i 1/(j XOR (64 + i)) · source_i, byte by byte. */
function slowRepair(sources: readonly Uint8Array[], j: number, blockBytes: number): Uint8Array {
  const out = new Uint8Array(blockBytes);
  sources.forEach((src, i) => {
    const c = gfInv(j ^ (FEC_MAX_REPAIR_BLOCKS + i));
    for (let k = 0; k < blockBytes; k++) out[k]! ^= slowMul(c, src[k]!);
  });
  return out;
}

/** m distinct values drawn from 0..n-1, in random order. */
function distinct(r: Rng, n: number, m: number): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < m; i++) {
    const j = i + r.below(n - i);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, m);
}

function randomSources(r: Rng, k: number, blockBytes: number): Uint8Array[] {
  return Array.from({ length: k }, () => r.bytes(blockBytes));
}

/** have = every source except `erased`; repairs = the given repair indices, encoded. */
function received(sources: Uint8Array[], erased: readonly number[], repairIdx: readonly number[], blockBytes: number) {
  const have = new Map<number, Uint8Array>();
  sources.forEach((s, i) => {
    if (!erased.includes(i)) have.set(i, s);
  });
  const repairs = new Map(repairIdx.map((j) => [j, encodeRepair(sources, j, blockBytes)] as const));
  return { have, repairs };
}

describe("GF(256) arithmetic", () => {
  test("the multiply table equals shift-and-add modulo 0x11d for all 65536 pairs", () => {
    let mismatches = 0;
    for (let a = 0; a < 256; a++) {
      for (let b = 0; b < 256; b++) if (gfMul(a, b) !== slowMul(a, b)) mismatches++;
    }
    expect(mismatches).toBe(0);
    expect(gfMul(2, 0x80)).toBe(0x1d);
  });

  test("every non-zero element's inverse round-trips", () => {
    for (let a = 1; a < 256; a++) {
      const inv = gfInv(a);
      expect(inv).toBeGreaterThan(0);
      expect(gfMul(a, inv)).toBe(1);
      expect(slowMul(a, inv)).toBe(1);
      expect(gfInv(inv)).toBe(a);
      expect(gfMul(gfMul(a, 0x53), inv)).toBe(0x53);
    }
    expect(() => gfInv(0)).toThrow(AssertionError);
  });
});

describe("encodeRepair", () => {
  test("matches the spec's Cauchy definition byte for byte", () => {
    const r = rng(11);
    for (const k of [1, 2, 47, FEC_MAX_SOURCE_BLOCKS]) {
      const sources = randomSources(r, k, 64);
      for (const j of [0, 1, 37, FEC_MAX_REPAIR_BLOCKS - 1]) {
        expect(encodeRepair(sources, j, 64)).toEqual(slowRepair(sources, j, 64));
      }
    }
  });

  test("contract violations are assertions", () => {
    const ok = [new Uint8Array(4), new Uint8Array(4)];
    expect(() => encodeRepair([], 0, 4)).toThrow(AssertionError);
    expect(() => encodeRepair(ok, -1, 4)).toThrow(AssertionError);
    expect(() => encodeRepair(ok, FEC_MAX_REPAIR_BLOCKS, 4)).toThrow(AssertionError);
    expect(() => encodeRepair(ok, 0.5, 4)).toThrow(AssertionError);
    expect(() => encodeRepair(ok, 0, 0)).toThrow(AssertionError);
    expect(() => encodeRepair([new Uint8Array(4), new Uint8Array(3)], 0, 4)).toThrow(AssertionError);
    const tooMany = Array.from({ length: FEC_MAX_SOURCE_BLOCKS + 1 }, () => new Uint8Array(4));
    expect(() => encodeRepair(tooMany, 0, 4)).toThrow(AssertionError);
  });
});

describe("decodeMissing", () => {
  test("300 seeded trials: any m erased sources come back from m distinct repairs", () => {
    const r = rng(20240601);
    for (let trial = 0; trial < 300; trial++) {
      const k = r.pick([1, 2, 47, FEC_MAX_SOURCE_BLOCKS]);
      const blockBytes = r.pick([1, 1400]);
      const m = 1 + r.below(Math.min(k, FEC_MAX_REPAIR_BLOCKS));
      const sources = randomSources(r, k, blockBytes);
      const erased = distinct(r, k, m);
      const { have, repairs } = received(sources, erased, distinct(r, FEC_MAX_REPAIR_BLOCKS, m), blockBytes);
      const got = decodeMissing(k, blockBytes, have, repairs);
      expect(got).not.toBeNull();
      expect([...got!.keys()].sort((a, b) => a - b)).toEqual([...erased].sort((a, b) => a - b));
      for (const i of erased) {
        if (!Bun.deepEquals(got!.get(i), sources[i])) throw new Error(`trial ${trial}: k=${k} blockBytes=${blockBytes} m=${m}: source ${i} differs`);
      }
    }
  });

  test("all sources lost, recovered from repairs alone (K = 64, every repair)", () => {
    const r = rng(5);
    const sources = randomSources(r, FEC_MAX_REPAIR_BLOCKS, 300);
    const all = Array.from({ length: FEC_MAX_REPAIR_BLOCKS }, (_, i) => i);
    const { have, repairs } = received(sources, all, all, 300);
    const got = decodeMissing(FEC_MAX_REPAIR_BLOCKS, 300, have, repairs)!;
    expect(got.size).toBe(FEC_MAX_REPAIR_BLOCKS);
    for (const i of all) expect(got.get(i)).toEqual(sources[i]!);
  });

  test("fewer repairs than missing gives null; nothing missing gives an empty map", () => {
    const r = rng(7);
    const sources = randomSources(r, 47, 100);
    const short = received(sources, [3, 9, 40], [5, 6], 100);
    expect(decodeMissing(47, 100, short.have, short.repairs)).toBeNull();
    const none = received(sources, [0], [], 100);
    expect(decodeMissing(47, 100, none.have, none.repairs)).toBeNull();
    const whole = received(sources, [], [1, 2], 100);
    expect(decodeMissing(47, 100, whole.have, whole.repairs)).toEqual(new Map());
    const wholeNoRepairs = received(sources, [], [], 100);
    expect(decodeMissing(47, 100, wholeNoRepairs.have, wholeNoRepairs.repairs)!.size).toBe(0);
  });

  test("more repairs than needed: still exact, and only the needed ones are read", () => {
    const r = rng(8);
    const sources = randomSources(r, FEC_MAX_SOURCE_BLOCKS, 1400);
    const { have, repairs } = received(sources, [0, 100, 191], [2, 60, 7, 33, 12, 50], 1400);
    const got = decodeMissing(FEC_MAX_SOURCE_BLOCKS, 1400, have, repairs)!;
    expect(got.size).toBe(3);
    for (const i of [0, 100, 191]) expect(got.get(i)).toEqual(sources[i]!);
    // Corrupting a repair beyond the three lowest indices (2, 7, 12) changes nothing.
    const spoiled = new Map(repairs);
    spoiled.set(60, new Uint8Array(1400).fill(0xa5));
    spoiled.set(33, new Uint8Array(1400));
    const again = decodeMissing(FEC_MAX_SOURCE_BLOCKS, 1400, have, spoiled)!;
    for (const i of [0, 100, 191]) expect(again.get(i)).toEqual(sources[i]!);
  });

  test("inputs are not mutated by encoding or decoding", () => {
    const r = rng(9);
    const sources = randomSources(r, 47, 256);
    const before = sources.map((s) => s.slice());
    const { have, repairs } = received(sources, [1, 2, 3, 4], [0, 1, 2, 3, 4], 256);
    expect(sources).toEqual(before);
    const haveBefore = new Map([...have].map(([i, b]) => [i, b.slice()]));
    const repairsBefore = new Map([...repairs].map(([j, b]) => [j, b.slice()]));
    const got = decodeMissing(47, 256, have, repairs)!;
    expect(have).toEqual(haveBefore);
    expect(repairs).toEqual(repairsBefore);
    expect(got.size).toBe(4);
    // Returned blocks are fresh: writing to them touches no input.
    for (const block of got.values()) block.fill(0);
    expect(repairs).toEqual(repairsBefore);
  });

  test("contract violations are assertions", () => {
    const blk = new Uint8Array(8);
    const none = new Map<number, Uint8Array>();
    expect(() => decodeMissing(0, 8, none, none)).toThrow(AssertionError);
    expect(() => decodeMissing(FEC_MAX_SOURCE_BLOCKS + 1, 8, none, none)).toThrow(AssertionError);
    expect(() => decodeMissing(4, 0, none, none)).toThrow(AssertionError);
    expect(() => decodeMissing(4, 8, new Map([[4, blk]]), none)).toThrow(AssertionError);
    expect(() => decodeMissing(4, 8, new Map([[0, new Uint8Array(7)]]), none)).toThrow(AssertionError);
    expect(() => decodeMissing(4, 8, none, new Map([[FEC_MAX_REPAIR_BLOCKS, blk]]))).toThrow(AssertionError);
    expect(() => decodeMissing(4, 8, none, new Map([[0, new Uint8Array(9)]]))).toThrow(AssertionError);
  });
});

describe("the Cauchy matrix is MDS", () => {
  test("random square submatrices of size 1..16 invert, and A·A⁻¹ = I", () => {
    const r = rng(31337);
    for (let trial = 0; trial < 400; trial++) {
      const m = 1 + r.below(16);
      const rows = distinct(r, FEC_MAX_REPAIR_BLOCKS, m);
      const cols = distinct(r, FEC_MAX_SOURCE_BLOCKS, m);
      const a = new Uint8Array(m * m);
      for (let i = 0; i < m; i++) for (let j = 0; j < m; j++) a[i * m + j] = cauchyCoefficient(rows[i]!, cols[j]!);
      const inv = gfInvertMatrix(a, m);
      expect(inv).not.toBeNull();
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < m; j++) {
          let sum = 0;
          for (let t = 0; t < m; t++) sum ^= slowMul(a[i * m + t]!, inv![t * m + j]!);
          if (sum !== (i === j ? 1 : 0)) throw new Error(`trial ${trial}: (A·A⁻¹)[${i}][${j}] = ${sum}`);
        }
      }
    }
  });

  test("the inverter reports a singular matrix as null", () => {
    expect(gfInvertMatrix(Uint8Array.from([3, 5, 3, 5]), 2)).toBeNull();
    expect(gfInvertMatrix(Uint8Array.from([0]), 1)).toBeNull();
  });
});
