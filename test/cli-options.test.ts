// Bad command lines, table-driven: every one ends with a usage error (exit 2) naming the option,
// or the documented kind of its cause (3 bad image, 5 bad key, 6 I/O), never an "internal error"
// and never a stack trace. Each case is a real `bun src/cli.ts` process, run a few at a time.
import { beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { exitCodeByKind } from "../src/util/errors.ts";
import { cli, discusOk, tmpDir, type RunResult } from "./helpers.ts";

const { usage, input, target, signature, io } = exitCodeByKind;
/** Processes at once: the machine has two cores, and each case is short. */
const PARALLEL_CASES = 4;
const SWEEP_TIMEOUT_MS = 300_000;
/** A bad command line is refused at once; one still running after this was wrongly accepted. */
const CASE_TIMEOUT_MS = 20_000;
/** An address in the benchmarking range that no interface of this machine has. */
const FOREIGN_ADDRESS = "198.18.250.1";
const GROUP = "239.198.18.1";
const LOCAL = "127.0.0.1";

interface Case {
  args: string[];
  code: number;
  /** What the message must say: the option or thing at fault, and the cause. */
  says: RegExp;
}

/** `$D` is the test's folder, `$S` a 4 MiB source file, `$I` a good image, `$K` its key pair's stem. */
function cases(): Case[] {
  const c = (code: number, says: RegExp, ...args: string[]): Case => ({ args, code, says });
  const create = (...a: string[]) => ["create", "--quiet", ...a, "$S", "$D/new.dsc"];
  const restore = (...a: string[]) => ["restore", "--quiet", ...a, "$I", "$D/out.img"];
  const serve = (...a: string[]) => ["serve", "$I", "--group", GROUP, "--iface", LOCAL, ...a];
  const load = (...a: string[]) => ["load", "$D/out.img", "--group", GROUP, "--iface", LOCAL, ...a];
  const verify = (...a: string[]) => ["verify", ...a, "$I"];
  return [
    // create: sizes, counts, levels, files
    ...["1.5M", "abc", "0", "-1", "1000", "3K", "128M", "99999999999999999999M", ""].map((v) => c(usage, /--chunk-size/, ...create("--chunk-size", v))),
    ...["abc", "-1", "1.5K", "2G", "x1K"].map((v) => c(usage, /--min-free/, ...create("--min-free", v))),
    ...["abc", "1.5", "0", "20", "-3", "1e1"].map((v) => c(usage, /--level/, ...create("--level", v))),
    c(usage, /--level: 12 is outside 1\.\.9/, ...create("--codec", "zlib", "--level", "12")),
    ...["abc", "-1", "1000", "1.5", "0x4"].map((v) => c(usage, /--workers/, ...create("--workers", v))),
    c(usage, /--workers.*given 2 times/, ...create("--workers", "2", "--workers", "3")),
    c(usage, /codec/i, ...create("--codec", "lz4")),
    c(usage, /--sign .*no such file/, ...create("--sign", "$D/missing.key")),
    c(usage, /--sign .*is a directory/, ...create("--sign", "$D/folder")),
    c(signature, /garbage\.txt: is not a PEM private key/, ...create("--sign", "$D/garbage.txt")),
    c(usage, /missing\.img: cannot open the source \(ENOENT\)/, "create", "$D/missing.img", "$D/new.dsc"),
    c(usage, /folder: is neither a block device nor a regular file/, "create", "$D/folder", "$D/new.dsc"),
    c(usage, /empty\.img: is 0 bytes/, "create", "$D/empty.img", "$D/new.dsc"),
    c(io, /folder: is a directory \(EISDIR\)/, "create", "--quiet", "$S", "$D/folder"),
    c(io, /folder: is a directory \(EISDIR\)/, "create", "--quiet", "--force", "$S", "$D/folder"),
    c(io, /no-such-dir\/new\.dsc\.partial: creating the image file failed: no such file or directory \(ENOENT\)/, "create", "--quiet", "$S", "$D/no-such-dir/new.dsc"),
    c(usage, /good\.dsc: already exists/, "create", "--quiet", "$S", "$I"),
    c(usage, /Not enough non-option arguments/, "create", "$S"),
    c(usage, /Unknown argument/, "create", "$S", "$D/a.dsc", "$D/b.dsc"),
    c(usage, /Unknown argument/, "create", "$S", "$D/new.dsc", "--frobnicate"),
    // restore
    c(input, /missing\.dsc: cannot open the image \(ENOENT\)/, "restore", "$D/missing.dsc", "$D/out.img"),
    c(io, /folder: is a directory \(EISDIR\), not an image/, "restore", "$D/folder", "$D/out.img"),
    c(input, /garbage\.txt: is too short|garbage\.txt: .*trailer/, "restore", "$D/garbage.txt", "$D/out.img"),
    c(io, /no-such-dir\/out\.img: finding its directory .* no such file or directory \(ENOENT\)/, "restore", "--quiet", "$I", "$D/no-such-dir/out.img"),
    c(target, /folder: is neither a block device nor a regular file/, "restore", "--quiet", "$I", "$D/folder"),
    c(target, /\/dev\/null: is neither a block device nor a regular file/, "restore", "--quiet", "$I", "/dev/null"),
    c(target, /small\.img: is 1\.0 MiB, the image needs 4\.0 MiB/, "restore", "--quiet", "$I", "$D/small.img"),
    ...["0", "-1", "1000", "abc", "2.5"].map((v) => c(usage, /--workers/, ...restore("--workers", v))),
    c(usage, /free/i, ...restore("--free", "bogus")),
    c(usage, /order/i, ...restore("--order", "bogus")),
    ...["abc", "-1", "1.5", "4294967296"].map((v) => c(usage, /--seed/, ...restore("--order", "random", "--seed", v))),
    c(usage, /--key .*no such file/, ...restore("--key", "$D/missing.pub")),
    c(usage, /--key .*is a directory/, ...restore("--key", "$D/folder")),
    c(signature, /garbage\.txt: is not a PEM public key/, ...restore("--key", "$D/garbage.txt")),
    // serve
    ...["abc", "10.0.0.1", "239.1.1.1.1", ""].map((v) => c(usage, /--group/, "serve", "$I", "--iface", LOCAL, "--group", v)),
    c(usage, new RegExp(`--iface: ${FOREIGN_ADDRESS} is not an address of this machine`), "serve", "$I", "--group", GROUP, "--iface", FOREIGN_ADDRESS),
    c(usage, /--iface: eth0 is not an IPv4 address/, "serve", "$I", "--group", GROUP, "--iface", "eth0"),
    ...["0", "70000", "abc", "1.5"].map((v) => c(usage, /--port/, ...serve("--port", v))),
    ...["0", "256", "abc"].map((v) => c(usage, /--ttl/, ...serve("--ttl", v))),
    ...["abc", "0", "1tbit", "9".repeat(400)].map((v) => c(usage, /--rate/, ...serve("--rate", v))),
    c(usage, /--rate: "-5mbit" is not a rate/, ...serve("--rate=-5mbit")),
    ...["abc", "100", "100000", "1500.5"].map((v) => c(usage, /--mtu/, ...serve("--mtu", v))),
    ...["abc", "-1", "1.5.3", "999999h"].map((v) => c(usage, /--idle-exit/, ...serve("--idle-exit", v))),
    c(input, /missing\.dsc: cannot open the image \(ENOENT\)/, "serve", "$D/missing.dsc", "--group", GROUP, "--iface", LOCAL),
    c(io, /folder: is a directory \(EISDIR\)/, "serve", "$D/folder", "--group", GROUP, "--iface", LOCAL),
    c(usage, /--group: is missing\. Give the image.s multicast group, or --http PORT/, "serve", "$I", "--iface", LOCAL),
    // load
    c(usage, /--group: is missing\. A multicast load needs --group and --iface/, "load", "$D/out.img", "--iface", LOCAL),
    c(usage, /ftp:\/\/h\/x\.dsc: is not an http:\/\/ URL/, "load", "ftp://h/x.dsc", "$D/out.img"),
    c(usage, /--group: belongs to a multicast load, not one from a URL/, "load", "http://198.18.0.1/x.dsc", "$D/out.img", "--group", GROUP),
    ...["0", "1000", "abc"].map((v) => c(usage, /--workers/, ...load("--workers", v))),
    ...["0", "abc", "65"].map((v) => c(usage, /--window/, ...load("--window", v))),
    ...["abc", "0.5s", "-1", "99999999h"].map((v) => c(usage, /--give-up/, ...load("--give-up", v))),
    ...["abc", "1K", "1T", "1.5M"].map((v) => c(usage, /--memory/, ...load("--memory", v))),
    c(usage, /--image-id: xyz is not 32 hex digits/, ...load("--image-id", "xyz")),
    ...["abc", "-1"].map((v) => c(usage, /--seed/, ...load("--seed", v))),
    c(usage, /--key .*no such file/, ...load("--key", "$D/missing.pub")),
    c(usage, new RegExp(`--iface: ${FOREIGN_ADDRESS} is not an address of this machine`), "load", "$D/out.img", "--group", GROUP, "--iface", FOREIGN_ADDRESS),
    c(usage, /free/i, ...load("--free", "bogus")),
    c(io, /no-such-dir\/out\.img: finding its directory .*\(ENOENT\)/, "load", "$D/no-such-dir/out.img", "--group", GROUP, "--iface", LOCAL),
    c(target, /folder: is neither a block device nor a regular file/, "load", "$D/folder", "--group", GROUP, "--iface", LOCAL),
    // verify, info, keygen, key
    ...["1000", "abc", "0", "-1"].map((v) => c(usage, /--workers/, ...verify("--workers", v))),
    c(input, /missing\.dsc: cannot open the image \(ENOENT\)/, "verify", "$D/missing.dsc"),
    c(io, /folder: is a directory \(EISDIR\)/, "verify", "$D/folder"),
    c(usage, /--key .*no such file/, ...verify("--key", "$D/missing.pub")),
    c(input, /missing\.dsc: cannot open the image \(ENOENT\)/, "info", "$D/missing.dsc"),
    c(io, /folder: is a directory \(EISDIR\)/, "info", "$D/folder"),
    c(input, /garbage\.txt: is too short|garbage\.txt: .*trailer/, "info", "$D/garbage.txt"),
    c(io, /no-such-dir\/k\.key: writing the key failed: no such file or directory \(ENOENT\)/, "keygen", "$D/no-such-dir/k"),
    c(usage, /site\.key: already exists/, "keygen", "$K"),
    c(usage, /key .*no such file/, "key", "$D/missing.pub"),
    c(usage, /key .*is a directory/, "key", "$D/folder"),
    c(signature, /garbage\.txt: is not a PEM public key/, "key", "$D/garbage.txt"),
    // the command itself
    c(usage, /Name a command/),
    c(usage, /Unknown argument: frobnicate/, "frobnicate"),
    c(usage, /Unknown argument/, "agent", "--frobnicate"),
  ];
}

/** Runs `discus ARGS`; a process still running after CASE_TIMEOUT_MS is killed and reported. */
async function run(args: string[]): Promise<RunResult> {
  const proc = Bun.spawn(["bun", cli, ...args], { stdout: "pipe", stderr: "pipe" });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, CASE_TIMEOUT_MS);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr: timedOut ? `still running after ${CASE_TIMEOUT_MS} ms (accepted?) ${stderr}` : stderr };
}

async function runAll(list: Case[], dir: string, fill: (a: string) => string): Promise<{ c: Case; r: RunResult }[]> {
  const out: { c: Case; r: RunResult }[] = [];
  for (let i = 0; i < list.length; i += PARALLEL_CASES) {
    const batch = list.slice(i, i + PARALLEL_CASES);
    const results = await Promise.all(batch.map((c) => run(c.args.map(fill))));
    batch.forEach((c, j) => out.push({ c, r: results[j]! }));
  }
  // Nothing a refused command line does may leave files behind.
  await $`rm -f ${join(dir, "new.dsc")} ${join(dir, "out.img")}`;
  return out;
}

describe("bad command lines", () => {
  let dir = "";
  beforeAll(async () => {
    dir = await tmpDir();
    await $`head -c ${4 << 20} /dev/urandom > ${join(dir, "source.img")}`;
    await discusOk(["create", "--quiet", join(dir, "source.img"), join(dir, "good.dsc")]);
    await discusOk(["keygen", join(dir, "site")]);
    mkdirSync(join(dir, "folder"));
    writeFileSync(join(dir, "garbage.txt"), "not a key, not an image\n");
    writeFileSync(join(dir, "empty.img"), "");
    await $`truncate -s 1M ${join(dir, "small.img")}`;
  });

  test(
    "each ends with its documented exit code and a message naming the fault; none is an internal error",
    async () => {
      const fill = (a: string) => a.replaceAll("$D", dir).replaceAll("$S", join(dir, "source.img")).replaceAll("$I", join(dir, "good.dsc")).replaceAll("$K", join(dir, "site"));
      const list = cases();
      expect(list.length).toBeGreaterThanOrEqual(100);
      const results = await runAll(list, dir, fill);
      const wrong = results
        .filter(({ c, r }) => r.code !== c.code || !c.says.test(r.stderr) || /internal error|\n\s+at /.test(r.stderr))
        .map(({ c, r }) => `discus ${c.args.join(" ")}\n  want ${c.code} ${c.says}\n  got  ${r.code} ${r.stderr.trim().split("\n").slice(0, 3).join(" | ")}`);
      const internal = results.filter(({ r }) => /internal error/.test(r.stderr)).length;
      process.stderr.write(`bad command lines: ${results.length} run, ${internal} internal errors, ${wrong.length} wrong\n`);
      expect(wrong).toEqual([]);
    },
    SWEEP_TIMEOUT_MS,
  );
});
