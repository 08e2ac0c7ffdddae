// A throwaway PostgreSQL cluster for the store's tests: initdb in a temp dir, run as the
// `postgres` user (the server refuses root), reachable only on a unix socket in that dir, so
// nothing on the machine can reach it and several test runs never clash over a TCP port.
import { $ } from "bun";
import { chownSync, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { tmpDir } from "../helpers.ts";

/** How long the server may take to start or stop on a busy 2-core machine. */
const PG_CTL_TIMEOUT_S = 60;
/** The port only names the socket file (`.s.PGSQL.PORT`); nothing listens on TCP. */
const SOCKET_PORT = 5432;
const POSTGRES_ROOT = "/usr/lib/postgresql";

export interface Postgres {
  /** A `postgres://` URL for the database `discus`, over the unix socket. */
  url: string;
  /** The directory holding the data dir and the socket. */
  dir: string;
  /** A `postgres://` URL for a new, empty database of its own (one per test). */
  newDatabase(): Promise<string>;
  /** Stops the server and removes its files. */
  stop(): Promise<void>;
}

/** The newest installed server's bin dir; throws a clear error when PostgreSQL is missing. */
function serverBin(): string {
  const versions = existsSync(POSTGRES_ROOT)
    ? readdirSync(POSTGRES_ROOT).filter((v) => existsSync(join(POSTGRES_ROOT, v, "bin", "initdb")))
    : [];
  versions.sort((a, b) => Number(b) - Number(a));
  const newest = versions[0];
  if (newest === undefined) {
    throw new Error(`PostgreSQL is not installed (no ${POSTGRES_ROOT}/*/bin/initdb): run \`bash scripts/setup\` or \`apt-get install -y postgresql\``);
  }
  return join(POSTGRES_ROOT, newest, "bin");
}

/** Starts a fresh cluster with one database, `discus`. */
export async function startPostgres(): Promise<Postgres> {
  const bin = serverBin();
  const dir = await tmpDir();
  const data = join(dir, "data");
  const uid = Number((await $`id -u postgres`.text()).trim());
  const gid = Number((await $`id -g postgres`.text()).trim());
  chownSync(dir, uid, gid);
  const asPg = (cmd: string[]) => $`runuser -u postgres -- ${cmd}`.cwd(dir).quiet();
  await asPg([join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"]);
  const opts = `-c listen_addresses='' -c unix_socket_directories=${dir} -c port=${SOCKET_PORT} -c fsync=off`;
  await asPg([join(bin, "pg_ctl"), "-D", data, "-o", opts, "-l", join(dir, "log"), "-w", "-t", String(PG_CTL_TIMEOUT_S), "start"]);
  const stop = async () => {
    await asPg([join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "-t", String(PG_CTL_TIMEOUT_S), "stop"]).nothrow();
    await $`rm -rf ${dir}`.quiet();
  };
  try {
    await asPg([join(bin, "createdb"), "-h", dir, "-p", String(SOCKET_PORT), "-U", "postgres", "discus"]);
  } catch (e) {
    await stop();
    throw e;
  }
  const urlOf = (db: string) => `postgres://postgres@/${db}?host=${dir}`;
  let databases = 0;
  const newDatabase = async () => {
    const name = `discus${++databases}`;
    await asPg([join(bin, "createdb"), "-h", dir, "-p", String(SOCKET_PORT), "-U", "postgres", name]);
    return urlOf(name);
  };
  return { url: urlOf("discus"), dir, newDatabase, stop };
}
