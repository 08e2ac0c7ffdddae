// The dashboard's files: the page's TypeScript and CSS bundled by Bun.build when the server
// starts, held in memory and served from it (no CDN, no build step to forget: what runs is what
// is in src/web/app/). Names carry a content hash, so a browser may cache them for ever.
import { join } from "node:path";
import { DiscusError } from "../util/errors.ts";

const APP_DIR = join(import.meta.dir, "app");
/** Bundled files, at most; a build that makes more is not ours. */
const MAX_ASSETS = 8;
/** The whole bundle, at most: the page must stay light enough for a phone. */
export const MAX_BUNDLE_BYTES = 512 * 1024;

export interface Asset {
  body: Uint8Array;
  /** The same, gzipped once at start: most of the page's weight goes away (docs/BENCHMARKS.md). */
  gzip: Uint8Array;
  type: string;
}

export interface DashboardAssets {
  /** index.html, naming the hashed files. */
  html: string;
  /** By file name (the part after /ui/). */
  files: Map<string, Asset>;
}

/** The page: no inline script or style, so the Content-Security-Policy can forbid both. */
function page(script: string, style: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>discus</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/${style}">
<script type="module" src="/ui/${script}"></script>
</head>
<body>
<noscript>The discus dashboard needs JavaScript; the same actions are in the CLI (discus --help) and the API (docs/API.md).</noscript>
<main id="app" aria-live="polite"></main>
</body>
</html>
`;
}

export async function buildDashboard(): Promise<DashboardAssets> {
  const built = await Bun.build({
    entrypoints: [join(APP_DIR, "main.ts"), join(APP_DIR, "style.css")],
    target: "browser",
    minify: true,
    naming: "[name]-[hash].[ext]",
  });
  if (!built.success || built.outputs.length > MAX_ASSETS) {
    const why = built.logs.map((l) => String(l.message ?? l)).join("; ") || `${built.outputs.length} files`;
    throw new DiscusError("io", "the dashboard's bundle", `Bun.build failed: ${why}`, "Reinstall discus; src/web/app/ is part of it");
  }
  const files = new Map<string, Asset>();
  let totalBytes = 0;
  for (const out of built.outputs) {
    const body = new Uint8Array(await out.arrayBuffer());
    totalBytes += body.length;
    files.set(out.path.replace(/^.*\//, ""), { body, gzip: Bun.gzipSync(body), type: out.type });
  }
  if (totalBytes > MAX_BUNDLE_BYTES) throw new DiscusError("io", "the dashboard's bundle", `is ${totalBytes} bytes, over ${MAX_BUNDLE_BYTES}`, "Trim src/web/app/");
  const names = [...files.keys()];
  const script = names.find((n) => n.endsWith(".js"));
  const style = names.find((n) => n.endsWith(".css"));
  if (script === undefined || style === undefined) throw new DiscusError("io", "the dashboard's bundle", `has no script or style (${names.join(", ")})`, "Reinstall discus");
  return { html: page(script, style), files };
}
