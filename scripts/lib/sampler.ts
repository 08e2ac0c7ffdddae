// Starts rx-sampler.ts in a lab host's namespace; stopping it returns the kernel's byte count of
// the host's interface every SAMPLE_MS (see rx-sampler.ts): what arrived, whatever the receiver's
// sockets did with it. Shared by bench-daemon and bench-multicast.
import { join } from "node:path";
import type { Host, Lab } from "./netlab.ts";

const samplerScript = join(import.meta.dir, "rx-sampler.ts");

export function startSampler(lab: Lab, host: Host): () => Promise<[number, number][]> {
  const proc = lab.spawn(host, ["bun", samplerScript, host.iface]);
  return async () => {
    proc.kill("SIGTERM");
    const text = await new Response(proc.stdout).text();
    await proc.exited;
    return JSON.parse(text) as [number, number][];
  };
}
