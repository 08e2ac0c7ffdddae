// `discus node import FILE.csv`: one node per line under a header naming the columns (name, mac,
// and optionally disk, image, tags, power). Quoted fields may hold commas; tags are separated by
// spaces. Pure: text in, NodeInputs out, or a DiscusError naming the line.
import { DiscusError } from "../util/errors.ts";
import type { NodeInput } from "./api-types.ts";
import type { PowerSpec } from "./model.ts";

export const MAX_IMPORT_LINES = 10_000;
const COLUMNS = ["name", "mac", "disk", "image", "tags", "power"] as const;

function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted && ch === '"' && line[i + 1] === '"') {
      field += '"';
      i++;
    } else if (ch === '"') quoted = !quoted;
    else if (ch === "," && !quoted) {
      out.push(field.trim());
      field = "";
    } else field += ch;
  }
  out.push(field.trim());
  return out;
}

const REDFISH_TEXT = "redfish:HOST[:PORT]:USER:PASSWORD-FILE[,ca=PEM-FILE|,insecure][,system=ID]";
const POWER_TEXTS = `none, command:PROGRAM, ipmi:HOST:USER:PASSWORD-FILE or ${REDFISH_TEXT}`;

/** `redfish:` settings: HOST[:PORT]:USER:FILE, then options after commas; null if it is not one. */
function parseRedfishText(text: string, where: string): PowerSpec | null {
  const m = /^redfish:([^:,]+(?::\d{1,5})?):([^:,]+):([^,]+)((?:,[^,]*)*)$/.exec(text);
  if (m === null) return null;
  const spec: PowerSpec = { driver: "redfish", host: m[1]!, user: m[2]!, passwordFile: m[3]!, systemId: null, caFile: null, tlsVerify: true };
  for (const opt of m[4]!.split(",").slice(1)) {
    if (opt.startsWith("ca=") && opt.length > 3) spec.caFile = opt.slice(3);
    else if (opt.startsWith("system=") && opt.length > 7) spec.systemId = opt.slice(7);
    else if (opt === "insecure") spec.tlsVerify = false;
    else throw new DiscusError("usage", where, `"${opt}" is not a Redfish option (ca=PEM-FILE, insecure, system=ID)`, `Write ${REDFISH_TEXT}`);
  }
  return spec;
}

/**
 * A power setting as text: `none` (or empty), `command:PROGRAM`, and with BMC drivers allowed
 * `ipmi:HOST:USER:PASSWORD-FILE` and `redfish:...`. The CSV import leaves BMCs out: such nodes are
 * added one by one, naming their password file on the command line. `discus node add --power`
 * takes them all.
 */
export function parsePowerText(text: string, where: string, o: { bmc: boolean }): PowerSpec {
  if (text === "" || text === "none") return { driver: "none" };
  if (text.startsWith("command:") && text.length > 8) return { driver: "command", command: text.slice(8) };
  const m = o.bmc ? /^ipmi:([^:]+):([^:]+):(.+)$/.exec(text) : null;
  if (m !== null) return { driver: "ipmi", host: m[1]!, user: m[2]!, passwordFile: m[3]! };
  const redfish = o.bmc ? parseRedfishText(text, where) : null;
  if (redfish !== null) return redfish;
  if (o.bmc) throw new DiscusError("usage", where, `"${text}" is not ${POWER_TEXTS}`, "See `discus node add --help`");
  throw new DiscusError("usage", where, `power "${text}" is not none or command:PROGRAM`, "Add IPMI and Redfish nodes with `discus node add --power ipmi:... | redfish:...`");
}

export function parseNodesCsv(text: string): NodeInput[] {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"));
  if (lines.length === 0) throw new DiscusError("usage", "node CSV", "is empty", `Start with a header line such as ${COLUMNS.join(",")}`);
  if (lines.length - 1 > MAX_IMPORT_LINES) throw new DiscusError("usage", "node CSV", `has more than ${MAX_IMPORT_LINES} nodes`, "Split it into several files");
  const header = splitCsvLine(lines[0]!).map((h) => h.toLowerCase());
  for (const h of header) {
    if (!(COLUMNS as readonly string[]).includes(h)) throw new DiscusError("usage", `node CSV header column "${h}"`, "is not a known column", `Use ${COLUMNS.join(", ")}`);
  }
  if (!header.includes("name") || !header.includes("mac")) throw new DiscusError("usage", "node CSV header", "lacks name or mac", `Start with a header line such as ${COLUMNS.join(",")}`);
  return lines.slice(1).map((line, i) => {
    const fields = splitCsvLine(line);
    const where = `node CSV line ${i + 2}`;
    if (fields.length !== header.length) throw new DiscusError("usage", where, `has ${fields.length} fields, the header ${header.length}`, "Quote fields that hold commas");
    const get = (c: (typeof COLUMNS)[number]) => fields[header.indexOf(c)] ?? "";
    return {
      name: get("name"),
      mac: get("mac"),
      diskRule: get("disk") === "" ? null : get("disk"),
      image: get("image") === "" ? null : get("image"),
      tags: get("tags").split(/\s+/).filter((t) => t !== ""),
      power: parsePowerText(get("power"), where, { bmc: false }),
    };
  });
}
