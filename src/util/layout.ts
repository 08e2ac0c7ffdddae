// Fixed binary layouts defined once, as a table of fields (name, kind, width): the offsets follow
// from the order, the size is asserted at import, and encoder and decoder both walk the same table.
// Little-endian; reserved fields are written as zeros and must read as zeros. Pure.
import { assert } from "./assert.ts";
import { view } from "./bytes.ts";

export type FieldSpec =
  | { readonly name: string; readonly kind: "u8" | "u16" | "u32" | "u64" }
  | { readonly name: string; readonly kind: "bytes" | "reserved"; readonly width: number };

/** The values of a layout's fields by name: numbers, or byte arrays for `bytes` fields; reserved ones have none. */
export type LayoutValues<F extends readonly FieldSpec[]> = {
  [S in F[number] as S["kind"] extends "reserved" ? never : S["name"]]: S["kind"] extends "bytes" ? Uint8Array : number;
};

export type LayoutRead<F extends readonly FieldSpec[]> = { ok: true; values: LayoutValues<F> } | { ok: false; why: string };

const NUMBER_WIDTHS = { u8: 1, u16: 2, u32: 4, u64: 8 } as const;
const MAX_SAFE_U64 = BigInt(Number.MAX_SAFE_INTEGER);

interface Placed {
  spec: FieldSpec;
  offset: number;
  width: number;
}

export class Layout<F extends readonly FieldSpec[]> {
  readonly bytes: number;
  private readonly placed: Placed[] = [];
  private readonly offsets = new Map<string, number>();

  /** `bytes` is the size the format documents: the fields must add up to it exactly. */
  constructor(readonly name: string, bytes: number, fields: F) {
    let offset = 0;
    for (const spec of fields) {
      const width = spec.kind === "bytes" || spec.kind === "reserved" ? spec.width : NUMBER_WIDTHS[spec.kind];
      assert(Number.isInteger(width) && width > 0, `${name}.${spec.name} has a positive width`);
      assert(!this.offsets.has(spec.name), `${name}.${spec.name} is named once`);
      this.placed.push({ spec, offset, width });
      this.offsets.set(spec.name, offset);
      offset += width;
    }
    assert(offset === bytes, `${name} fields add up to ${offset} bytes, its layout says ${bytes}`);
    this.bytes = bytes;
  }

  /** Byte offset of a field from the layout's start. */
  offset(field: F[number]["name"]): number {
    const at = this.offsets.get(field);
    assert(at !== undefined, `${this.name} has a field ${field}`);
    return at;
  }

  /** Writes every field at `base`; reserved fields become zeros. */
  write(bytes: Uint8Array, base: number, values: LayoutValues<F>): void {
    assert(base >= 0 && base + this.bytes <= bytes.length, `${this.name} fits its buffer`);
    const dv = view(bytes);
    const named = values as Record<string, number | Uint8Array>;
    for (const { spec, offset, width } of this.placed) {
      const at = base + offset;
      if (spec.kind === "reserved") bytes.fill(0, at, at + width);
      else if (spec.kind === "bytes") {
        const value = named[spec.name] as Uint8Array;
        assert(value.length === width, `${this.name}.${spec.name} is ${width} bytes`);
        bytes.set(value, at);
      } else writeNumber(dv, at, spec.kind, named[spec.name] as number, `${this.name}.${spec.name}`);
    }
  }

  /** Reads every field at `base`: refused when a reserved field is not zero or a u64 passes 2^53. */
  read(bytes: Uint8Array, base: number): LayoutRead<F> {
    if (base < 0 || base + this.bytes > bytes.length) return { ok: false, why: `${this.name} is cut short` };
    const dv = view(bytes);
    const out: Record<string, number | Uint8Array> = {};
    for (const { spec, offset, width } of this.placed) {
      const at = base + offset;
      if (spec.kind === "reserved") {
        if (bytes.subarray(at, at + width).some((b) => b !== 0)) return { ok: false, why: `${this.name} reserved field ${spec.name} is not zero` };
      } else if (spec.kind === "bytes") out[spec.name] = bytes.subarray(at, at + width);
      else if (spec.kind === "u64") {
        const value = dv.getBigUint64(at, true);
        if (value > MAX_SAFE_U64) return { ok: false, why: `${this.name} field ${spec.name} is beyond 2^53` };
        out[spec.name] = Number(value);
      } else out[spec.name] = readNumber(dv, at, spec.kind);
    }
    return { ok: true, values: out as LayoutValues<F> };
  }
}

function writeNumber(dv: DataView, at: number, kind: "u8" | "u16" | "u32" | "u64", value: number, what: string): void {
  const max = kind === "u64" ? Number.MAX_SAFE_INTEGER : 2 ** (8 * NUMBER_WIDTHS[kind]) - 1;
  assert(Number.isInteger(value) && value >= 0 && value <= max, `${what} = ${value} fits its ${kind}`);
  if (kind === "u8") dv.setUint8(at, value);
  else if (kind === "u16") dv.setUint16(at, value, true);
  else if (kind === "u32") dv.setUint32(at, value, true);
  else dv.setBigUint64(at, BigInt(value), true);
}

function readNumber(dv: DataView, at: number, kind: "u8" | "u16" | "u32"): number {
  if (kind === "u8") return dv.getUint8(at);
  if (kind === "u16") return dv.getUint16(at, true);
  return dv.getUint32(at, true);
}
