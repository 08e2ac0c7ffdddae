// The scripts the daemon answers a network-booting node with: iPXE (GET /boot.ipxe?mac=...) or,
// on the Secure Boot path (shim -> Debian's signed GRUB), GRUB (GET /boot.grub?mac=...). DHCP is
// configured once to chain to that URL; what a node boots is decided by the daemon, from the
// database, as Emulab's bootinfo does: the agent with every setting on its kernel command line, or
// an `exit` that hands the machine back to its firmware's next boot device (the local disk). Pure.
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

/** Which boot loader asked: the same decision is written in its language. */
export type BootLoader = "ipxe" | "grub";

/** What the console shows of a reason, never interpreted: no `'`, which would end GRUB's quoted word. */
function shownReason(reason: string): string {
  assert(!/[\r\n]/.test(reason), "one-line reason");
  return reason.replace(/[^A-Za-z0-9 .,:()/_-]/g, "?");
}

export function exitScript(reason: string, loader: BootLoader = "ipxe"): string {
  if (loader === "grub") return grubExitScript(shownReason(reason));
  assert(!/[\r\n]/.test(reason), "one-line reason");
  return `#!ipxe\necho discus: ${reason.replace(/[^A-Za-z0-9 .,:()'/_-]/g, "?")}\nexit\n`;
}

/** The agent's kernel command line words, in the order both loaders pass them. */
function agentWords(b: AgentBoot): string[] {
  const words: string[] = [`discus.action=${b.action}`, `discus.server=${b.baseUrl}`, `discus.token=${b.token}`, `discus.mac=${b.mac}`];
  if (b.group !== null) words.push(`discus.group=${b.group}`);
  if (b.port !== null) words.push(`discus.port=${b.port}`);
  if (b.imageId !== null) words.push(`discus.image=${b.imageId}`);
  if (b.keyHex !== null) words.push(`discus.key=${b.keyHex}`);
  if ((b.authHex ?? null) !== null) words.push(`discus.auth=${b.authHex}`);
  if ((b.imageName ?? null) !== null) words.push(`discus.http=${b.baseUrl}/images/${b.imageName}.dsc`);
  for (const w of words) assert(SAFE_WORD.test(w), `boot word ${w.split("=")[0]} is safe`);
  if (b.diskRule !== null) assert(SAFE_RULE.test(b.diskRule) && !b.diskRule.includes('"'), "disk rule is safe to quote");
  return words;
}

/** The last console= is /dev/console, where /init and the agent write: the serial line, as in boot.ipxe. */
const CONSOLE_WORDS = "console=tty0 console=ttyS0,115200";

export function agentScript(b: AgentBoot, loader: BootLoader = "ipxe"): string {
  if (loader === "grub") return grubAgentScript(b);
  const words = agentWords(b);
  if (b.diskRule !== null) words.push(`"discus.disk=${b.diskRule}"`);
  return [
    "#!ipxe",
    `echo discus: ${b.action} for ${b.mac}`,
    `kernel ${b.baseUrl}/boot/vmlinuz initrd=initramfs ${CONSOLE_WORDS} ${words.join(" ")}`,
    `initrd --name initramfs ${b.baseUrl}/boot/initramfs`,
    "boot",
    "",
  ].join("\n");
}

// ---- GRUB (the Secure Boot path) -------------------------------------------------------------

/**
 * Where GRUB finds the kernel and initramfs: on the TFTP server it was itself loaded from (its
 * `root`), beside shim and GRUB (docs/NETBOOT.md). Debian's signed network GRUB speaks TFTP only.
 */
export const GRUB_KERNEL_PATH = "/discus/vmlinuz";
export const GRUB_INITRAMFS_PATH = "/discus/initramfs";

/**
 * Loaders GRUB tries on the local disks, in order: the removable-media path first (what UEFI
 * firmware boots from a disk with no boot entry of its own; Windows and most distributions install
 * it), then the shims of common distributions and Windows Boot Manager. Under Secure Boot shim
 * checks whichever is chained. GRUB's search finds the first disk holding the file.
 */
export const GRUB_LOCAL_LOADERS = ["/EFI/BOOT/BOOTX64.EFI", "/EFI/debian/shimx64.efi", "/EFI/ubuntu/shimx64.efi", "/EFI/redhat/shimx64.efi", "/EFI/Microsoft/Boot/bootmgfw.efi"] as const;

/**
 * The local disk, in GRUB's words: chain to the first loader found. Only without one, `exit`:
 * GRUB exits with EFI_SUCCESS, which OVMF answers with its boot menu, not with its next boot
 * option (tested), so a bare `exit` would leave the machine waiting at the menu.
 */
export const GRUB_LOCAL_DISK = [
  ...GRUB_LOCAL_LOADERS.map((p) => `if search --no-floppy --file --set=root ${p}; then chainloader ${p}; boot; fi`),
  "exit",
].join("\n");

/** The reason on the console, then the local disk. */
function grubExitScript(shown: string): string {
  return `echo 'discus: ${shown}'\n${GRUB_LOCAL_DISK}\n`;
}

/**
 * The agent through GRUB: shim's verifier checks the kernel's signature inside `linux`, so a
 * kernel it refuses ends here, at the local disk, as boot.ipxe's `goto failed` does.
 * Every word is single-quoted: GRUB then neither expands `$` nor globs `*` and `?` (the disk
 * rule's wildcards), and passes a rule with spaces on as one quoted kernel word.
 */
function grubAgentScript(b: AgentBoot): string {
  const words = agentWords(b);
  if (b.diskRule !== null) words.push(`discus.disk=${b.diskRule}`);
  const quoted = [...CONSOLE_WORDS.split(" "), ...words].map((w) => `'${w}'`).join(" ");
  return [
    `echo 'discus: ${b.action} for ${b.mac}'`,
    `if linux ${GRUB_KERNEL_PATH} ${quoted}; then`,
    `  if initrd ${GRUB_INITRAMFS_PATH}; then boot; fi`,
    "fi",
    "echo 'discus: could not load the netboot kernel or initramfs (see above): booting the local disk'",
    GRUB_LOCAL_DISK,
    "",
  ].join("\n");
}
