// The DHCP set-ups docs/NETBOOT.md gives admins, run as written (scripts/lib/dhcp-docs.ts reads
// them from the document): dnsmasq and ISC dhcpd, with and without `discus server`, in a lab
// namespace. busybox udhcpc stands in for the three kinds of boot ROM: a BIOS PXE ROM, a UEFI ROM
// (client-arch 7) and iPXE (user class "iPXE"); like iPXE it does not ask for option 224, and it
// shows every option the server sent. Boot files are fetched back over TFTP and compared.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLab, destroyStaleLabs, type Host, type Lab } from "../../scripts/lib/netlab.ts";
import { documentedBlock, forLab, testLines, type LabPlaces } from "../../scripts/lib/dhcp-docs.ts";
import { drain } from "../../scripts/lib/drain.ts";
import { FIXTURE_TIMEOUT_MS, tmpDir } from "../helpers.ts";

const SETTINGS = "action=load disk=serial:S3Z9NB0K";
const IPXE_USER_CLASS = ["-x", `0x4d:${Buffer.from("iPXE").toString("hex")}`];
const UEFI_ARCH = ["-x", "0x5d:0007"];
const SERVER_START_MS = 500;
const TEST_TIMEOUT_MS = 60_000;

let lab: Lab;
let dir = "";
let places: LabPlaces;
const macs: string[] = [];

/** What one DHCP exchange gave a client: udhcpc's environment for the bound lease. */
async function probe(host: Host, extra: string[] = []): Promise<Map<string, string>> {
  const out = join(dir, `lease-${host.name}`);
  await $`rm -f ${out}`;
  const r = await lab.exec(host, ["env", `LEASE_OUT=${out}`, "busybox", "udhcpc", "-i", host.iface, "-f", "-q", "-n", "-t", "4", "-T", "1", "-s", join(dir, "probe.sh"), ...extra]);
  expect(r.exitCode, `udhcpc on ${host.name}: ${r.stderr}`).toBe(0);
  const env = new Map<string, string>();
  for (const line of readFileSync(out, "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) env.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return env;
}

const opt224 = (env: Map<string, string>) => {
  const hex = env.get("opt224");
  return hex === undefined ? null : Buffer.from(hex, "hex").toString();
};

async function tftpGet(host: Host, file: string): Promise<Buffer> {
  const to = join(dir, `got-${host.name}-${file}`);
  const r = await lab.exec(host, ["busybox", "tftp", "-g", "-r", file, "-l", to, lab.server.address]);
  expect(r.exitCode, `tftp ${file}: ${r.stderr}`).toBe(0);
  return readFileSync(to);
}

interface Running { stop(): Promise<void>; log(): string; hup(): void }

/** A server in the lab's server namespace; its output so far is log(). */
async function run(argv: string[]): Promise<Running> {
  const proc = lab.spawn(lab.server, argv);
  const out = drain([proc]);
  await Bun.sleep(SERVER_START_MS);
  expect(proc.exitCode, `${argv[0]} exited at start:\n${out.text()}`).toBeNull();
  return { hup: () => proc.kill("SIGHUP"), stop: () => out.stop(), log: out.text };
}

async function startDnsmasq(config: string): Promise<Running> {
  // The four lines the document says the tests add (a test folder, a namespace).
  const conf = join(dir, "dnsmasq.conf");
  writeFileSync(conf, config + testLines(join(dir, "dnsmasq.leases")));
  return run(["dnsmasq", "--no-daemon", `--conf-file=${conf}`]);
}

async function startDhcpd(config: string): Promise<Running> {
  const conf = join(dir, "dhcpd.conf");
  const leases = join(dir, "dhcpd.leases");
  writeFileSync(conf, config);
  writeFileSync(leases, "");
  return run(["dhcpd", "-4", "-f", "-d", "-cf", conf, "-lf", leases, "-pf", join(dir, "dhcpd.pid"), lab.server.iface]);
}

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  chmodSync(dir, 0o755); // the document's TFTP root must be world-readable all the way down
  lab = await createLab({ clients: 2 });
  for (const c of lab.clients) {
    const r = await lab.exec(c, ["cat", `/sys/class/net/${c.iface}/address`]);
    macs.push(r.stdout.trim());
  }
  places = { iface: lab.server.iface, subnet: lab.server.address.replace(/\.\d+$/, ""), tftpRoot: join(dir, "tftp"), etc: join(dir, "etc"), mac: macs[0]! };
  mkdirSync(places.etc);
  writeFileSync(join(dir, "probe.sh"), '#!/bin/sh\n[ "$1" = bound ] && env > "$LEASE_OUT"\nexit 0\n', { mode: 0o755 });
  // The install block, as written, but for its apt-get line (scripts/setup installs ipxe).
  const install = forLab(documentedBlock("install-ipxe"), places).split("\n").filter((l) => !l.startsWith("apt-get "));
  expect((await $`dpkg-query -W -f=\${Status} ipxe`.text())).toBe("install ok installed");
  await $`sh -euc ${install.join("\n")}`;
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  await lab?.destroy();
  if (dir) await $`rm -rf ${dir}`.quiet().nothrow();
});

describe("dnsmasq without the daemon: option 224 per node", () => {
  test("a listed node gets its settings; others do not; ROMs get the right boot file; removal needs a restart, not HUP", async () => {
    writeFileSync(join(places.tftpRoot, "boot.ipxe"), "#!ipxe\nexit\n");
    const reloadConf = join(places.etc, "reload.conf");
    writeFileSync(reloadConf, forLab(documentedBlock("dnsmasq-reload"), places));
    let dns = await startDnsmasq(forLab(documentedBlock("dnsmasq-main"), places));
    try {
      const [a, b] = lab.clients as [Host, Host];
      const ipxeA = await probe(a, IPXE_USER_CLASS);
      expect(opt224(ipxeA)).toBe(SETTINGS);
      expect(ipxeA.get("boot_file")).toBe("boot.ipxe");
      expect(opt224(await probe(b, IPXE_USER_CLASS))).toBeNull();

      const bios = await probe(a);
      expect(bios.get("boot_file")).toBe("undionly.kpxe");
      expect(bios.get("siaddr")).toBe(lab.server.address);
      expect(Buffer.compare(await tftpGet(a, "undionly.kpxe"), readFileSync("/usr/lib/ipxe/undionly.kpxe"))).toBe(0);
      expect((await probe(b, UEFI_ARCH)).get("boot_file")).toBe("ipxe.efi");
      expect(Buffer.compare(await tftpGet(b, "ipxe.efi"), readFileSync("/usr/lib/ipxe/ipxe.efi"))).toBe(0);

      // The node is done: its lines go. SIGHUP does not re-read the configuration...
      writeFileSync(reloadConf, "");
      dns.hup();
      await Bun.sleep(SERVER_START_MS);
      expect(opt224(await probe(a, IPXE_USER_CLASS)), "dnsmasq re-read its config on SIGHUP: the document's warning is wrong").toBe(SETTINGS);
      // ...a restart does.
      await dns.stop();
      dns = await startDnsmasq(forLab(documentedBlock("dnsmasq-main"), places));
      expect(opt224(await probe(a, IPXE_USER_CLASS))).toBeNull();
    } finally {
      await dns.stop();
    }
  }, TEST_TIMEOUT_MS);
});

describe("dnsmasq chaining to discus server", () => {
  test("iPXE gets chain.ipxe, which names the daemon with the node's MAC; no option 224 at all", async () => {
    const chain = forLab(documentedBlock("chain-ipxe"), places);
    expect(chain).toContain(`chain http://${lab.server.address}:8080/boot.ipxe?mac=\${net0/mac}`);
    writeFileSync(join(places.tftpRoot, "chain.ipxe"), chain);
    const dns = await startDnsmasq(forLab(documentedBlock("dnsmasq-chain"), places));
    try {
      const [a] = lab.clients as [Host];
      const ipxe = await probe(a, IPXE_USER_CLASS);
      expect(ipxe.get("boot_file")).toBe("chain.ipxe");
      expect(opt224(ipxe)).toBeNull();
      expect((await tftpGet(a, "chain.ipxe")).toString()).toBe(chain);
      expect((await probe(a)).get("boot_file")).toBe("undionly.kpxe");
      expect((await probe(a, UEFI_ARCH)).get("boot_file")).toBe("ipxe.efi");
    } finally {
      await dns.stop();
    }
  }, TEST_TIMEOUT_MS);
});

describe("dnsmasq for Secure Boot: UEFI PXE to shim, BIOS and iPXE as before", () => {
  test("client-arch 7 and 9 get shimx64.efi, which is Microsoft-signed shim; GRUB and grub.cfg beside it", async () => {
    const install = forLab(documentedBlock("install-shim"), places).split("\n").filter((l) => !l.startsWith("apt-get "));
    for (const p of ["shim-signed", "grub-efi-amd64-signed"]) expect(await $`dpkg-query -W -f=\${Status} ${p}`.text()).toBe("install ok installed");
    await $`sh -euc ${install.join("\n")}`;
    const grubCfg = forLab(documentedBlock("grub-cfg"), places);
    expect(grubCfg).toContain(`source "(tftp,${lab.server.address}:6969)/boot.grub?mac=\${net_default_mac}"`);
    writeFileSync(join(places.tftpRoot, "grub", "grub.cfg"), grubCfg);
    const dns = await startDnsmasq(forLab(documentedBlock("dnsmasq-secureboot"), places));
    try {
      const [a] = lab.clients as [Host];
      for (const arch of ["0007", "0009"]) expect((await probe(a, ["-x", `0x5d:${arch}`])).get("boot_file"), dns.log()).toBe("shimx64.efi");
      expect((await probe(a)).get("boot_file")).toBe("undionly.kpxe");
      expect((await probe(a, IPXE_USER_CLASS)).get("boot_file")).toBe("chain.ipxe");
      expect(Buffer.compare(await tftpGet(a, "shimx64.efi"), readFileSync("/usr/lib/shim/shimx64.efi.signed"))).toBe(0);
      expect(Buffer.compare(await tftpGet(a, "grubx64.efi"), readFileSync("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"))).toBe(0);
      expect((await $`sbverify --list ${join(places.tftpRoot, "shimx64.efi")}`.text())).toContain("Microsoft Windows UEFI Driver Publisher");
    } finally {
      await dns.stop();
    }
  }, TEST_TIMEOUT_MS);
});

describe("ISC dhcpd", () => {
  test("without the daemon: the host block sends 224 to iPXE, which never asks for it", async () => {
    const d = await startDhcpd(forLab(documentedBlock("dhcpd-main"), places));
    try {
      const [a, b] = lab.clients as [Host, Host];
      const ipxe = await probe(a, IPXE_USER_CLASS);
      expect(opt224(ipxe), d.log()).toBe(SETTINGS);
      expect(ipxe.get("boot_file")).toBe("boot.ipxe");
      expect(opt224(await probe(b, IPXE_USER_CLASS))).toBeNull();
      expect((await probe(b)).get("boot_file")).toBe("undionly.kpxe");
      expect((await probe(b, UEFI_ARCH)).get("boot_file")).toBe("ipxe.efi");
    } finally {
      await d.stop();
    }
  }, TEST_TIMEOUT_MS);

  test("chaining: iPXE gets chain.ipxe, the ROMs get iPXE", async () => {
    const d = await startDhcpd(forLab(documentedBlock("dhcpd-chain"), places));
    try {
      const [a] = lab.clients as [Host];
      const ipxe = await probe(a, IPXE_USER_CLASS);
      expect(ipxe.get("boot_file"), d.log()).toBe("chain.ipxe");
      expect(ipxe.get("siaddr")).toBe(lab.server.address);
      expect((await probe(a)).get("boot_file")).toBe("undionly.kpxe");
      expect((await probe(a, UEFI_ARCH)).get("boot_file")).toBe("ipxe.efi");
    } finally {
      await d.stop();
    }
  }, TEST_TIMEOUT_MS);

  test("Secure Boot: UEFI ROMs (arch 7 and 9) get shim, BIOS and iPXE as before", async () => {
    const d = await startDhcpd(forLab(documentedBlock("dhcpd-secureboot"), places));
    try {
      const [a] = lab.clients as [Host];
      for (const arch of ["0007", "0009"]) expect((await probe(a, ["-x", `0x5d:${arch}`])).get("boot_file"), d.log()).toBe("shimx64.efi");
      expect((await probe(a)).get("boot_file")).toBe("undionly.kpxe");
      expect((await probe(a, IPXE_USER_CLASS)).get("boot_file")).toBe("chain.ipxe");
    } finally {
      await d.stop();
    }
  }, TEST_TIMEOUT_MS);
});
