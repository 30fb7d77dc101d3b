import type { Queryable } from './queryable.js';
import { prepared } from './prepared.js';

export type RequestState = 'in_flight' | 'awaiting_cost' | 'settled' | 'failed' | 'unresolved' | 'voided';

/** States whose cost is not known yet: each keeps its hold (users.held_nano) until it closes. */
export const OPEN_STATES: readonly RequestState[] = ['in_flight', 'awaiting_cost', 'unresolved'];

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

export type BarrierMode = 'serialize' | 'reserve';

export interface Admission {
  /** The admission floor: MIN_BALANCE in nano-USD. */
  minBalanceNano: bigint;
  /**
   * The call's worst-case cost in upstream nano-USD (already rounded up); the statement applies
   * the user's multiplier (rounded up, like the settle) to get the hold in charged nano-USD.
   */
  upstreamHoldNano: bigint;
  /** The completion budget the hold was computed with; null for a fallback hold. */
  holdCompletionTokens: number | null;
}

export type AdmitResult = { admitted: true; holdNano: bigint } | { admitted: false };

/**
 * Serialize mode's admission, the hold and the durable trace in one statement (one round trip,
 * committed on its own), run while the caller holds the user's cost lock: admitted while
 * available = balance − held is above the minimum (this call's own hold is not counted: the
 * bound is one request); held_nano grows by the hold (the worst case × the user's multiplier,
 * rounded up as the settle rounds) and the request row is written with it, or neither happens.
 * Reserve mode admits with admitBatch below.
 */
export async function admitRequest(db: Queryable, request: NewRequest, admission: Admission): Promise<AdmitResult> {
  const hold = `div($6::bigint::numeric * coalesce(u.multiplier_ppm, s.default_multiplier_ppm) + 999999, 1000000)::bigint`;
  const result = await db.query<{ hold_nano: string }>(prepared('admit_serialize',
    `with account as (
       update users u set held_nano = u.held_nano + ${hold}
         from pricing_settings s
        where u.id = $2::text and u.balance_nano - u.held_nano > $7::bigint
       returning u.id, ${hold} as hold)
     insert into requests (id, user_id, replica_id, model, stream, state, hold_nano, hold_completion_tokens)
     select $1::uuid, id, $3::text, $4::text, $5::boolean, 'in_flight', hold, $8::integer from account
     returning hold_nano`,
    [request.id, request.userId, request.replicaId, request.model, request.stream,
      admission.upstreamHoldNano.toString(), admission.minBalanceNano.toString(), admission.holdCompletionTokens],
  ));
  const row = result.rows[0];
  return row === undefined ? { admitted: false } : { admitted: true, holdNano: BigInt(row.hold_nano) };
}

export interface BatchAdmission {
  userId: string;
  replicaId: string;
  minBalanceNano: bigint;
  lockKey: bigint;
  /** In arrival order: each admitted only if it and every admitted one before it fit. */
  calls: Array<{ id: string; model: string | null; stream: boolean; upstreamHoldNano: bigint; holdCompletionTokens: number | null }>;
}

/**
 * Reserve mode, many same-user admissions in one statement (one round trip, one lock, one
 * commit): in arrival order, a call is admitted while available − (its hold + the holds
 * admitted before it) ≥ minimum. The user's row is locked first, so the available balance is
 * the latest committed one, and held_nano grows by exactly the holds written.
 * Returns the hold (charged nano-USD) of each admitted call by request id.
 */
export async function admitBatch(db: Queryable, batch: BatchAdmission): Promise<Map<string, bigint>> {
  const result = await db.query<{ id: string; hold_nano: string }>(prepared('admit_batch',
    `with lock as (select pg_advisory_xact_lock($1::bigint)),
     account as (
       select u.id, u.balance_nano - u.held_nano as available, coalesce(u.multiplier_ppm, s.default_multiplier_ppm) as ppm
         from users u cross join pricing_settings s cross join lock
        where u.id = $2::text
          for update of u),
     running as (
       select t.id, t.model, t.stream, t.tokens, h.hold,
              a.available - sum(h.hold) over (order by t.ord) as left_after
         from unnest($3::uuid[], $4::text[], $5::boolean[], $6::bigint[], $7::integer[])
                with ordinality as t(id, model, stream, upstream_hold, tokens, ord)
        cross join account a
        cross join lateral (select div(t.upstream_hold::numeric * a.ppm + 999999, 1000000)::bigint as hold) h),
     admitted as (select * from running where left_after >= $8::bigint),
     held as (
       update users set held_nano = held_nano + (select sum(hold) from admitted)
        where id = $2::text and exists (select 1 from admitted))
     insert into requests (id, user_id, replica_id, model, stream, state, hold_nano, hold_completion_tokens)
     select id, $2::text, $9::text, model, stream, 'in_flight', hold, tokens from admitted
     returning id::text, hold_nano::text`,
    [batch.lockKey.toString(), batch.userId, batch.calls.map((c) => c.id), batch.calls.map((c) => c.model),
      batch.calls.map((c) => c.stream), batch.calls.map((c) => c.upstreamHoldNano.toString()),
      batch.calls.map((c) => c.holdCompletionTokens), batch.minBalanceNano.toString(), batch.replicaId],
  ));
  return new Map(result.rows.map((row) => [row.id, BigInt(row.hold_nano)]));
}

export interface Affordability {
  /** balance − held, in charged nano-USD. */
  availableNano: bigint;
  /** balance − held + the holds of calls in flight now (whose cost will land before any queued call runs). */
  availableAfterInFlightNano: bigint;
  multiplierPpm: bigint;
}

/** What a user can spend right now, for the reserve budget and the before-queuing check. */
export async function affordability(db: Queryable, userId: string): Promise<Affordability | null> {
  const result = await db.query<{ available: string; after_in_flight: string; ppm: string }>(
    `select u.balance_nano - u.held_nano as available,
            u.balance_nano - u.held_nano
              + coalesce((select sum(r.hold_nano) from requests r
                           where r.user_id = u.id and r.state = 'in_flight'), 0) as after_in_flight,
            coalesce(u.multiplier_ppm, s.default_multiplier_ppm) as ppm
       from users u, pricing_settings s where u.id = $1::text`,
    [userId],
  );
  const row = result.rows[0];
  return row === undefined ? null : {
    availableNano: BigInt(row.available), availableAfterInFlightNano: BigInt(row.after_in_flight), multiplierPpm: BigInt(row.ppm),
  };
}

/**
 * Recorded as soon as the first chunk or the X-Generation-Id header names it.
 *
 * `flush: 'async'` (a stream's id, mid-call) commits without waiting for the WAL flush
 * (`synchronous_commit` off for this one transaction): the id is visible to every reconciler
 * at once, and only a crash of Postgres itself within wal_writer_delay (200 ms) could lose it,
 * in which case this replica's settle fails and records it again (Settler.recordGenerationId,
 * durably) or, if the replica died too, the request is left unresolved with its hold kept,
 * never silently free. One durable commit per stream fewer. `'durable'` waits as usual.
 */
export async function recordGenerationId(
  db: Queryable, requestId: string, generationId: string, flush: 'durable' | 'async' = 'durable',
): Promise<void> {
  // set_config(..., true) lasts to the end of this statement's own transaction, whose commit
  // reads it; the one-row subquery is volatile, so it is always evaluated. Null keeps the
  // server's setting (durable).
  await db.query(prepared('record_generation_id',
    `update requests set generation_id = $2::text, updated_at = now()
       from (select set_config('synchronous_commit', coalesce($3::text, current_setting('synchronous_commit')), true)) as commit_mode
      where id = $1::uuid and generation_id is distinct from $2::text`,
    [requestId, generationId, flush === 'async' ? 'off' : null],
  ));
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

/**
 * Nothing was generated or billed upstream (an error before any output, a client gone before
 * the call was sent): no charge, and the hold is released in the same statement.
 */
export async function markFailed(db: Queryable, requestId: string, reason: string): Promise<boolean> {
  const result = await db.query(
    `with closed as (
       update requests set state = 'failed', reason = $2::text, updated_at = now(), next_lookup_at = null
        where id = $1::uuid and state in ('in_flight', 'awaiting_cost')
       returning user_id, hold_nano)
     update users u set held_nano = u.held_nano - closed.hold_nano from closed where u.id = closed.user_id`,
    [requestId, reason],
  );
  return result.rowCount === 1;
}

/**
 * An operator closes an unresolved (or awaiting_cost) request without a charge: exactly once,
 * releasing its hold. Returns false when the request is not in one of those states.
 */
export async function voidRequest(db: Queryable, requestId: string, note: string): Promise<boolean> {
  const result = await db.query(
    `with closed as (
       update requests set state = 'voided', resolution_note = $2::text, updated_at = now(), next_lookup_at = null
        where id = $1::uuid and state in ('unresolved', 'awaiting_cost')
       returning user_id, hold_nano)
     update users u set held_nano = u.held_nano - closed.hold_nano from closed where u.id = closed.user_id`,
    [requestId, note],
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
  holdNano: string;
  reason: string | null;
  lookupAttempts: number;
  startedAt: Date;
  settledAt: Date | null;
}

const REQUEST_COLUMNS = `id, user_id, replica_id, model, state, generation_id, cost_nano, hold_nano, reason, lookup_attempts,
  started_at, settled_at`;

interface RawRequest {
  id: string; user_id: string; replica_id: string; model: string | null; state: RequestState;
  generation_id: string | null; cost_nano: string | null; hold_nano: string; reason: string | null; lookup_attempts: number;
  started_at: Date; settled_at: Date | null;
}

function toRequestRow(row: RawRequest): RequestRow {
  return {
    id: row.id, userId: row.user_id, replicaId: row.replica_id, model: row.model, state: row.state,
    generationId: row.generation_id, costNano: row.cost_nano, holdNano: row.hold_nano, reason: row.reason,
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
  state: 'in_flight' | 'awaiting_cost' | 'unresolved';
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
 * is due, unresolved ones with a generation id whose (rare) retry is due, and in_flight ones whose owner replica is gone (heartbeat older than the lease, no
 * row, or restarted since under the same id) or that have been in flight longer than any call
 * may last. The claim is this one statement: `FOR UPDATE SKIP LOCKED` keeps concurrent
 * reconcilers on other replicas off the same rows, and pushing next_lookup_at into the future
 * keeps them off after it commits. The lookup itself runs later, holding no lock.
 */
export async function claimForReconcile(db: Queryable, options: ClaimOptions): Promise<ClaimedRequest[]> {
  const result = await db.query<{
    id: string; user_id: string; replica_id: string; state: 'in_flight' | 'awaiting_cost' | 'unresolved'; generation_id: string | null;
    lookup_attempts: number; started_at: Date; owner_alive: boolean; age_ms: number;
  }>(
    `with due as (
       select r.id,
              coalesce((not $5::boolean or p.heartbeat_at >= now() - $1::integer * interval '1 millisecond')
                       and r.started_at >= p.started_at, false) as owner_alive
         from requests r
         left join replicas p on p.id = r.replica_id
        where r.state in ('in_flight', 'awaiting_cost', 'unresolved')
          and (r.next_lookup_at is null or r.next_lookup_at <= now())
          and (r.state <> 'unresolved' or r.next_lookup_at is not null)
          and (r.state <> 'in_flight'
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
 * The call's cost could not be found automatically: kept, with the reason and its hold, for
 * operators to list and settle or void by hand. With a generation id, the reconciler keeps
 * looking it up (rarely) from `retryLookupAt`; without one (null), nothing can.
 */
export async function markUnresolved(db: Queryable, requestId: string, reason: string, retryLookupAt: Date | null = null): Promise<boolean> {
  const result = await db.query(
    `update requests set state = 'unresolved', reason = $2::text, updated_at = now(),
            next_lookup_at = case when generation_id is null then null else $3::timestamptz end
      where id = $1::uuid and state in ('in_flight', 'awaiting_cost', 'unresolved')`,
    [requestId, reason, retryLookupAt],
  );
  return result.rowCount === 1;
}

/** An unresolved request's next (rare) lookup, or none (null) once retrying is pointless. */
export async function rescheduleUnresolved(db: Queryable, requestId: string, nextLookupAt: Date | null): Promise<boolean> {
  const result = await db.query(
    `update requests set next_lookup_at = $2::timestamptz, updated_at = now()
      where id = $1::uuid and state = 'unresolved'`,
    [requestId, nextLookupAt],
  );
  return result.rowCount === 1;
}

/**
 * Unsettled requests by state with the oldest age and the holds they keep, for the metrics
 * scrape (partial index).
 */
export async function unsettledSummary(db: Queryable): Promise<Array<{ state: string; count: number; oldestAgeS: number; heldNano: bigint }>> {
  const result = await db.query<{ state: string; count: number; oldest_age_s: number; held: string }>(
    `select state, count(*)::integer as count,
            coalesce(extract(epoch from now() - min(started_at)), 0)::float8 as oldest_age_s,
            coalesce(sum(hold_nano), 0)::text as held
       from requests where state in ('in_flight', 'awaiting_cost', 'unresolved')
      group by state`,
  );
  return result.rows.map((row) => ({ state: row.state, count: row.count, oldestAgeS: row.oldest_age_s, heldNano: BigInt(row.held) }));
}
