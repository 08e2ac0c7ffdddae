// Run inside a node's namespace by test/daemon/server.test.ts: the agent's own reporter
// (src/agent/daemon-client.ts), as a booted agent uses it. Prints `heard` or `not heard`.
// Usage: bun agent-report.ts SERVER TOKEN MAC written|failed [MESSAGE]
import { DaemonReporter } from "../../src/agent/daemon-client.ts";

const [server, token, mac, state, message] = process.argv.slice(2);
const reporter = new DaemonReporter({ server: server!, token: token!, mac: mac! });
reporter.progress(50, 1e6);
const heard = await reporter.finish(state === "failed" ? "failed" : "written", 3e6, message ?? "");
process.stdout.write(heard ? "heard" : "not heard");
