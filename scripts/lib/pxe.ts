// A PXE server on a netlab LAN: dnsmasq (DHCP and TFTP) and busybox httpd in the server's
// namespace, serving initramfs/pxe/boot.ipxe, dist/vmlinuz and dist/initramfs.img. Machines
// listed in `reload` get the discus DHCP option (224) carrying their settings; others get none,
// so their iPXE exits to the local disk. Shared by the netboot test and scripts/demo-netboot.
// Chain mode (`chainTo`, for `discus server`): dnsmasq is configured once, with no per-node lines,
// to give iPXE chain.ipxe over TFTP, which chains to the daemon's boot.ipxe with the node's MAC;
// the daemon decides and serves the kernel and initramfs itself, so no httpd runs here.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Lab } from "./netlab.ts";
import { DHCP_OPTION } from "../../src/agent/agent.ts";

export const PXE_HTTP_PORT = 8080;
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

/** The two-line script iPXE gets over TFTP in chain mode; iPXE expands ${net0/mac} itself. */
export function chainScript(daemonUrl: string): string {
  return `#!ipxe\nchain ${daemonUrl}/boot.ipxe?mac=\${net0/mac}\n`;
}

export function dnsmasqConfig(lab: Lab, o: PxeOptions): string {
  const subnet = lab.server.address.replace(/\.\d+$/, "");
  const lines = [
    "port=0", // no DNS
    "user=root", // the lease file and TFTP root live in a test folder only root can write
    `interface=${lab.server.iface}`,
    "bind-interfaces",
    `dhcp-range=${subnet}.200,${subnet}.250,255.255.255.0,1h`,
    `dhcp-leasefile=${join(o.dir, "leases")}`,
    "enable-tftp",
    `tftp-root=${join(o.dir, "tftp")}`,
    // iPXE (QEMU's NIC ROM, or undionly.kpxe chained from a vendor PXE ROM) gets the script;
    // a plain PXE ROM gets iPXE first.
    "dhcp-userclass=set:ipxe,iPXE",
    `dhcp-boot=tag:ipxe,${o.chainTo === undefined ? "boot.ipxe" : "chain.ipxe"}`,
    "dhcp-boot=tag:!ipxe,undionly.kpxe",
    "log-dhcp",
  ];
  let n = 0;
  for (const [mac, settings] of o.reload) {
    const tag = `discus${n++}`;
    lines.push(`dhcp-host=${mac},set:${tag}`);
    // force: iPXE does not list 224 among the options it requests.
    lines.push(`dhcp-option-force=tag:${tag},${DHCP_OPTION},"${settings}"`);
  }
  return `${lines.join("\n")}\n`;
}

export async function startPxeServer(lab: Lab, o: PxeOptions): Promise<PxeServer> {
  if (o.chainTo !== undefined && o.reload.size > 0) throw new Error("pxe: chain mode has no per-node DHCP lines; the daemon decides");
  const http = join(o.dir, "http");
  const tftp = join(o.dir, "tftp");
  mkdirSync(tftp, { recursive: true });
  if (o.chainTo === undefined) {
    mkdirSync(http, { recursive: true });
    copyFileSync(join(ROOT, "dist/vmlinuz"), join(http, "vmlinuz"));
    copyFileSync(join(ROOT, "dist/initramfs.img"), join(http, "initramfs.img"));
    writeFileSync(join(tftp, "boot.ipxe"), bootScript(o.siteArgs));
  } else writeFileSync(join(tftp, "chain.ipxe"), chainScript(o.chainTo));
  writeFileSync(join(o.dir, "leases"), "");
  writeFileSync(join(o.dir, "dnsmasq.conf"), dnsmasqConfig(lab, o));
  const procs = [lab.spawn(lab.server, ["dnsmasq", "--no-daemon", `--conf-file=${join(o.dir, "dnsmasq.conf")}`, "--pid-file"])];
  if (o.chainTo === undefined) procs.push(lab.spawn(lab.server, ["busybox", "httpd", "-f", "-vv", "-p", `${lab.server.address}:${PXE_HTTP_PORT}`, "-h", http]));
  let text = "";
  const decoder = new TextDecoder();
  const readers = procs.flatMap((p) => [p.stdout, p.stderr]).map(async (s) => {
    for await (const chunk of s) text += decoder.decode(chunk);
  });
  // dnsmasq logs its readiness; give both a moment and fail early if either died.
  await Bun.sleep(300);
  for (const p of procs) if (p.exitCode !== null) throw new Error(`pxe: a server exited at start (${p.exitCode}):\n${text}`);
  return {
    log: () => text,
    leases() {
      const out = new Map<string, string>();
      for (const line of readFileSync(join(o.dir, "leases"), "utf8").split("\n")) {
        const f = line.split(" ");
        if (f.length >= 3) out.set(f[1]!, f[2]!);
      }
      return out;
    },
    async stop() {
      for (const p of procs) p.kill("SIGTERM");
      await Promise.all(procs.map((p) => p.exited));
      await Promise.allSettled(readers);
    },
  };
}
