// Builds dist/initramfs.img (zstd cpio) and dist/vmlinuz: busybox, dist/discus, exactly the
// libraries `ldd` names, kexec, and the drivers of initramfs/modules.txt with their dependencies
// from the pinned Debian kernel (initramfs/kernel.pin). Prints what it holds and how big it is.
// Run through scripts/build-initramfs, which installs the tools and builds dist/discus first.
import { $ } from "bun";
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { VERSION } from "../src/version.ts";

const ROOT = join(import.meta.dir, "..");
const DIST = join(ROOT, "dist");
const CACHE = process.env.DISCUS_CACHE ?? "/var/cache/discus";
/** zstd level: 19 costs ~4x the time of 12 for a few percent; the kernel decompresses either fast. */
const ZSTD_LEVEL = Number(process.env.DISCUS_ZSTD_LEVEL ?? "19");
const BUSYBOX = "/bin/busybox";
const KEXEC = "/usr/sbin/kexec";

function fail(thing: string, why: string, action: string): never {
  process.stderr.write(`build-initramfs: ${thing}: ${why}. ${action}\n`);
  process.exit(1);
}

function readPin(): { package: string; version: string; sha256: string } {
  const pin = new Map<string, string>();
  for (const line of readFileSync(join(ROOT, "initramfs/kernel.pin"), "utf8").split("\n")) {
    const m = /^(\w+)=(\S+)$/.exec(line.trim());
    if (m) pin.set(m[1]!, m[2]!);
  }
  const get = (k: string) => pin.get(k) ?? fail("initramfs/kernel.pin", `has no ${k}=`, "Restore the file from git");
  return { package: get("package"), version: get("version"), sha256: get("sha256") };
}

/** Downloads (once), checks and unpacks the pinned kernel package; returns its unpacked root. */
async function kernelTree(pin: ReturnType<typeof readPin>): Promise<{ root: string; release: string }> {
  const dir = join(CACHE, "kernel", `${pin.package}_${pin.version}`);
  const deb = join(dir, `${pin.package}_${pin.version.replace(/:/g, "%3a")}_amd64.deb`);
  const root = join(dir, "root");
  mkdirSync(dir, { recursive: true });
  if (!existsSync(deb)) {
    const r = await $`apt-get download ${`${pin.package}=${pin.version}`}`.cwd(dir).nothrow().quiet();
    if (r.exitCode !== 0 || !existsSync(deb)) {
      fail(`${pin.package} ${pin.version}`, `apt-get download failed: ${r.stderr.toString().trim().split("\n").at(-1)}`, "Run `apt-get update`; if Debian has dropped this version, pin the current one in initramfs/kernel.pin (`apt-cache policy linux-image-amd64`)");
    }
  }
  const digest = new Bun.CryptoHasher("sha256").update(readFileSync(deb)).digest("hex");
  if (digest !== pin.sha256) fail(deb, `has sha256 ${digest}, the pin says ${pin.sha256}`, "Delete the file and build again; if it persists, the archive changed: re-pin deliberately");
  const modulesDir = join(root, "lib/modules");
  if (!existsSync(join(root, ".unpacked"))) {
    rmSync(root, { recursive: true, force: true });
    await $`dpkg-deb -x ${deb} ${root}`.quiet();
    const release = readdirSync(modulesDir)[0]!;
    await $`depmod -b ${root} ${release}`.quiet();
    writeFileSync(join(root, ".unpacked"), "");
  }
  return { root, release: readdirSync(modulesDir)[0]! };
}

/** Module names from modules.txt plus their dependencies, dependencies first. Pure over its inputs. */
export function moduleLoadOrder(wanted: string[], depLines: string): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of depLines.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const path = line.slice(0, colon);
    deps.set(path, line.slice(colon + 1).trim().split(/\s+/).filter((d) => d.length > 0));
    byName.set(basename(path).replace(/\.ko(\.\w+)?$/, "").replace(/-/g, "_"), path);
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (path: string, depth: number) => {
    if (depth > 64) fail(path, "has a dependency chain over 64 deep", "Check modules.dep");
    if (seen.has(path)) return;
    seen.add(path);
    for (const d of deps.get(path) ?? []) visit(d, depth + 1);
    order.push(path);
  };
  for (const name of wanted) {
    const path = byName.get(name.replace(/-/g, "_"));
    if (path === undefined) fail(`module ${name}`, "is not in the pinned kernel (built in, or misspelt)", "Remove it from initramfs/modules.txt");
    visit(path, 0);
  }
  return order;
}

/** Shared libraries a dynamic executable needs, as ldd names them (absolute paths). */
async function lddLibraries(exe: string): Promise<string[]> {
  const out = (await $`ldd ${exe}`.quiet()).stdout.toString();
  const libs: string[] = [];
  for (const line of out.split("\n")) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

/**
 * Libraries discus opens itself through bun:ffi, which ldd cannot see (src/image/zstd-native.ts),
 * at the paths the host's loader cache gives: the guest's loader searches the same system folders.
 */
const FFI_LIBRARIES = ["libzstd.so.1"];

async function ffiLibraries(): Promise<string[]> {
  const cache = (await $`ldconfig -p`.quiet()).stdout.toString();
  return FFI_LIBRARIES.map((name) => {
    const m = new RegExp(`^\\s*${name.replaceAll(".", "\\.")} \\(libc6,x86-64\\) => (\\S+)$`, "m").exec(cache);
    if (!m) fail(name, "is not in the loader cache (ldconfig -p)", "Install it: apt-get install libzstd1");
    return m![1]!;
  });
}

function copyInto(stage: string, src: string, dest = src, mode?: number): number {
  const to = join(stage, dest);
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(realpathSync(src), to);
  if (mode !== undefined) chmodSync(to, mode);
  return statSync(to).size;
}

async function main(): Promise<void> {
  const startMs = performance.now();
  const pin = readPin();
  const kernel = await kernelTree(pin);
  const discus = join(DIST, "discus");
  if (!existsSync(discus)) fail(discus, "is missing", "Run scripts/build first");
  for (const tool of [BUSYBOX, KEXEC]) if (!existsSync(tool)) fail(tool, "is missing", "Run scripts/setup (busybox-static, kexec-tools)");

  const stage = join(DIST, "initramfs.root");
  rmSync(stage, { recursive: true, force: true });
  for (const d of ["bin", "sbin", "dev", "proc", "sys", "run", "tmp", "etc", "mnt", "lib/modules"]) mkdirSync(join(stage, d), { recursive: true });
  const sizes: Record<string, number> = {};

  sizes.busybox = copyInto(stage, BUSYBOX, "/bin/busybox", 0o755);
  const applets = (await $`${BUSYBOX} --list`.quiet()).stdout.toString().split("\n").filter((a) => /^[\w.[-]+$/.test(a));
  for (const a of applets) if (!existsSync(join(stage, "bin", a))) symlinkSync("busybox", join(stage, "bin", a));
  sizes.discus = copyInto(stage, discus, "/bin/discus", 0o755);
  sizes.kexec = copyInto(stage, KEXEC, "/sbin/kexec", 0o755);
  // Exactly the libraries ldd names, at the paths it names: nothing else of the host's.
  const libs = [...new Set([...(await lddLibraries(discus)), ...(await lddLibraries(KEXEC)), ...(await ffiLibraries())])].sort();
  sizes.libraries = libs.reduce((sum, lib) => sum + copyInto(stage, lib), 0);

  const wanted = readFileSync(join(ROOT, "initramfs/modules.txt"), "utf8").split("\n").map((l) => l.replace(/#.*/, "").trim()).filter((l) => l.length > 0);
  const modRoot = join(kernel.root, "lib/modules", kernel.release);
  const order = moduleLoadOrder(wanted, readFileSync(join(modRoot, "modules.dep"), "utf8"));
  sizes.modules = order.reduce((sum, rel) => sum + copyInto(stage, join(modRoot, rel), join("/lib/modules", rel)), 0);
  writeFileSync(join(stage, "lib/modules/load.order"), `${order.join("\n")}\n`);

  copyInto(stage, join(ROOT, "initramfs/init"), "/init", 0o755);
  copyInto(stage, join(ROOT, "initramfs/udhcpc.script"), "/etc/udhcpc.script", 0o755);
  writeFileSync(join(stage, "etc/discus-release"), `discus ${VERSION} netboot, kernel ${kernel.release}`);
  // The kernel opens /dev/console before /init runs, so the node must be in the archive.
  await $`mknod -m 600 ${join(stage, "dev/console")} c 5 1`.quiet();

  const uncompressed = (await $`du -sb --apparent-size ${stage}`.quiet()).stdout.toString().split("\t")[0]!;
  const out = join(DIST, "initramfs.img");
  const tmp = `${out}.tmp`;
  await $`cd ${stage} && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --reproducible --quiet | zstd -q -f -${ZSTD_LEVEL} -T0 -o ${tmp}`;
  renameSync(tmp, out);
  copyFileSync(join(kernel.root, "boot", `vmlinuz-${kernel.release}`), join(DIST, "vmlinuz"));
  rmSync(stage, { recursive: true, force: true });

  const report = {
    kernel: `${pin.package} ${pin.version} (${kernel.release})`,
    modules: order.length,
    libraries: libs,
    bytes: { ...sizes, uncompressed: Number(uncompressed), initramfs: statSync(out).size, vmlinuz: statSync(join(DIST, "vmlinuz")).size },
    zstdLevel: ZSTD_LEVEL,
    buildSeconds: Number(((performance.now() - startMs) / 1000).toFixed(1)),
  };
  writeFileSync(join(DIST, "initramfs.json"), `${JSON.stringify(report, null, 2)}\n`);
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  console.log(`dist/initramfs.img: ${mib(report.bytes.initramfs)} (zstd -${ZSTD_LEVEL}) of ${mib(report.bytes.uncompressed)}: discus ${mib(sizes.discus!)}, ${order.length} modules ${mib(sizes.modules!)}, ${libs.length} libraries ${mib(sizes.libraries!)}, busybox ${mib(sizes.busybox!)}, kexec ${mib(sizes.kexec!)}`);
  console.log(`dist/vmlinuz: ${mib(report.bytes.vmlinuz)}, ${report.kernel}; built in ${report.buildSeconds} s`);
}

if (import.meta.main) await main();
