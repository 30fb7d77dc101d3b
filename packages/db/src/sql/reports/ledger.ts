/**
 * The ledger as operators read it: filtered, keyset-paged, counted, and streamed whole (CSV
 * export) from a server-side cursor.
 *
 * QUERY PLANS relied on — EXPLAIN ANALYZE on the `npm run seed:ledger` database (10M ledger
 * rows, 100k users, 365 days; Postgres 17, 2 cores), serial plans:
 *
 * Ledger page, any one filter: one index range read backwards, stopped by the LIMIT.
 *   user_id=…          Index Scan Backward using ledger_entries_user_time     0.15 ms
 *   until=… (deep)     Index Scan Backward using ledger_entries_created_at    0.04 ms
 *   model=…, until=…   Index Scan Backward using ledger_entries_created_at, Filter model
 *                      (1,032 rows skipped)                                  0.22 ms
 *   kind=…, cursor=…   InitPlan: Index Scan using ledger_entries_pkey (the cursor entry);
 *                      Index Scan Backward using ledger_entries_kind_time,
 *                      Index Cond ROW(created_at, id) < ROW(InitPlan)         0.15 ms
 */
import assert from 'node:assert/strict';
import type pg from 'pg';
import Cursor from 'pg-cursor';
import { LEDGER_COLUMNS, toLedgerEntry, type LedgerEntry, type LedgerKind, type RawEntry } from '../ledger.js';
import { Params } from '../params.js';
import type { Queryable } from '../queryable.js';

export interface LedgerFilters {
  userId?: string | null;
  kind?: LedgerKind | null;
  model?: string | null;
  since?: Date | null;
  until?: Date | null;
}

/** The filters as a WHERE clause ('' when none), every value a parameter. */
function ledgerWhere(filters: LedgerFilters, params: Params, beforeId: string | null): string {
  const where: string[] = [];
  if (filters.userId != null) where.push(`user_id = ${params.add(filters.userId, 'text')}`);
  if (filters.kind != null) where.push(`kind = ${params.add(filters.kind, 'text')}`);
  if (filters.model != null) where.push(`model = ${params.add(filters.model, 'text')}`);
  if (filters.since != null) where.push(`created_at >= ${params.add(filters.since, 'timestamptz')}`);
  if (filters.until != null) where.push(`created_at < ${params.add(filters.until, 'timestamptz')}`);
  if (beforeId !== null) {
    where.push(`(created_at, id) < (select c.created_at, c.id from ledger_entries c where c.id = ${params.add(beforeId, 'bigint')})`);
  }
  return where.length > 0 ? `where ${where.join(' and ')}` : '';
}

/**
 * Newest first is (created_at desc, id desc): every filter then reads one index range
 * backwards (ledger_entries_{user,model,kind}_time, ledger_entries_created_at) and stops at the
 * page size, whatever `until` is. The id only breaks ties and names the page boundary.
 */
function ledgerSelect(filters: LedgerFilters, params: Params, beforeId: string | null): string {
  return `select ${LEDGER_COLUMNS} from ledger_entries ${ledgerWhere(filters, params, beforeId)}
           order by created_at desc, id desc`;
}

/** One page, newest first; `beforeId` is the id of the previous page's last entry. */
export async function queryLedger(
  db: Queryable,
  filters: LedgerFilters & { beforeId?: string | null; limit: number },
): Promise<LedgerEntry[]> {
  assert(Number.isSafeInteger(filters.limit) && filters.limit > 0, 'limit must be a positive integer');
  const params = new Params();
  const text = `${ledgerSelect(filters, params, filters.beforeId ?? null)} limit ${params.add(filters.limit, 'integer')}`;
  const result = await db.query<RawEntry>(text, params.values);
  return result.rows.map(toLedgerEntry);
}

/** Exact count of the filtered range (for progress bars; an index-only scan, ~1 s at 10M rows unfiltered). */
export async function countLedger(db: Queryable, filters: LedgerFilters): Promise<number> {
  const params = new Params();
  const where = ledgerWhere(filters, params, null);
  const result = await db.query<{ n: string }>(`select count(*)::text as n from ledger_entries ${where}`, params.values);
  return Number(result.rows[0]!.n);
}

export const EXPORT_BATCH_ROWS = 1000;
/** An export that is still running after this long is cancelled by Postgres. */
export const EXPORT_DURATION_MS_MAX = 3_600_000;

/**
 * The whole filtered range, newest first, through a server-side cursor: constant memory
 * whatever the range, one consistent snapshot (one read-only transaction on `client`, which
 * must not be in a transaction already). Stop early by breaking out of the loop. After an
 * error the client may be unusable: release it with the error.
 */
export async function* streamLedger(
  client: pg.PoolClient,
  filters: LedgerFilters,
  batchRows = EXPORT_BATCH_ROWS,
): AsyncGenerator<LedgerEntry, void, undefined> {
  assert(Number.isSafeInteger(batchRows) && batchRows > 0, 'batchRows must be a positive integer');
  const params = new Params();
  const text = ledgerSelect(filters, params, null);
  await client.query('begin isolation level repeatable read read only');
  let finished = false;
  try {
    // The pool's statement_timeout would cut a long export; this one bounds it instead.
    await client.query(`select set_config('statement_timeout', $1::text, true)`, [String(EXPORT_DURATION_MS_MAX)]);
    const cursor = client.query(new Cursor<RawEntry>(text, params.values));
    try {
      for (;;) {
        const rows = await cursor.read(batchRows);
        if (rows.length === 0) break;
        for (const row of rows) yield toLedgerEntry(row);
      }
    } finally {
      await cursor.close();
    }
    await client.query('commit');
    finished = true;
  } finally {
    if (!finished) await client.query('rollback');
  }
}
