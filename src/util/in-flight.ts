// Bounds how many asynchronous jobs are outstanding: `add` waits while the bound is reached.
import { assert } from "./assert.ts";

export class InFlight {
  private readonly jobs = new Set<Promise<void>>();

  constructor(private readonly maxJobs: number) {
    assert(maxJobs >= 1, "at least one job may be in flight");
  }

  async add(job: Promise<void>): Promise<void> {
    const tracked: Promise<void> = job.finally(() => this.jobs.delete(tracked));
    tracked.catch(() => {}); // observed by race/drain; never an unhandled rejection
    this.jobs.add(tracked);
    if (this.jobs.size >= this.maxJobs) await Promise.race(this.jobs);
  }

  async drain(): Promise<void> {
    await Promise.all(this.jobs);
  }
}
