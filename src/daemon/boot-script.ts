// The iPXE scripts the daemon answers a PXE-booting node with (GET /boot.ipxe?mac=...). DHCP is
// configured once to chain iPXE to that URL; what a node boots is decided here, from the database,
// as Emulab's bootinfo does: the agent with every setting on its kernel command line, or an `exit`
// that hands the machine back to its firmware's next boot device (the local disk). Pure.
import { assert } from "../util/assert.ts";

export interface AgentBoot {
  /** The daemon's URL as the node reached it, e.g. http://198.18.0.1:8080. */
  baseUrl: string;
  action: "load" | "inventory";
  /** The settings, as the agent reads them from the kernel command line (src/agent/settings.ts). */
  group: string | null;
  port: number | null;
  imageId: string | null;
  diskRule: string | null;
  /** Hex of the raw Ed25519 key images must be signed with; null: unsigned images accepted. */
  keyHex: string | null;
  /** The job's secret: the agent shows it to the daemon to read its plan and report. */
  token: string;
  /** Hex of the image's session key (authenticated control packets); null: an open session. */
  authHex?: string | null;
  /** The image's catalog name: the agent may load it over HTTP from BASEURL/images/NAME.dsc when multicast is silent. */
  imageName?: string | null;
  mac: string;
}

/** Only what cannot break out of an iPXE line or a kernel word: the rule is quoted by the agent's own splitter. */
const SAFE_WORD = /^[A-Za-z0-9:./_*?%+,=@-]*$/;
const SAFE_RULE = /^[A-Za-z0-9:./_*?%+,=@ -]*$/;

export function exitScript(reason: string): string {
  assert(!/[\r\n]/.test(reason), "one-line reason");
  return `#!ipxe\necho discus: ${reason.replace(/[^A-Za-z0-9 .,:()'/_-]/g, "?")}\nexit\n`;
}

export function agentScript(b: AgentBoot): string {
  const words: string[] = [`discus.action=${b.action}`, `discus.server=${b.baseUrl}`, `discus.token=${b.token}`, `discus.mac=${b.mac}`];
  if (b.group !== null) words.push(`discus.group=${b.group}`);
  if (b.port !== null) words.push(`discus.port=${b.port}`);
  if (b.imageId !== null) words.push(`discus.image=${b.imageId}`);
  if (b.keyHex !== null) words.push(`discus.key=${b.keyHex}`);
  if ((b.authHex ?? null) !== null) words.push(`discus.auth=${b.authHex}`);
  if ((b.imageName ?? null) !== null) words.push(`discus.http=${b.baseUrl}/images/${b.imageName}.dsc`);
  for (const w of words) assert(SAFE_WORD.test(w), `boot word ${w.split("=")[0]} is safe`);
  if (b.diskRule !== null) {
    assert(SAFE_RULE.test(b.diskRule) && !b.diskRule.includes('"'), "disk rule is safe to quote");
    words.push(`"discus.disk=${b.diskRule}"`);
  }
  return [
    "#!ipxe",
    `echo discus: ${b.action} for ${b.mac}`,
    // The last console= is /dev/console, where /init and the agent write: the serial line, as in boot.ipxe.
    `kernel ${b.baseUrl}/boot/vmlinuz initrd=initramfs console=tty0 console=ttyS0,115200 ${words.join(" ")}`,
    `initrd --name initramfs ${b.baseUrl}/boot/initramfs`,
    "boot",
    "",
  ].join("\n");
}
