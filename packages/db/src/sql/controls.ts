import type pg from 'pg';
import type { Queryable } from './queryable.js';
import { prepared } from './prepared.js';
import { inTransaction } from '../transaction.js';

/** Operator controls on a user or an API key (migrations/0010_controls.sql). */
export type ScopeKind = 'user' | 'key';
export type SpendPeriod = 'day' | 'week' | 'month' | 'never';
export const SPEND_PERIODS_TEXT = ['day', 'week', 'month', 'never'] as const;

export interface Scope { kind: ScopeKind; id: string }

export interface ModelRules { allow: string[] | null; deny: string[] | null }

/** A key's owner and the model rules of the key and of its user, for the auth cache. */
export interface KeyWithRules {
  keyId: string;
  userId: string;
  revoked: boolean;
  user: ModelRules;
  key: ModelRules;
}

export async function findKeyWithRules(db: Queryable, hash: Buffer): Promise<KeyWithRules | null> {
  const result = await db.query<{
    id: string; user_id: string; revoked: boolean; key_allow: string[] | null; key_deny: string[] | null;
    user_allow: string[] | null; user_deny: string[] | null;
  }>(prepared('find_key_with_rules',
    `select k.id, k.user_id, k.revoked_at is not null as revoked, k.models_allow as key_allow, k.models_deny as key_deny,
            u.models_allow as user_allow, u.models_deny as user_deny
       from api_keys k join users u on u.id = k.user_id
      where k.key_hash = $1::bytea`,
    [hash],
  ));
  const row = result.rows[0];
  return row === undefined ? null : {
    keyId: row.id, userId: row.user_id, revoked: row.revoked,
    user: { allow: row.user_allow, deny: row.user_deny }, key: { allow: row.key_allow, deny: row.key_deny },
  };
}

export interface SpendLimitState {
  period: SpendPeriod;
  amountNano: bigint;
  /** Charged in the current period (0 once a new period has begun and nothing settled yet). */
  spentNano: bigint;
  periodStart: Date | null;
  /** When the current period ends; null for 'never'. */
  resetsAt: Date | null;
}

export interface ControlsState {
  scope: Scope;
  /** Key scope: the user the key belongs to. */
  userId: string;
  requestsPerMinute: number | null;
  concurrentCalls: number | null;
  models: ModelRules;
  /** Holds of the scope's open requests (charged nano-USD). */
  heldNano: bigint;
  openCalls: number;
  /** Calls admitted in the current UTC minute. */
  requestsThisMinute: number;
  minuteResetsAt: Date;
  spend: SpendLimitState[];
}

/** The patch of PUT .../limits: an absent field is kept, null clears it. */
export interface ControlsPatch {
  spend?: Array<{ period: SpendPeriod; amountNano: bigint }> | null;
  requestsPerMinute?: number | null;
  concurrentCalls?: number | null;
  models?: { allow?: string[] | null; deny?: string[] | null } | null;
}

const TABLE = { user: 'users', key: 'api_keys' } as const;

/** The scope's controls with what is spent, held and open now (`now` null: the database's clock). */
export async function getControls(db: Queryable, scope: Scope, now: Date | null): Promise<ControlsState | null> {
  const owner = scope.kind === 'user' ? 's.id' : 's.user_id';
  const result = await db.query<{
    user_id: string; rpm: number | null; conc: number | null; allow: string[] | null; deny: string[] | null; held: string;
    open_calls: number; rate_used: number; minute_end: Date;
  }>(
    `with c as (select t.now, date_trunc('minute', t.now at time zone 'UTC') at time zone 'UTC' as minute
                  from (select coalesce($2::timestamptz, now()) as now) t)
     select ${owner} as user_id, s.requests_per_minute as rpm, s.concurrent_calls as conc, s.models_allow as allow,
            s.models_deny as deny, s.held_nano::text as held, s.open_calls,
            case when s.rate_window_start = c.minute then s.rate_window_count else 0 end as rate_used,
            c.minute + interval '1 minute' as minute_end
       from ${TABLE[scope.kind]} s cross join c where s.id = $1::text`,
    [scope.id, now],
  );
  const row = result.rows[0];
  if (row === undefined) return null;
  return {
    scope, userId: row.user_id, requestsPerMinute: row.rpm, concurrentCalls: row.conc, models: { allow: row.allow, deny: row.deny },
    heldNano: BigInt(row.held), openCalls: row.open_calls, requestsThisMinute: row.rate_used, minuteResetsAt: row.minute_end,
    spend: await spendLimits(db, scope, now),
  };
}

async function spendLimits(db: Queryable, scope: Scope, now: Date | null): Promise<SpendLimitState[]> {
  const result = await db.query<{ period: SpendPeriod; amount: string; spent: string; period_start: Date | null; resets_at: Date | null }>(
    `select l.period, l.amount_nano::text as amount,
            (case when l.period_start = spend_period_start(l.period, c.now) then l.spent_nano else 0 end)::text as spent,
            case when l.period = 'never' then null else spend_period_start(l.period, c.now) end as period_start,
            spend_period_end(l.period, c.now) as resets_at
       from spend_limits l cross join (select coalesce($3::timestamptz, now()) as now) c
      where l.scope_kind = $1::text and l.scope_id = $2::text
      order by array_position(array['day', 'week', 'month', 'never'], l.period)`,
    [scope.kind, scope.id, now],
  );
  return result.rows.map((row) => ({
    period: row.period, amountNano: BigInt(row.amount), spentNano: BigInt(row.spent), periodStart: row.period_start, resetsAt: row.resets_at,
  }));
}

/**
 * Applies a patch in one transaction; false when the scope does not exist. The scope's row is
 * locked first (admissions and settles of the user wait meanwhile). A new spend limit starts
 * with what the scope was already charged in its current period, summed from the ledger once
 * here (key scope: usage entries of requests made with the key since 0010); a charge whose
 * settle commits while this transaction runs may be missed by that sum (documented).
 */
export function putControls(pool: pg.Pool, scope: Scope, patch: ControlsPatch, now: Date | null): Promise<boolean> {
  return inTransaction(pool, async (client) => {
    const locked = await client.query(`select 1 from ${TABLE[scope.kind]} where id = $1::text for update`, [scope.id]);
    if (locked.rowCount !== 1) return false;
    await updateScopeColumns(client, scope, patch);
    if (patch.spend !== undefined) await replaceSpendLimits(client, scope, patch.spend ?? [], now);
    return true;
  }, { rollbackWhen: (found) => !found });
}

async function updateScopeColumns(db: Queryable, scope: Scope, patch: ControlsPatch): Promise<void> {
  const models = patch.models;
  const set = (field: unknown) => field !== undefined;
  await db.query(
    `update ${TABLE[scope.kind]}
        set requests_per_minute = case when $2::boolean then $3::integer else requests_per_minute end,
            concurrent_calls = case when $4::boolean then $5::integer else concurrent_calls end,
            models_allow = case when $6::boolean then $7::text[] else models_allow end,
            models_deny = case when $8::boolean then $9::text[] else models_deny end
      where id = $1::text`,
    [scope.id, set(patch.requestsPerMinute), patch.requestsPerMinute ?? null, set(patch.concurrentCalls), patch.concurrentCalls ?? null,
      models === null || set(models?.allow), models?.allow ?? null, models === null || set(models?.deny), models?.deny ?? null],
  );
}

async function replaceSpendLimits(db: Queryable, scope: Scope, spend: Array<{ period: SpendPeriod; amountNano: bigint }>, now: Date | null): Promise<void> {
  await db.query(
    `delete from spend_limits where scope_kind = $1::text and scope_id = $2::text and not (period = any($3::text[]))`,
    [scope.kind, scope.id, spend.map((s) => s.period)],
  );
  const charged = scope.kind === 'user'
    ? `select -sum(e.amount_nano) from ledger_entries e
        where e.user_id = $2::text and e.kind = 'usage' and e.created_at >= spend_period_start(t.period, c.now)`
    : `select -sum(e.amount_nano) from ledger_entries e join requests r on r.id = e.request_id
        where e.user_id = (select user_id from api_keys where id = $2::text) and r.key_id = $2::text
          and e.kind = 'usage' and e.created_at >= spend_period_start(t.period, c.now)`;
  await db.query(
    `insert into spend_limits as l (scope_kind, scope_id, period, amount_nano, period_start, spent_nano)
     select $1::text, $2::text, t.period, t.amount, spend_period_start(t.period, c.now), coalesce((${charged}), 0)
       from unnest($3::text[], $4::bigint[]) as t(period, amount)
      cross join (select coalesce($5::timestamptz, now()) as now) c
     on conflict (scope_kind, scope_id, period) do update set amount_nano = excluded.amount_nano, updated_at = now()`,
    [scope.kind, scope.id, spend.map((s) => s.period), spend.map((s) => s.amountNano.toString()), now],
  );
}
