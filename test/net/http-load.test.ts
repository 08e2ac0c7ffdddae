// `discus load http://...` for real, in a lab of namespaces: from Debian's nginx (its own process,
// a test-written nginx.conf) and from `discus serve --http`, onto byte-identical disks; a served
// file with one corrupted byte is caught by the chunk's digest and that chunk's bytes are never
// written; a server without Range support, and a URL serving another image, are refused clearly.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, copyFileSync, mkdirSync, openSync, readSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { createLab, destroyStaleLabs, type Lab } from "../../scripts/lib/netlab.ts";
import { MCAST_PORT } from "../../scripts/lib/mcast.ts";
import { decodeChunkHeader } from "../../src/image/chunk.ts";
import { closeImage, openImage, readChunk } from "../../src/image/reader.ts";
import { MAX_CHUNK_FETCHES } from "../../src/client/http-load.ts";
import type { LoadStats } from "../../src/client/stats.ts";
import { gptComposite } from "../fixtures/composite.ts";
import { cli, discusOk, FIXTURE_TIMEOUT_MS, sha256File, tmpDir } from "../helpers.ts";

const TEST_TIMEOUT_MS = 240_000;
const NGINX_PORT = 8080;
const DISCUS_HTTP_PORT = 8081;
/** The chunk whose served copy gets one bad byte. */
const BAD_CHUNK = 3;

let dir = "";
let lab: Lab;
let nginx: ReturnType<Lab["spawn"]> | null = null;
let imageId = "";
let referenceSha = "";
let sourceBytes = 0;

function nginxConf(www: string): string {
  // Runs as root in the test's namespace so it can read the test's 0700 directory; no default paths touched.
  return [
    "user root;",
    "worker_processes 1;",
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/nginx-error.log;`,
    "events { worker_connections 64; }",
    "http {",
    "  access_log off;",
    "  default_type application/octet-stream;",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${dir}/nginx-${t};`),
    `  server { listen ${lab.server.address}:${NGINX_PORT}; root ${www};`,
    // A server that ignores Range: nginx with byte ranges turned off answers 200 with the whole file.
    "    location /no-ranges/ { max_ranges 0; }",
    "  }",
    "}",
    "",
  ].join("\n");
}

async function waitHttp(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await lab.exec(lab.clients[0]!, ["curl", "-s", "-o", "/dev/null", "-r", "0-0", url])).exitCode === 0) return;
    await Bun.sleep(100);
  }
  throw new Error(`${url} never answered`);
}

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  const www = join(dir, "www");
  mkdirSync(join(www, "no-ranges"), { recursive: true });
  await discusOk(["keygen", join(dir, "site")]);
  const disk = await gptComposite();
  const image = join(www, "gpt.dsc");
  await discusOk(["create", disk.path, image, "--sign", join(dir, "site.key"), "--quiet"]);
  const info = JSON.parse(await discusOk(["info", image, "--json"])) as { imageId: string; sourceBytes: number };
  imageId = info.imageId;
  sourceBytes = info.sourceBytes;
  await discusOk(["restore", image, join(dir, "reference.img"), "--quiet"]);
  referenceSha = await sha256File(join(dir, "reference.img"));
  copyFileSync(image, join(www, "no-ranges", "gpt.dsc"));
  // One byte flipped inside a data chunk's compressed payload: its container digest cannot match.
  copyFileSync(image, join(www, "bad.dsc"));
  const chunkBytes = openImageChunkBytes(image);
  const fd = openSync(join(www, "bad.dsc"), "r+");
  const at = BAD_CHUNK * chunkBytes + chunkBytes / 2;
  const one = new Uint8Array(1);
  readSync(fd, one, 0, 1, at);
  one[0] = one[0]! ^ 0xff;
  writeSync(fd, one, 0, 1, at);
  closeSync(fd);
  lab = await createLab({ clients: 1 });
  const conf = join(dir, "nginx.conf");
  writeFileSync(conf, nginxConf(www));
  nginx = lab.spawn(lab.server, ["nginx", "-c", conf, "-g", "daemon off;"]);
  await waitHttp(`http://${lab.server.address}:${NGINX_PORT}/gpt.dsc`);
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  if (nginx !== null) {
    nginx.kill("SIGTERM");
    await nginx.exited;
  }
  await lab?.destroy();
  if (dir) await $`rm -rf ${dir}`;
});

function openImageChunkBytes(path: string): number {
  const image = openImage(path);
  try {
    return image.manifest.chunkBytes;
  } finally {
    closeImage(image);
  }
}

async function load(url: string, target: string, args: string[] = []): Promise<{ exitCode: number; stderr: string; stats: LoadStats | null }> {
  const r = await lab.exec(lab.clients[0]!, ["bun", cli, "load", url, target, "--json", ...args]);
  return { exitCode: r.exitCode, stderr: r.stderr, stats: r.exitCode === 0 ? (JSON.parse(r.stdout) as LoadStats) : null };
}

/** Byte ranges (in the disk) that chunk `index` of the image writes. */
function chunkRegions(path: string, index: number): { start: number; length: number }[] {
  const image = openImage(path);
  try {
    const header = decodeChunkHeader(readChunk(image, index), image.manifest.chunkBytes);
    return header.regions.map((r) => ({ start: r.start * image.manifest.sectorBytes, length: r.length * image.manifest.sectorBytes }));
  } finally {
    closeImage(image);
  }
}

describe("discus load over HTTP", () => {
  test(
    "from nginx: a byte-identical disk, the signature and --image-id checked",
    async () => {
      const target = join(dir, "from-nginx.img");
      const r = await load(`http://${lab.server.address}:${NGINX_PORT}/gpt.dsc`, target, ["--key", join(dir, "site.pub"), "--image-id", imageId]);
      expect(r.stderr).toBe("");
      expect(r.exitCode).toBe(0);
      expect(r.stats!.signature).toBe("verified");
      expect(r.stats!.chunksRejected).toBe(0);
      expect(await sha256File(target)).toBe(referenceSha);
      await $`rm -f ${target}`;
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "from `discus serve --http` (beside its multicast session): a byte-identical disk",
    async () => {
      const server = lab.spawn(lab.server, ["bun", cli, "serve", join(dir, "www", "gpt.dsc"), "--group", lab.group(0), "--port", String(MCAST_PORT), "--iface", lab.server.address, "--http", String(DISCUS_HTTP_PORT)]);
      try {
        const url = `http://${lab.server.address}:${DISCUS_HTTP_PORT}/gpt.dsc`;
        await waitHttp(url);
        const target = join(dir, "from-discus.img");
        const r = await load(url, target, ["--key", join(dir, "site.pub")]);
        expect(r.exitCode).toBe(0);
        expect(await sha256File(target)).toBe(referenceSha);
        await $`rm -f ${target}`;
      } finally {
        server.kill("SIGTERM");
        await server.exited;
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a corrupted byte in the served file: the chunk is fetched again, then the load fails clearly and that chunk's disk bytes were never written",
    async () => {
      // A target that exists (zeros) is kept after a failure, so what was written can be read back.
      const target = join(dir, "bad-target.img");
      await $`truncate -s ${sourceBytes} ${target}`;
      const r = await load(`http://${lab.server.address}:${NGINX_PORT}/bad.dsc`, target);
      expect(r.exitCode).toBe(3);
      expect(r.stderr).toContain(`chunk ${BAD_CHUNK} of image ${imageId}: failed its digests ${MAX_CHUNK_FETCHES} times`);
      expect(r.stderr).toContain("it was never written");
      const fd = openSync(target, "r");
      try {
        for (const region of chunkRegions(join(dir, "www", "gpt.dsc"), BAD_CHUNK)) {
          const bytes = new Uint8Array(region.length);
          readSync(fd, bytes, 0, region.length, region.start);
          expect(bytes.every((b) => b === 0)).toBe(true);
        }
      } finally {
        closeSync(fd);
        await $`rm -f ${target}`;
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a server without Range support (200 for the whole file) is refused before anything is written; so is a URL serving another image than --image-id",
    async () => {
      const target = join(dir, "refused.img");
      const noRanges = await load(`http://${lab.server.address}:${NGINX_PORT}/no-ranges/gpt.dsc`, target);
      expect(noRanges.exitCode).toBe(7);
      expect(noRanges.stderr).toContain("the server ignores HTTP Range requests");
      const other = await load(`http://${lab.server.address}:${NGINX_PORT}/gpt.dsc`, target, ["--image-id", "0".repeat(32)]);
      expect(other.exitCode).toBe(3);
      expect(other.stderr).toContain(`is image ${imageId}, not ${"0".repeat(32)}`);
      const missing = await load(`http://${lab.server.address}:${NGINX_PORT}/none.dsc`, target);
      expect(missing.exitCode).toBe(7);
      expect(missing.stderr).toContain("HTTP 404");
      expect(await Bun.file(target).exists()).toBe(false);
    },
    TEST_TIMEOUT_MS,
  );
});
