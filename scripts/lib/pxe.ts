// A PXE server on a netlab LAN: dnsmasq (DHCP and TFTP) and busybox httpd in the server's
// namespace, serving initramfs/pxe/boot.ipxe, dist/vmlinuz and dist/initramfs.img. Machines
// listed in `reload` get the discus DHCP option (224) carrying their settings; others get none,
// so their iPXE exits to the local disk. Shared by the netboot test and scripts/demo-netboot.
// dnsmasq runs the configuration docs/NETBOOT.md gives admins, read from the document.
// Chain mode (`chainTo`, for `discus server`): dnsmasq is configured once, with no per-node lines,
// to give iPXE chain.ipxe over TFTP, which chains to the daemon's boot.ipxe with the node's MAC;
// the daemon decides and serves the kernel and initramfs itself, so no httpd runs here.
// Secure Boot (`secureBoot`, chain mode too): UEFI clients get shim and Debian's signed GRUB over
// TFTP instead of iPXE, installed by the document's own commands, and the document's static
// grub.cfg, which sources the daemon's per-MAC GRUB answer.
import { $ } from "bun";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Lab } from "./netlab.ts";
import { DOC_MAC, documentedBlock, forLab, testLines, type LabPlaces } from "./dhcp-docs.ts";
import { drain } from "./drain.ts";
import { GRUB_INITRAMFS_PATH, GRUB_KERNEL_PATH } from "../../src/daemon/boot-script.ts";

export const PXE_HTTP_PORT = 8080;
/** Where docs/NETBOOT.md's grub.cfg asks `discus server --tftp` for a node's GRUB answer. */
export const GRUB_TFTP_PORT = 6969;
const ROOT = join(import.meta.dir, "../..");

export interface PxeOptions {
  /** Folder for the served files and dnsmasq's lease file. */
  dir: string;
  /** Site-wide kernel arguments put into boot.ipxe (e.g. discus.group=..., discus.key=...). */
  siteArgs: string;
  /** MAC address -> the discus settings its DHCP answer carries (option 224). Empty in chain mode. */
  reload: Map<string, string>;
  /** Chain mode: the daemon's base URL, e.g. http://198.18.0.1:8080; siteArgs are then unused. */
  chainTo?: string;
  /** Chain mode only: UEFI PXE gets shim -> GRUB (docs/NETBOOT.md, Secure Boot). */
  secureBoot?: SecureBootFiles;
}

export interface SecureBootFiles {
  /** Served as grubx64.efi instead of Debian's signed grubnetx64 (a test's tampered copy). */
  grubEfi?: string;
  /** Served as the kernel instead of dist/vmlinuz (a test's tampered copy). */
  kernel?: string;
}

export interface PxeServer {
  /** dnsmasq's and httpd's output so far. */
  log(): string;
  /** The addresses dnsmasq leased, by MAC. */
  leases(): Map<string, string>;
  stop(): Promise<void>;
}

export function bootScript(siteArgs: string): string {
  return readFileSync(join(ROOT, "initramfs/pxe/boot.ipxe"), "utf8").replaceAll("@SITE@", siteArgs).replaceAll("@HTTP_PORT@", String(PXE_HTTP_PORT));
}

/** Where the document's example names go in a PXE server's folder. */
function places(lab: Lab, o: PxeOptions): LabPlaces {
  return { iface: lab.server.iface, subnet: lab.server.address.replace(/\.\d+$/, ""), tftpRoot: join(o.dir, "tftp"), etc: join(o.dir, "etc") };
}

/** chain.ipxe exactly as docs/NETBOOT.md gives it; iPXE expands ${net0/mac} itself. */
export function chainScript(lab: Lab, o: PxeOptions): string {
  const script = forLab(documentedBlock("chain-ipxe"), places(lab, o));
  if (!script.includes(`chain ${o.chainTo}/boot.ipxe?mac=`)) throw new Error(`pxe: the documented chain.ipxe does not name ${o.chainTo}; run the daemon on ${lab.server.address}:8080`);
  return script;
}

/**
 * dnsmasq's configuration as docs/NETBOOT.md gives it (chain mode, Secure Boot, or option 224 per
 * node), plus the four lines the document says tests add for a test folder and a namespace.
 */
export function dnsmasqConfig(lab: Lab, o: PxeOptions): string {
  const block = o.chainTo === undefined ? "dnsmasq-main" : o.secureBoot !== undefined ? "dnsmasq-secureboot" : "dnsmasq-chain";
  return forLab(documentedBlock(block), places(lab, o)) + testLines(join(o.dir, "leases"));
}

/** shim, GRUB and grub.cfg into the TFTP root by the document's commands (its apt-get left out: scripts/setup installs). */
async function installSecureBoot(lab: Lab, o: PxeOptions, sb: SecureBootFiles): Promise<void> {
  const p = places(lab, o);
  const install = forLab(documentedBlock("install-shim"), p).split("\n").filter((l) => !l.startsWith("apt-get "));
  await $`sh -euc ${install.join("\n")}`.quiet();
  // The kernel and initramfs where the daemon's GRUB answer loads them (GRUB_KERNEL_PATH...).
  copyFileSync(sb.kernel ?? join(ROOT, "dist/vmlinuz"), join(p.tftpRoot, GRUB_KERNEL_PATH));
  copyFileSync(join(ROOT, "dist/initramfs.img"), join(p.tftpRoot, GRUB_INITRAMFS_PATH));
  const cfg = forLab(documentedBlock("grub-cfg"), p);
  if (!cfg.includes(`(tftp,${lab.server.address}:${GRUB_TFTP_PORT})/boot.grub?mac=`)) throw new Error(`pxe: the documented grub.cfg does not name ${lab.server.address}:${GRUB_TFTP_PORT}; run the daemon with --tftp there`);
  writeFileSync(join(p.tftpRoot, "grub", "grub.cfg"), cfg);
  if (sb.grubEfi !== undefined) copyFileSync(sb.grubEfi, join(p.tftpRoot, "grubx64.efi"));
}

/** The per-node file of the option-224 way: the documented pair of lines for each node. */
export function reloadConfig(o: PxeOptions): string {
  const pair = documentedBlock("dnsmasq-reload");
  const documentedSettings = /,224,"([^"]*)"/.exec(pair)![1]!;
  let n = 0;
  let out = "";
  for (const [mac, settings] of o.reload) {
    if (settings.includes('"')) throw new Error(`pxe: settings for ${mac} hold a quote`);
    n++;
    out += pair.replaceAll(DOC_MAC, mac).replaceAll("reload1", `reload${n}`).replace(documentedSettings, settings);
  }
  return out;
}

export async function startPxeServer(lab: Lab, o: PxeOptions): Promise<PxeServer> {
  if (o.chainTo !== undefined && o.reload.size > 0) throw new Error("pxe: chain mode has no per-node DHCP lines; the daemon decides");
  if (o.secureBoot !== undefined && o.chainTo === undefined) throw new Error("pxe: the Secure Boot path needs the daemon (chainTo)");
  const http = join(o.dir, "http");
  const tftp = join(o.dir, "tftp");
  mkdirSync(tftp, { recursive: true });
  mkdirSync(join(o.dir, "etc"), { recursive: true });
  writeFileSync(join(o.dir, "etc", "reload.conf"), reloadConfig(o));
  // dnsmasq serves TFTP as an unprivileged user, as the document says: the way down must be open.
  chmodSync(dirname(o.dir), 0o711);
  chmodSync(o.dir, 0o755);
  if (o.chainTo === undefined) {
    mkdirSync(http, { recursive: true });
    copyFileSync(join(ROOT, "dist/vmlinuz"), join(http, "vmlinuz"));
    copyFileSync(join(ROOT, "dist/initramfs.img"), join(http, "initramfs.img"));
    writeFileSync(join(tftp, "boot.ipxe"), bootScript(o.siteArgs));
  } else writeFileSync(join(tftp, "chain.ipxe"), chainScript(lab, o));
  if (o.secureBoot !== undefined) await installSecureBoot(lab, o, o.secureBoot);
  writeFileSync(join(o.dir, "leases"), "");
  writeFileSync(join(o.dir, "dnsmasq.conf"), dnsmasqConfig(lab, o));
  const procs = [lab.spawn(lab.server, ["dnsmasq", "--no-daemon", `--conf-file=${join(o.dir, "dnsmasq.conf")}`])];
  if (o.chainTo === undefined) procs.push(lab.spawn(lab.server, ["busybox", "httpd", "-f", "-vv", "-p", `${lab.server.address}:${PXE_HTTP_PORT}`, "-h", http]));
  const out = drain(procs);
  // dnsmasq logs its readiness; give both a moment and fail early if either died.
  await Bun.sleep(300);
  if (out.exited()) throw new Error(`pxe: a server exited at start:\n${out.text()}`);
  return {
    log: out.text,
    leases() {
      const byMac = new Map<string, string>();
      for (const line of readFileSync(join(o.dir, "leases"), "utf8").split("\n")) {
        const f = line.split(" ");
        if (f.length >= 3) byMac.set(f[1]!, f[2]!);
      }
      return byMac;
    },
    stop: () => out.stop(),
  };
}
