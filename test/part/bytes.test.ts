// The shared byte helpers (util/bytes.ts) every format reads with: powers of two past 2^31,
// u64 fields at and past 2^53 in both byte orders and as ext4's lo/hi halves, bitmap bits.
import { describe, expect, test } from "bun:test";
import { bitSet, isPowerOfTwo, tryGetU64, u64FromHalves } from "../../src/util/bytes.ts";

describe("byte helpers", () => {
  test("isPowerOfTwo is exact across the whole safe range, not only below 2^31", () => {
    for (let k = 0; k <= 52; k++) expect(isPowerOfTwo(2 ** k)).toBe(true);
    for (const n of [0, -1, -2, 3, 6, 511, 513, 2 ** 31 + 2 ** 30, 2 ** 32 + 2, 2 ** 40 + 512, 0.5, 1.5, Number.MAX_SAFE_INTEGER, 2 ** 53, NaN, Infinity]) {
      expect(isPowerOfTwo(n)).toBe(false);
    }
  });

  test("u64 readers refuse 2^53 and above, in both byte orders and as halves", () => {
    const bytes = new Uint8Array(8);
    const dv = new DataView(bytes.buffer);
    dv.setBigUint64(0, 2n ** 53n - 1n, true);
    expect(tryGetU64(dv, 0)).toBe(Number.MAX_SAFE_INTEGER);
    dv.setBigUint64(0, 2n ** 53n, true);
    expect(tryGetU64(dv, 0)).toBeNull();
    dv.setBigUint64(0, 2n ** 53n + 1n, false);
    expect(tryGetU64(dv, 0, false)).toBeNull();
    dv.setBigUint64(0, 123456789012345n, false);
    expect(tryGetU64(dv, 0, false)).toBe(123456789012345);
    expect(u64FromHalves(0xffffffff, 0x1fffff)).toBe(Number.MAX_SAFE_INTEGER);
    expect(u64FromHalves(0, 0x200000)).toBeNull();
    expect(u64FromHalves(5, 1)).toBe(2 ** 32 + 5);
  });

  test("bitSet reads bits least significant first", () => {
    const bitmap = Uint8Array.of(0b0000_0101, 0b1000_0000);
    expect([0, 1, 2, 3, 15, 14].map((i) => bitSet(bitmap, i))).toEqual([true, false, true, false, true, false]);
  });
});
