// Checks a node as the admin describes it before it reaches the database: a real MAC, a plain
// name and tags, a disk rule the agent will parse, an image in the catalog, a power setting that
// can work. Errors name the field and say what to write instead. Pure but for the password-file check.
import { statSync } from "node:fs";
import { parseDiskRule } from "../agent/disks.ts";
import { DiscusError } from "../util/errors.ts";
import type { NodeInput } from "./api-types.ts";
import { NAME_PATTERN, normalizeMac, type NodeRecord, type PowerSpec } from "./model.ts";

export const MAX_TAGS = 32;
export const MAX_DISK_RULE_CHARS = 512;
const MAX_HOST_CHARS = 253;

function usage(thing: string, why: string, action: string): DiscusError {
  return new DiscusError("usage", thing, why, action);
}

export function checkPower(p: PowerSpec, node: string): PowerSpec {
  if (p.driver === "none") return p;
  if (p.driver === "command") {
    if (p.command.length === 0 || p.command.length > 1024) throw usage(`power command of ${node}`, "is empty or too long", "Name a program: it runs as PROGRAM cycle NODE");
    return p;
  }
  const kind = p.driver === "ipmi" ? "IPMI" : "Redfish";
  if (!/^[A-Za-z0-9.:-]+$/.test(p.host) || p.host.length > MAX_HOST_CHARS) throw usage(`${kind} host of ${node}`, `"${p.host}" is not a host name or address`, "Give the BMC's address");
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(p.user)) throw usage(`${kind} user of ${node}`, `"${p.user}" is not a user name`, "Give the BMC user");
  let mode: number;
  try {
    mode = statSync(p.passwordFile).mode & 0o777;
  } catch {
    throw usage(`${kind} password file of ${node}`, `${p.passwordFile} cannot be read`, "Write the BMC password to a file only root can read (chmod 600)");
  }
  if ((mode & 0o077) !== 0) throw usage(`${kind} password file of ${node}`, `${p.passwordFile} is readable by others (mode ${mode.toString(8)})`, `chmod 600 ${p.passwordFile}`);
  if (p.driver === "redfish") checkRedfishTls(p, node);
  return p;
}

/** A Redfish node's system id and TLS choice: a CA file and "check nothing" contradict each other. */
function checkRedfishTls(p: Extract<PowerSpec, { driver: "redfish" }>, node: string): void {
  if (p.systemId !== null && !/^[A-Za-z0-9._~-]{1,128}$/.test(p.systemId)) throw usage(`Redfish systemId of ${node}`, `"${p.systemId}" is not a resource id`, "Give the Id of one of the BMC's /redfish/v1/Systems members");
  if (p.caFile !== null && !p.tlsVerify) throw usage(`Redfish TLS of ${node}`, "names a caFile and tlsVerify false", "Keep the caFile (the certificate is checked against it) or drop it");
  if (p.caFile !== null && !statSync(p.caFile, { throwIfNoEntry: false })?.isFile()) throw usage(`Redfish CA file of ${node}`, `${p.caFile} is not a readable file`, "Write the BMC's certificate (PEM) there");
}

/** The node record an admin's input makes, or a DiscusError naming the bad field. */
export function nodeFromInput(input: NodeInput, imageExists: (name: string) => boolean, old: NodeRecord | null): NodeRecord {
  const mac = normalizeMac(input.mac);
  if (mac === null) throw usage(`MAC "${input.mac}"`, "is not a MAC address", "Write it as aa:bb:cc:dd:ee:ff");
  const name = input.name.toLowerCase();
  if (!NAME_PATTERN.test(name)) throw usage(`node name "${input.name}"`, "is not 1-63 letters, digits, . _ - starting with a letter or digit", "Pick a plain name such as rack3-node07");
  if (input.tags.length > MAX_TAGS) throw usage(`tags of ${name}`, `are more than ${MAX_TAGS}`, "Use fewer tags");
  for (const t of input.tags) if (!NAME_PATTERN.test(t)) throw usage(`tag "${t}" of ${name}`, "is not a plain word", "Use letters, digits, . _ -");
  if (input.diskRule !== null) {
    if (input.diskRule.length > MAX_DISK_RULE_CHARS || /["\n]/.test(input.diskRule)) throw usage(`disk rule of ${name}`, "is too long or holds a quote or newline", "Use a rule such as serial:S3Z9NB0K");
    parseDiskRule(input.diskRule);
  }
  if (input.image !== null && !imageExists(input.image)) throw usage(`image "${input.image}" of ${name}`, "is not in the catalog", "See `discus image list`; images are the .dsc files of the images directory");
  return {
    mac,
    name,
    tags: [...new Set(input.tags)],
    diskRule: input.diskRule,
    image: input.image,
    power: checkPower(input.power, name),
    state: old === null || old.state === "new" ? "ready" : old.state,
    lastSeenMs: old?.lastSeenMs ?? null,
    hardware: old?.hardware ?? null,
  };
}
