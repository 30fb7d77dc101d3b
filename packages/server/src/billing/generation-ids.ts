import assert from 'node:assert/strict';
import { requests } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { StatementBatcher, type StatementBatcherOptions } from './statement-batcher.js';

export interface GenerationIdRecord { requestId: string; generationId: string }

export type GenerationIdBatcher = StatementBatcher<GenerationIdRecord, void>;

/**
 * A stream's generation id, written as soon as the upstream names it so that a replica that
 * dies mid-stream leaves the reconciler something to look up; several streams' ids share one
 * statement when they arrive together (statement-batcher.ts). Committed without waiting for
 * the WAL flush (requests.recordGenerationIds 'async': the settle records the id again).
 */
export function generationIdBatcher(pool: pg.Pool, options: StatementBatcherOptions, log: Logger, metrics: Metrics): GenerationIdBatcher {
  assert(options.batchMax <= requests.GENERATION_IDS_MAX, `generation id batchMax above ${requests.GENERATION_IDS_MAX}`);
  return new StatementBatcher<GenerationIdRecord, void>({
    many: async (records) => {
      await requests.recordGenerationIds(pool, records, 'async');
      return records.map(() => undefined);
    },
    one: (record) => requests.recordGenerationId(pool, record.requestId, record.generationId, 'async'),
    group: () => 'async',
    batchFailed: (error, size) => {
      metrics.statementBatchFailures.inc({ kind: 'generation_id' });
      log.warn({ err: error, size }, 'a batch of generation ids failed; recording each alone');
    },
    sent: (size) => metrics.statementBatchSize.observe({ kind: 'generation_id' }, size),
  }, options);
}
