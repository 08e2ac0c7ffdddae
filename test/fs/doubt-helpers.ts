// Shared by the doubt-*.test.ts suites: damaged copies of real filesystems go through the real
// capture planner (and, for the probe's cases, the real CLI and a restore compared with cmp).
import { $ } from "bun";
import { expect } from "bun:test";
import { closeSync, fstatSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_MIN_FREE_BYTES, planCapture, type CapturePlan } from "../../src/capture/layout.ts";
import type { AreaSummary } from "../../src/image/info.ts";
import { discusOk, tmpDir } from "../helpers.ts";

/** A private scratch directory for one suite; `cleanup` removes it. */
export async function scratchDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await tmpDir();
  return { dir, cleanup: async () => void (await $`rm -rf ${dir}`.quiet().nothrow()) };
}

/** The capture plan `discus create` would make for `path`, an unpartitioned filesystem image. */
export function planOf(path: string): CapturePlan {
  const fd = openSync(path, "r");
  try {
    return planCapture(fd, fstatSync(fd).size, { raw: false, minFreeBytes: DEFAULT_MIN_FREE_BYTES, sectorBytes: 512 });
  } finally {
    closeSync(fd);
  }
}

/** The one filesystem area of a bare filesystem image's plan. */
function onlyArea(plan: CapturePlan): AreaSummary {
  expect(plan.table.kind).toBe("none");
  expect(plan.areas.length).toBe(1);
  return plan.areas[0]!;
}

/** The clean image is parsed (not raw) as `fs`, with no warning: the checks do not make everything raw. */
export function expectParsed(path: string, fs: string): AreaSummary {
  const plan = planOf(path);
  const area = onlyArea(plan);
  expect({ captured: area.captured, fs: area.fs, warnings: plan.warnings }).toEqual({ captured: "fs", fs, warnings: [] });
  expect(area.capturedBytes).toBeLessThan(area.sizeBytes);
  return area;
}

/** The damaged image is captured whole, with a warning naming the doubt. */
export function expectRawPlan(path: string, why: RegExp): void {
  const area = onlyArea(planOf(path));
  expect(area.captured).toBe("raw");
  expect(area.capturedBytes).toBe(area.sizeBytes);
  expect(area.warning ?? "").toMatch(why);
}

/** Writes `bytes` to `dir/name` and checks the planner takes it raw for `why`. */
export function expectRawBytes(dir: string, name: string, bytes: Uint8Array, why: RegExp): void {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  try {
    expectRawPlan(path, why);
  } finally {
    writeFileSync(path, new Uint8Array(0));
  }
}

/**
 * The probe's path end to end: `discus create --json` warns and takes the area raw, `discus info`
 * shows it raw, and the restored file equals the damaged source byte for byte (cmp).
 */
export async function expectRawRoundTrip(source: string, dir: string, why: RegExp): Promise<void> {
  const image = join(dir, "doubt.dsc");
  const restored = join(dir, "doubt-restored.img");
  await $`rm -f ${image} ${restored}`.quiet();
  const created = JSON.parse(await discusOk(["create", "--json", "--quiet", source, image])) as { warnings: string[] };
  expect(created.warnings.length).toBe(1);
  expect(created.warnings[0]!).toMatch(why);
  expect(created.warnings[0]!).toContain("captured raw");
  const info = JSON.parse(await discusOk(["info", "--json", image])) as { areas: AreaSummary[] };
  expect(info.areas.map((a) => a.captured)).toEqual(["raw"]);
  await discusOk(["restore", "--quiet", image, restored]);
  const cmp = await $`cmp ${source} ${restored}`.quiet().nothrow();
  expect(cmp.exitCode).toBe(0);
  await $`rm -f ${image} ${restored}`.quiet();
}

/** A private copy of a fixture file. */
export async function copyOf(path: string, dir: string, name: string): Promise<string> {
  const out = join(dir, name);
  await $`cp --sparse=always ${path} ${out}`.quiet();
  return out;
}

export function bytesOf(path: string): Uint8Array {
  return new Uint8Array(readFileSync(path));
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
