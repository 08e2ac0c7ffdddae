// GET /boot/NAME: the agent's kernel and initramfs for iPXE, from one directory the admin chose.
// No token (firmware holds none); only plain names are served, so nothing outside that
// directory can be reached. And GRUB's per-MAC answer over TFTP (the Secure Boot path).
import { statSync } from "node:fs";
import { join } from "node:path";
import { HttpError } from "./respond.ts";
import type { Route } from "./router.ts";
import type { DaemonApi } from "../daemon/api-types.ts";
import type { TftpAnswer } from "./tftp-boot.ts";

/** A file name: no separators, no leading dot (so neither `..` nor hidden files). */
const BOOT_FILE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function bootFileRoute(bootDir: string): Route {
  return {
    method: "GET",
    path: "/boot/:file",
    auth: "none",
    handle: async (c) => {
      const name = c.params.file!;
      if (!BOOT_FILE_PATTERN.test(name)) throw new HttpError(400, "a boot file name is letters, digits, '.', '_' and '-', not starting with '.'");
      const path = join(bootDir, name);
      const st = statSync(path, { throwIfNoEntry: false });
      if (st === undefined || !st.isFile()) throw new HttpError(404, `no boot file ${name}`);
      return new Response(Bun.file(path), { headers: { "content-type": "application/octet-stream", "content-length": String(st.size) } });
    },
  };
}

/** The one name the TFTP face answers: GRUB's `boot.grub?mac=MAC` (a leading `/` allowed). */
const GRUB_TFTP_FILE = /^\/?boot\.grub\?mac=([0-9A-Fa-f:.-]{1,64})$/;

/**
 * What `discus server --tftp` answers GRUB: the node's boot decision (`baseUrl`: where its agent
 * then reaches the daemon over HTTP). Any other name is "not found", with what is served.
 */
export function grubTftpAnswer(api: Pick<DaemonApi, "bootScript">, baseUrl: string): TftpAnswer {
  return async (file) => {
    const mac = GRUB_TFTP_FILE.exec(file)?.[1];
    if (mac === undefined) return { notFound: "this server answers only boot.grub?mac=MAC" };
    return new TextEncoder().encode(await api.bootScript(mac, baseUrl, "grub"));
  };
}
