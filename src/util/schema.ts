// Tiny typed validators for JSON that comes from outside (an image's info, later API bodies).
// A validator returns the value typed, or throws SchemaError naming the path of the first bad
// field, so a caller can say exactly what is wrong instead of failing later on a missing field.

export class SchemaError extends Error {
  override name = "SchemaError";
  constructor(
    readonly path: string,
    readonly expected: string,
  ) {
    super(`${path || "value"} should be ${expected}`);
  }
}

export type Validator<T> = (value: unknown, path: string) => T;

/** Bound on any one string we accept: info and API fields are names and notes, never data. */
export const MAX_SCHEMA_STRING_CHARS = 4096;
/** Bound on any one array: a partition table has at most 128 entries, areas one more each. */
export const MAX_SCHEMA_ARRAY_ITEMS = 1024;

export const str: Validator<string> = (v, path) => {
  if (typeof v !== "string" || v.length > MAX_SCHEMA_STRING_CHARS) throw new SchemaError(path, `a string of at most ${MAX_SCHEMA_STRING_CHARS} characters`);
  return v;
};

/** A whole number in [min, max] (both within the safe-integer range). */
export function int(min: number, max: number): Validator<number> {
  return (v, path) => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max) throw new SchemaError(path, `a whole number in ${min}..${max}`);
    return v;
  };
}

export function oneOf<const T extends readonly string[]>(choices: T): Validator<T[number]> {
  return (v, path) => {
    if (typeof v !== "string" || !choices.includes(v)) throw new SchemaError(path, `one of ${choices.join(", ")}`);
    return v as T[number];
  };
}

export function nullable<T>(inner: Validator<T>): Validator<T | null> {
  return (v, path) => (v === null ? null : inner(v, path));
}

export function arrayOf<T>(item: Validator<T>, maxItems = MAX_SCHEMA_ARRAY_ITEMS): Validator<T[]> {
  return (v, path) => {
    if (!Array.isArray(v) || v.length > maxItems) throw new SchemaError(path, `a list of at most ${maxItems} items`);
    return v.map((x, i) => item(x, `${path}[${i}]`));
  };
}

/** An object with exactly these fields' validators; unknown fields are kept out of the result. */
export function object<T extends object>(fields: { [K in keyof T]: Validator<T[K]> }): Validator<T> {
  return (v, path) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new SchemaError(path, "an object");
    const input = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(fields)) {
      const fieldPath = path ? `${path}.${key}` : key;
      if (!Object.hasOwn(input, key)) throw new SchemaError(fieldPath, "present");
      out[key] = fields[key as keyof T](input[key], fieldPath);
    }
    return out as T;
  };
}
