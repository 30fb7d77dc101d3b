import type { Queryable } from './queryable.js';

export type RequestState = 'in_flight' | 'awaiting_cost' | 'settled' | 'failed' | 'unresolved';

export interface NewRequest {
  id: string;
  userId: string;
  replicaId: string;
  model: string | null;
  stream: boolean;
}

/** Committed on its own before the upstream call, so a crash leaves a trace to reconcile. */
export async function insertRequest(db: Queryable, request: NewRequest): Promise<void> {
  await db.query(
    `insert into requests (id, user_id, replica_id, model, stream, state)
     values ($1::uuid, $2::text, $3::text, $4::text, $5::boolean, 'in_flight')`,
    [request.id, request.userId, request.replicaId, request.model, request.stream],
  );
}

/** Recorded as soon as the first chunk or the X-Generation-Id header names it. */
export async function recordGenerationId(db: Queryable, requestId: string, generationId: string): Promise<void> {
  await db.query(
    `update requests set generation_id = $2::text, updated_at = now()
      where id = $1::uuid and generation_id is distinct from $2::text`,
    [requestId, generationId],
  );
}

/** The call ended without a cost: it must be looked up at /generation, from next_lookup_at. */
export async function markAwaitingCost(
  db: Queryable,
  requestId: string,
  update: { generationId: string | null; reason: string; nextLookupAt: Date },
): Promise<boolean> {
  const result = await db.query(
    `update requests
        set state = 'awaiting_cost', generation_id = coalesce($2::text, generation_id), reason = $3::text,
            next_lookup_at = $4::timestamptz, updated_at = now()
      where id = $1::uuid and state in ('in_flight', 'awaiting_cost')`,
    [requestId, update.generationId, update.reason, update.nextLookupAt],
  );
  return result.rowCount === 1;
}

/** Nothing was generated or billed upstream (an error before any output): no charge. */
export async function markFailed(db: Queryable, requestId: string, reason: string): Promise<boolean> {
  const result = await db.query(
    `update requests set state = 'failed', reason = $2::text, updated_at = now(), next_lookup_at = null
      where id = $1::uuid and state in ('in_flight', 'awaiting_cost')`,
    [requestId, reason],
  );
  return result.rowCount === 1;
}

export interface RequestRow {
  id: string;
  userId: string;
  replicaId: string;
  model: string | null;
  state: RequestState;
  generationId: string | null;
  costNano: string | null;
  reason: string | null;
  lookupAttempts: number;
  startedAt: Date;
  settledAt: Date | null;
}

export async function getRequest(db: Queryable, id: string): Promise<RequestRow | null> {
  const result = await db.query<{
    id: string; user_id: string; replica_id: string; model: string | null; state: RequestState;
    generation_id: string | null; cost_nano: string | null; reason: string | null; lookup_attempts: number;
    started_at: Date; settled_at: Date | null;
  }>(
    `select id, user_id, replica_id, model, state, generation_id, cost_nano, reason, lookup_attempts,
            started_at, settled_at from requests where id = $1::uuid`,
    [id],
  );
  const row = result.rows[0];
  if (row === undefined) return null;
  return {
    id: row.id, userId: row.user_id, replicaId: row.replica_id, model: row.model, state: row.state,
    generationId: row.generation_id, costNano: row.cost_nano, reason: row.reason,
    lookupAttempts: row.lookup_attempts, startedAt: row.started_at, settledAt: row.settled_at,
  };
}

/**
 * The call's cost cannot be found automatically (no generation id was ever seen): kept,
 * with the reason, for operators to list and settle by hand.
 */
export async function markUnresolved(db: Queryable, requestId: string, reason: string): Promise<boolean> {
  const result = await db.query(
    `update requests set state = 'unresolved', reason = $2::text, updated_at = now(), next_lookup_at = null
      where id = $1::uuid and state in ('in_flight', 'awaiting_cost')`,
    [requestId, reason],
  );
  return result.rowCount === 1;
}

/** Unsettled requests by state with the oldest age, for the metrics scrape (partial index). */
export async function unsettledSummary(db: Queryable): Promise<Array<{ state: string; count: number; oldestAgeS: number }>> {
  const result = await db.query<{ state: string; count: number; oldest_age_s: number }>(
    `select state, count(*)::integer as count,
            coalesce(extract(epoch from now() - min(started_at)), 0)::float8 as oldest_age_s
       from requests where state in ('in_flight', 'awaiting_cost', 'unresolved')
      group by state`,
  );
  return result.rows.map((row) => ({ state: row.state, count: row.count, oldestAgeS: row.oldest_age_s }));
}
