// The web dashboard in a real browser (issue 12): `discus server` in the lab's server namespace,
// Debian's Chromium in another (the admin's laptop, with no way out of the lab: a CDN fetch would
// fail and show up as a console error), three namespace nodes that PXE-ask the daemon and load
// its multicast session with a real `discus load`, reporting as the agent does. Node 3's disk is
// a loop device too small for the image, so its load fails and says why.
// Through the DOM: login, all nodes listed, a reload started from the page, both good nodes'
// progress rising to 100 %, the failed node's reason, the session with its rate plot and the
// client holding it back, a reload by keyboard alone, a phone-width layout, no console error.
// Without a login: the login form, and every call refused (401); a viewer sees but cannot act
// (403); a login cookie without the page's header cannot act either (403). The daemon's log is
// JSON lines (--log-format json), with no token in it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { $ } from "bun";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "puppeteer-core";
import { createLab, destroyStaleLabs, type Lab } from "../../scripts/lib/netlab.ts";
import { startLabDaemon, type LabDaemon } from "../../scripts/lib/lab-daemon.ts";
import { launchBrowser, type LabBrowser } from "../../scripts/lib/browser.ts";
import { MCAST_PORT } from "../../scripts/lib/mcast.ts";
import { discusOk, FIXTURE_TIMEOUT_MS, tmpDir } from "../helpers.ts";
import { repoRoot } from "../fixtures/common.ts";

// What the functions run inside the page (page.evaluate) use of the browser: this file is
// type-checked with Bun's types, not the DOM's.
interface PageElement {
  textContent: string | null;
  tagName: string;
  id: string;
  className: string;
  matches(selector: string): boolean;
  closest(selector: string): PageElement | null;
  getBoundingClientRect(): { right: number };
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement>;
  activeElement: PageElement | null;
  cookie: string;
  documentElement: { scrollWidth: number };
};
declare const window: { innerWidth: number };

const OUTPUT_DIR = join(repoRoot, "test-output", "dashboard");
const TEST_TIMEOUT_MS = 240_000;
/** 32 MiB at 24 Mbit/s: about 11 s of loading, so the page sees progress between 0 and 100. */
const IMAGE_MIB = 32;
const RATE = "24mbit";
/** Node 3's disk: a loop device far smaller than the image. */
const SMALL_DISK_MIB = 4;
const POLL_MS = 250;
const LOAD_DONE_MS = 120_000;
const MAX_TABS = 80;
const MACS = ["52:54:00:da:00:01", "52:54:00:da:00:02", "52:54:00:da:00:03"] as const;
const nodeScript = join(repoRoot, "scripts", "lib", "namespace-node.ts");

let dir = "";
let lab: Lab;
let daemon: LabDaemon;
let chrome: LabBrowser;
let smallDisk = "";
const consoleErrors: string[] = [];

async function api(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`http://localhost${path}`, { method, unix: daemon.socket, headers: { authorization: `Bearer ${daemon.adminToken()}` }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/** A page of the given browser context that records every console error, page error and failed request. */
async function openPage(context: { newPage(): Promise<Page> }, width = 1280, height = 800): Promise<Page> {
  const page = await context.newPage();
  await page.setViewport({ width, height });
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => consoleErrors.push(`page error: ${e}`));
  page.on("requestfailed", (r) => {
    // The stream is cut when a page closes or navigates: that is not an error of the page.
    if (!r.url().endsWith("/api/stream")) consoleErrors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  await page.goto(`${daemon.url}/`, { waitUntil: "domcontentloaded" });
  return page;
}

async function login(page: Page, token: string): Promise<void> {
  await page.waitForSelector("#token");
  await page.type("#token", token);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#fleet-table");
}

const rowSelector = (mac: string) => `#fleet-table tbody tr[data-id="${mac}"]`;

async function progressOf(page: Page, mac: string): Promise<number | null> {
  return page.$eval(rowSelector(mac), (tr) => {
    const bar = tr.querySelector("progress");
    return bar === null ? null : Number(bar.getAttribute("value"));
  });
}

/** From a page, as its own script would call: status of each call. */
async function pageCalls(page: Page, calls: { method: string; path: string; body?: unknown; csrf: boolean }[]): Promise<number[]> {
  return page.evaluate(async (list) => {
    const out: number[] = [];
    for (const c of list) {
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (c.csrf) headers["x-discus-request"] = "1";
      const res = await fetch(c.path, { method: c.method, headers, body: c.body === undefined ? undefined : JSON.stringify(c.body) });
      out.push(res.status);
    }
    return out;
  }, calls);
}

beforeAll(async () => {
  await destroyStaleLabs();
  dir = await tmpDir();
  mkdirSync(OUTPUT_DIR, { recursive: true });
  mkdirSync(join(dir, "images"));
  await $`head -c ${IMAGE_MIB}M /dev/urandom > ${join(dir, "source.img")}`;
  await discusOk(["create", join(dir, "source.img"), join(dir, "images", "lab-os.dsc"), "--raw", "--chunk-size", "256K", "--quiet"]);
  await $`truncate -s ${SMALL_DISK_MIB}M ${join(dir, "small.img")}`;
  smallDisk = (await $`losetup --find --show ${join(dir, "small.img")}`.text()).trim();
  lab = await createLab({ clients: 3, extras: 1, linkMbit: 100 });
  daemon = await startLabDaemon(lab, { state: join(dir, "state"), images: join(dir, "images"), args: ["--port", String(MCAST_PORT), "--rate", RATE, "--log-format", "json"] });
  for (const [i, mac] of MACS.entries()) await api("POST", "/api/nodes", { name: `node-${i + 1}`, mac, tags: ["dash"], diskRule: "serial:LAB", image: "lab-os", power: { driver: "none" } });
  chrome = await launchBrowser(lab.extras[0]!.ns);
}, FIXTURE_TIMEOUT_MS);

afterAll(async () => {
  await chrome?.close();
  await daemon?.stop();
  await lab?.destroy();
  if (smallDisk) await $`losetup -d ${smallDisk}`.nothrow();
  if (dir) await $`rm -rf ${dir}`;
});

describe("the dashboard, logged in as admin", () => {
  test(
    "lists the nodes, reloads from the page, shows progress to 100 %, the failure's reason, the session; no console error",
    async () => {
      const page = await openPage(chrome.browser);
      await login(page, daemon.adminToken());
      for (const mac of MACS) await page.waitForSelector(rowSelector(mac));
      expect(await page.$$eval("#fleet-table tbody tr th.name", (ths) => ths.map((t) => t.textContent))).toEqual(["node-1", "node-2", "node-3"]);
      // The session cookie is not readable by the page's scripts (HttpOnly).
      expect(await page.evaluate(() => document.cookie)).toBe("");

      // Reload all three from the page: select every node shown, Reload, confirm.
      await page.click("#select-shown");
      expect(await page.$eval("#selected-count", (e) => e.textContent)).toBe("3 selected");
      await page.click("#act-reload");
      await page.waitForSelector("#confirm[open]");
      await page.click("#confirm-yes");
      await page.waitForFunction(() => document.querySelector("#status")?.textContent?.startsWith("Reload started"));
      const jobs = (await api("GET", "/api/nodes")) as { node: { mac: string }; job: { id: number; state: string } | null }[];
      expect(jobs.map((n) => n.job?.state)).toEqual(["queued", "queued", "queued"]);

      // The nodes power on: each asks the daemon what to boot and loads.
      const targets = [join(dir, "node-1.img"), join(dir, "node-2.img"), smallDisk];
      const runs = lab.clients.map((c, i) => lab.exec(c, ["bun", nodeScript, daemon.url, MACS[i]!, c.address, targets[i]!]));
      const seen: Record<string, number[]> = { [MACS[0]]: [], [MACS[1]]: [] };
      let sessionSeen = { card: false, plotPoints: 0, holding: "" };
      const deadline = performance.now() + LOAD_DONE_MS;
      while (performance.now() < deadline) {
        for (const mac of [MACS[0], MACS[1]]) {
          const p = await progressOf(page, mac);
          if (p !== null && seen[mac]!.at(-1) !== p) seen[mac]!.push(p);
        }
        const card = await page.$('#sessions article.session[data-id="lab-os"]');
        if (card !== null && !sessionSeen.card) await page.screenshot({ path: join(OUTPUT_DIR, "loading-1280x800.png") });
        if (card !== null) {
          const points = await card.$eval("polyline", (l) => (l.getAttribute("points") ?? "").split(" ").filter((p: string) => p !== "").length);
          const holding = await card.$eval(".holding", (e) => e.textContent ?? "");
          sessionSeen = { card: true, plotPoints: Math.max(sessionSeen.plotPoints, points), holding: holding.startsWith("Holding it back: ") ? holding : sessionSeen.holding };
        }
        if (seen[MACS[0]]!.at(-1) === 100 && seen[MACS[1]]!.at(-1) === 100) break;
        await Bun.sleep(POLL_MS);
      }
      const results = await Promise.all(runs);
      expect(results.map((r) => r.exitCode)).toEqual([0, 0, 1]);
      for (const mac of [MACS[0], MACS[1]]) {
        const values = seen[mac]!;
        // Rising, to 100, with at least one value on the way there.
        expect(values.at(-1)).toBe(100);
        expect(values.some((v) => v > 0 && v < 100)).toBe(true);
        expect(values).toEqual([...values].sort((a, b) => a - b));
      }
      expect(sessionSeen.card).toBe(true);
      expect(sessionSeen.plotPoints).toBeGreaterThan(2);
      // One of the loading nodes, by its address on the lab's LAN.
      expect(lab.clients.some((c) => sessionSeen.holding.startsWith(`Holding it back: ${c.address} (`))).toBe(true);

      // Node 3 failed, and its row says why: the reason its load gave, as the API has it.
      const failed = (await api("GET", `/api/nodes/${MACS[2]}`)) as { node: { state: string }; job: { state: string; error: string } };
      expect(failed.job.state).toBe("failed");
      const reason = failed.job.error;
      expect(reason).toContain(smallDisk);
      await page.waitForFunction((sel: string) => document.querySelector(`${sel} td.error`)?.textContent !== "", {}, rowSelector(MACS[2]));
      expect(await page.$eval(`${rowSelector(MACS[2])} td.error`, (td) => td.textContent)).toBe(reason);
      expect(await page.$eval(rowSelector(MACS[2]), (tr) => tr.className)).toBe("failed");
      await page.screenshot({ path: join(OUTPUT_DIR, "done-1280x800.png"), fullPage: true });

      // The image's details, as `discus info` gives them.
      await page.click('#images tr[data-id="lab-os"] button');
      await page.waitForSelector('#images tr[data-id="lab-os"] .info');
      expect(await page.$eval('#images tr[data-id="lab-os"] .info', (e) => e.textContent)).toContain("raw");
      await page.close();
      expect(consoleErrors).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a reload by keyboard alone; a phone-width page fits its screen and shows the failure's reason",
    async () => {
      const context = await chrome.browser.createBrowserContext();
      const page = await openPage(context, 390, 844);
      await login(page, daemon.adminToken());
      await page.waitForSelector(rowSelector(MACS[0]));
      const before = ((await api("GET", `/api/nodes/${MACS[0]}`)) as { job: { id: number } | null }).job?.id ?? 0;
      // Tab to node-1's box, tick it, tab to Reload, press it, tab to Yes, press it.
      const tabTo = async (match: string) => {
        for (let i = 0; i < MAX_TABS; i++) {
          await page.keyboard.press("Tab");
          if (await page.evaluate((m: string) => document.activeElement?.matches(m) ?? false, match)) return;
        }
        throw new Error(`Tab never reached ${match}`);
      };
      await tabTo('input[aria-label="select node-1"]');
      await page.keyboard.press("Space");
      await tabTo("#act-reload");
      await page.keyboard.press("Enter");
      await page.waitForSelector("#confirm[open]");
      await tabTo("#confirm-yes");
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => document.querySelector("#status")?.textContent?.startsWith("Reload started"));
      const after = (await api("GET", `/api/nodes/${MACS[0]}`)) as { job: { id: number; state: string } };
      expect(after.job.id).toBeGreaterThan(before);
      expect(after.job.state).toBe("queued");
      // Nothing wider than the phone: the table scrolls inside its box, the page does not.
      const wide = await page.evaluate(() =>
        [...document.querySelectorAll("body *")].filter((e) => e.closest(".scroll") === null && e.getBoundingClientRect().right > window.innerWidth + 1).map((e) => `${e.tagName} ${e.id || e.className}`),
      );
      expect(wide).toEqual([]);
      // The failed node's reason shows under its name, the error column being off a phone's screen.
      const why = await page.$eval(`${rowSelector(MACS[2])} .why`, (e) => ({ text: e.textContent, shown: e.getBoundingClientRect().width > 0 }));
      expect(why).toEqual({ text: ((await api("GET", `/api/nodes/${MACS[2]}`)) as { job: { error: string } }).job.error, shown: true });
      expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
      await page.screenshot({ path: join(OUTPUT_DIR, "phone-390x844.png"), fullPage: true });
      await api("POST", "/api/cancel", { selectors: ["node-1"] });
      await context.close();
      expect(consoleErrors).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );
});

describe("without the admin token", () => {
  test("the page shows the login, and every call is refused (401); a wrong token is refused", async () => {
    const context = await chrome.browser.createBrowserContext();
    const page = await openPage(context);
    await page.waitForSelector("#token");
    expect(await page.$("#fleet-table")).toBeNull();
    const statuses = await pageCalls(page, [
      { method: "GET", path: "/api/nodes", csrf: true },
      { method: "GET", path: "/api/stream", csrf: true },
      { method: "POST", path: "/api/reload", body: { selectors: ["node-1"], image: null }, csrf: true },
      { method: "POST", path: "/api/cancel", body: { selectors: ["node-1"] }, csrf: true },
      { method: "POST", path: "/api/power", body: { selectors: ["node-1"] }, csrf: true },
    ]);
    expect(statuses).toEqual([401, 401, 401, 401, 401]);
    await page.type("#token", "not-the-token-at-all");
    await page.click("#login button[type=submit]");
    await page.waitForFunction(() => (document.querySelector("#login-error")?.textContent ?? "") !== "");
    expect(await page.$eval("#login-error", (e) => e.textContent)).toContain("neither the admin token nor the viewer token");
    expect(await page.$("#fleet-table")).toBeNull();
    await context.close();
  });

  test("a viewer sees the fleet but has no actions, and the server refuses them (403)", async () => {
    const context = await chrome.browser.createBrowserContext();
    const page = await openPage(context);
    await login(page, readFileSync(join(dir, "state", "viewer.token"), "utf8").trim());
    await page.waitForSelector(rowSelector(MACS[1]));
    expect(await page.$("#act-reload")).toBeNull();
    expect(await page.$eval("#role", (e) => e.textContent)).toBe("viewer");
    const statuses = await pageCalls(page, [
      { method: "GET", path: "/api/nodes", csrf: false },
      { method: "POST", path: "/api/reload", body: { selectors: ["node-2"], image: null }, csrf: true },
      { method: "POST", path: "/api/power", body: { selectors: ["node-2"] }, csrf: true },
      { method: "POST", path: "/api/nodes/import", body: "name,mac\n", csrf: true },
    ]);
    expect(statuses).toEqual([200, 403, 403, 403]);
    await context.close();
  });

  test("an admin login's cookie without the page's header cannot act (403); logout ends it (401)", async () => {
    const context = await chrome.browser.createBrowserContext();
    const page = await openPage(context);
    await login(page, daemon.adminToken());
    const statuses = await pageCalls(page, [
      { method: "POST", path: "/api/cancel", body: { selectors: ["node-2"] }, csrf: false },
      { method: "POST", path: "/api/cancel", body: { selectors: ["node-2"] }, csrf: true },
    ]);
    expect(statuses).toEqual([403, 200]);
    await page.click("#logout");
    await page.waitForSelector("#token");
    expect(await pageCalls(page, [{ method: "GET", path: "/api/nodes", csrf: true }])).toEqual([401]);
    await context.close();
    // The daemon logs JSON lines (--log-format json): each parses, with time, level and message;
    // each request's line names its method, route and status.
    const lines = daemon.log().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const l of lines) expect([typeof l.time, typeof l.level, typeof l.msg]).toEqual(["string", "string", "string"]);
    expect(lines.some((l) => l.method === "POST" && l.route === "/api/cancel" && l.status === 403)).toBe(true);
    expect(lines.some((l) => l.method === "GET" && l.route === "/api/stream" && l.status === 200)).toBe(true);
    // No token in the daemon's log, whatever the page sent.
    expect(daemon.log()).not.toContain(daemon.adminToken());
    expect(daemon.log()).not.toContain(readFileSync(join(dir, "state", "viewer.token"), "utf8").trim());
  });
});
