import assert from 'node:assert/strict';
import { ledger, type SettledEntry, type UsageSettlement } from '@metergate/db';
import type pg from 'pg';
import { StatementBatcher, type BatchStatement, type StatementBatcherOptions } from './statement-batcher.js';

export type SettleBatcherOptions = StatementBatcherOptions;

/**
 * Settles on the write pool, several per statement when they arrive together
 * (statement-batcher.ts). One statement counts spend-limit periods with one clock, so settles
 * share a statement only when they carry the same one (always, with the database's clock).
 */
export class SettleBatcher {
  readonly #batcher: StatementBatcher<UsageSettlement, SettledEntry | null>;

  constructor(pool: pg.Pool, options: SettleBatcherOptions, hooks: Pick<BatchStatement<unknown, unknown>, 'batchFailed' | 'sent'> = { batchFailed: () => undefined }) {
    assert(options.batchMax <= ledger.SETTLE_BATCH_MAX, `settle batchMax above ${ledger.SETTLE_BATCH_MAX}`);
    this.#batcher = new StatementBatcher({
      many: (usages) => ledger.settleUsages(pool, usages),
      one: (usage) => ledger.settleUsage(pool, usage),
      group: (usage) => String(usage.now?.getTime() ?? 'database'),
      batchFailed: (error, size) => hooks.batchFailed(error, size),
      sent: (size) => hooks.sent?.(size),
    }, options);
  }

  settle(usage: UsageSettlement): Promise<SettledEntry | null> {
    return this.#batcher.submit(usage);
  }
}
