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

/**
 * Admission and the durable trace in one statement, run while the user's cost lock is held
 * (so the balance read is the latest committed one): the row is written, and committed on its
 * own, only if the balance is above the minimum. One round trip on the hot path instead of two.
 */
export async function admitRequest(db: Queryable, request: NewRequest, minBalanceNano: bigint): Promise<boolean> {
  const result = await db.query(
    `insert into requests (id, user_id, replica_id, model, stream, state)
     select $1::uuid, id, $3::text, $4::text, $5::boolean, 'in_flight'
       from users where id = $2::text and balance_nano > $6::bigint`,
    [request.id, request.userId, request.replicaId, request.model, request.stream, minBalanceNano.toString()],
  );
  return result.rowCount === 1;
}

/** Recorded as soon as the first chunk or the X-Generation-Id header names it. */
export async function recordGenerationId(db: Queryable, requestId: string, generationId: string): Promise<void> {
  await db.query(
    `update requests set generation_id = $2::text, updated_at = now()
      where id = $1::uuid and generation_id is distinct from $2::text`,
    [requestId, generationId],
  );
}

/**
 * The call ended without a cost: it must be looked up at /generation, from next_lookup_at
 * (a null reason keeps the one recorded).
 */
export async function markAwaitingCost(
  db: Queryable,
  requestId: string,
  update: { generationId: string | null; reason: string | null; nextLookupAt: Date },
): Promise<boolean> {
  const result = await db.query(
    `update requests
        set state = 'awaiting_cost', generation_id = coalesce($2::text, generation_id), reason = coalesce($3::text, reason),
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

const REQUEST_COLUMNS = `id, user_id, replica_id, model, state, generation_id, cost_nano, reason, lookup_attempts,
  started_at, settled_at`;

interface RawRequest {
  id: string; user_id: string; replica_id: string; model: string | null; state: RequestState;
  generation_id: string | null; cost_nano: string | null; reason: string | null; lookup_attempts: number;
  started_at: Date; settled_at: Date | null;
}

function toRequestRow(row: RawRequest): RequestRow {
  return {
    id: row.id, userId: row.user_id, replicaId: row.replica_id, model: row.model, state: row.state,
    generationId: row.generation_id, costNano: row.cost_nano, reason: row.reason,
    lookupAttempts: row.lookup_attempts, startedAt: row.started_at, settledAt: row.settled_at,
  };
}

export async function getRequest(db: Queryable, id: string): Promise<RequestRow | null> {
  const result = await db.query<RawRequest>(`select ${REQUEST_COLUMNS} from requests where id = $1::uuid`, [id]);
  const row = result.rows[0];
  return row === undefined ? null : toRequestRow(row);
}

/** Requests in one state, newest first: how operators list `unresolved` ones and why. */
export async function listByState(db: Queryable, state: RequestState, limit: number): Promise<RequestRow[]> {
  const result = await db.query<RawRequest>(
    `select ${REQUEST_COLUMNS} from requests where state = $1::text order by started_at desc limit $2::integer`,
    [state, limit],
  );
  return result.rows.map(toRequestRow);
}

export interface ClaimedRequest {
  id: string;
  userId: string;
  replicaId: string;
  state: 'in_flight' | 'awaiting_cost';
  generationId: string | null;
  /** Including this claim. */
  lookupAttempts: number;
  startedAt: Date;
  /** The owner replica's heartbeat is within the lease. */
  ownerAlive: boolean;
  /** Since started_at, by the database's clock. */
  ageMs: number;
}

export interface ClaimOptions {
  /** A replica silent for longer than this is gone. */
  leaseMs: number;
  /** The claim hides the row from other reconcilers this long (longer than one lookup). */
  claimMs: number;
  batchMax: number;
  /**
   * No call is legitimately in flight longer than this (the upstream duration limit plus
   * settling): an older in_flight row of a live replica was lost track of, and is taken too.
   */
  inFlightMsMax: number;
  /**
   * Whether a heartbeat older than the lease may count as a dead owner: false while the
   * caller cannot tell a dead replica from one that could not reach the database either (just
   * after an outage). Then only explicit signs count: no row, a restart, age.
   */
  judgeHeartbeats: boolean;
}

/**
 * Claims a batch of requests the reconciler must settle: awaiting_cost ones whose next lookup
 * is due, and in_flight ones whose owner replica is gone (heartbeat older than the lease, no
 * row, or restarted since under the same id) or that have been in flight longer than any call
 * may last. The claim is this one statement: `FOR UPDATE SKIP LOCKED` keeps concurrent
 * reconcilers on other replicas off the same rows, and pushing next_lookup_at into the future
 * keeps them off after it commits. The lookup itself runs later, holding no lock.
 */
export async function claimForReconcile(db: Queryable, options: ClaimOptions): Promise<ClaimedRequest[]> {
  const result = await db.query<{
    id: string; user_id: string; replica_id: string; state: 'in_flight' | 'awaiting_cost'; generation_id: string | null;
    lookup_attempts: number; started_at: Date; owner_alive: boolean; age_ms: number;
  }>(
    `with due as (
       select r.id,
              coalesce((not $5::boolean or p.heartbeat_at >= now() - $1::integer * interval '1 millisecond')
                       and r.started_at >= p.started_at, false) as owner_alive
         from requests r
         left join replicas p on p.id = r.replica_id
        where r.state in ('in_flight', 'awaiting_cost')
          and (r.next_lookup_at is null or r.next_lookup_at <= now())
          and (r.state = 'awaiting_cost'
               or p.id is null or ($5::boolean and p.heartbeat_at < now() - $1::integer * interval '1 millisecond')
               -- started by an earlier process under the same replica id
               or r.started_at < p.started_at
               or r.started_at < now() - $4::integer * interval '1 millisecond')
        order by r.next_lookup_at nulls first, r.started_at
        limit $3::integer
          for update of r skip locked)
     update requests r
        set lookup_attempts = r.lookup_attempts + 1,
            next_lookup_at = now() + $2::integer * interval '1 millisecond',
            updated_at = now()
       from due
      where r.id = due.id
     returning r.id, r.user_id, r.replica_id, r.state, r.generation_id, r.lookup_attempts, r.started_at, due.owner_alive,
               (extract(epoch from now() - r.started_at) * 1000)::float8 as age_ms`,
    [options.leaseMs, options.claimMs, options.batchMax, options.inFlightMsMax, options.judgeHeartbeats],
  );
  return result.rows.map((row) => ({
    id: row.id, userId: row.user_id, replicaId: row.replica_id, state: row.state, generationId: row.generation_id,
    lookupAttempts: row.lookup_attempts, startedAt: row.started_at, ownerAlive: row.owner_alive, ageMs: row.age_ms,
  }));
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
