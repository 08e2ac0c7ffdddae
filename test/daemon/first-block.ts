// Run in the server's namespace by test/daemon/pxe-daemon.test.ts: polls the daemon's status until
// the image's session has sent bytes, and prints the wall-clock time (epoch ms) it first saw them:
// the measurement "from `discus reload` to the first block on the wire" (issue 11).
// Usage: bun first-block.ts URL ADMIN-TOKEN IMAGE-NAME
export {};
const POLL_MS = 200;
const GIVE_UP_MS = 600_000;
const [url, token, image] = process.argv.slice(2);
const endMs = Date.now() + GIVE_UP_MS;
while (Date.now() < endMs) {
  try {
    const res = await fetch(`${url}/api/status`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
    const status = (await res.json()) as { sessions: { image: string; bytesSent: number }[] };
    if (status.sessions.some((s) => s.image === image && s.bytesSent > 0)) {
      process.stdout.write(String(Date.now()));
      process.exit(0);
    }
  } catch {
    // the daemon is busy or restarting: poll again
  }
  await Bun.sleep(POLL_MS);
}
process.exit(1);
