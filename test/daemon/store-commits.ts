// Run by test/daemon/store-commits.test.ts under strace: opens the store at URL and makes COUNT
// small commits, as the daemon does for agent reports (one job update each).
// Usage: bun store-commits.ts URL COUNT
import { openStore } from "../../src/daemon/store.ts";

const [url, countText] = process.argv.slice(2);
const store = await openStore(url!);
const job = await store.createJob({ mac: "02:00:5e:00:00:01", kind: "load", image: "bench", state: "loading", tokenSha256: "ab".repeat(32), agentBoots: 1, percent: 0, bytesPerSecond: 0, error: null, createdMs: 1, updatedMs: 1 });
for (let i = 1; i <= Number(countText); i++) await store.updateJob(job.id, { percent: i % 100, updatedMs: 1 + i });
await store.close();
