// Reed-Solomon erasure code for repair blocks: systematic, over GF(2^8), Cauchy construction.
// A repair block repairs a different lost source block at each receiver, so the repairs a server
// sends grow with the worst receiver's loss, not the union of everyone's (NORM, RFC 5740, does
// the same). Repair j = XOR over sources i of C[j][i]·source_i, C[j][i] = 1 / (x_j XOR y_i) with
// x_j = j and y_i = FEC_MAX_REPAIR_BLOCKS + i; every square submatrix of a Cauchy matrix is
// invertible, so any K of the K + R blocks recover all K sources (MDS).
import { assert } from "../util/assert.ts";

/** Repair indices are 0..FEC_MAX_REPAIR_BLOCKS-1 (the x values of the Cauchy matrix). */
export const FEC_MAX_REPAIR_BLOCKS = 64;
/** Source indices are 0..FEC_MAX_SOURCE_BLOCKS-1 (y = FEC_MAX_REPAIR_BLOCKS + index). */
export const FEC_MAX_SOURCE_BLOCKS = 192;
/** Bound on one block: a block is one datagram's payload, which is below 64 KiB. */
export const FEC_MAX_BLOCK_BYTES = 64 << 10;

const FIELD_SIZE = 256;
const PRIMITIVE_POLY = 0x11d; // x^8 + x^4 + x^3 + x^2 + 1; 2 generates its multiplicative group

// The x values and the y values must be distinct field elements, else some 1/(x XOR y) is 1/0.
assert(FEC_MAX_REPAIR_BLOCKS + FEC_MAX_SOURCE_BLOCKS <= FIELD_SIZE, "Cauchy x and y values fit GF(256)");
assert(FEC_MAX_REPAIR_BLOCKS >= 1 && FEC_MAX_SOURCE_BLOCKS >= 1, "at least one repair and one source");

/** EXP[i] = 2^i for i in 0..509 (doubled so EXP[LOG[a] + LOG[b]] needs no modulo); LOG[2^i] = i. */
const { EXP, LOG } = (() => {
  const exp = new Uint8Array(2 * (FIELD_SIZE - 1));
  const log = new Uint8Array(FIELD_SIZE);
  let x = 1;
  for (let i = 0; i < FIELD_SIZE - 1; i++) {
    exp[i] = x;
    log[x] = i;
    x <<= 1;
    if (x & FIELD_SIZE) x ^= PRIMITIVE_POLY;
  }
  for (let i = FIELD_SIZE - 1; i < exp.length; i++) exp[i] = exp[i - (FIELD_SIZE - 1)]!;
  return { EXP: exp, LOG: log };
})();
assert(EXP[FIELD_SIZE - 1] === 1 && LOG[2] === 1, "2 generates GF(256)* under 0x11d");

/** MUL[a << 8 | b] = a·b: 64 KiB, so the inner loop is one lookup per byte. */
const MUL = (() => {
  const table = new Uint8Array(FIELD_SIZE * FIELD_SIZE);
  for (let a = 1; a < FIELD_SIZE; a++) {
    for (let b = 1; b < FIELD_SIZE; b++) table[(a << 8) | b] = EXP[LOG[a]! + LOG[b]!]!;
  }
  return table;
})();

/** Product in GF(256). */
export function gfMul(a: number, b: number): number {
  assert(Number.isInteger(a) && Number.isInteger(b) && (a | b) >= 0 && (a | b) < FIELD_SIZE, `gfMul of field elements, got ${a}, ${b}`);
  return MUL[(a << 8) | b]!;
}

/** Multiplicative inverse in GF(256); 0 has none. */
export function gfInv(a: number): number {
  assert(Number.isInteger(a) && a >= 1 && a < FIELD_SIZE, `gfInv of a non-zero field element, got ${a}`);
  return EXP[FIELD_SIZE - 1 - LOG[a]!]!;
}

/** COEF[j * FEC_MAX_SOURCE_BLOCKS + i] = C[j][i], 12 KiB, built once. */
const COEF = (() => {
  const table = new Uint8Array(FEC_MAX_REPAIR_BLOCKS * FEC_MAX_SOURCE_BLOCKS);
  for (let j = 0; j < FEC_MAX_REPAIR_BLOCKS; j++) {
    for (let i = 0; i < FEC_MAX_SOURCE_BLOCKS; i++) {
      table[j * FEC_MAX_SOURCE_BLOCKS + i] = gfInv(j ^ (FEC_MAX_REPAIR_BLOCKS + i));
    }
  }
  return table;
})();

/** The Cauchy coefficient of source `sourceIndex` in repair `repairIndex`. */
export function cauchyCoefficient(repairIndex: number, sourceIndex: number): number {
  assertIndex(repairIndex, FEC_MAX_REPAIR_BLOCKS, "repair index");
  assertIndex(sourceIndex, FEC_MAX_SOURCE_BLOCKS, "source index");
  return COEF[repairIndex * FEC_MAX_SOURCE_BLOCKS + sourceIndex]!;
}

/** dst ^= c·src, byte by byte; both the same length. */
function mulAddInto(dst: Uint8Array, src: Uint8Array, c: number): void {
  if (c === 0) return;
  const n = dst.length;
  if (c === 1) {
    for (let k = 0; k < n; k++) dst[k]! ^= src[k]!;
    return;
  }
  const row = MUL.subarray(c << 8, (c << 8) + FIELD_SIZE);
  for (let k = 0; k < n; k++) dst[k]! ^= row[src[k]!]!;
}

function assertIndex(index: number, limit: number, what: string): void {
  assert(Number.isInteger(index) && index >= 0 && index < limit, `${what} in 0..${limit - 1}, got ${index}`);
}

function assertBlockBytes(blockBytes: number): void {
  assert(
    Number.isInteger(blockBytes) && blockBytes >= 1 && blockBytes <= FEC_MAX_BLOCK_BYTES,
    `blockBytes in 1..${FEC_MAX_BLOCK_BYTES}, got ${blockBytes}`,
  );
}

function assertBlock(block: Uint8Array, blockBytes: number, what: string): void {
  assert(block instanceof Uint8Array && block.length === blockBytes, `${what} is ${blockBytes} bytes, got ${block?.length}`);
}

/** One repair block. sources.length = K in 1..FEC_MAX_SOURCE_BLOCKS, each exactly blockBytes. */
export function encodeRepair(sources: readonly Uint8Array[], repairIndex: number, blockBytes: number): Uint8Array {
  assert(sources.length >= 1 && sources.length <= FEC_MAX_SOURCE_BLOCKS, `K in 1..${FEC_MAX_SOURCE_BLOCKS}, got ${sources.length}`);
  assertIndex(repairIndex, FEC_MAX_REPAIR_BLOCKS, "repair index");
  assertBlockBytes(blockBytes);
  const out = new Uint8Array(blockBytes);
  const base = repairIndex * FEC_MAX_SOURCE_BLOCKS;
  for (let i = 0; i < sources.length; i++) {
    const source = sources[i]!;
    assertBlock(source, blockBytes, `source ${i}`);
    mulAddInto(out, source, COEF[base + i]!);
  }
  return out;
}

/** Checks the decoder's inputs against the contract; returns the missing source indices, ascending. */
function missingSources(k: number, blockBytes: number, have: ReadonlyMap<number, Uint8Array>, repairs: ReadonlyMap<number, Uint8Array>): number[] {
  assert(Number.isInteger(k) && k >= 1 && k <= FEC_MAX_SOURCE_BLOCKS, `K in 1..${FEC_MAX_SOURCE_BLOCKS}, got ${k}`);
  assertBlockBytes(blockBytes);
  for (const [i, block] of have) {
    assertIndex(i, k, "source index");
    assertBlock(block, blockBytes, `source ${i}`);
  }
  for (const [j, block] of repairs) {
    assertIndex(j, FEC_MAX_REPAIR_BLOCKS, "repair index");
    assertBlock(block, blockBytes, `repair ${j}`);
  }
  const missing: number[] = [];
  for (let i = 0; i < k; i++) if (!have.has(i)) missing.push(i);
  return missing;
}

/**
 * Inverts the m×m matrix (row-major) by Gauss-Jordan over GF(256); returns null if singular.
 * Pure: the input is copied. Addition and subtraction are both XOR.
 */
export function gfInvertMatrix(matrix: Uint8Array, m: number): Uint8Array | null {
  assert(Number.isInteger(m) && m >= 1 && matrix.length === m * m, `an ${m}×${m} matrix`);
  const a = matrix.slice();
  const inv = new Uint8Array(m * m);
  for (let r = 0; r < m; r++) inv[r * m + r] = 1;
  for (let col = 0; col < m; col++) {
    let pivot = col;
    while (pivot < m && a[pivot * m + col] === 0) pivot++;
    if (pivot === m) return null;
    if (pivot !== col) swapRows(a, inv, m, pivot, col);
    const scale = gfInv(a[col * m + col]!);
    scaleRow(a, m, col, scale);
    scaleRow(inv, m, col, scale);
    for (let r = 0; r < m; r++) {
      const factor = a[r * m + col]!;
      if (r === col || factor === 0) continue;
      mulAddInto(a.subarray(r * m, r * m + m), a.subarray(col * m, col * m + m), factor);
      mulAddInto(inv.subarray(r * m, r * m + m), inv.subarray(col * m, col * m + m), factor);
    }
  }
  return inv;
}

function swapRows(a: Uint8Array, b: Uint8Array, m: number, r1: number, r2: number): void {
  for (const t of [a, b]) {
    const tmp = t.slice(r1 * m, r1 * m + m);
    t.copyWithin(r1 * m, r2 * m, r2 * m + m);
    t.set(tmp, r2 * m);
  }
}

function scaleRow(t: Uint8Array, m: number, r: number, c: number): void {
  const row = MUL.subarray(c << 8, (c << 8) + FIELD_SIZE);
  for (let k = r * m; k < r * m + m; k++) t[k] = row[t[k]!]!;
}

/**
 * Recovers the missing sources. `have` maps source index → block for the sources received,
 * `repairs` maps repair index → block. Returns index → recovered block for every source index
 * in 0..k-1 not in `have`; returns null when repairs.size < number missing (not enough to decode).
 * Uses only as many repairs as needed (the lowest indices). Never mutates its inputs.
 */
export function decodeMissing(
  k: number,
  blockBytes: number,
  have: ReadonlyMap<number, Uint8Array>,
  repairs: ReadonlyMap<number, Uint8Array>,
): Map<number, Uint8Array> | null {
  const missing = missingSources(k, blockBytes, have, repairs);
  const m = missing.length;
  const recovered = new Map<number, Uint8Array>();
  if (m === 0) return recovered;
  if (repairs.size < m) return null;
  const chosen = [...repairs.keys()].sort((a, b) => a - b).slice(0, m);
  // Syndrome r: repair block minus the known sources' share, leaving Σ C[j_r][missing_c]·x_c.
  const syndromes = chosen.map((j) => {
    const s = repairs.get(j)!.slice();
    for (const [i, block] of have) mulAddInto(s, block, COEF[j * FEC_MAX_SOURCE_BLOCKS + i]!);
    return s;
  });
  const sub = new Uint8Array(m * m);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < m; c++) sub[r * m + c] = COEF[chosen[r]! * FEC_MAX_SOURCE_BLOCKS + missing[c]!]!;
  }
  const inv = gfInvertMatrix(sub, m);
  assert(inv !== null, "a square Cauchy submatrix is invertible");
  for (let c = 0; c < m; c++) {
    const out = new Uint8Array(blockBytes);
    for (let r = 0; r < m; r++) mulAddInto(out, syndromes[r]!, inv[c * m + r]!);
    recovered.set(missing[c]!, out);
  }
  return recovered;
}
