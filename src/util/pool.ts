// A fixed pool of worker threads with a bounded number of jobs in flight per worker.
import { assert } from "./assert.ts";
import { DiscusError, type ErrorKind } from "./errors.ts";

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  inFlight: number;
}

export interface PoolOptions {
  workerCount: number;
  /** Jobs queued inside one worker at most; more waits in `submit`. */
  maxJobsPerWorker: number;
}

export class WorkerPool<Job extends { id?: number }, Reply> {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending & { slot: Slot }>();
  private readonly waiters: (() => void)[] = [];
  private nextId = 1;
  private failure: Error | null = null;

  constructor(url: string, private readonly options: PoolOptions) {
    assert(options.workerCount >= 1 && options.workerCount <= 64, "worker count within 1..64");
    assert(options.maxJobsPerWorker >= 1 && options.maxJobsPerWorker <= 64, "jobs per worker within 1..64");
    for (let i = 0; i < options.workerCount; i++) {
      const worker = new Worker(url);
      const slot: Slot = { worker, inFlight: 0 };
      worker.onmessage = (event: MessageEvent) => this.onReply(slot, event.data as WorkerReply<Reply>);
      worker.onerror = (event) => this.fail(new Error(`worker crashed: ${event.message}`));
      this.slots.push(slot);
    }
  }

  get workerCount(): number {
    return this.slots.length;
  }

  /** Sends a job to the least-busy worker, waiting while every worker is at its bound. */
  async submit(job: Job, transfer: ArrayBuffer[] = []): Promise<Reply> {
    for (;;) {
      if (this.failure) throw this.failure;
      const slot = this.leastBusy();
      if (slot.inFlight < this.options.maxJobsPerWorker) {
        const id = this.nextId++;
        slot.inFlight++;
        const reply = new Promise<Reply>((resolve, reject) => {
          this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, slot });
        });
        slot.worker.postMessage({ ...job, id }, transfer);
        return reply;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  terminate(): void {
    for (const slot of this.slots) slot.worker.terminate();
    this.slots.length = 0;
  }

  private leastBusy(): Slot {
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.inFlight < best.inFlight) best = s;
    return best;
  }

  private onReply(slot: Slot, data: WorkerReply<Reply>): void {
    const p = this.pending.get(data.id);
    assert(p !== undefined && p.slot === slot, `reply ${data.id} matches a pending job`);
    this.pending.delete(data.id);
    slot.inFlight--;
    if (data.error !== undefined) {
      p.reject(reviveError(data.error));
    } else {
      p.resolve(data.reply);
    }
    this.waiters.shift()?.();
  }

  private fail(error: Error): void {
    this.failure = error;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
    for (const w of this.waiters.splice(0)) w();
  }
}

/** How a worker reports a failed job: enough to rebuild a DiscusError on the main thread. */
export interface WorkerErrorFields {
  name: string;
  message: string;
  discus?: { kind: ErrorKind; thing: string; why: string; action: string };
}

export interface WorkerReply<Reply> {
  id: number;
  reply?: Reply;
  error?: WorkerErrorFields;
}

export function errorFields(e: unknown): WorkerErrorFields {
  if (e instanceof DiscusError) return { name: e.name, message: e.message, discus: { kind: e.kind, thing: e.thing, why: e.why, action: e.action } };
  const err = e instanceof Error ? e : new Error(String(e));
  return { name: err.name, message: err.message };
}

function reviveError(f: WorkerErrorFields): Error {
  if (f.discus) return new DiscusError(f.discus.kind, f.discus.thing, f.discus.why, f.discus.action);
  const error = new Error(f.message);
  error.name = f.name;
  return error;
}
