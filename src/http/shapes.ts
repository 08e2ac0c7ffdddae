// The shapes of the API's request bodies, each field typed and bounded. Validators throw
// SchemaError (src/util/schema.ts) naming the first bad field; bodies.ts turns that into a 400.
import type { AgentReport, NodeInput } from "../daemon/api-types.ts";
import type { Hardware, PowerSpec } from "../daemon/model.ts";
import { SchemaError, arrayOf, int, nullable, object, oneOf, type Validator } from "../util/schema.ts";

export const MAX_SELECTORS = 1000;
export const MAX_SELECTOR_CHARS = 128;
export const MAX_TAGS = 32;
export const MAX_TAG_CHARS = 64;
/** Node and image names (NAME_PATTERN allows 63; a little room so the daemon can say what is wrong). */
export const MAX_NAME_CHARS = 128;
/** A MAC in any common spelling: 17 characters, with room for spaces. */
export const MAX_MAC_CHARS = 32;
export const MAX_DISK_RULE_CHARS = 256;
export const MAX_HOST_CHARS = 255;
export const MAX_PATH_CHARS = 4096;
export const MAX_COMMAND_CHARS = 1024;
/** The agent's FAILED line: thing, cause, fix. */
export const MAX_REPORT_MESSAGE_CHARS = 2048;
export const MAX_HW_DISKS = 256;
export const MAX_HW_NICS = 64;
export const MAX_HW_TEXT_CHARS = 256;
/** 1 Tbit/s: above any NIC a node has. */
export const MAX_BYTES_PER_SECOND = 125_000_000_000;
export const MAX_NIC_SPEED_MBIT = 10_000_000;
export const MAX_CPU_CORES = 1_000_000;
export const MAX_BYTE_COUNT = Number.MAX_SAFE_INTEGER;

/** A string of at most `maxChars` characters (never beyond the schema's own bound). */
export function text(maxChars: number): Validator<string> {
  return (v, path) => {
    if (typeof v !== "string" || v.length > maxChars) throw new SchemaError(path, `a string of at most ${maxChars} characters`);
    return v;
  };
}

export const bool: Validator<boolean> = (v, path) => {
  if (typeof v !== "boolean") throw new SchemaError(path, "true or false");
  return v;
};

/** A finite number in [min, max]. */
export function num(min: number, max: number): Validator<number> {
  return (v, path) => {
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) throw new SchemaError(path, `a number in ${min}..${max}`);
    return v;
  };
}

function refuseUnknown(v: unknown, path: string, known: readonly string[]): void {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new SchemaError(path, "an object");
  const extra = Object.keys(v).find((k) => !known.includes(k));
  if (extra !== undefined) throw new SchemaError(path ? `${path}.${extra}` : extra, `absent (not a field here; fields: ${known.join(", ")})`);
}

/** Like schema's object(), but a field it does not know is an error: a misspelt field must not be ignored. */
export function exact<T extends object>(fields: { [K in keyof T]: Validator<T[K]> }): Validator<T> {
  const inner = object(fields);
  return (v, path) => {
    refuseUnknown(v, path, Object.keys(fields));
    return inner(v, path);
  };
}

/** Every field optional, none unknown (PATCH bodies). */
export function partial<T extends object>(fields: { [K in keyof T]: Validator<T[K]> }): Validator<Partial<T>> {
  return (v, path) => {
    refuseUnknown(v, path, Object.keys(fields));
    const input = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(fields)) {
      if (Object.hasOwn(input, key)) out[key] = fields[key as keyof T](input[key], path ? `${path}.${key}` : key);
    }
    return out as Partial<T>;
  };
}

const powerByDriver: Record<PowerSpec["driver"], Validator<PowerSpec>> = {
  none: exact<{ driver: "none" }>({ driver: oneOf(["none"] as const) }),
  ipmi: exact<{ driver: "ipmi"; host: string; user: string; passwordFile: string }>({
    driver: oneOf(["ipmi"] as const),
    host: text(MAX_HOST_CHARS),
    user: text(MAX_HW_TEXT_CHARS),
    passwordFile: text(MAX_PATH_CHARS),
  }),
  redfish: exact<Extract<PowerSpec, { driver: "redfish" }>>({
    driver: oneOf(["redfish"] as const),
    host: text(MAX_HOST_CHARS),
    user: text(MAX_HW_TEXT_CHARS),
    passwordFile: text(MAX_PATH_CHARS),
    systemId: nullable(text(MAX_HW_TEXT_CHARS)),
    caFile: nullable(text(MAX_PATH_CHARS)),
    tlsVerify: bool,
  }),
  command: exact<{ driver: "command"; command: string }>({ driver: oneOf(["command"] as const), command: text(MAX_COMMAND_CHARS) }),
};

export const powerSpec: Validator<PowerSpec> = (v, path) => {
  const driverPath = path ? `${path}.driver` : "driver";
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new SchemaError(path, "an object");
  const driver = oneOf(["none", "ipmi", "redfish", "command"] as const)((v as Record<string, unknown>).driver, driverPath);
  return powerByDriver[driver](v, path);
};

const nodeFields = {
  name: text(MAX_NAME_CHARS),
  tags: arrayOf(text(MAX_TAG_CHARS), MAX_TAGS),
  diskRule: nullable(text(MAX_DISK_RULE_CHARS)),
  image: nullable(text(MAX_NAME_CHARS)),
  power: powerSpec,
};

export const nodeInput: Validator<NodeInput> = exact<NodeInput>({ ...nodeFields, mac: text(MAX_MAC_CHARS) });
/** PATCH /api/nodes/:id: the MAC identifies the node and cannot change; `name` renames it. */
export const nodeChange: Validator<Partial<Omit<NodeInput, "mac">>> = partial<Omit<NodeInput, "mac">>(nodeFields);

const selectors = arrayOf(text(MAX_SELECTOR_CHARS), MAX_SELECTORS);
export const reloadBody = exact<{ selectors: string[]; image: string | null }>({ selectors, image: nullable(text(MAX_NAME_CHARS)) });
export const cancelBody = exact<{ selectors: string[] }>({ selectors });

export const agentReport: Validator<AgentReport> = exact<AgentReport>({
  state: oneOf(["loading", "written", "failed"] as const),
  percent: num(0, 100),
  bytesPerSecond: num(0, MAX_BYTES_PER_SECOND),
  message: text(MAX_REPORT_MESSAGE_CHARS),
});

type Disk = Hardware["disks"][number];
type Nic = Hardware["nics"][number];
const hwText = text(MAX_HW_TEXT_CHARS);

export const hardware: Validator<Hardware> = exact<Hardware>({
  disks: arrayOf(
    exact<Disk>({ path: hwText, model: hwText, serial: hwText, wwn: hwText, sizeBytes: int(0, MAX_BYTE_COUNT), removable: bool }),
    MAX_HW_DISKS,
  ),
  nics: arrayOf(exact<Nic>({ name: hwText, mac: text(MAX_MAC_CHARS), speedMbit: nullable(int(0, MAX_NIC_SPEED_MBIT)) }), MAX_HW_NICS),
  cpu: exact<Hardware["cpu"]>({ model: hwText, cores: int(1, MAX_CPU_CORES) }),
  memoryBytes: int(0, MAX_BYTE_COUNT),
});
