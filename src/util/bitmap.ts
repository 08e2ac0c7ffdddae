// Bit sets over Uint8Array, least significant bit first (the wire protocol's request bitmaps).

export function bitmapFor(bitCount: number): Uint8Array {
  return new Uint8Array((bitCount + 7) >>> 3);
}

export function testBit(bits: Uint8Array, i: number): boolean {
  return ((bits[i >>> 3]! >>> (i & 7)) & 1) === 1;
}

export function setBit(bits: Uint8Array, i: number): void {
  bits[i >>> 3]! |= 1 << (i & 7);
}

export function clearBit(bits: Uint8Array, i: number): void {
  bits[i >>> 3]! &= ~(1 << (i & 7));
}

/** Sets every bit in [0, bitCount). */
export function fillBits(bits: Uint8Array, bitCount: number): void {
  bits.fill(0xff, 0, bitCount >>> 3);
  if (bitCount & 7) bits[bitCount >>> 3] = (1 << (bitCount & 7)) - 1;
}

const popcount8 = Uint8Array.from({ length: 256 }, (_, v) => {
  let n = 0;
  for (let x = v; x; x >>>= 1) n += x & 1;
  return n;
});

/** Set bits among the first bitCount (bits beyond it are ignored). */
export function countBits(bits: Uint8Array, bitCount: number): number {
  let n = 0;
  const whole = bitCount >>> 3;
  for (let i = 0; i < whole; i++) n += popcount8[bits[i]!]!;
  if (bitCount & 7) n += popcount8[bits[whole]! & ((1 << (bitCount & 7)) - 1)]!;
  return n;
}

/** The first set bit at or after `from` (wrapping once), or -1. */
export function nextSetBit(bits: Uint8Array, from: number, bitCount: number): number {
  for (let k = 0; k < bitCount; k++) {
    const i = from + k < bitCount ? from + k : from + k - bitCount;
    if ((i & 7) === 0 && bits[i >>> 3] === 0 && i + 8 <= bitCount) {
      k += 7; // skip an empty byte
      continue;
    }
    if (testBit(bits, i)) return i;
  }
  return -1;
}
