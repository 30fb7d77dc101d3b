import assert from 'node:assert/strict';
import type pg from 'pg';
import { parseNano } from '../money.js';
import type { Queryable } from './queryable.js';
import { prepared } from './prepared.js';
import { balanceLowSource, emitCtes, usdSql } from './outbox.js';
import { ROLLUP_MEASURES, ROLLUPS, rollupKeyNames, rollupKeyValues, type Rollup } from './rollups.js';

export type LedgerKind = 'grant' | 'usage' | 'adjustment';

export interface LedgerEntry {
  id: string;
  userId: string;
  kind: LedgerKind;
  amountNano: bigint;
  upstreamCostNano: bigint | null;
  /** The price multiplier (parts per million) a usage entry was charged with; null otherwise. */
  multiplierPpm: bigint | null;
  balanceAfterNano: bigint;
  requestId: string | null;
  generationId: string | null;
  /** Usage: the model that served the call (else the one asked for); see migrations/0008. */
  model: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  note: string | null;
  createdAt: Date;
  /** Usage settled since 0008: the model the client asked for (null: only `models`, or none). */
  requestedModel: string | null;
  /** Usage settled since 0008: the upstream provider that served, when the upstream named it. */
  provider: string | null;
  /** Usage settled since 0008: a bring-your-own-key call; null before 0008 and on credits. */
  isByok: boolean | null;
  /** Usage settled since 0009: the endpoint (chat, responses, messages, completions, embeddings). */
  endpoint: string | null;
  /** Usage settled since 0009: token details, when the usage reported them. */
  cachedTokens: number | null;
  cacheWriteTokens: number | null;
  reasoningTokens: number | null;
}

export interface RawEntry {
  id: string; user_id: string; kind: LedgerKind; amount_nano: string; upstream_cost_nano: string | null;
  multiplier_ppm: string | null; balance_after_nano: string; request_id: string | null; generation_id: string | null;
  model: string | null; prompt_tokens: number | null; completion_tokens: number | null; note: string | null; created_at: Date;
  requested_model: string | null; provider: string | null; is_byok: boolean | null;
  endpoint: string | null; cached_tokens: number | null; cache_write_tokens: number | null; reasoning_tokens: number | null;
}

export const LEDGER_COLUMNS = `id, user_id, kind, amount_nano, upstream_cost_nano, multiplier_ppm, balance_after_nano,
  request_id, generation_id, model, prompt_tokens, completion_tokens, note, created_at, requested_model, provider, is_byok,
  endpoint, cached_tokens, cache_write_tokens, reasoning_tokens`;

export function toLedgerEntry(row: RawEntry): LedgerEntry {
  return {
    id: String(row.id),
    userId: row.user_id,
    kind: row.kind,
    amountNano: parseNano(row.amount_nano),
    upstreamCostNano: row.upstream_cost_nano === null ? null : parseNano(row.upstream_cost_nano),
    multiplierPpm: row.multiplier_ppm === null ? null : parseNano(row.multiplier_ppm),
    balanceAfterNano: parseNano(row.balance_after_nano),
    requestId: row.request_id,
    generationId: row.generation_id,
    model: row.model,
    promptTokens: row.prompt_tokens,
    completionTokens: row.completion_tokens,
    note: row.note,
    createdAt: row.created_at,
    requestedModel: row.requested_model,
    provider: row.provider,
    isByok: row.is_byok,
    endpoint: row.endpoint,
    cachedTokens: row.cached_tokens,
    cacheWriteTokens: row.cache_write_tokens,
    reasoningTokens: row.reasoning_tokens,
  };
}

/**
 * A grant (positive) or an adjustment (either sign) and the running totals, in one statement.
 * Returns null when the user does not exist.
 */
export async function appendCredit(
  db: Queryable,
  credit: { userId: string; kind: 'grant' | 'adjustment'; amountNano: bigint; note: string | null },
): Promise<LedgerEntry | null> {
  assert(credit.kind !== 'grant' || credit.amountNano > 0n, 'a grant must be positive');
  const result = await db.query<RawEntry>(
    `with account as (
       update users
          set balance_nano = balance_nano + $3::bigint,
              credits_nano = credits_nano + $3::bigint
        where id = $1::text
       returning id, balance_nano, alert_balance_below_nano),
     entry as (
       insert into ledger_entries (user_id, kind, amount_nano, balance_after_nano, note)
       select id, $2::text, $3::bigint, balance_nano, $4::text from account
       returning ${LEDGER_COLUMNS}),
     -- 0010 webhooks: credits.granted for a grant; balance.low when an adjustment crosses the threshold.
     ${emitCtes('granted', `select 'credits.granted', e.user_id, jsonb_build_object('user_id', e.user_id, 'entry_id', e.id::text,
         'amount_usd', ${usdSql('e.amount_nano')}, 'balance_usd', ${usdSql('e.balance_after_nano')}, 'note', e.note)
         from entry e where e.kind = 'grant'`)},
     ${emitCtes('low', balanceLowSource(`(select id, balance_nano - $3::bigint as before_nano, balance_nano as after_nano,
         alert_balance_below_nano as threshold_nano from account)`))}
     select * from entry`,
    [credit.userId, credit.kind, credit.amountNano.toString(), credit.note],
  );
  const row = result.rows[0];
  return row === undefined ? null : toLedgerEntry(row);
}

export interface UsageSettlement {
  requestId: string;
  /** What the upstream billed (≥ 0). The amount charged is priced from it inside the statement. */
  upstreamCostNano: bigint;
  generationId: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  /** The model that served (response or /generation); null: the requested model is recorded. */
  servedModel?: string | null;
  provider?: string | null;
  /** Bring-your-own-key call (upstreamCostNano is then OpenRouter's fee + the provider's charge). */
  isByok?: boolean | null;
  /** 0009: token details of the usage, when it reported them. */
  cachedTokens?: number | null;
  cacheWriteTokens?: number | null;
  reasoningTokens?: number | null;
  /** The controls' clock (spend-limit periods); null or absent: the database's now(). */
  now?: Date | null;
}

/** The rollups (and the migrations' usage_rollups_add(), which cannot share it) are listed in rollups.ts. */
const MEASURES = ROLLUP_MEASURES;

/**
 * `rollup_n as (insert ... on conflict do update ...)`: adds the new entries to the rollup,
 * summed per key first (two entries of one batch may share a model rollup row, and one
 * statement cannot update a row twice), in key order: two batches locking the same rows lock
 * them in the same order, so they cannot deadlock.
 */
function rollupCte(rollup: Rollup, index: number): string {
  const add = MEASURES.map((m) => `${m} = t.${m} + excluded.${m}`).join(', ');
  const keys = rollupKeyValues(rollup, 'e').map((_, i) => String(i + 1)).join(', ');
  return `rollup_${index} as (
       insert into ${rollup.table} as t (${[...rollupKeyNames(rollup), ...MEASURES].join(', ')})
       select ${rollupKeyValues(rollup, 'e').join(', ')}, count(*), sum(coalesce(e.prompt_tokens, 0)),
              sum(coalesce(e.completion_tokens, 0)), sum(e.upstream_cost_nano), sum(-e.amount_nano)
         from entry e
        group by ${keys} order by ${keys}
       on conflict (${rollupKeyNames(rollup).join(', ')}) do update set ${add})`;
}

/**
 * Pricing rule (the only rounding pricing adds), exact integer arithmetic in numeric:
 *   charged_nano = ceil(upstream_cost_nano × multiplier_ppm / 1_000_000)
 * computed as div(upstream × ppm + 999999, 1000000) — rounded UP to the next nano-USD, so the
 * operator never undercharges by a fraction. multiplier_ppm is the user's override, else the
 * default in pricing_settings (read in this statement: every replica prices alike at once).
 *
 * One statement settles one request or a batch (settleUsages): the requests' rows, then the
 * users' rows are locked first, each in id order (`claimed`, `locked`), so two batches sharing
 * requests or users cannot deadlock on them; each
 * user's key and spend-limit rows are locked after its row, the rollups' rows in key order.
 */
const SETTLE_SQL = `
  with input as (
    select * from unnest($1::uuid[], $2::bigint[], $3::text[], $4::integer[], $5::integer[], $8::text[], $9::text[],
                         $10::boolean[], $11::integer[], $12::integer[], $13::integer[]) with ordinality
             as t(request_id, upstream_cost_nano, generation_id, prompt_tokens, completion_tokens, served_model,
                  provider, is_byok, cached_tokens, cache_write_tokens, reasoning_tokens, ord)),
  -- Locked in id order, like the users' rows below: two statements settling overlapping
  -- requests (a reconciler and the request's own replica) wait for each other, never deadlock.
  claimed as (
    select r.id from requests r where r.id in (select request_id from input) and r.state = any($6::text[])
     order by r.id for update),
  request as (
    update requests r
       set state = 'settled', cost_nano = i.upstream_cost_nano, settled_at = now(), updated_at = now(),
           generation_id = coalesce(i.generation_id, r.generation_id), next_lookup_at = null,
           resolution_note = coalesce($7::text, r.resolution_note)
      from input i join claimed c on c.id = i.request_id
     where r.id = i.request_id and r.state = any($6::text[])
    returning r.id as request_id, r.user_id, r.model, r.generation_id, r.hold_nano, r.key_id, r.endpoint, i.ord,
              i.upstream_cost_nano, i.prompt_tokens, i.completion_tokens, i.served_model, i.provider, i.is_byok,
              i.cached_tokens, i.cache_write_tokens, i.reasoning_tokens),
  locked as (select u.id from users u where u.id in (select user_id from request) order by u.id for update),
  price as (
    -- Scalar subqueries, not joins: a missing pricing_settings row (which a trigger forbids)
    -- would give a null price, and the not-null ledger columns fail the whole statement
    -- rather than let the request be marked settled without its ledger row.
    select request.*, ppm.value as multiplier_ppm,
           div(request.upstream_cost_nano::numeric * ppm.value + 999999, 1000000)::bigint as charged_nano
      from request
      cross join lateral (
        select coalesce((select u.multiplier_ppm from users u where u.id = request.user_id),
                        (select s.default_multiplier_ppm from pricing_settings s)) as value) ppm),
  -- A statement updates a row once: the batch's requests of one user are summed first.
  per_user as (
    select user_id, sum(charged_nano)::bigint as charged_nano, sum(hold_nano)::bigint as hold_nano, count(*)::integer as n
      from price group by user_id),
  account as (
    update users
       set balance_nano = balance_nano - p.charged_nano,
           usage_nano = usage_nano + p.charged_nano,
           held_nano = held_nano - p.hold_nano,
           -- Never below 0: a request admitted by a pre-0010 replica during a rolling upgrade was
           -- not counted, and a settle must not fail on a counter (verify reports any drift).
           open_calls = greatest(open_calls - p.n, 0)
      from per_user p join locked on locked.id = p.user_id
     where users.id = p.user_id
    returning users.id, users.balance_nano, users.alert_balance_below_nano, p.charged_nano),
  -- 0010: the keys' holds and open calls are released, and the charges are counted against
  -- every spend limit of the users and keys (a new period restarts the counter). Both join the
  -- users' updated rows, so they lock after them, in the admission's order.
  key_release as (
    update api_keys k set held_nano = k.held_nano - p.hold_nano, open_calls = k.open_calls - p.n
      from (select key_id, user_id, sum(hold_nano)::bigint as hold_nano, count(*)::integer as n from price
             where key_id is not null group by key_id, user_id) p
      join account on account.id = p.user_id
     where k.id = p.key_id),
  spend as (
    update spend_limits l
       set spent_nano = case when l.period_start = spend_period_start(l.period, c.now) then l.spent_nano else 0 end
                        + x.charged_nano,
           period_start = spend_period_start(l.period, c.now), updated_at = now()
      from (select 'user' as kind, id as scope_id, charged_nano from account
            union all
            select 'key', p.key_id, sum(p.charged_nano)::bigint from price p join account on account.id = p.user_id
             where p.key_id is not null group by p.key_id) x
     cross join (select coalesce($14::timestamptz, now()) as now) c
     where l.scope_kind = x.kind and l.scope_id = x.scope_id),
  -- 0010: balance.low when this charge takes the balance below the user's alert threshold.
  ${emitCtes('low', balanceLowSource(`(select id, balance_nano + charged_nano as before_nano, balance_nano as after_nano,
                                              alert_balance_below_nano as threshold_nano from account)`))},
  entry as (
    insert into ledger_entries (user_id, kind, amount_nano, upstream_cost_nano, multiplier_ppm, balance_after_nano,
                                request_id, generation_id, model, prompt_tokens, completion_tokens,
                                requested_model, provider, is_byok,
                                endpoint, cached_tokens, cache_write_tokens, reasoning_tokens)
    select p.user_id, 'usage', -p.charged_nano, p.upstream_cost_nano, p.multiplier_ppm,
           -- In a batch with several of a user's requests, each entry's balance is the balance
           -- after it, in the batch's order: the final balance plus what the later ones charged.
           a.balance_nano + coalesce(sum(p.charged_nano) over (partition by p.user_id order by p.ord
                                     rows between 1 following and unbounded following), 0)::bigint,
           p.request_id, p.generation_id, coalesce(p.served_model, p.model), p.prompt_tokens, p.completion_tokens,
           -- 0008: the ledger (and so every rollup and report) keys by the SERVED model.
           p.model, p.provider, p.is_byok,
           -- 0009: the endpoint the request was admitted on, and the usage's token details.
           p.endpoint, p.cached_tokens, p.cache_write_tokens, p.reasoning_tokens
      from price p join account a on a.id = p.user_id
     order by p.ord
    returning ${LEDGER_COLUMNS}),
  ${ROLLUPS.map(rollupCte).join(',\n  ')}
  select entry.*, price.hold_nano::text as released_hold_nano from entry join price on price.request_id = entry.request_id`;

/** Every open request can be settled by the proxy; an operator closes only stuck ones. */
const SETTLE_STATES = { proxy: ['in_flight', 'awaiting_cost', 'unresolved'], operator: ['awaiting_cost', 'unresolved'] } as const;

/** Requests per settle statement, at most (settleUsages). */
export const SETTLE_BATCH_MAX = 256;

type SettledRow = RawEntry & { released_hold_nano: string };

/**
 * Serialize mode: the settle as the last statement of the user's lock transaction, committed
 * with it in one round trip (cost-barrier.ts LockedContext.commitWith).
 */
export interface SettleInLockTransaction {
  commitWith<R extends pg.QueryResultRow>(query: pg.QueryConfig): Promise<pg.QueryResult<R>>;
}

export interface SettledEntry extends LedgerEntry {
  /** The hold this settle released (charged nano-USD); the charge may exceed it (overage). */
  releasedHoldNano: bigint;
}

/**
 * Settles a request exactly once, in one statement: the request's final state, the price
 * (upstream cost × multiplier, see SETTLE_SQL), the running totals, the release of the
 * request's hold, the usage entry keeping both the upstream cost and the amount charged, and
 * every usage rollup. Only an open request moves (an operator may settle only awaiting_cost or
 * unresolved ones); a second settle of the same request matches no row (and the unique
 * request_id on the ledger backs that up). Returns null when the request was not open.
 */
export async function settleUsage(
  db: Queryable | SettleInLockTransaction, usage: UsageSettlement, by: { operatorNote: string } | null = null,
): Promise<SettledEntry | null> {
  const [entry] = await settleUsages(db, [usage], by);
  return entry ?? null;
}

/**
 * settleUsage for several requests (of one user or many) in one statement and one commit: all
 * of them or none (a failure of one fails the statement). Results in the order of `usages`;
 * several requests of one user are charged in that order (their entries' balances follow it).
 */
export async function settleUsages(
  db: Queryable | SettleInLockTransaction, usages: readonly UsageSettlement[], by: { operatorNote: string } | null = null,
): Promise<Array<SettledEntry | null>> {
  assert(usages.length >= 1 && usages.length <= SETTLE_BATCH_MAX, `a settle takes 1 to ${SETTLE_BATCH_MAX} requests`);
  assert(new Set(usages.map((u) => u.requestId)).size === usages.length, 'a request appears once in a settle');
  assert(usages.every((u) => u.upstreamCostNano >= 0n), 'usage cost cannot be negative');
  // One clock for the statement: the spend-limit period is the batch's.
  const now = usages[0]!.now ?? null;
  assert(usages.every((u) => (u.now ?? null)?.getTime() === now?.getTime()), 'a settle statement has one clock');
  const run = 'commitWith' in db
    ? (config: pg.QueryConfig) => db.commitWith<SettledRow>(config)
    : (config: pg.QueryConfig) => db.query<SettledRow>(config);
  const column = <T>(pick: (u: UsageSettlement) => T) => usages.map(pick);
  const result = await run(prepared('settle', SETTLE_SQL, [
    column((u) => u.requestId), column((u) => u.upstreamCostNano.toString()), column((u) => u.generationId),
    column((u) => u.promptTokens), column((u) => u.completionTokens),
    by === null ? SETTLE_STATES.proxy : SETTLE_STATES.operator, by?.operatorNote ?? null,
    // 0008 (served model, provider, BYOK), after 0007's states and note:
    column((u) => u.servedModel ?? null), column((u) => u.provider ?? null), column((u) => u.isByok ?? null),
    // 0009 (token details):
    column((u) => u.cachedTokens ?? null), column((u) => u.cacheWriteTokens ?? null), column((u) => u.reasoningTokens ?? null),
    // 0010 ($14): the clock spend-limit periods are counted with (null: the database's now()).
    now,
  ]));
  const byRequest = new Map(result.rows.map((row) => [row.request_id, row]));
  return usages.map((u) => {
    const row = byRequest.get(u.requestId);
    return row === undefined ? null : { ...toLedgerEntry(row), releasedHoldNano: BigInt(row.released_hold_nano) };
  });
}

export interface LedgerQuery {
  userId: string | null;
  since: Date | null;
  until: Date | null;
  /** Entries after this one in the order below (keyset pagination, newest first). */
  beforeId: string | null;
  limit: number;
}

/**
 * @deprecated use reports.queryLedger (more filters); kept for existing callers. Same order:
 * newest first by (created_at, id), the cursor entry's position found by its id.
 */
export async function listLedger(db: Queryable, query: LedgerQuery): Promise<LedgerEntry[]> {
  const result = await db.query<RawEntry>(
    `select ${LEDGER_COLUMNS} from ledger_entries
      where ($1::text is null or user_id = $1::text)
        and ($2::timestamptz is null or created_at >= $2::timestamptz)
        and ($3::timestamptz is null or created_at < $3::timestamptz)
        and ($4::bigint is null
             or (created_at, id) < (select c.created_at, c.id from ledger_entries c where c.id = $4::bigint))
      order by created_at desc, id desc
      limit $5::integer`,
    [query.userId, query.since, query.until, query.beforeId, query.limit],
  );
  return result.rows.map(toLedgerEntry);
}
