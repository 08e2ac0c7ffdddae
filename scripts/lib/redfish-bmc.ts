// A Redfish BMC for tests: a small HTTPS service shaped after DMTF's public mockups (a service
// root, Systems, Chassis and Managers collections with one member each, a SessionService) that
// owns the power of a QEMU guest, as a real BMC owns its host's. It runs as its own process in a
// lab host's namespace (so it listens on a 198.18/15 address) and holds the guest through QMP on a
// unix socket: PowerState is On while QEMU runs (query-status), Off when it was never started or
// has quit; On starts QEMU, ForceRestart and PowerCycle are QMP `system_reset`, ForceOff is QMP
// `quit`. A boot source override is recorded (with the If-Match it came with) and cleared by the
// next boot when it was for Once; the firmware's boot order itself is not changed.
// Authentication: Basic, or an X-Auth-Token from POST /redfish/v1/SessionService/Sessions.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { $ } from "bun";
import { guestQemuArgv, pidAlive, waitGone } from "./bmc.ts";
import type { Host, Lab } from "./netlab.ts";

/** HTTPS's own port: the BMC has its namespace to itself. */
export const REDFISH_PORT = 443;
export const SYSTEM_ID = "qemu-guest";
const SYSTEM_PATH = `/redfish/v1/Systems/${SYSTEM_ID}`;
const RESET_PATH = `${SYSTEM_PATH}/Actions/ComputerSystem.Reset`;
const CHASSIS_PATH = "/redfish/v1/Chassis/1U";
const MANAGER_PATH = "/redfish/v1/Managers/BMC";
const SESSIONS_PATH = "/redfish/v1/SessionService/Sessions";
export const RESET_TYPES = ["On", "ForceOn", "ForceOff", "ForceRestart", "PowerCycle"] as const;
const BOOT_TARGETS = ["None", "Pxe", "Hdd", "Cd", "BiosSetup"];
const BOOT_ENABLED = ["Disabled", "Once", "Continuous"];
/** Request bodies are a few hundred bytes; anything larger is refused. */
const MAX_REQUEST_BYTES = 64 * 1024;
const QMP_TIMEOUT_MS = 5_000;
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 100;
const CERT_DAYS = 2;

type Json = Record<string, unknown>;
type ResetType = (typeof RESET_TYPES)[number];

export interface RedfishBmcOptions {
  lab: Lab;
  /** The lab host whose namespace and address the BMC takes. */
  host: Host;
  /** Working directory: certificate, key, config, QMP socket, console, records. */
  dir: string;
  user: string;
  password: string;
  /** The guest's own QEMU arguments (accel, memory, disks, NICs); the BMC adds console and QMP. */
  guestArgs: string[];
}

export interface BootOverride { target: string; enabled: string; ifMatch: string | null }

export interface RedfishBmc {
  address: string;
  /** ADDRESS:PORT, as redfishtool's -r and the driver's host take it. */
  hostPort: string;
  user: string;
  /** Holds the right password, mode 0600. */
  passwordFile: string;
  /** The BMC's self-signed certificate (PEM), naming its address: the driver's caFile. */
  certFile: string;
  consolePath: string;
  /** How many times the BMC has started QEMU (power on). */
  guestStarts(): number;
  /** How many QMP system_reset commands QEMU accepted. */
  resets(): number;
  /** Every boot override PATCH the BMC accepted, oldest first. */
  bootOverrides(): BootOverride[];
  /** Stops the service and the guest; idempotent. */
  stop(): Promise<void>;
}

const lines = (file: string): string[] => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : []);

/** Starts the service in `o.host`'s namespace; resolves once it answers HTTPS. */
export async function startRedfishBmc(o: RedfishBmcOptions): Promise<RedfishBmc> {
  const certFile = join(o.dir, "cert.pem");
  const keyFile = join(o.dir, "key.pem");
  await $`mkdir -p ${o.dir}`;
  await $`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days ${CERT_DAYS} -subj /CN=redfish-bmc -addext ${`subjectAltName=IP:${o.host.address}`} -keyout ${keyFile} -out ${certFile}`.quiet();
  const passwordFile = join(o.dir, "password");
  writeFileSync(passwordFile, `${o.password}\n`, { mode: 0o600 });
  const config: ServiceConfig = { address: o.host.address, user: o.user, passwordFile, certFile, keyFile, dir: o.dir, qemu: guestQemuArgv(join(o.dir, "console.log"), ["-qmp", `unix:${join(o.dir, "qmp.sock")},server=on,wait=off`, ...o.guestArgs], { firmwareConsole: true }) };
  const configFile = join(o.dir, "service.json");
  writeFileSync(configFile, JSON.stringify(config), { mode: 0o600 });
  // stdin is its lifeline: the service ends (and powers its guest off) when this process goes.
  const proc = o.lab.spawn(o.host, ["bun", import.meta.path, configFile], { stdin: "pipe" });
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then((t) => t.join(""));
  let stopped: Promise<void> | undefined;
  const bmc: RedfishBmc = {
    address: o.host.address,
    hostPort: `${o.host.address}:${REDFISH_PORT}`,
    user: o.user,
    passwordFile,
    certFile,
    consolePath: join(o.dir, "console.log"),
    guestStarts: () => lines(join(o.dir, "starts")).length,
    resets: () => lines(join(o.dir, "resets")).length,
    bootOverrides: () => lines(join(o.dir, "boot-overrides")).map((l) => JSON.parse(l) as BootOverride),
    stop() {
      stopped ??= (async () => {
        (proc.stdin as import("bun").FileSink).end();
        const quit = await Promise.race([proc.exited.then(() => true), Bun.sleep(STOP_TIMEOUT_MS).then(() => false)]);
        if (!quit) proc.kill("SIGKILL");
        await proc.exited;
        const pid = Number(lines(join(o.dir, "qemu.pid")).at(-1) ?? 0);
        if (pid > 0 && pidAlive(pid, "qemu")) process.kill(pid, "SIGKILL");
      })();
      return stopped;
    },
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const r = await o.lab.exec(o.host, ["curl", "-sS", "--cacert", certFile, "-o", "/dev/null", "-w", "%{http_code}", `https://${bmc.hostPort}/redfish/v1/`]);
    if (r.stdout === "200") return bmc;
    if (proc.exitCode !== null || Date.now() > deadline) {
      await bmc.stop();
      throw new Error(`redfish-bmc: no answer on ${bmc.hostPort}: ${r.stderr.trim()} ${await output}`);
    }
    await Bun.sleep(POLL_MS);
  }
}

// ---- The service itself, run as `bun scripts/lib/redfish-bmc.ts CONFIG.json` ----

interface ServiceConfig { address: string; user: string; passwordFile: string; certFile: string; keyFile: string; dir: string; qemu: string[] }

/** A Redfish error body: the Base registry's message id and text, as DMTF services answer. */
function redfishError(status: number, id: string, message: string, headers: Record<string, string> = {}): Response {
  const body = { error: { code: `Base.1.8.${id}`, message, "@Message.ExtendedInfo": [{ "@odata.type": "#Message.v1_1_1.Message", MessageId: `Base.1.8.${id}`, Message: message, Severity: "Critical", Resolution: "See the message." }] } };
  return Response.json(body, { status, headers: { "OData-Version": "4.0", ...headers } });
}

const ok = (body: Json, headers: Record<string, string> = {}): Response => Response.json(body, { headers: { "OData-Version": "4.0", ...headers } });
const ref = (path: string): Json => ({ "@odata.id": path });

function collection(path: string, type: string, name: string, members: string[]): Json {
  return { "@odata.id": path, "@odata.type": `#${type}.${type}`, Name: name, "Members@odata.count": members.length, Members: members.map(ref) };
}

/** One QMP command on the guest's socket: greeting, capabilities, the command; its `return`. */
export function qmp(socket: string, execute: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    let buffered = "";
    let sent = false;
    const timer = setTimeout(() => done(new Error(`QMP ${execute}: no answer within ${QMP_TIMEOUT_MS} ms`)), QMP_TIMEOUT_MS);
    const done = (e: Error | null, value?: unknown): void => {
      clearTimeout(timer);
      conn.destroy();
      if (e === null) resolve(value);
      else reject(e);
    };
    conn.on("error", (e) => done(e));
    conn.on("data", (chunk) => {
      buffered += chunk.toString("utf8");
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const msg = JSON.parse(buffered.slice(0, nl)) as Json;
        buffered = buffered.slice(nl + 1);
        if ("QMP" in msg) conn.write(`${JSON.stringify({ execute: "qmp_capabilities" })}\n`);
        else if ("error" in msg) done(new Error(`QMP ${execute}: ${JSON.stringify(msg.error)}`));
        else if ("return" in msg && !sent) {
          sent = true;
          conn.write(`${JSON.stringify({ execute })}\n`);
        } else if ("return" in msg) done(null, msg.return);
      }
    });
    conn.on("close", () => done(new Error(`QMP ${execute}: the socket closed`), undefined));
  });
}

class Service {
  private guest: ReturnType<typeof Bun.spawn> | null = null;
  private override = { target: "None", enabled: "Disabled" };
  private etag = 1;
  private readonly sessions = new Map<string, string>();
  private readonly password: string;
  private readonly qmpSocket: string;

  constructor(private readonly c: ServiceConfig) {
    this.password = readFileSync(c.passwordFile, "utf8").split("\n")[0]!;
    this.qmpSocket = join(c.dir, "qmp.sock");
  }

  private record(file: string, line: string): void {
    appendFileSync(join(this.c.dir, file), `${line}\n`);
  }

  /** On while QEMU runs; Off if it never started, has quit, or stopped running. */
  async powerState(): Promise<"On" | "Off"> {
    if (this.guest === null || this.guest.exitCode !== null || this.guest.signalCode !== null) return "Off";
    const status = (await qmp(this.qmpSocket, "query-status").catch(() => null)) as { status?: string } | null;
    return status?.status === "running" ? "On" : "Off";
  }

  /** A boot consumes a Once override, as DMTF's BootSourceOverrideEnabled says. */
  private booted(): void {
    if (this.override.enabled === "Once") this.override = { target: "None", enabled: "Disabled" };
  }

  private async powerOn(): Promise<void> {
    this.guest = Bun.spawn(this.c.qemu, { stdin: "ignore", stdout: "ignore", stderr: "inherit" });
    this.record("starts", String(Date.now()));
    this.record("qemu.pid", String(this.guest.pid));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while ((await this.powerState()) !== "On") {
      if (this.guest.exitCode !== null || Date.now() > deadline) throw new Error(`QEMU did not start (exit ${this.guest.exitCode})`);
      await Bun.sleep(POLL_MS);
    }
    this.booted();
  }

  private async powerOff(): Promise<void> {
    const guest = this.guest;
    if (guest === null) return;
    await qmp(this.qmpSocket, "quit").catch(() => null);
    if (!(await waitGone(guest.pid, "qemu", STOP_TIMEOUT_MS))) guest.kill("SIGKILL");
    await guest.exited;
    this.guest = null;
  }

  async reset(type: ResetType): Promise<Response> {
    const state = await this.powerState();
    if (type === "ForceOff") await this.powerOff();
    else if (state === "Off" && (type === "On" || type === "ForceOn" || type === "PowerCycle")) await this.powerOn();
    else if (state === "On" && (type === "ForceRestart" || type === "PowerCycle")) {
      await qmp(this.qmpSocket, "system_reset");
      this.record("resets", `${Date.now()} ${type}`);
      this.booted();
    } else if (state === "Off") return redfishError(409, "ResourceInStandby", `The system is off; ${type} needs it on.`);
    return new Response(null, { status: 204, headers: { "OData-Version": "4.0" } });
  }

  async system(): Promise<Json> {
    const power = await this.powerState();
    return {
      "@odata.id": SYSTEM_PATH, "@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem", "@odata.etag": this.etagValue(),
      Id: SYSTEM_ID, Name: "QEMU guest", SystemType: "Virtual", Manufacturer: "QEMU", Model: "Standard PC (i440FX + PIIX, 1996)",
      Status: { State: "Enabled", Health: "OK" }, PowerState: power,
      Boot: { BootSourceOverrideEnabled: this.override.enabled, BootSourceOverrideTarget: this.override.target, "BootSourceOverrideTarget@Redfish.AllowableValues": BOOT_TARGETS, BootSourceOverrideMode: "Legacy" },
      Actions: { "#ComputerSystem.Reset": { target: RESET_PATH, "ResetType@Redfish.AllowableValues": RESET_TYPES } },
      Links: { Chassis: [ref(CHASSIS_PATH)], ManagedBy: [ref(MANAGER_PATH)] },
    };
  }

  etagValue(): string {
    return `W/"${this.etag}"`;
  }

  /** PATCH of the system: only Boot's override target and enabled, If-Match required. */
  patchBoot(body: unknown, ifMatch: string | null): Response {
    if (ifMatch === null) return redfishError(428, "PreconditionRequired", "A PATCH of this resource needs an If-Match header with its ETag.");
    if (ifMatch !== this.etagValue()) return redfishError(412, "PreconditionFailed", "The ETag in If-Match does not match the resource's.");
    const boot = typeof body === "object" && body !== null ? (body as Json).Boot : undefined;
    const keys = typeof body === "object" && body !== null ? Object.keys(body) : [];
    if (typeof boot !== "object" || boot === null || keys.length !== 1) return redfishError(400, "PropertyUnknown", "Only Boot can be changed here.");
    const b = boot as Json;
    const target = b.BootSourceOverrideTarget ?? this.override.target;
    const enabled = b.BootSourceOverrideEnabled ?? this.override.enabled;
    if (typeof target !== "string" || !BOOT_TARGETS.includes(target)) return redfishError(400, "PropertyValueNotInList", `BootSourceOverrideTarget ${JSON.stringify(target)} is not one of ${BOOT_TARGETS.join(", ")}.`);
    if (typeof enabled !== "string" || !BOOT_ENABLED.includes(enabled)) return redfishError(400, "PropertyValueNotInList", `BootSourceOverrideEnabled ${JSON.stringify(enabled)} is not one of ${BOOT_ENABLED.join(", ")}.`);
    this.override = { target, enabled };
    this.etag++;
    this.record("boot-overrides", JSON.stringify({ target, enabled, ifMatch } satisfies BootOverride));
    return new Response(null, { status: 204, headers: { "OData-Version": "4.0" } });
  }

  /** Basic credentials or a session token; null if neither is right. */
  authorized(req: Request): string | null {
    const token = req.headers.get("x-auth-token");
    if (token !== null) return this.sessions.has(token) ? this.c.user : null;
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(req.headers.get("authorization") ?? "");
    if (m === null) return null;
    const pair = Buffer.from(m[1]!, "base64").toString("utf8");
    return pair === `${this.c.user}:${this.password}` ? this.c.user : null;
  }

  login(body: unknown): Response {
    const b = (typeof body === "object" && body !== null ? body : {}) as Json;
    if (b.UserName !== this.c.user || b.Password !== this.password) return redfishError(401, "NoValidSession", "The user name or password is wrong.");
    const token = crypto.randomUUID();
    const id = String(this.sessions.size + 1);
    this.sessions.set(token, id);
    return Response.json({ "@odata.id": `${SESSIONS_PATH}/${id}`, "@odata.type": "#Session.v1_3_0.Session", Id: id, Name: "User Session", UserName: this.c.user }, { status: 201, headers: { "X-Auth-Token": token, Location: `${SESSIONS_PATH}/${id}`, "OData-Version": "4.0" } });
  }

  logout(path: string): Response {
    for (const [token, id] of this.sessions) if (`${SESSIONS_PATH}/${id}` === path) this.sessions.delete(token);
    return new Response(null, { status: 204 });
  }

  sessionMembers(): string[] {
    return [...this.sessions.values()].map((id) => `${SESSIONS_PATH}/${id}`);
  }

  shutdown(): Promise<void> {
    return this.powerOff();
  }
}

const SERVICE_ROOT: Json = {
  "@odata.id": "/redfish/v1/", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot", Id: "RootService", Name: "Root Service",
  RedfishVersion: "1.6.0", UUID: "92384634-2938-2342-8820-489239905423",
  Systems: ref("/redfish/v1/Systems"), Chassis: ref("/redfish/v1/Chassis"), Managers: ref("/redfish/v1/Managers"),
  SessionService: ref("/redfish/v1/SessionService"), Links: { Sessions: ref(SESSIONS_PATH) },
};

/** Resources anyone may read: the version document and the service root (DMTF: no authentication). */
function publicResource(path: string): Json | null {
  if (path === "/redfish") return { v1: "/redfish/v1/" };
  if (path === "/redfish/v1") return SERVICE_ROOT;
  return null;
}

function staticResource(path: string, s: Service): Json | null {
  switch (path) {
    case "/redfish/v1/Systems": return collection(path, "ComputerSystemCollection", "Computer System Collection", [SYSTEM_PATH]);
    case "/redfish/v1/Chassis": return collection(path, "ChassisCollection", "Chassis Collection", [CHASSIS_PATH]);
    case "/redfish/v1/Managers": return collection(path, "ManagerCollection", "Manager Collection", [MANAGER_PATH]);
    case CHASSIS_PATH: return { "@odata.id": path, "@odata.type": "#Chassis.v1_14_0.Chassis", Id: "1U", Name: "Lab rack unit", ChassisType: "RackMount", Status: { State: "Enabled", Health: "OK" }, Links: { ComputerSystems: [ref(SYSTEM_PATH)], ManagedBy: [ref(MANAGER_PATH)] } };
    case MANAGER_PATH: return { "@odata.id": path, "@odata.type": "#Manager.v1_10_0.Manager", Id: "BMC", Name: "Manager", ManagerType: "BMC", FirmwareVersion: "discus-test-1", Status: { State: "Enabled", Health: "OK" }, Links: { ManagerForServers: [ref(SYSTEM_PATH)], ManagerForChassis: [ref(CHASSIS_PATH)] } };
    case "/redfish/v1/SessionService": return { "@odata.id": path, "@odata.type": "#SessionService.v1_1_8.SessionService", Id: "SessionService", Name: "Session Service", ServiceEnabled: true, SessionTimeout: 1800, Sessions: ref(SESSIONS_PATH) };
    case SESSIONS_PATH: return collection(path, "SessionCollection", "Session Collection", s.sessionMembers());
    default: return null;
  }
}

async function bodyOf(req: Request): Promise<unknown> {
  const text = await req.text();
  if (text.length > MAX_REQUEST_BYTES) throw new Error("too large");
  return text === "" ? null : JSON.parse(text);
}

async function route(req: Request, s: Service): Promise<Response> {
  const path = new URL(req.url).pathname.replace(/\/+$/, "") || "/";
  const open = publicResource(path);
  if (open !== null && req.method === "GET") return ok(open);
  let body: unknown = null;
  try {
    body = await bodyOf(req);
  } catch {
    return redfishError(400, "MalformedJSON", "The request body is not JSON of at most 64 KiB.");
  }
  if (path === SESSIONS_PATH && req.method === "POST") return s.login(body);
  if (s.authorized(req) === null) return redfishError(401, "NoValidSession", "There is no valid session established with the implementation.", { "WWW-Authenticate": 'Basic realm="Redfish"' });
  if (path === SYSTEM_PATH && req.method === "GET") return ok(await s.system(), { ETag: s.etagValue() });
  if (path === SYSTEM_PATH && req.method === "PATCH") return s.patchBoot(body, req.headers.get("if-match"));
  if (path === RESET_PATH && req.method === "POST") {
    const type = (body as Json | null)?.ResetType;
    if (!RESET_TYPES.includes(type as ResetType)) return redfishError(400, "ActionParameterNotSupported", `ResetType ${JSON.stringify(type)} is not one of ${RESET_TYPES.join(", ")}.`);
    return s.reset(type as ResetType);
  }
  if (path.startsWith(`${SESSIONS_PATH}/`) && req.method === "DELETE") return s.logout(path);
  const resource = staticResource(path, s);
  if (resource !== null && req.method === "GET") return ok(resource);
  if (resource !== null || path === SYSTEM_PATH) return redfishError(405, "OperationNotAllowed", `${req.method} is not allowed on ${path}.`);
  return redfishError(404, "ResourceMissingAtURI", `The resource at ${path} was not found.`);
}

async function serve(configFile: string): Promise<void> {
  const c = JSON.parse(readFileSync(configFile, "utf8")) as ServiceConfig;
  const s = new Service(c);
  const server = Bun.serve({
    hostname: c.address, port: REDFISH_PORT,
    tls: { cert: readFileSync(c.certFile, "utf8"), key: readFileSync(c.keyFile, "utf8") },
    fetch: (req) => route(req, s).catch((e: Error) => redfishError(500, "InternalError", e.message)),
  });
  console.log(`redfish-bmc listening on https://${c.address}:${REDFISH_PORT}`);
  // The lifeline: when the test closes our stdin (or dies), power off and go.
  for await (const _ of Bun.stdin.stream()) void _;
  await s.shutdown();
  server.stop(true);
  process.exit(0);
}

if (import.meta.main) await serve(process.argv[2]!);
