// Run inside a lab namespace by test/agent/http-fallback.test.ts: the agent's network load
// (src/agent/fallback.ts) as the agent runs it, minus the disk scan. Prints one JSON line:
// { via, note, said, imageId, chunks, signature, heard }.
//   bun fallback-node.ts direct GROUP PORT IFACE URL TARGET    settings given directly
//   bun fallback-node.ts daemon SERVER_URL MAC IFACE TARGET    from the daemon's boot script, as a node
import { DaemonReporter } from "../../src/agent/daemon-client.ts";
import { loadOverNetwork, type NetworkLoad } from "../../src/agent/fallback.ts";
import { resolveSettings } from "../../src/agent/settings.ts";
import { SessionKey } from "../../src/net/auth.ts";

const CALL_TIMEOUT_MS = 10_000;
const [mode, ...args] = process.argv.slice(2);
const said: string[] = [];
const common = { freeMode: "skip" as const, workers: 2, publicKey: null, keyPath: null, giveUpMs: 60_000, say: (l: string) => void said.push(l) };

async function fromDaemon(server: string, mac: string, iface: string, target: string): Promise<{ load: NetworkLoad; reporter: DaemonReporter }> {
  const res = await fetch(`${server}/boot.ipxe?mac=${encodeURIComponent(mac)}`, { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  const kernelLine = (await res.text()).split("\n").find((l) => l.startsWith("kernel ")) ?? "";
  const s = resolveSettings(kernelLine, null);
  const load: NetworkLoad = {
    ...common,
    group: s.group,
    port: s.port,
    iface,
    http: s.http,
    job: { server: s.server!, token: s.token!, mac: s.mac! },
    target,
    imageId: s.imageId,
    authKey: s.auth === null ? null : new SessionKey(s.auth),
  };
  return { load, reporter: new DaemonReporter({ server: s.server!, token: s.token!, mac: s.mac! }) };
}

let load: NetworkLoad;
let reporter: DaemonReporter | null = null;
if (mode === "direct") {
  const [group, port, iface, url, target] = args as [string, string, string, string, string];
  load = { ...common, group, port: Number(port), iface, http: url, job: null, target, imageId: null, authKey: null };
} else {
  const [server, mac, iface, target] = args as [string, string, string, string];
  ({ load, reporter } = await fromDaemon(server, mac, iface, target));
}
const r = await loadOverNetwork(load);
const heard = reporter === null ? null : await reporter.finish("written", r.stats.writtenBytes / r.stats.seconds, r.via === "http" ? r.note : "");
process.stdout.write(`${JSON.stringify({ via: r.via, note: r.note, said, imageId: r.stats.imageId, chunks: r.stats.chunks, signature: r.stats.signature, heard })}\n`);
