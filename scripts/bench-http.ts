// The HTTP fallback against multicast and against plain curl, side by side in one run: the paper
// image to one client over an unshaped veth link (a bridge in namespaces), target in tmpfs.
//   discus multicast  `discus serve --group ... --rate R` / `discus load TARGET --group ...`
//   discus HTTP       `discus serve --http` (HTTP only) / `discus load URL TARGET`
//   discus HTTP nginx  nginx (Debian) / `discus load URL TARGET`
//   curl -o            nginx / `curl -o FILE URL`: moving the image's bytes, nothing decoded or checked
//   discus restore     the same image from a local file: what decompressing, checking and writing cost
// Each is run REPEATS times, interleaved; the client's wall time, CPU and peak RSS come from
// /usr/bin/time. Prints a Markdown table (median of the runs) and the load average.
// Usage: bun scripts/bench-http.ts [--repeats N] [--rate 10gbit] [--image PAPER.dsc (default: made by this tree)]
import { $ } from "bun";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { destroyStaleLabs, withLab, type Host, type Lab } from "./lib/netlab.ts";
import { benchDir, paperFixture } from "./lib/paper.ts";
import { cli } from "../test/helpers.ts";

const arg = (name: string, dflt: string) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1]! : dflt;
};
const REPEATS = Number(arg("--repeats", "3"));
const RATE = arg("--rate", "10gbit");
const MCAST_PORT = 4520;
const HTTP_PORT = 8081;
const NGINX_PORT = 8080;
/** tmpfs: targets and copies never wait on a disk. */
const work = "/dev/shm/discus-bench-http";
const tmpfs = join(work, "t");

await destroyStaleLabs();
rmSync(work, { recursive: true, force: true });
mkdirSync(join(work, "www"), { recursive: true });
mkdirSync(tmpfs, { recursive: true });

const paper = await paperFixture();
// The image as `discus create` makes it by default, made by this tree (never raced with another benchmark's).
const image = join(work, "www", "paper.dsc");
const given = arg("--image", "");
if (given !== "") await $`cp ${given} ${image}`;
else await $`bun ${cli} create --quiet ${paper} ${image}`;
const imageBytes = statSync(image).size;
await $`bun ${cli} restore --quiet ${image} ${tmpfs}/ref.img`;
const referenceSha = (await $`sha256sum ${tmpfs}/ref.img`.text()).split(" ")[0]!;
const diskBytes = statSync(`${tmpfs}/ref.img`).size;
rmSync(`${tmpfs}/ref.img`);

interface Sample {
  seconds: number;
  cpuSeconds: number;
  rssMiB: number;
  ok: boolean;
}

/** Runs `cmd` in the client's namespace under /usr/bin/time; the last stderr line holds the figures. */
async function timed(lab: Lab, host: Host, cmd: string[], check: () => Promise<boolean>): Promise<Sample> {
  const r = await lab.exec(host, ["/usr/bin/time", "-f", "TIME %e %U %S %M", ...cmd]);
  const m = /TIME ([\d.]+) ([\d.]+) ([\d.]+) (\d+)/.exec(r.stderr);
  if (r.exitCode !== 0 || m === null) throw new Error(`${cmd.join(" ")} failed (${r.exitCode}): ${r.stderr}`);
  return { seconds: Number(m[1]), cpuSeconds: Number(m[2]) + Number(m[3]), rssMiB: Number(m[4]) / 1024, ok: await check() };
}

async function diskOk(path: string): Promise<boolean> {
  const ok = (await $`sha256sum ${path}`.text()).split(" ")[0] === referenceSha;
  rmSync(path, { force: true });
  return ok;
}

async function fileOk(path: string): Promise<boolean> {
  const ok = statSync(path).size === imageBytes;
  rmSync(path, { force: true });
  return ok;
}

function nginxConf(lab: Lab): string {
  return [
    "user root;",
    "worker_processes 1;",
    `pid ${work}/nginx.pid;`,
    `error_log ${work}/nginx-error.log;`,
    "events { worker_connections 64; }",
    "http { access_log off; sendfile on; default_type application/octet-stream;",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${work}/nginx-${t};`),
    `  server { listen ${lab.server.address}:${NGINX_PORT}; root ${work}/www; } }`,
    "",
  ].join("\n");
}

const results = new Map<string, Sample[]>();
const add = (name: string, s: Sample) => results.set(name, [...(results.get(name) ?? []), s]);
const loadBefore = (await Bun.file("/proc/loadavg").text()).trim();

await withLab({ clients: 1 }, async (lab) => {
  const c = lab.clients[0]!;
  const s = lab.server;
  writeFileSync(join(work, "nginx.conf"), nginxConf(lab));
  const nginx = lab.spawn(s, ["nginx", "-c", join(work, "nginx.conf"), "-g", "daemon off;"]);
  const serveHttp = lab.spawn(s, ["bun", cli, "serve", image, "--iface", s.address, "--http", String(HTTP_PORT)]);
  await Bun.sleep(1500);
  try {
    for (let i = 0; i < REPEATS; i++) {
      const target = join(tmpfs, "disk.img");
      const fresh = async () => void (await $`truncate -s ${diskBytes} ${target}`);
      await fresh();
      const serve = lab.spawn(s, ["bun", cli, "serve", image, "--group", lab.group(0), "--port", String(MCAST_PORT), "--iface", s.address, "--rate", RATE]);
      await Bun.sleep(800);
      add("discus multicast", await timed(lab, c, ["bun", cli, "load", target, "--group", lab.group(0), "--port", String(MCAST_PORT), "--iface", c.address, "--quiet"], () => diskOk(target)));
      serve.kill("SIGTERM");
      await serve.exited;
      await fresh();
      add("discus HTTP (discus serve --http)", await timed(lab, c, ["bun", cli, "load", `http://${s.address}:${HTTP_PORT}/paper.dsc`, target, "--quiet"], () => diskOk(target)));
      await fresh();
      add("discus HTTP (nginx)", await timed(lab, c, ["bun", cli, "load", `http://${s.address}:${NGINX_PORT}/paper.dsc`, target, "--quiet"], () => diskOk(target)));
      await fresh();
      // The floor for any load: the same decompress, verify and write from a local file.
      add("discus restore (local file, no network)", await timed(lab, c, ["bun", cli, "restore", image, target, "--quiet"], () => diskOk(target)));
      const copy = join(tmpfs, "paper.dsc");
      add("curl -o (nginx)", await timed(lab, c, ["curl", "-s", "-o", copy, `http://${s.address}:${NGINX_PORT}/paper.dsc`], () => fileOk(copy)));
    }
  } finally {
    for (const p of [nginx, serveHttp]) {
      p.kill("SIGTERM");
      await p.exited;
    }
  }
});
const loadAfter = (await Bun.file("/proc/loadavg").text()).trim();
rmSync(work, { recursive: true, force: true });

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
const out = [
  `# HTTP fallback benchmark (${new Date().toISOString().slice(0, 10)})`,
  "",
  `paper image ${(imageBytes / 1e6).toFixed(1)} MB onto a ${(diskBytes / 2 ** 30).toFixed(0)} GiB target in tmpfs, one client, unshaped veth; multicast --rate ${RATE}; median of ${REPEATS} interleaved runs.`,
  "",
  "| client | wall s | image Mbit/s | client CPU s | peak RSS MiB | all correct | runs (s) |",
  "|---|---:|---:|---:|---:|---|---|",
  ...[...results].map(([name, v]) => {
    const sec = median(v.map((x) => x.seconds));
    return `| ${name} | ${sec.toFixed(2)} | ${((imageBytes * 8) / 1e6 / sec).toFixed(0)} | ${median(v.map((x) => x.cpuSeconds)).toFixed(2)} | ${median(v.map((x) => x.rssMiB)).toFixed(0)} | ${v.every((x) => x.ok) ? "yes" : "NO"} | ${v.map((x) => x.seconds.toFixed(2)).join(", ")} |`;
  }),
  "",
  `load average before: ${loadBefore}; after: ${loadAfter}`,
];
console.log(out.join("\n"));
writeFileSync(join(benchDir, "http.md"), `${out.join("\n")}\n`);
