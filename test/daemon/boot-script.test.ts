// The daemon's boot answers in GRUB's words (the Secure Boot path) carry exactly what the iPXE
// ones carry, and the TFTP face GRUB asks them from (discus server --tftp) speaks real TFTP:
// busybox's tftp client fetches them, with and without the blksize option.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { resolveSettings } from "../../src/agent/settings.ts";
import { agentScript, exitScript, GRUB_INITRAMFS_PATH, GRUB_KERNEL_PATH, GRUB_LOCAL_DISK, GRUB_LOCAL_LOADERS, type AgentBoot } from "../../src/daemon/boot-script.ts";
import { grubTftpAnswer } from "../../src/http/boot-files.ts";
import { ackedBlock, dataPacket, negotiate, parseReadRequest, startTftp, type TftpServer } from "../../src/http/tftp-boot.ts";
import { tmpDir } from "../helpers.ts";


const BOOT: AgentBoot = {
  baseUrl: "http://198.18.0.1:8080",
  action: "load",
  group: "239.192.0.7",
  port: 4520,
  imageId: "ab".repeat(16),
  diskRule: "model:Samsung* SSD?,size:480G",
  keyHex: "cd".repeat(32),
  token: "t0K-en_".repeat(6),
  mac: "52:54:00:aa:13:01",
  authHex: "ef".repeat(32),
  imageName: "lab-os",
};

/** What GRUB's `linux` hands the kernel: its quotes removed, a word with a space quoted again. */
function grubCommandLine(linuxLine: string): string {
  const words = [...linuxLine.matchAll(/'([^']*)'/g)].map((m) => m[1]!);
  return words.map((w) => (w.includes(" ") ? `"${w}"` : w)).join(" ");
}

describe("GRUB boot answers", () => {
  test("the agent gets the same settings through GRUB as through iPXE", () => {
    const grub = agentScript(BOOT, "grub");
    const ipxeLine = agentScript(BOOT).split("\n").find((l) => l.startsWith("kernel "))!;
    const linuxLine = grub.split("\n").find((l) => l.startsWith("if linux "))!;
    expect(linuxLine.startsWith(`if linux ${GRUB_KERNEL_PATH} 'console=tty0' 'console=ttyS0,115200' `)).toBe(true);
    expect(grub).toContain(`if initrd ${GRUB_INITRAMFS_PATH}; then boot; fi`);
    const viaGrub = resolveSettings(grubCommandLine(linuxLine), null);
    expect(viaGrub).toEqual(resolveSettings(ipxeLine, null));
    expect(viaGrub.disk).toBe(BOOT.diskRule);
    // Nothing outside single quotes but the command, the path and GRUB's own keywords.
    expect(linuxLine.replace(/'[^']*'/g, "").replace(/\s+/g, " ")).toBe(`if linux ${GRUB_KERNEL_PATH} ; then`);
  });

  test("a kernel or initramfs GRUB cannot load ends at the local disk, never at a prompt", () => {
    const script = agentScript(BOOT, "grub");
    expect(script.endsWith(`booting the local disk'\n${GRUB_LOCAL_DISK}\n`)).toBe(true);
  });

  test("the local disk: each known loader is searched and chained in order, exit only after all", () => {
    const lines = GRUB_LOCAL_DISK.split("\n");
    expect(lines).toHaveLength(GRUB_LOCAL_LOADERS.length + 1);
    expect(lines[0]).toBe("if search --no-floppy --file --set=root /EFI/BOOT/BOOTX64.EFI; then chainloader /EFI/BOOT/BOOTX64.EFI; boot; fi");
    GRUB_LOCAL_LOADERS.forEach((p, i) => expect(lines[i]).toBe(`if search --no-floppy --file --set=root ${p}; then chainloader ${p}; boot; fi`));
    expect(lines.at(-1)).toBe("exit");
  });

  test("no reload: exit with the reason shown, quotes and newlines never reach GRUB", () => {
    expect(exitScript("no reload asked: booting the local disk", "grub")).toBe(`echo 'discus: no reload asked: booting the local disk'\n${GRUB_LOCAL_DISK}\n`);
    expect(exitScript("it's $(bad) `x`", "grub")).toBe(`echo 'discus: it?s ?(bad) ?x?'\n${GRUB_LOCAL_DISK}\n`);
    expect(() => exitScript("two\nlines", "grub")).toThrow();
    // The iPXE answer is unchanged.
    expect(exitScript("it's gone")).toBe("#!ipxe\necho discus: it's gone\nexit\n");
  });
});

describe("TFTP packets", () => {
  test("read requests with options; anything else is null", () => {
    const rrq = new Uint8Array([0, 1, ...Buffer.from("boot.grub?mac=52:54:00:aa:13:01\0octet\0blksize\x001024\0tsize\x000\0")]);
    const r = parseReadRequest(rrq)!;
    expect(r.file).toBe("boot.grub?mac=52:54:00:aa:13:01");
    expect(r.mode).toBe("octet");
    expect([...r.options]).toEqual([["blksize", "1024"], ["tsize", "0"]]);
    expect(parseReadRequest(new Uint8Array([0, 2, ...Buffer.from("x\0octet\0")]))).toBeNull();
    expect(parseReadRequest(new Uint8Array([0, 1, ...Buffer.from("x\0octet")]))).toBeNull();
    expect(parseReadRequest(new Uint8Array(600).fill(65, 2).fill(1, 1, 2))).toBeNull();
  });

  test("blksize is capped at one frame, tsize is the answer's size; blocks end short", () => {
    expect(negotiate(new Map([["blksize", "65464"], ["tsize", "0"]]), 700)).toEqual({ blockBytes: 1428, oack: [["blksize", "1428"], ["tsize", "700"]] });
    expect(negotiate(new Map([["blksize", "4"]]), 1)).toEqual({ blockBytes: 512, oack: [] });
    const file = new Uint8Array(1024).fill(7);
    expect(dataPacket(file, 2, 512).length).toBe(4 + 512);
    expect(dataPacket(file, 3, 512).length).toBe(4); // a multiple of the block: an empty last block
    expect(ackedBlock(new Uint8Array([0, 4, 1, 2]))).toBe(258);
    expect(ackedBlock(new Uint8Array([0, 3, 1, 2]))).toBeNull();
  });
});

describe("the TFTP face, fetched by busybox tftp", () => {
  const asked: string[] = [];
  let server: TftpServer;
  let dir = "";
  const answer = grubTftpAnswer({ bootScript: async (mac, baseUrl, loader) => (asked.push(`${mac} ${baseUrl} ${loader}`), agentScript({ ...BOOT, mac, baseUrl }, loader)) }, "http://127.0.0.1:8080");

  beforeAll(async () => {
    dir = await tmpDir();
    server = await startTftp("127.0.0.1", 0, answer, () => {});
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) await $`rm -rf ${dir}`.quiet().nothrow();
  });

  async function get(file: string, extra: string[] = []): Promise<{ code: number; text: string; err: string }> {
    const to = join(dir, "got");
    await $`rm -f ${to}`;
    const r = await $`busybox tftp -g -r ${file} -l ${to} ${extra} 127.0.0.1 ${server.port}`.quiet().nothrow();
    return { code: r.exitCode, text: r.exitCode === 0 ? readFileSync(to, "utf8") : "", err: r.stderr.toString() };
  }

  test("boot.grub?mac= answers the daemon's GRUB text for that MAC, in one or several blocks", async () => {
    const expected = agentScript({ ...BOOT, mac: "52:54:00:aa:13:02", baseUrl: "http://127.0.0.1:8080" }, "grub");
    expect(expected.length).toBeGreaterThan(512); // several default-size blocks
    expect((await get("boot.grub?mac=52:54:00:aa:13:02")).text).toBe(expected);
    expect((await get("/boot.grub?mac=52:54:00:aa:13:02", ["-b", "1024"])).text).toBe(expected);
    expect(asked).toEqual(["52:54:00:aa:13:02 http://127.0.0.1:8080 grub", "52:54:00:aa:13:02 http://127.0.0.1:8080 grub"]);
  });

  test("any other name is 'file not found', with what is served", async () => {
    const r = await get("grub.cfg");
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("answers only boot.grub?mac=MAC");
  });
});
