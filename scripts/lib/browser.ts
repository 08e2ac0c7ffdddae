// Debian's Chromium, headless, in a lab namespace (the admin's laptop on the lab's LAN), driven by
// puppeteer-core. puppeteer speaks the DevTools protocol over a pipe (fds 3 and 4), which crosses
// `ip netns exec` unchanged; a debugging port would sit on the namespace's own loopback, out of
// reach. Never a browser download: the Debian package is the browser.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer, { type Browser } from "puppeteer-core";

export const CHROMIUM = "/usr/bin/chromium";
/** Starting Chromium on a busy 2-core machine takes seconds, not minutes. */
const LAUNCH_TIMEOUT_MS = 60_000;

export interface LabBrowser {
  browser: Browser;
  close(): Promise<void>;
}

/** Chromium in namespace `ns` (null: this one). */
export async function launchBrowser(ns: string | null): Promise<LabBrowser> {
  const dir = mkdtempSync(join(tmpdir(), "discus-chromium-"));
  let executablePath = CHROMIUM;
  if (ns !== null) {
    executablePath = join(dir, "chromium-in-ns");
    writeFileSync(executablePath, `#!/bin/sh\nexec ip netns exec ${ns} ${CHROMIUM} "$@"\n`);
    chmodSync(executablePath, 0o755);
  }
  const browser = await puppeteer.launch({
    executablePath,
    pipe: true,
    headless: true,
    timeout: LAUNCH_TIMEOUT_MS,
    userDataDir: join(dir, "profile"),
    // Root in a container: Chromium's sandbox needs user namespaces it cannot have here.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking"],
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
