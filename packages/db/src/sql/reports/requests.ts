/**
 * The requests list: by state (or every unsettled one), newest first, keyset-paged.
 *
 * QUERY PLANS relied on (the `npm run seed:ledger` database; Postgres 17):
 * Requests unsettled: Index Scan using requests_state (partial), state = ANY(3), sort 0.10 ms
 * Requests settled: Index Scan Backward using requests_started, Filter state          0.05 ms
 */
import assert from 'node:assert/strict';
import { Params } from '../params.js';
import type { Queryable } from '../queryable.js';
import type { RequestRow, RequestState } from '../requests.js';
import { ReportQueryError } from './errors.js';

export const UNSETTLED_STATES: readonly RequestState[] = ['in_flight', 'awaiting_cost', 'unresolved'];

export interface RequestListQuery {
  /** 'unsettled' = in_flight, awaiting_cost or unresolved. */
  state?: RequestState | 'unsettled' | null;
  userId?: string | null;
  limit: number;
  /** nextCursor of the previous page: the id of its last request. */
  cursor?: string | null;
}

interface RawRequest {
  id: string; user_id: string; replica_id: string; model: string | null; state: RequestState;
  generation_id: string | null; cost_nano: string | null; hold_nano: string; reason: string | null; lookup_attempts: number;
  started_at: Date; settled_at: Date | null;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Newest first (started_at desc, id desc), keyset on the last request's id. */
export async function listRequests(db: Queryable, q: RequestListQuery): Promise<{ requests: RequestRow[]; nextCursor: string | null }> {
  assert(Number.isSafeInteger(q.limit) && q.limit > 0, 'limit must be a positive integer');
  const params = new Params();
  const where: string[] = [];
  // Constants, not parameters: the planner then proves the partial index requests_state applies.
  if (q.state === 'unsettled') where.push(`state in (${UNSETTLED_STATES.map((state) => `'${state}'`).join(', ')})`);
  else if (q.state != null) where.push(`state = ${params.add(q.state, 'text')}`);
  if (q.userId != null) where.push(`user_id = ${params.add(q.userId, 'text')}`);
  if (q.cursor != null) {
    if (!UUID_RE.test(q.cursor)) throw new ReportQueryError('cursor', 'cursor must be a next_cursor value from a previous page');
    where.push(`(started_at, id) < (select c.started_at, c.id from requests c where c.id = ${params.add(q.cursor, 'uuid')})`);
  }
  const result = await db.query<RawRequest>(
    `select id, user_id, replica_id, model, state, generation_id, cost_nano::text, hold_nano::text, reason, lookup_attempts,
            started_at, settled_at
       from requests ${where.length > 0 ? `where ${where.join(' and ')}` : ''}
      order by started_at desc, id desc
      limit ${params.add(q.limit + 1, 'integer')}`,
    params.values,
  );
  const rows = result.rows.slice(0, q.limit);
  return {
    requests: rows.map((row) => ({
      id: row.id, userId: row.user_id, replicaId: row.replica_id, model: row.model, state: row.state,
      generationId: row.generation_id, costNano: row.cost_nano, holdNano: row.hold_nano, reason: row.reason,
      lookupAttempts: row.lookup_attempts, startedAt: row.started_at, settledAt: row.settled_at,
    })),
    nextCursor: result.rows.length > q.limit ? rows.at(-1)!.id : null,
  };
}
