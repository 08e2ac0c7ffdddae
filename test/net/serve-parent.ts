// A stand-in for a supervising parent (test/net/serve-events.test.ts): starts `discus serve ARGS
// --events json --exit-with-stdin` with stdin a pipe it holds, prints the child's pid once the
// child's `started` event arrives, then waits for ever; the test kills it with SIGKILL.
// Usage: bun serve-parent.ts SERVE-ARGS...
import { join } from "node:path";

const cli = join(import.meta.dir, "..", "..", "src", "cli.ts");
const child = Bun.spawn(["bun", cli, "serve", ...process.argv.slice(2), "--events", "json", "--exit-with-stdin"], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
const decoder = new TextDecoder();
let text = "";
for await (const chunk of child.stdout) {
  text += decoder.decode(chunk, { stream: true });
  if (text.includes('"kind":"started"')) break;
}
process.stdout.write(`${child.pid}\n`);
// Held open, stdin stays the child's lifeline until this process dies.
setInterval(() => {}, 60_000);
