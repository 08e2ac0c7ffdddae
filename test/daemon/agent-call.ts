// Run inside a node's namespace by test/daemon/server.test.ts: one HTTP call to the daemon, as the
export {};
// agent (or an intruder) makes it. Prints `STATUS BODY`. Usage: bun agent-call.ts METHOD URL TOKEN [JSON]
const [method, url, token, body] = process.argv.slice(2);
const res = await fetch(url!, {
  method,
  headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { "content-type": "application/json" } : {}) },
  body: body || undefined,
  signal: AbortSignal.timeout(20_000),
});
process.stdout.write(`${res.status} ${await res.text()}`);
