// The redfish driver's pure parts: which reset boots a system afresh, which system of a collection
// is driven, the one line taken from a Redfish error body, and the `redfish:` text of --power.
import { describe, expect, test } from "bun:test";
import { chooseReset, pickSystem, redfishMessage } from "../../src/daemon/redfish.ts";
import { parsePowerText, parseNodesCsv } from "../../src/daemon/csv.ts";
import { powerSpec } from "../../src/http/shapes.ts";

const ALL = ["On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn", "PushPowerButton", "PowerCycle"];

describe("chooseReset", () => {
  test("off: On; on: ForceRestart, else PowerCycle, else ForceOff then On", () => {
    expect(chooseReset("Off", ALL)).toEqual(["On"]);
    expect(chooseReset("Off", ["ForceOn", "ForceOff"])).toEqual(["ForceOn"]);
    expect(chooseReset("On", ALL)).toEqual(["ForceRestart"]);
    expect(chooseReset("On", ["On", "ForceOff", "PowerCycle"])).toEqual(["PowerCycle"]);
    expect(chooseReset("On", ["On", "ForceOff"])).toEqual(["ForceOff", "On"]);
    expect(chooseReset("On", null)).toEqual(["ForceRestart"]);
  });
  test("nothing that boots the system, or an unknown power state: null", () => {
    expect(chooseReset("On", ["GracefulShutdown", "Nmi"])).toBeNull();
    expect(chooseReset("Off", ["ForceOff"])).toBeNull();
    expect(chooseReset("absent", ALL)).toBeNull();
  });
});

describe("pickSystem", () => {
  const two = { Members: [{ "@odata.id": "/redfish/v1/Systems/a1" }, { "@odata.id": "/redfish/v1/Systems/b2/" }] };
  test("the only member, or the one systemId names (a trailing slash is no different)", () => {
    expect(pickSystem({ Members: [{ "@odata.id": "/redfish/v1/Systems/1" }] }, null)).toEqual({ path: "/redfish/v1/Systems/1" });
    expect(pickSystem(two, "b2")).toEqual({ path: "/redfish/v1/Systems/b2/" });
  });
  test("several without systemId, an unknown id, or no Members: a reason naming what there is", () => {
    expect(pickSystem(two, null)).toEqual({ why: "it has 2 systems (a1, b2), and no systemId names one" });
    expect(pickSystem(two, "c3")).toEqual({ why: "it has no system c3 (it has a1, b2)" });
    expect(pickSystem({}, null)).toEqual({ why: "its Systems collection has no Members list" });
  });
});

describe("redfishMessage", () => {
  test("the first ExtendedInfo message, else error.message, on one bounded line", () => {
    const body = { error: { code: "Base.1.8.GeneralError", message: "general", "@Message.ExtendedInfo": [{ Message: "The request\nrequired\tauthentication." }, { Message: "second" }] } };
    expect(redfishMessage(body)).toBe("The request required authentication.");
    expect(redfishMessage({ error: { message: "only this" } })).toBe("only this");
    expect(redfishMessage({ error: { message: "x".repeat(5000) } })!.length).toBeLessThan(300);
    expect(redfishMessage({ PowerState: "On" })).toBeNull();
    expect(redfishMessage("<html>")).toBeNull();
  });
});

describe("redfish power as text and as JSON", () => {
  test("HOST[:PORT]:USER:FILE with ca=, insecure and system= options", () => {
    expect(parsePowerText("redfish:198.18.0.9:admin:/s/bmc.pw", "t", { bmc: true })).toEqual({ driver: "redfish", host: "198.18.0.9", user: "admin", passwordFile: "/s/bmc.pw", systemId: null, caFile: null, tlsVerify: true });
    expect(parsePowerText("redfish:bmc7:8443:admin:/s/bmc.pw,ca=/s/bmc.pem,system=437XR1138R2", "t", { bmc: true })).toEqual({ driver: "redfish", host: "bmc7:8443", user: "admin", passwordFile: "/s/bmc.pw", systemId: "437XR1138R2", caFile: "/s/bmc.pem", tlsVerify: true });
    expect(parsePowerText("redfish:bmc7:admin:/s/pw,insecure", "t", { bmc: true })).toMatchObject({ tlsVerify: false, caFile: null });
    expect(() => parsePowerText("redfish:bmc7:admin:/s/pw,verify=no", "t", { bmc: true })).toThrow('"verify=no" is not a Redfish option');
    expect(() => parsePowerText("redfish:bmc7", "--power redfish:bmc7", { bmc: true })).toThrow("is not none, command:PROGRAM, ipmi:");
  });
  test("the CSV import leaves BMC drivers out, as it does IPMI", () => {
    expect(() => parseNodesCsv("name,mac,power\nn1,52:54:00:00:00:01,redfish:bmc7:admin:/s/pw\n")).toThrow("Add IPMI and Redfish nodes with `discus node add");
  });
  test("the API's shape: every field present, tlsVerify a boolean, nothing unknown", () => {
    const spec = { driver: "redfish", host: "bmc7", user: "admin", passwordFile: "/s/pw", systemId: null, caFile: "/s/bmc.pem", tlsVerify: true };
    expect(powerSpec(spec, "power")).toEqual(spec as never);
    expect(() => powerSpec({ ...spec, tlsVerify: "no" }, "power")).toThrow("power.tlsVerify");
    expect(() => powerSpec({ ...spec, password: "x" }, "power")).toThrow("power.password");
    const { caFile: _, ...noCa } = spec;
    expect(() => powerSpec(noCa, "power")).toThrow("power.caFile");
  });
});
