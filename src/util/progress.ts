// A progress line on stderr when it is a terminal; silent otherwise or with --quiet.
const REDRAW_INTERVAL_MS = 200;

export interface Progress {
  update(doneUnits: number): void;
  finish(): void;
}

export function progressBar(label: string, totalUnits: number, unit: "bytes" | "chunks", enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY || totalUnits <= 0) return { update() {}, finish() {} };
  const startedMs = performance.now();
  let lastDrawMs = 0;
  const draw = (done: number) => {
    const fraction = Math.min(1, done / totalUnits);
    const width = 30;
    const filled = Math.round(fraction * width);
    const seconds = (performance.now() - startedMs) / 1000;
    const rate = unit === "bytes" ? `${(done / 1e6 / Math.max(seconds, 0.001)).toFixed(1)} MB/s` : `${done}/${totalUnits}`;
    process.stderr.write(`\r${label} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${rate}   `);
  };
  return {
    update(done: number) {
      const now = performance.now();
      if (now - lastDrawMs < REDRAW_INTERVAL_MS) return;
      lastDrawMs = now;
      draw(done);
    },
    finish() {
      draw(totalUnits);
      process.stderr.write("\n");
    },
  };
}
