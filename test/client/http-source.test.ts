// The HTTP fallback's pure parts: Content-Range and Range parsing (both ends of the exchange),
// retry backoff, how many ranges are in flight for a memory budget, and which requests carry
// the agent's job token.
import { describe, expect, test } from "bun:test";
import { backoffMs, HTTP_FIRST_BACKOFF_MS, HTTP_MAX_BACKOFF_MS, parseContentRange } from "../../src/client/http-source.ts";
import { httpParallelism, MAX_HTTP_REQUESTS_IN_FLIGHT } from "../../src/client/http-load.ts";
import { parseRangeHeader } from "../../src/server/http-serve.ts";
import { httpRequestFor } from "../../src/agent/fallback.ts";

describe("HTTP ranges", () => {
  test("Content-Range: only a whole `bytes START-END/TOTAL` inside the file is accepted", () => {
    expect(parseContentRange("bytes 0-511/1024")).toEqual({ start: 0, end: 511, total: 1024 });
    expect(parseContentRange("bytes 512-1023/1024")).toEqual({ start: 512, end: 1023, total: 1024 });
    expect(parseContentRange("bytes 0-511/*")).toBeNull();
    expect(parseContentRange("bytes 10-5/1024")).toBeNull();
    expect(parseContentRange("bytes 0-1024/1024")).toBeNull();
    expect(parseContentRange(null)).toBeNull();
  });

  test("Range: one range, open or suffix, clipped to the file; beyond it unsatisfiable; others ignored", () => {
    expect(parseRangeHeader("bytes=0-99", 1000)).toEqual({ start: 0, end: 99 });
    expect(parseRangeHeader("bytes=900-", 1000)).toEqual({ start: 900, end: 999 });
    expect(parseRangeHeader("bytes=-512", 1000)).toEqual({ start: 488, end: 999 });
    expect(parseRangeHeader("bytes=-5000", 1000)).toEqual({ start: 0, end: 999 });
    expect(parseRangeHeader("bytes=990-2000", 1000)).toEqual({ start: 990, end: 999 });
    expect(parseRangeHeader("bytes=1000-", 1000)).toBe("unsatisfiable");
    expect(parseRangeHeader("bytes=0-1,5-6", 1000)).toBeNull();
    expect(parseRangeHeader("items=0-1", 1000)).toBeNull();
    expect(parseRangeHeader(null, 1000)).toBeNull();
  });

  test("retries back off by doubling, within their bound", () => {
    expect(backoffMs(1)).toBe(HTTP_FIRST_BACKOFF_MS);
    expect(backoffMs(2)).toBe(2 * HTTP_FIRST_BACKOFF_MS);
    expect(backoffMs(30)).toBe(HTTP_MAX_BACKOFF_MS);
  });

  test("ranges in flight: bounded by the constant and by the memory budget, at least one", () => {
    expect(httpParallelism(1 << 20, 64 << 20)).toBe(MAX_HTTP_REQUESTS_IN_FLIGHT);
    expect(httpParallelism(16 << 20, 32 << 20)).toBe(2);
    expect(httpParallelism(64 << 20, 8 << 20)).toBe(1);
  });

  test("the job token goes only to the control server that booted the node, with its MAC", () => {
    const job = { server: "http://198.18.0.1:8080", token: "t".repeat(43), mac: "52:54:00:aa:13:01" };
    const own = httpRequestFor("http://198.18.0.1:8080/images/lab-os.dsc", job);
    expect(own.url).toBe("http://198.18.0.1:8080/images/lab-os.dsc?mac=52%3A54%3A00%3Aaa%3A13%3A01");
    expect(own.headers).toEqual({ authorization: `Bearer ${job.token}` });
    expect(httpRequestFor("http://198.18.0.1:8080.evil/images/lab-os.dsc", job)).toEqual({ url: "http://198.18.0.1:8080.evil/images/lab-os.dsc", headers: {} });
    expect(httpRequestFor("http://198.18.0.9/lab-os.dsc", null).headers).toEqual({});
  });
});
