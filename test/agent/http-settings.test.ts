// The agent's HTTP settings: discus.http alone or as the group's fallback, never with a file; the
// daemon's boot script names it for a reload.
import { describe, expect, test } from "bun:test";
import { resolveSettings } from "../../src/agent/settings.ts";
import { agentScript } from "../../src/daemon/boot-script.ts";
import { DiscusError } from "../../src/util/errors.ts";

const URL_OK = "http://198.18.0.1:8080/images/lab-os.dsc";

function message(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof DiscusError) return e.message;
    throw e;
  }
  throw new Error("expected a DiscusError");
}

describe("discus.http", () => {
  test("a group with an HTTP fallback, or HTTP alone, is a source; with a file it is two", () => {
    const both = resolveSettings(`discus.action=load discus.group=239.1.1.1 discus.http=${URL_OK} discus.disk=only`, null);
    expect(both.group).toBe("239.1.1.1");
    expect(both.http).toBe(URL_OK);
    expect(resolveSettings(`discus.action=load discus.http=${URL_OK} discus.disk=only`, null).group).toBeNull();
    expect(message(() => resolveSettings(`discus.action=load discus.http=${URL_OK} discus.file=x.dsc discus.disk=only`, null))).toContain("two sources");
    expect(message(() => resolveSettings("discus.action=load discus.disk=only", null))).toContain("names no source");
  });

  test("anything but an http(s) URL of a file is refused", () => {
    for (const bad of ["ftp://h/x.dsc", "http://h", "http://h/a b.dsc", "http://h/x.dsc?q=1", "/x.dsc"]) {
      expect(message(() => resolveSettings(`"discus.http=${bad}"`, null))).toContain("is not an http:// URL of an image file");
    }
  });

  test("the daemon's boot script names the image's URL on the daemon", () => {
    const script = agentScript({ baseUrl: "http://198.18.0.1:8080", action: "load", group: "239.1.1.1", port: 4520, imageId: null, diskRule: "only", keyHex: null, token: "t".repeat(43), mac: "52:54:00:aa:13:01", imageName: "lab-os" });
    expect(script).toContain(` discus.http=${URL_OK} `);
    const words = script.split("\n").find((l) => l.startsWith("kernel "))!;
    expect(resolveSettings(words, null).http).toBe(URL_OK);
  });
});
