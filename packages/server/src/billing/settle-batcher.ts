import assert from 'node:assert/strict';
import { ledger, type SettledEntry, type UsageSettlement } from '@metergate/db';
import type pg from 'pg';

export interface SettleBatcherOptions {
  /** Requests per settle statement, at most. */
  batchMax: number;
  /** Settle statements in flight at once; settles arriving meanwhile wait and go out together. */
  batchesInFlightMax: number;
}

interface Waiting {
  usage: UsageSettlement;
  resolve(entry: SettledEntry | null): void;
  reject(error: unknown): void;
}

/**
 * Settles on the write pool, several per statement when they arrive together. A settle never
 * waits for a batch to fill: it goes out at once when fewer than `batchesInFlightMax`
 * statements are in flight, and otherwise leaves with whatever queued behind those statements
 * (group commit, done by the application). At c=50 that turns about 50 settle statements,
 * commits and round trips into a handful; at c=1 it changes nothing.
 *
 * All of a batch lands or none does. When a batch fails, each of its settles is tried again
 * alone, so one request the database refuses (or a deadlock) fails only that request, exactly
 * as it would have without batching; the caller's error handling (Settler) is unchanged.
 */
export class SettleBatcher {
  readonly #waiting: Waiting[] = [];
  #inFlight = 0;

  constructor(private readonly pool: pg.Pool, private readonly options: SettleBatcherOptions) {
    assert(options.batchMax >= 1 && options.batchMax <= ledger.SETTLE_BATCH_MAX, 'settle batchMax out of range');
    assert(options.batchesInFlightMax >= 1, 'settle batchesInFlightMax must be positive');
  }

  /** Settles waiting for a statement (for metrics). */
  get waiting(): number { return this.#waiting.length; }

  settle(usage: UsageSettlement): Promise<SettledEntry | null> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ usage, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.options.batchesInFlightMax && this.#waiting.length > 0) {
      const batch = this.#take();
      this.#inFlight += 1;
      void this.#run(batch).finally(() => {
        this.#inFlight -= 1;
        this.#pump();
      });
    }
  }

  /**
   * The oldest waiting settles with one clock (a statement counts spend-limit periods with
   * one), at most batchMax; the rest keep their places.
   */
  #take(): Waiting[] {
    const clock = this.#waiting[0]!.usage.now?.getTime() ?? null;
    const batch: Waiting[] = [];
    const rest: Waiting[] = [];
    for (const item of this.#waiting) {
      const same = (item.usage.now?.getTime() ?? null) === clock;
      if (same && batch.length < this.options.batchMax) batch.push(item);
      else rest.push(item);
    }
    this.#waiting.splice(0, this.#waiting.length, ...rest);
    return batch;
  }

  async #run(batch: Waiting[]): Promise<void> {
    try {
      const entries = await ledger.settleUsages(this.pool, batch.map((item) => item.usage));
      batch.forEach((item, i) => item.resolve(entries[i] ?? null));
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      await Promise.all(batch.map(async (item) => {
        try {
          item.resolve(await ledger.settleUsage(this.pool, item.usage));
        } catch (alone) {
          item.reject(alone);
        }
      }));
    }
  }
}
