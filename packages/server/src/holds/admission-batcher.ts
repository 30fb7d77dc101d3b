import { BarrierBusyError, CallAbandonedError, type AdmitOutcome } from '@metergate/db';

/** Same-user admissions written in one statement at most (one round trip, one commit). */
export const ADMISSION_BATCH_MAX = 256;

export interface HoldCall {
  id: string;
  model: string | null;
  stream: boolean;
  upstreamHoldNano: bigint;
  holdCompletionTokens: number | null;
  endpoint?: string;
  /** The API key the call came with (its limits apply). */
  keyId?: string | null;
}

interface Waiter<T> { resolve: (value: T) => void; reject: (error: unknown) => void; signal: AbortSignal | undefined }
type Job =
  | { kind: 'hold'; call: HoldCall; waiter: Waiter<AdmitOutcome> }
  | { kind: 'solo'; run: () => Promise<unknown>; waiter: Waiter<unknown> };

/** Outcomes by call id; a call without one (behind a refused call, refused for nothing of its own) is retried. */
export type BatchRunner = (userId: string, calls: HoldCall[]) => Promise<Map<string, AdmitOutcome>>;

/**
 * Reserve mode's in-process queue per user: at most one admission statement per user is in
 * flight from this process (so one pool client per active user, as the barrier promises), and
 * the calls that arrived meanwhile are admitted together in the next statement, in arrival
 * order. A burst of N same-user calls costs about N / ADMISSION_BATCH_MAX round trips instead
 * of N. Calls whose hold must be computed from the balance first (no max_tokens) run alone,
 * in their turn.
 */
export class AdmissionBatcher {
  readonly #queues = new Map<string, Job[]>();
  #waiting = 0;

  constructor(private readonly runBatch: BatchRunner, private readonly depthMax: number, private readonly retryAfterS: number) {}

  /** Calls waiting for their admission statement in this process. */
  get waiting(): number { return this.#waiting; }

  /** The charged hold, or why the call was refused. */
  admit(userId: string, call: HoldCall, signal?: AbortSignal): Promise<AdmitOutcome> {
    return new Promise((resolve, reject) => this.enqueue(userId, { kind: 'hold', call, waiter: { resolve, reject, signal } }));
  }

  /** Runs fn alone in this user's turn (no other admission of the user runs meanwhile). */
  solo<T>(userId: string, run: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => this.enqueue(userId, {
      kind: 'solo', run, waiter: { resolve: resolve as (value: unknown) => void, reject, signal },
    }));
  }

  private enqueue(userId: string, job: Job): void {
    const queue = this.#queues.get(userId);
    if (queue !== undefined && queue.length >= this.depthMax) {
      job.waiter.reject(new BarrierBusyError('queue_full', this.retryAfterS));
      return;
    }
    this.#waiting += 1;
    if (queue !== undefined) {
      queue.push(job);
      return;
    }
    const fresh = [job];
    this.#queues.set(userId, fresh);
    void this.drain(userId, fresh);
  }

  private async drain(userId: string, queue: Job[]): Promise<void> {
    try {
      while (queue.length > 0) {
        const head = queue[0]!;
        if (head.kind === 'solo') {
          queue.shift();
          await this.runSolo(head);
          continue;
        }
        let end = 1;
        while (end < queue.length && end < ADMISSION_BATCH_MAX && queue[end]!.kind === 'hold') end += 1;
        const again = await this.runHolds(userId, queue.splice(0, end) as Array<Extract<Job, { kind: 'hold' }>>);
        // Each statement decides at least its first call, so this ends.
        this.#waiting += again.length;
        queue.unshift(...again);
      }
    } finally {
      this.#queues.delete(userId);
    }
  }

  private async runSolo(job: Extract<Job, { kind: 'solo' }>): Promise<void> {
    this.#waiting -= 1;
    if (job.waiter.signal?.aborted === true) return job.waiter.reject(new CallAbandonedError('queue'));
    try {
      job.waiter.resolve(await job.run());
    } catch (error) {
      job.waiter.reject(error);
    }
  }

  private async runHolds(userId: string, jobs: Array<Extract<Job, { kind: 'hold' }>>): Promise<Array<Extract<Job, { kind: 'hold' }>>> {
    this.#waiting -= jobs.length;
    // A caller that left while waiting is not admitted at all.
    const live = jobs.filter((job) => {
      if (job.waiter.signal?.aborted !== true) return true;
      job.waiter.reject(new CallAbandonedError('queue'));
      return false;
    });
    if (live.length === 0) return [];
    try {
      const outcomes = await this.runBatch(userId, live.map((job) => job.call));
      const again: Array<Extract<Job, { kind: 'hold' }>> = [];
      for (const job of live) {
        const outcome = outcomes.get(job.call.id);
        // No row at all: the user is gone; callers word it (as a refusal they look into).
        if (outcomes.size === 0) job.waiter.resolve({ admitted: false, refusal: { kind: 'insufficient_credits' } });
        else if (outcome === undefined) again.push(job);
        else job.waiter.resolve(outcome);
      }
      return again;
    } catch (error) {
      for (const job of live) job.waiter.reject(error);
      return [];
    }
  }
}
