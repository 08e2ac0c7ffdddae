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

/**
 * A power setting as text: `none` (or empty), `command:PROGRAM`, and with `ipmi` allowed
 * `ipmi:HOST:USER:PASSWORD-FILE`. The CSV import leaves IPMI out: such nodes are added one by one,
 * naming their password file on the command line. `discus node add --power` takes all three.
 */
export function parsePowerText(text: string, where: string, o: { ipmi: boolean }): PowerSpec {
  if (text === "" || text === "none") return { driver: "none" };
  if (text.startsWith("command:") && text.length > 8) return { driver: "command", command: text.slice(8) };
  const m = o.ipmi ? /^ipmi:([^:]+):([^:]+):(.+)$/.exec(text) : null;
  if (m !== null) return { driver: "ipmi", host: m[1]!, user: m[2]!, passwordFile: m[3]! };
  if (o.ipmi) throw new DiscusError("usage", where, `"${text}" is not none, command:PROGRAM or ipmi:HOST:USER:PASSWORD-FILE`, "See `discus node add --help`");
  throw new DiscusError("usage", where, `power "${text}" is not none or command:PROGRAM`, "Add IPMI nodes with `discus node add --power ipmi:HOST:USER:PASSWORD-FILE`");
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
      power: parsePowerText(get("power"), where, { ipmi: false }),
    };
  });
}
