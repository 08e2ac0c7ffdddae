// The DHCP set-ups docs/NETBOOT.md tells admins to use, read from the document itself, so the
// tests run exactly what a new admin would copy. A block is the fenced block that follows a
// `<!-- tested: NAME -->` line. `forLab` replaces the document's example interface, addresses
// and paths with a test's own; nothing else changes.
import { readFileSync } from "node:fs";
import { join } from "node:path";

const DOC = join(import.meta.dir, "../../docs/NETBOOT.md");
const MARK = /<!-- tested: ([a-z0-9-]+) -->\n```[a-z]*\n([\s\S]*?)```/g;
/** The example values the document uses. */
export const DOC_IFACE = "eth1";
export const DOC_SUBNET = "192.0.2";
export const DOC_TFTP_ROOT = "/srv/tftp";
export const DOC_ETC = "/etc/discus";
export const DOC_MAC = "52:54:00:d1:5c:01";

/** Every tested block of docs/NETBOOT.md by name. Pure given the file. */
export function documentedBlocks(text = readFileSync(DOC, "utf8")): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(MARK)) {
    if (out.has(m[1]!)) throw new Error(`docs/NETBOOT.md: two blocks are marked tested: ${m[1]}`);
    out.set(m[1]!, m[2]!);
  }
  return out;
}

export function documentedBlock(name: string): string {
  const block = documentedBlocks().get(name);
  if (block === undefined) throw new Error(`docs/NETBOOT.md has no block marked <!-- tested: ${name} -->`);
  return block;
}

export interface LabPlaces {
  iface: string;
  /** The lab's first three octets, e.g. 198.18.7 (the server is .1). */
  subnet: string;
  tftpRoot: string;
  etc: string;
  mac?: string;
}

/** The block with the document's example names replaced by the lab's. Pure. */
export function forLab(block: string, p: LabPlaces): string {
  let text = block
    .replace(new RegExp(`^interface=${DOC_IFACE}$`, "m"), `interface=${p.iface}`)
    .replaceAll(`${DOC_SUBNET}.`, `${p.subnet}.`)
    .replaceAll(DOC_TFTP_ROOT, p.tftpRoot)
    .replaceAll(DOC_ETC, p.etc);
  if (p.mac !== undefined) text = text.replaceAll(DOC_MAC, p.mac);
  return text;
}

/** The four lines docs/NETBOOT.md says the tests add to dnsmasq's config: a test folder, a namespace. */
export function testLines(leaseFile: string): string {
  return `dhcp-leasefile=${leaseFile}\npid-file=\nbind-interfaces\nlog-dhcp\n`;
}
