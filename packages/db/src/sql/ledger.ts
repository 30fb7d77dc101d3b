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

/** `rollup_n as (insert ... on conflict do update ...)`: adds the new entry to one rollup row. */
function rollupCte(rollup: Rollup, index: number): string {
  const add = MEASURES.map((m) => `${m} = t.${m} + excluded.${m}`).join(', ');
  return `rollup_${index} as (
       insert into ${rollup.table} as t (${[...rollupKeyNames(rollup), ...MEASURES].join(', ')})
       select ${rollupKeyValues(rollup, 'e').join(', ')}, 1, coalesce(e.prompt_tokens, 0), coalesce(e.completion_tokens, 0),
              e.upstream_cost_nano, -e.amount_nano
         from entry e
       on conflict (${rollupKeyNames(rollup).join(', ')}) do update set ${add})`;
}

/**
 * Pricing rule (the only rounding pricing adds), exact integer arithmetic in numeric:
 *   charged_nano = ceil(upstream_cost_nano × multiplier_ppm / 1_000_000)
 * computed as div(upstream × ppm + 999999, 1000000) — rounded UP to the next nano-USD, so the
 * operator never undercharges by a fraction. multiplier_ppm is the user's override, else the
 * default in pricing_settings (read in this statement: every replica prices alike at once).
 */
const SETTLE_SQL = `
  with request as (
    update requests
       set state = 'settled', cost_nano = $2::bigint, settled_at = now(), updated_at = now(),
           generation_id = coalesce($3::text, generation_id), next_lookup_at = null,
           resolution_note = coalesce($7::text, resolution_note)
     where id = $1::uuid and state = any($6::text[])
    returning user_id, model, generation_id, hold_nano, key_id),
  price as (
    -- Scalar subqueries, not joins: a missing pricing_settings row (which a trigger forbids)
    -- would give a null price, and the not-null ledger columns fail the whole statement
    -- rather than let the request be marked settled without its ledger row.
    select request.user_id, request.model, request.generation_id, request.hold_nano, request.key_id, ppm.value as multiplier_ppm,
           div($2::bigint::numeric * ppm.value + 999999, 1000000)::bigint as charged_nano
      from request
      cross join lateral (
        select coalesce((select u.multiplier_ppm from users u where u.id = request.user_id),
                        (select s.default_multiplier_ppm from pricing_settings s)) as value) ppm),
  account as (
    update users
       set balance_nano = balance_nano - price.charged_nano,
           usage_nano = usage_nano + price.charged_nano,
           held_nano = held_nano - price.hold_nano,
           -- Never below 0: a request admitted by a pre-0010 replica during a rolling upgrade was
           -- not counted, and a settle must not fail on a counter (verify reports any drift).
           open_calls = greatest(open_calls - 1, 0)
      from price
     where users.id = price.user_id
    returning users.id, users.balance_nano, price.charged_nano, price.multiplier_ppm, price.model, price.generation_id,
              price.key_id, price.hold_nano, users.alert_balance_below_nano),
  -- 0010: the key's hold and open call are released, and the charge is counted against every
  -- spend limit of the user and the key (a new period restarts the counter). Both join the
  -- user's updated row, so they lock after it, in the admission's order.
  key_release as (
    update api_keys k set held_nano = k.held_nano - account.hold_nano, open_calls = k.open_calls - 1
      from account where k.id = account.key_id),
  spend as (
    update spend_limits l
       set spent_nano = case when l.period_start = spend_period_start(l.period, c.now) then l.spent_nano else 0 end
                        + account.charged_nano,
           period_start = spend_period_start(l.period, c.now), updated_at = now()
      from account cross join (select coalesce($14::timestamptz, now()) as now) c
     where (l.scope_kind = 'user' and l.scope_id = account.id) or (l.scope_kind = 'key' and l.scope_id = account.key_id)),
  -- 0010: balance.low when this charge takes the balance below the user's alert threshold.
  ${emitCtes('low', balanceLowSource(`(select id, balance_nano + charged_nano as before_nano, balance_nano as after_nano,
                                              alert_balance_below_nano as threshold_nano from account)`))},
  entry as (
    insert into ledger_entries (user_id, kind, amount_nano, upstream_cost_nano, multiplier_ppm, balance_after_nano,
                                request_id, generation_id, model, prompt_tokens, completion_tokens,
                                requested_model, provider, is_byok,
                                endpoint, cached_tokens, cache_write_tokens, reasoning_tokens)
    select id, 'usage', -charged_nano, $2::bigint, multiplier_ppm, balance_nano,
           $1::uuid, generation_id, coalesce($8::text, model), $4::integer, $5::integer,
           -- 0008: the ledger (and so every rollup and report) keys by the SERVED model.
           model, $9::text, $10::boolean,
           -- 0009: the endpoint the request was admitted on, and the usage's token details.
           (select r.endpoint from requests r where r.id = $1::uuid), $11::integer, $12::integer, $13::integer
      from account
    returning ${LEDGER_COLUMNS}),
  ${ROLLUPS.map(rollupCte).join(',\n  ')}
  select entry.*, price.hold_nano::text as released_hold_nano from entry, price`;

/** Every open request can be settled by the proxy; an operator closes only stuck ones. */
const SETTLE_STATES = { proxy: ['in_flight', 'awaiting_cost', 'unresolved'], operator: ['awaiting_cost', 'unresolved'] } as const;

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
  assert(usage.upstreamCostNano >= 0n, 'usage cost cannot be negative');
  const run = 'commitWith' in db
    ? (config: pg.QueryConfig) => db.commitWith<SettledRow>(config)
    : (config: pg.QueryConfig) => db.query<SettledRow>(config);
  const result = await run(prepared('settle', SETTLE_SQL, [
    usage.requestId, usage.upstreamCostNano.toString(), usage.generationId, usage.promptTokens, usage.completionTokens,
    by === null ? SETTLE_STATES.proxy : SETTLE_STATES.operator, by?.operatorNote ?? null,
    // 0008 (served model, provider, BYOK), after 0007's states and note:
    usage.servedModel ?? null, usage.provider ?? null, usage.isByok ?? null,
    // 0009 (token details):
    usage.cachedTokens ?? null, usage.cacheWriteTokens ?? null, usage.reasoningTokens ?? null,
    // 0010 ($14): the clock spend-limit periods are counted with (null: the database's now()).
    usage.now ?? null,
  ]));
  const row = result.rows[0];
  return row === undefined ? null : { ...toLedgerEntry(row), releasedHoldNano: BigInt(row.released_hold_nano) };
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
