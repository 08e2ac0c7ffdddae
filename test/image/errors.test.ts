// Bad input gets a clear error, a non-zero exit code, and the target stays untouched.
import { beforeAll, describe, expect, test } from "bun:test";
import { FIXTURE_TIMEOUT_MS } from "../helpers.ts";
import { $ } from "bun";
import { closeSync, existsSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { exitCodeByKind } from "../../src/util/errors.ts";
import { extImage } from "../fixtures/ext.ts";
import { withLoop, withMount } from "../fixtures/common.ts";
import { discus, discusOk, sha256File, tmpDir } from "../helpers.ts";

const MiB = 1 << 20;

function flipByte(path: string, offset: number): void {
  const fd = openSync(path, "r+");
  const b = new Uint8Array(1);
  readSync(fd, b, 0, 1, offset);
  b[0] = b[0]! ^ 0xff;
  writeSync(fd, b, 0, 1, offset);
  closeSync(fd);
}

describe("errors", () => {
  let dir: string;
  let source: string;
  let image: string;
  let target: string;
  let targetDigest: string;
  beforeAll(async () => {
    dir = await tmpDir();
    source = await extImage("ext4", { imageMiB: 64, contentMiB: 12, label: "errors" });
    image = join(dir, "good.dsc");
    await discusOk(["create", "--quiet", source, image]);
    // An existing target with known content: every failed restore must leave it as it was.
    target = join(dir, "target.img");
    await $`head -c ${64 * MiB} /dev/urandom > ${target}`;
    targetDigest = await sha256File(target);
  }, FIXTURE_TIMEOUT_MS);

  async function expectRefused(args: string[], kind: keyof typeof exitCodeByKind, message: RegExp): Promise<void> {
    const r = await discus(args);
    expect(r.code).toBe(exitCodeByKind[kind]);
    expect(r.stderr).toMatch(message);
    expect(await sha256File(target)).toBe(targetDigest);
  }

  test("a corrupt byte in a chunk's payload: refused before anything is written", async () => {
    const bad = join(dir, "corrupt-payload.dsc");
    await $`cp ${image} ${bad}`;
    flipByte(bad, 1 * MiB + 5000); // inside chunk 1's payload
    await expectRefused(["restore", "--quiet", bad, target], "input", /chunk 1: chunk digest does not match the manifest\. The image is damaged/);
    const v = await discus(["verify", bad]);
    expect(v.code).toBe(exitCodeByKind.input);
    expect(v.stdout).toContain("chunk 1:");
  });

  test("a corrupt byte in the manifest or the trailer: refused", async () => {
    const bad = join(dir, "corrupt-manifest.dsc");
    await $`cp ${image} ${bad}`;
    const size = Bun.file(bad).size;
    flipByte(bad, size - 512 - 100); // last manifest part (zero padding is outside the digest; pick the trailer area too)
    flipByte(bad, size - 512 + 20); // trailer field
    await expectRefused(["restore", "--quiet", bad, target], "input", /trailer CRC mismatch/);
  });

  test("a truncated image: refused with a clear reason", async () => {
    const bad = join(dir, "truncated.dsc");
    await $`head -c ${2 * MiB + 1234} ${image} > ${bad}`;
    await expectRefused(["restore", "--quiet", bad, target], "input", /no discus trailer|truncated/);
  });

  test("a target smaller than the source: refused", async () => {
    const small = join(dir, "small.img");
    await $`truncate -s ${32 * MiB} ${small}`;
    const before = await sha256File(small);
    const r = await discus(["restore", "--quiet", image, small]);
    expect(r.code).toBe(exitCodeByKind.target);
    expect(r.stderr).toMatch(/is 32\.0 MiB, the image needs 64\.0 MiB/);
    expect(await sha256File(small)).toBe(before);
  });

  test("a mounted target: refused", async () => {
    const disk = join(dir, "mounted.img");
    await $`cp --sparse=always ${source} ${disk}`;
    await withLoop(disk, async (dev) => {
      await withMount(dev, "ext4", async () => {
        const r = await discus(["restore", "--quiet", image, dev]);
        expect(r.code).toBe(exitCodeByKind.target);
        expect(r.stderr).toMatch(/is mounted \(.*\)\. Unmount it/);
      }, "ro");
    });
    // A file attached to a loop device is in use too.
    await withLoop(disk, async (dev) => {
      const r = await discus(["restore", "--quiet", image, disk]);
      expect(r.code).toBe(exitCodeByKind.target);
      expect(r.stderr).toContain(`is attached to ${dev}`);
    });
  });

  test("a wrong signature: refused; the right key: accepted", async () => {
    await discusOk(["keygen", join(dir, "alice")]);
    await discusOk(["keygen", join(dir, "mallory")]);
    const signed = join(dir, "signed.dsc");
    await discusOk(["create", "--quiet", "--sign", join(dir, "alice.key"), source, signed]);
    expect((await discus(["verify", "--key", join(dir, "alice.pub"), signed])).code).toBe(0);
    const wrong = await discus(["verify", "--key", join(dir, "mallory.pub"), signed]);
    expect(wrong.code).toBe(exitCodeByKind.signature);
    expect(wrong.stderr).toMatch(/signature does not verify/);
    await expectRefused(["restore", "--quiet", "--key", join(dir, "mallory.pub"), signed, target], "signature", /signature does not verify/);
    await expectRefused(["restore", "--quiet", "--key", join(dir, "alice.pub"), image, target], "signature", /is not signed/);
    // A signed manifest whose bytes were altered no longer matches the trailer's digest.
    const forged = join(dir, "forged.dsc");
    await $`cp ${signed} ${forged}`;
    const img = Bun.file(forged).size;
    flipByte(forged, img - 512 - 1 * MiB + 200);
    expect((await discus(["verify", "--key", join(dir, "alice.pub"), forged])).code).toBe(exitCodeByKind.input);
    // And with the right key the restore goes through.
    const ok = join(dir, "signed-restore.img");
    await discusOk(["restore", "--quiet", "--key", join(dir, "alice.pub"), signed, ok]);
    expect(existsSync(ok)).toBe(true);
  });

  test("usage errors name the option and what to do", async () => {
    const r = await discus(["create", "--level", "42", source, join(dir, "x.dsc")]);
    expect(r.code).toBe(exitCodeByKind.usage);
    expect(r.stderr).toMatch(/--level: 42 is outside 1\.\.19/);
    const exists = await discus(["create", source, image]);
    expect(exists.code).toBe(exitCodeByKind.usage);
    expect(exists.stderr).toMatch(/already exists\. Pass --force/);
    const missing = await discus(["restore", join(dir, "nope.dsc"), target]);
    expect(missing.code).toBe(exitCodeByKind.input);
    expect(missing.stderr).toMatch(/cannot open the image \(ENOENT\)/);
  });
});
