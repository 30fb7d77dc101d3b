import { requests, type AdmitOutcome, type BarrierMode, type UserCalls } from '@metergate/db';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { StatementBatcher, type StatementBatcherOptions } from '../billing/statement-batcher.js';

export interface UserAdmission extends UserCalls {
  mode: BarrierMode;
  now: Date | null;
}

export type AdmissionStatements = StatementBatcher<UserAdmission, Map<string, AdmitOutcome>>;

/**
 * Admission statements on the write pool, several users per statement when their admissions
 * arrive together (statement-batcher.ts; requests.admitMany locks the users in key order).
 * Each user has at most one admission waiting here at a time: the barrier (serialize) and the
 * per-user admission queue (reserve) see to that; a batch that still named a user twice would
 * fail its assertion and be admitted user by user.
 */
export function admissionStatements(
  pool: pg.Pool, replicaId: string, minBalanceNano: bigint, options: StatementBatcherOptions, log: Logger, metrics: Metrics,
): AdmissionStatements {
  const admit = (users: UserAdmission[]) => requests.admitMany(pool, {
    mode: users[0]!.mode, replicaId, minBalanceNano, now: users[0]!.now, users,
  });
  return new StatementBatcher<UserAdmission, Map<string, AdmitOutcome>>({
    many: admit,
    one: async (user) => (await admit([user]))[0]!,
    group: (user) => `${user.mode}:${user.now?.getTime() ?? 'database'}`,
    batchFailed: (error, size) => {
      metrics.statementBatchFailures.inc({ kind: 'admission' });
      log.warn({ err: error, size }, 'an admission statement for several users failed; admitting each alone');
    },
    sent: (size) => metrics.statementBatchSize.observe({ kind: 'admission' }, size),
  }, options);
}
