import { requests } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { isTransientDbError } from '../billing/retry-queue.js';

/**
 * Requests whose in-memory settle was given up while the database could not even take the
 * hand-off mark: each reconciler pass first marks them awaiting_cost (due at once), so they
 * are looked up and settled as soon as the database is back. Bounded: past entriesMax a
 * request stays in_flight and the reconciler takes it once it is older than any call may last.
 */
export class HandOffs {
  readonly #pending = new Map<string, { generationId: string | null; reason: string }>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly entriesMax: number,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  get size(): number { return this.#pending.size; }

  /** Marks the request for the reconciler now, or keeps it for the next pass. Never rejects. */
  async handOff(requestId: string, generationId: string | null, reason: string): Promise<void> {
    try {
      await this.mark(requestId, generationId, reason);
    } catch (error) {
      if (this.#pending.size >= this.entriesMax && !this.#pending.has(requestId)) {
        this.metrics.retryGivenUp.inc({ queue: 'hand_off', reason: 'full' });
        this.log.error({ err: error, requestId, generationId }, 'hand-off list full; the request is reconciled once older than any call may last');
        return;
      }
      this.#pending.set(requestId, { generationId, reason });
      this.gauge();
    }
  }

  /**
   * Run at the start of each reconciler pass; stops (rejects) at the first transient failure:
   * the database is away, and the pass would fail anyway. A permanent failure (a bug) drops
   * that entry with an error rather than block every later pass.
   */
  async flush(): Promise<void> {
    for (const [requestId, { generationId, reason }] of [...this.#pending]) {
      try {
        await this.mark(requestId, generationId, reason);
      } catch (error) {
        if (isTransientDbError(error)) throw error;
        this.log.error({ err: error, requestId, generationId }, 'hand-off cannot be marked; the request is reconciled once older than any call may last');
      }
      this.#pending.delete(requestId);
      this.gauge();
    }
  }

  private async mark(requestId: string, generationId: string | null, reason: string): Promise<void> {
    // Only an open request moves (the state guard): one settled meanwhile stays settled.
    await requests.markAwaitingCost(this.pool, requestId, { generationId, reason, nextLookupAt: new Date() });
  }

  private gauge(): void {
    this.metrics.retryPending.set({ queue: 'hand_off' }, this.#pending.size);
  }
}
