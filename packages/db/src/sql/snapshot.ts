import type pg from 'pg';
import { inTransaction } from '../transaction.js';

/**
 * Runs `run` on a client of its own in one read-only, repeatable-read transaction: every
 * statement sees the same snapshot, so concurrent settles cannot make consistent data look
 * inconsistent between two reads.
 */
export function inReadSnapshot<T>(pool: pg.Pool, run: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(pool, run, { begin: 'begin isolation level repeatable read read only' });
}
