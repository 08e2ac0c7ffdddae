// Where the codec worker's code lives: beside this file in a checkout, or inside the compiled
// executable (`bun build --compile src/cli.ts src/target/worker.ts` embeds it under /$bunfs/root).
export const WORKER_URL: string = import.meta.path.startsWith("/$bunfs/")
  ? "/$bunfs/root/target/worker.js"
  : new URL("./worker.ts", import.meta.url).href;
