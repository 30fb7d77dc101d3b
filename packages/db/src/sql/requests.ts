import assert from 'node:assert/strict';
import type { Queryable } from './queryable.js';
import { prepared } from './prepared.js';
import { emitCtes, usdSql } from './outbox.js';

export type RequestState = 'in_flight' | 'awaiting_cost' | 'settled' | 'failed' | 'unresolved' | 'voided';

/** States whose cost is not known yet: each keeps its hold (users.held_nano) until it closes. */
export const OPEN_STATES: readonly RequestState[] = ['in_flight', 'awaiting_cost', 'unresolved'];

export interface NewRequest {
  id: string;
  userId: string;
  replicaId: string;
  model: string | null;
  stream: boolean;
  /** 0009: the endpoint ('chat' when absent). */
  endpoint?: string;
  /** The API key the call came with (its limits apply); null for calls made without one. */
  keyId?: string | null;
}

/** Committed on its own before the upstream call, so a crash leaves a trace to reconcile. */
export async function insertRequest(db: Queryable, request: NewRequest): Promise<void> {
  await db.query(
    // 0010: an open request counts as an open call of its user (users.open_calls).
    `with counted as (update users set open_calls = open_calls + 1 where id = $2::text)
     insert into requests (id, user_id, replica_id, model, stream, state)
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
  /** The clock the controls' periods and rate windows are read with (null: the database's now()). */
  now?: Date | null;
}

export type AdmitResult = { admitted: true; holdNano: bigint } | { admitted: false; refusal?: Refusal };

/** Why a call was not admitted (limits: migrations/0010_controls.sql). */
export type Refusal =
  | { kind: 'insufficient_credits' }
  | { kind: 'concurrent_calls'; scope: 'user' | 'key'; limit: number }
  | { kind: 'requests_per_minute'; scope: 'user' | 'key'; limit: number; resetsAt: Date }
  | { kind: 'spend_limit'; scope: 'user' | 'key'; period: string; amountNano: bigint; spentNano: bigint; heldNano: bigint; resetsAt: Date | null };

export type AdmitOutcome = { admitted: true; holdNano: bigint } | { admitted: false; refusal: Refusal };

/**
 * Serialize mode's admission, the hold and the durable trace in one statement (one round trip,
 * committed on its own), run while the caller holds the user's cost lock: admitted while
 * available = balance − held is above the minimum (this call's own hold is not counted: the
 * bound is one request) and every spend limit has spent + held below it (the same bound);
 * held_nano grows by the hold (the worst case × the user's multiplier, rounded up as the
 * settle rounds) and the request row is written with it, or neither happens.
 * Reserve mode admits with admitBatch below. (The proxy sends both modes' admissions through
 * its admission batcher, which calls admitMany; this single-call form is for tools and tests.)
 */
export async function admitRequest(db: Queryable, request: NewRequest, admission: Admission): Promise<AdmitResult> {
  const outcomes = await admitCalls(db, {
    mode: 'serialize', lockKey: null, userId: request.userId, replicaId: request.replicaId,
    minBalanceNano: admission.minBalanceNano, now: admission.now ?? null,
    calls: [{ id: request.id, model: request.model, stream: request.stream, keyId: request.keyId ?? null, endpoint: request.endpoint ?? 'chat',
      upstreamHoldNano: admission.upstreamHoldNano, holdCompletionTokens: admission.holdCompletionTokens }],
  });
  const outcome = outcomes.get(request.id);
  if (outcome === undefined) return { admitted: false };
  return outcome;
}

export interface BatchCall {
  id: string; model: string | null; stream: boolean; upstreamHoldNano: bigint; holdCompletionTokens: number | null;
  keyId?: string | null;
  /** 0009: the endpoint ('chat' when absent). */
  endpoint?: string;
}

export interface BatchAdmission {
  userId: string;
  replicaId: string;
  minBalanceNano: bigint;
  lockKey: bigint;
  /** In arrival order: each admitted only if it and every admitted one before it fit. */
  calls: BatchCall[];
  now?: Date | null;
}

/**
 * Reserve mode, many same-user admissions in one statement (one round trip, one lock, one
 * commit): in arrival order, a call is admitted while available − (its hold + the holds
 * admitted before it) ≥ minimum and every limit still fits. Returns the hold (charged nano-USD)
 * of each admitted call by request id; admitCalls tells why the others were not.
 */
export async function admitBatch(db: Queryable, batch: BatchAdmission): Promise<Map<string, bigint>> {
  const outcomes = await admitCalls(db, { ...batch, mode: 'reserve', now: batch.now ?? null });
  const held = new Map<string, bigint>();
  for (const [id, outcome] of outcomes) if (outcome.admitted) held.set(id, outcome.holdNano);
  return held;
}

export interface CallsAdmission {
  mode: BarrierMode;
  /** Reserve: the user's advisory lock, taken inside the statement; serialize: null (the caller holds it). */
  lockKey: bigint | null;
  userId: string;
  replicaId: string;
  minBalanceNano: bigint;
  now: Date | null;
  calls: BatchCall[];
  /**
   * A first try that a refusal does not end (reserve's full-budget attempt, followed by a
   * smaller budget): a spend limit that refuses it is not `limit.reached` yet.
   */
  probe?: boolean;
}

/** One user's calls in a statement admitting several users (admitMany). */
export interface UserCalls {
  userId: string;
  /** As CallsAdmission.lockKey. */
  lockKey: bigint | null;
  calls: BatchCall[];
  probe?: boolean;
}

export interface ManyAdmission {
  mode: BarrierMode;
  replicaId: string;
  minBalanceNano: bigint;
  now: Date | null;
  /** Each user at most once. */
  users: UserCalls[];
}

/** Calls per admission statement, at most (all users together): 256 users × 256 same-user calls. */
export const ADMISSION_CALLS_MAX = 65_536;

/**
 * The one admission statement of both modes. The users' locks are taken (reserve), then their
 * rows, the calls' key rows and their spend-limit rows are locked, each in id order (FOR UPDATE
 * reads the latest committed version even though the statement's snapshot predates the
 * advisory locks); then per user, per call in arrival order, with the sums over it and the
 * user's calls before it (per key for key limits):
 *   concurrent:  open_calls + n ≤ concurrent_calls            (user, key)
 *   rate:        admitted this UTC minute + n ≤ requests_per_minute (fixed window)
 *   spend limit: reserve: spent in period + held + holds ≤ amount; serialize: spent + held < amount
 *   balance:     reserve: available − holds ≥ minimum; serialize: available > minimum
 * Of each user's calls the longest prefix that passes is admitted (holds, open calls and rate
 * windows added to the user's and keys' rows, request rows written). A call after the user's
 * first refused one that failed no check of its own gets no outcome: the caller retries it in
 * a later statement. A user that does not exist gets no outcome for any of its calls.
 */
export async function admitCalls(db: Queryable, batch: CallsAdmission): Promise<Map<string, AdmitOutcome>> {
  const [outcomes] = await admitMany(db, {
    mode: batch.mode, replicaId: batch.replicaId, minBalanceNano: batch.minBalanceNano, now: batch.now,
    users: [{ userId: batch.userId, lockKey: batch.lockKey, calls: batch.calls, probe: batch.probe ?? false }],
  });
  return outcomes!;
}

/** admitCalls for several users in one statement and one commit; outcomes per user, in order. */
export async function admitMany(db: Queryable, batch: ManyAdmission): Promise<Array<Map<string, AdmitOutcome>>> {
  assert(new Set(batch.users.map((u) => u.userId)).size === batch.users.length, 'a user appears once in an admission statement');
  const calls = batch.users.flatMap((u) => u.calls.map((c) => ({ user: u, call: c })));
  assert(calls.length >= 1 && calls.length <= ADMISSION_CALLS_MAX, `an admission statement takes 1 to ${ADMISSION_CALLS_MAX} calls`);
  const column = <T>(pick: (x: { user: UserCalls; call: BatchCall }) => T) => calls.map(pick);
  const result = await db.query<AdmitRow>(prepared('admit_calls', ADMIT_SQL, [
    column((x) => (x.user.lockKey === null ? null : x.user.lockKey.toString())), column((x) => x.user.userId),
    column((x) => x.call.id), column((x) => x.call.model), column((x) => x.call.stream),
    column((x) => x.call.upstreamHoldNano.toString()), column((x) => x.call.holdCompletionTokens),
    batch.minBalanceNano.toString(), batch.replicaId, batch.mode, column((x) => x.call.keyId ?? null), batch.now,
    column((x) => x.call.endpoint ?? 'chat'), column((x) => x.user.probe === true),
  ]));
  const byCall = new Map<string, AdmitOutcome>();
  for (const row of result.rows) {
    if (row.admit) byCall.set(row.id, { admitted: true, holdNano: BigInt(row.hold_nano) });
    else if (row.refusal !== null) byCall.set(row.id, { admitted: false, refusal: toRefusal(row) });
  }
  return batch.users.map((u) => {
    const outcomes = new Map<string, AdmitOutcome>();
    for (const call of u.calls) {
      const outcome = byCall.get(call.id);
      if (outcome !== undefined) outcomes.set(call.id, outcome);
    }
    return outcomes;
  });
}

interface AdmitRow {
  id: string; admit: boolean; hold_nano: string; refusal: string | null; limit_value: string | null; period: string | null;
  spent: string | null; limit_held: string | null; resets_at: Date | null;
}

function toRefusal(row: AdmitRow): Refusal {
  const [kind, scope] = row.refusal!.split(':') as [string, 'user' | 'key'];
  if (kind === 'insufficient_credits') return { kind };
  if (kind === 'concurrent_calls') return { kind, scope, limit: Number(row.limit_value) };
  if (kind === 'requests_per_minute') return { kind, scope, limit: Number(row.limit_value), resetsAt: row.resets_at! };
  return {
    kind: 'spend_limit', scope, period: row.period!, amountNano: BigInt(row.limit_value!), spentNano: BigInt(row.spent!),
    heldNano: BigInt(row.limit_held!), resetsAt: row.resets_at,
  };
}

const ADMIT_SQL = `
  with input as (
    select * from unnest($1::bigint[], $2::text[], $3::uuid[], $4::text[], $5::boolean[], $6::bigint[], $7::integer[],
                         $11::text[], $13::text[], $14::boolean[]) with ordinality
             as t(lock_key, user_id, id, model, stream, upstream_hold, tokens, key_id, endpoint, probe, ord)),
  -- Every user's lock, in key order: two statements admitting overlapping users wait for each
  -- other, never deadlock (and none waits for a lock while holding a row another wants).
  lock as (
    select count(*) as n
      from (select pg_advisory_xact_lock(k.lock_key)
              from (select distinct lock_key from input where lock_key is not null order by lock_key) k) l),
  clock as (
    select t.now, date_trunc('minute', t.now at time zone 'UTC') at time zone 'UTC' as minute
      from (select coalesce($12::timestamptz, now()) as now) t),
  account as (
    select u.id, u.balance_nano - u.held_nano as available, u.held_nano, u.open_calls,
           coalesce(u.multiplier_ppm, s.default_multiplier_ppm) as ppm,
           u.requests_per_minute as rpm, u.concurrent_calls as conc, c.now, c.minute,
           case when u.rate_window_start = c.minute then u.rate_window_count else 0 end as rate_used
      from users u cross join pricing_settings s cross join lock cross join clock c
     where u.id in (select user_id from input)
     order by u.id
       for update of u),
  calls as (
    select t.id, t.user_id, t.model, t.stream, t.tokens, t.key_id, t.endpoint, t.probe, t.ord,
           div(t.upstream_hold::numeric * a.ppm + 999999, 1000000)::bigint as hold
      from input t join account a on a.id = t.user_id),
  keys as (
    select k.id, k.user_id, k.held_nano, k.open_calls, k.requests_per_minute as rpm, k.concurrent_calls as conc,
           case when k.rate_window_start = c.minute then k.rate_window_count else 0 end as rate_used
      from api_keys k cross join clock c
     where k.id in (select key_id from calls) and k.user_id in (select id from account)
     order by k.id
       for update of k),
  limits as (
    select l.scope_kind, l.scope_id, l.period, l.amount_nano,
           case when l.period_start = spend_period_start(l.period, c.now) then l.spent_nano else 0 end as spent,
           spend_period_end(l.period, c.now) as resets_at
      from spend_limits l cross join clock c cross join (select count(*) from keys) after_keys
     where (l.scope_kind = 'user' and l.scope_id in (select id from account))
        or (l.scope_kind = 'key' and l.scope_id in (select id from keys))
     order by l.scope_kind, l.scope_id, l.period
       for update of l),
  running as (
    select c.*, sum(c.hold) over w_user as user_cum, count(*) over w_user as user_n,
           sum(c.hold) over w_key as key_cum, count(*) over w_key as key_n
      from calls c
    window w_user as (partition by c.user_id order by c.ord), w_key as (partition by c.key_id order by c.ord)),
  checked as (
    select r.*, sl.period, sl.amount_nano, sl.spent, sl.held as limit_held, sl.resets_at,
           case
             when a.conc is not null and a.open_calls + r.user_n > a.conc then 'concurrent_calls:user'
             when k.conc is not null and k.open_calls + r.key_n > k.conc then 'concurrent_calls:key'
             when a.rpm is not null and a.rate_used + r.user_n > a.rpm then 'requests_per_minute:user'
             when k.rpm is not null and k.rate_used + r.key_n > k.rpm then 'requests_per_minute:key'
             when sl.scope_kind is not null then 'spend_limit:' || sl.scope_kind
             when ($10::text = 'reserve' and a.available - r.user_cum < $8::bigint)
               or ($10::text = 'serialize' and a.available - (r.user_cum - r.hold) <= $8::bigint) then 'insufficient_credits'
           end as refusal
      from running r join account a on a.id = r.user_id
      left join keys k on k.id = r.key_id and k.user_id = r.user_id
      left join lateral (
        select l.scope_kind, l.period, l.amount_nano, l.spent, v.held, l.resets_at
          from limits l
         cross join lateral (select case when l.scope_kind = 'user' then a.held_nano else k.held_nano end as held,
                                    case when l.scope_kind = 'user' then r.user_cum else r.key_cum end as cum) v
         where ((l.scope_kind = 'user' and l.scope_id = r.user_id) or (l.scope_kind = 'key' and l.scope_id = r.key_id))
           and (($10::text = 'reserve' and l.spent + v.held + v.cum > l.amount_nano)
             or ($10::text = 'serialize' and l.spent + v.held + v.cum - r.hold >= l.amount_nano))
         order by l.scope_kind desc, l.period
         limit 1) sl on true),
  decided as (select c.*, bool_and(c.refusal is null) over (partition by c.user_id order by c.ord) as admit from checked c),
  admitted as (select * from decided where admit),
  user_update as (
    update users u
       set held_nano = u.held_nano + s.held, open_calls = u.open_calls + s.n,
           rate_window_count = case when u.rate_window_start = c.minute then u.rate_window_count else 0 end + s.n,
           rate_window_start = c.minute
      from (select user_id, sum(hold) as held, count(*)::integer as n from admitted group by user_id) s cross join clock c
     where u.id = s.user_id),
  key_update as (
    update api_keys k
       set held_nano = k.held_nano + s.held, open_calls = k.open_calls + s.n,
           rate_window_count = case when k.rate_window_start = c.minute then k.rate_window_count else 0 end + s.n,
           rate_window_start = c.minute
      from (select key_id, sum(hold) as held, count(*)::integer as n from admitted where key_id is not null group by key_id) s
     cross join clock c
     where k.id = s.key_id),
  inserted as (
    insert into requests (id, user_id, replica_id, model, stream, state, hold_nano, hold_completion_tokens, key_id, endpoint)
    select id, user_id, $9::text, model, stream, 'in_flight', hold, tokens, key_id, endpoint from admitted
    returning id),
  -- Webhooks: limit.reached once per limit and period, with the first call it refuses (not a
  -- probe's: a probe that a limit refuses is retried with a smaller budget).
  reached as (
    update spend_limits l set reached_period_start = spend_period_start(l.period, c.now)
      from (select distinct d.refusal, d.period, d.key_id, d.user_id from decided d
             where not d.admit and d.refusal like 'spend_limit:%' and not d.probe) h
     cross join clock c
     where l.period = h.period
       and ((h.refusal = 'spend_limit:user' and l.scope_kind = 'user' and l.scope_id = h.user_id)
         or (h.refusal = 'spend_limit:key' and l.scope_kind = 'key' and l.scope_id = h.key_id))
       and l.reached_period_start is distinct from spend_period_start(l.period, c.now)
    returning l.scope_kind, l.scope_id, l.period, l.amount_nano, spend_period_end(l.period, c.now) as resets_at, h.user_id),
  ${emitCtes('reached', `select 'limit.reached', r.user_id, jsonb_build_object('scope', r.scope_kind, 'id', r.scope_id, 'user_id', r.user_id,
      'period', r.period, 'amount_usd', ${usdSql('r.amount_nano')}, 'resets_at', r.resets_at) from reached r`)}
  select d.id::text, d.admit, d.hold::text as hold_nano, case when d.admit then null else d.refusal end as refusal,
         (case split_part(d.refusal, ':', 1)
            when 'concurrent_calls' then case when d.refusal like '%:user' then a.conc else k.conc end::bigint
            when 'requests_per_minute' then case when d.refusal like '%:user' then a.rpm else k.rpm end::bigint
            when 'spend_limit' then d.amount_nano end)::text as limit_value,
         d.period, d.spent::text, d.limit_held::text,
         case when d.refusal like 'requests_per_minute:%' then a.minute + interval '1 minute' else d.resets_at end as resets_at
    from decided d join account a on a.id = d.user_id left join keys k on k.id = d.key_id and k.user_id = d.user_id
   order by d.ord`;

export interface Affordability {
  /** balance − held, in charged nano-USD. */
  availableNano: bigint;
  /** balance − held + the holds of calls in flight now (whose cost will land before any queued call runs). */
  availableAfterInFlightNano: bigint;
  multiplierPpm: bigint;
  /**
   * 0010: the least room left under the user's and the key's spend limits (amount − spent in
   * the current period − held), charged nano-USD; null when no limit applies.
   */
  limitRoomNano: bigint | null;
}

/** What a user can spend right now, for the reserve budget and the before-queuing check. */
export async function affordability(db: Queryable, userId: string, keyId: string | null = null, now: Date | null = null): Promise<Affordability | null> {
  const result = await db.query<{ available: string; after_in_flight: string; ppm: string; room: string | null }>(
    `select (select min(l.amount_nano - case when l.period_start = spend_period_start(l.period, coalesce($3::timestamptz, now()))
                                            then l.spent_nano else 0 end
                        - case when l.scope_kind = 'user' then u.held_nano else k.held_nano end)
               from spend_limits l left join api_keys k on k.id = $2::text
              where (l.scope_kind = 'user' and l.scope_id = u.id) or (l.scope_kind = 'key' and l.scope_id = $2::text))::text as room,
            u.balance_nano - u.held_nano as available,
            u.balance_nano - u.held_nano
              + coalesce((select sum(r.hold_nano) from requests r
                           where r.user_id = u.id and r.state = 'in_flight'), 0) as after_in_flight,
            coalesce(u.multiplier_ppm, s.default_multiplier_ppm) as ppm
       from users u, pricing_settings s where u.id = $1::text`,
    [userId, keyId, now],
  );
  const row = result.rows[0];
  return row === undefined ? null : {
    availableNano: BigInt(row.available), availableAfterInFlightNano: BigInt(row.after_in_flight), multiplierPpm: BigInt(row.ppm),
    limitRoomNano: row.room === null ? null : BigInt(row.room),
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
  await recordGenerationIds(db, [{ requestId, generationId }], flush);
}

/** Generation ids recorded per statement, at most (recordGenerationIds). */
export const GENERATION_IDS_MAX = 256;

/**
 * recordGenerationId for several requests in one statement (the stream batcher's): the
 * requests' rows are updated in id order, so two such statements never deadlock.
 */
export async function recordGenerationIds(
  db: Queryable, ids: ReadonlyArray<{ requestId: string; generationId: string }>, flush: 'durable' | 'async' = 'durable',
): Promise<void> {
  assert(ids.length >= 1 && ids.length <= GENERATION_IDS_MAX, `1 to ${GENERATION_IDS_MAX} generation ids per statement`);
  const sorted = [...ids].sort((a, b) => (a.requestId < b.requestId ? -1 : a.requestId > b.requestId ? 1 : 0));
  // set_config(..., true) lasts to the end of this statement's own transaction, whose commit
  // reads it; the one-row subquery is volatile, so it is always evaluated. Null keeps the
  // server's setting (durable).
  await db.query(prepared('record_generation_ids',
    `update requests r set generation_id = v.generation_id, updated_at = now()
       from (select set_config('synchronous_commit', coalesce($3::text, current_setting('synchronous_commit')), true)) as commit_mode,
            (select u.id, u.generation_id from unnest($1::uuid[], $2::text[]) as u(id, generation_id) order by u.id) as v
      where r.id = v.id and r.generation_id is distinct from v.generation_id`,
    [sorted.map((i) => i.requestId), sorted.map((i) => i.generationId), flush === 'async' ? 'off' : null],
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
 * Releases a closed request's hold and open call from its user and its key (0010), the user's
 * row first (the admission's lock order). Follows a `closed` CTE returning user_id, hold_nano, key_id;
 * open_calls never goes below 0 (see SETTLE_SQL: a pre-0010 replica did not count its calls).
 */
const RELEASE_CTES = `released as (
       update users u set held_nano = u.held_nano - closed.hold_nano, open_calls = greatest(u.open_calls - 1, 0)
         from closed where u.id = closed.user_id
       returning closed.key_id, closed.hold_nano),
     key_released as (
       update api_keys k set held_nano = k.held_nano - released.hold_nano, open_calls = k.open_calls - 1
         from released where k.id = released.key_id)`;

/**
 * Nothing was generated or billed upstream (an error before any output, a client gone before
 * the call was sent): no charge, and the hold is released in the same statement.
 */
export async function markFailed(db: Queryable, requestId: string, reason: string): Promise<boolean> {
  const result = await db.query(
    `with closed as (
       update requests set state = 'failed', reason = $2::text, updated_at = now(), next_lookup_at = null
        where id = $1::uuid and state in ('in_flight', 'awaiting_cost')
       returning user_id, hold_nano, key_id),
     ${RELEASE_CTES}
     select 1 from released`,
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
       returning user_id, hold_nano, key_id),
     ${RELEASE_CTES}
     select 1 from released`,
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
    `with before as (select id, state from requests where id = $1::uuid for update),
     changed as (
       update requests r set state = 'unresolved', reason = $2::text, updated_at = now(),
              next_lookup_at = case when r.generation_id is null then null else $3::timestamptz end
         from before
        where r.id = before.id and r.state in ('in_flight', 'awaiting_cost', 'unresolved')
       returning r.id, r.user_id, r.generation_id, before.state as previous),
     -- 0010 webhooks: request.unresolved once, when a request becomes unresolved.
     ${emitCtes('unresolved', `select 'request.unresolved', c.user_id, jsonb_build_object('request_id', c.id::text,
         'user_id', c.user_id, 'reason', $2::text, 'generation_id', c.generation_id) from changed c where c.previous <> 'unresolved'`)}
     select 1 from changed`,
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
