import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { RetryQueue, type GiveUpReason } from '../billing/retry-queue.js';

const RETRY_DELAYS_MS = [250, 1_000, 5_000, 15_000, 30_000];

export interface KeyWriteRetryLimits {
  entriesMax: number;
  attemptsMax: number;
}

/**
 * Writes an idempotency key's final state (completed, or released). The first attempt is
 * awaited (the response's end waits for it); if the database cannot take it, it is retried in
 * the background within bounds (entries, attempts, transient errors only). A key it gives up
 * on stays `running`, and the reconciler finishes it: released when its request failed,
 * answered "interrupted" once its request has been closed for a while (as for a key whose
 * replica died).
 */
export class KeyWriter {
  readonly #queue: RetryQueue;

  constructor(private readonly metrics: Metrics, private readonly log: Logger, limits: KeyWriteRetryLimits) {
    this.#queue = new RetryQueue({
      name: 'idempotency_key', ...limits, delaysMs: RETRY_DELAYS_MS,
      handOff: async (id: string, reason: GiveUpReason) => {
        this.log.warn({ key: id, reason }, 'idempotency key left running; the reconciler finishes it');
      },
    }, metrics, log);
  }

  get pendingRetries(): number { return this.#queue.size; }

  async write(id: string, what: 'stored' | 'released', op: () => Promise<unknown>): Promise<void> {
    const counted = async () => {
      await op();
      this.metrics.idempotency.inc({ outcome: what });
    };
    try {
      await counted();
    } catch (error) {
      this.metrics.idempotency.inc({ outcome: `${what}_deferred` });
      this.#queue.defer(id, counted, error);
    }
  }

  drain(deadlineMs: number): Promise<number> {
    return this.#queue.drain(deadlineMs);
  }

  stop(): void {
    this.#queue.stop();
  }
}
