// The positional-write guard of target/apply.ts: a range outside the image's source is a bug,
// stopped by an assertion naming the chunk and the range before any write.
import { describe, expect, test } from "bun:test";
import { assertInsideSource } from "../../src/target/apply.ts";
import { AssertionError } from "../../src/util/assert.ts";

const SOURCE_BYTES = 1 << 20;

describe("positional-write guard", () => {
  test("ranges inside the source pass, up to its last byte", () => {
    expect(() => assertInsideSource(0, SOURCE_BYTES, SOURCE_BYTES, "img, chunk 0")).not.toThrow();
    expect(() => assertInsideSource(SOURCE_BYTES - 512, 512, SOURCE_BYTES, "img, chunk 0")).not.toThrow();
  });

  test("a range past the end, an empty one, or a negative start is refused with the range named", () => {
    expect(() => assertInsideSource(SOURCE_BYTES - 512, 1024, SOURCE_BYTES, "img, chunk 3")).toThrow(AssertionError);
    expect(() => assertInsideSource(SOURCE_BYTES - 512, 1024, SOURCE_BYTES, "img, chunk 3")).toThrow(/img, chunk 3: bytes 1048064\.\.1049088 lie outside/);
    expect(() => assertInsideSource(SOURCE_BYTES, 512, SOURCE_BYTES, "c")).toThrow(AssertionError);
    expect(() => assertInsideSource(0, 0, SOURCE_BYTES, "c")).toThrow(AssertionError);
    expect(() => assertInsideSource(-512, 512, SOURCE_BYTES, "c")).toThrow(AssertionError);
  });
});
