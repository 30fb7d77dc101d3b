import type pg from 'pg';
import type { Queryable } from './queryable.js';
import { rollupMismatches } from './reports/rollup-check.js';
import { inReadSnapshot } from './snapshot.js';

export interface VerifyOptions {
  /**
   * An in_flight request whose owner replica has been silent (or, without a replica row, the
   * request untouched) for longer than this is a breach: the reconciler should have claimed it
   * within the lease plus one reconcile interval.
   */
  staleInFlightMs: number;
  /** Rows listed per breach kind (the counts are exact). */
  sampleMax: number;
  /**
   * Also compare every usage rollup with sums over the ledger: a full scan of the ledger per
   * rollup, so opt-in (on the 10M-row benchmark seed, minutes rather than seconds).
   */
  rollups?: boolean;
}

/** Rollup rows that differ from the ledger's sums, by table. */
export interface RollupBreach { table: string; rows: number }

/** A rollup check can take this long (the pool's statement timeout is set for the other checks). */
export const ROLLUP_CHECK_DURATION_MS_MAX = 3_600_000;

export interface BalanceBreach {
  userId: string;
  balanceNano: string;
  creditsNano: string;
  usageNano: string;
  /** Σ ledger amounts; and its grant/adjustment and usage parts. */
  ledgerNano: string;
  ledgerCreditsNano: string;
  ledgerUsageNano: string;
}

export interface HeldBreach { userId: string; heldNano: string; openHoldsNano: string }
/** 0010: a user's or key's open-call count (and a key's held) that differs from its open requests. */
export interface ControlsBreach { scope: 'user' | 'key'; id: string; openCalls: number; openRequests: number; heldNano: string | null; openHoldsNano: string | null }
export interface SettledUsageBreach { requestId: string; userId: string; usageEntries: number }
export interface OrphanUsageBreach { entryId: string; requestId: string; requestState: string | null }
export interface UsageMismatchBreach { requestId: string; requestUserId: string; entryUserId: string; costNano: string | null; entryCostNano: string | null }
export interface StaleInFlightBreach { requestId: string; replicaId: string; startedAt: Date; silentSince: Date }

export interface Breaches<T> { count: number; sample: T[] }

export interface VerifyReport {
  ok: boolean;
  checkedAt: Date;
  totals: { users: number; ledgerEntries: number; requestsByState: Record<string, number>; unresolvedByReason: Record<string, number> };
  breaches: {
    /** balance = Σ ledger = credits − usage, with credits and usage matching their entries. */
    balance: Breaches<BalanceBreach>;
    /** held_nano = Σ holds of the user's open requests (in_flight, awaiting_cost, unresolved). */
    held: Breaches<HeldBreach>;
    /** open_calls = number of open requests (user, key); a key's held_nano = Σ its open holds. */
    controls: Breaches<ControlsBreach>;
    /** A settled request without exactly one usage entry. */
    settledWithoutOneUsage: Breaches<SettledUsageBreach>;
    /** A usage entry whose request is missing or not settled. */
    usageWithoutSettledRequest: Breaches<OrphanUsageBreach>;
    /** A usage entry and its request disagree on user or upstream cost. */
    usageMismatch: Breaches<UsageMismatchBreach>;
    staleInFlight: Breaches<StaleInFlightBreach>;
    /** Rollup rows that differ from the ledger (only when asked: rollupsChecked). */
    rollups: Breaches<RollupBreach>;
  };
  rollupsChecked: boolean;
}

/**
 * Checks the books against themselves: read-only, one snapshot (repeatable read) so that
 * concurrent settles cannot make a consistent database look broken.
 */
export async function verifyBooks(pool: pg.Pool, options: VerifyOptions): Promise<VerifyReport> {
  return inReadSnapshot(pool, (client) => runChecks(client, options));
}

async function runChecks(db: Queryable, options: VerifyOptions): Promise<VerifyReport> {
  const breaches = {
    balance: await balanceBreaches(db, options.sampleMax),
    held: await heldBreaches(db, options.sampleMax),
    controls: await controlsBreaches(db, options.sampleMax),
    settledWithoutOneUsage: await settledWithoutOneUsage(db, options.sampleMax),
    usageWithoutSettledRequest: await usageWithoutSettledRequest(db, options.sampleMax),
    usageMismatch: await usageMismatch(db, options.sampleMax),
    staleInFlight: await staleInFlight(db, options),
    rollups: options.rollups === true ? await rollupBreaches(db) : { count: 0, sample: [] },
  };
  const ok = Object.values(breaches).every((kind) => kind.count === 0);
  return { ok, checkedAt: new Date(), totals: await totals(db), breaches, rollupsChecked: options.rollups === true };
}

async function rollupBreaches(db: Queryable): Promise<Breaches<RollupBreach>> {
  await db.query(`select set_config('statement_timeout', $1::text, true)`, [String(ROLLUP_CHECK_DURATION_MS_MAX)]);
  const found = await rollupMismatches(db);
  return { count: found.reduce((sum, table) => sum + table.rows, 0), sample: found };
}

function withCount<R extends { total: string }, T>(rows: R[], map: (row: R) => T): Breaches<T> {
  return { count: rows.length === 0 ? 0 : Number(rows[0]!.total), sample: rows.map(map) };
}

async function balanceBreaches(db: Queryable, limit: number): Promise<Breaches<BalanceBreach>> {
  const result = await db.query<{
    id: string; balance: string; credits: string; usage: string; ledger: string; ledger_credits: string; ledger_usage: string; total: string;
  }>(
    `select u.id, u.balance_nano::text as balance, u.credits_nano::text as credits, u.usage_nano::text as usage,
            coalesce(l.amount, 0)::text as ledger, coalesce(l.credits, 0)::text as ledger_credits,
            coalesce(l.usage, 0)::text as ledger_usage, count(*) over ()::text as total
       from users u
       left join (select user_id, sum(amount_nano) as amount,
                         coalesce(sum(amount_nano) filter (where kind <> 'usage'), 0) as credits,
                         coalesce(-sum(amount_nano) filter (where kind = 'usage'), 0) as usage
                    from ledger_entries group by user_id) l on l.user_id = u.id
      where u.balance_nano <> coalesce(l.amount, 0)
         or u.credits_nano <> coalesce(l.credits, 0)
         or u.usage_nano <> coalesce(l.usage, 0)
         or u.balance_nano <> u.credits_nano - u.usage_nano
      order by u.id limit $1::integer`,
    [limit],
  );
  return withCount(result.rows, (row) => ({
    userId: row.id, balanceNano: row.balance, creditsNano: row.credits, usageNano: row.usage,
    ledgerNano: row.ledger, ledgerCreditsNano: row.ledger_credits, ledgerUsageNano: row.ledger_usage,
  }));
}

async function heldBreaches(db: Queryable, limit: number): Promise<Breaches<HeldBreach>> {
  const result = await db.query<{ id: string; held: string; open_holds: string; total: string }>(
    `select u.id, u.held_nano::text as held, coalesce(o.holds, 0)::text as open_holds, count(*) over ()::text as total
       from users u
       left join (select user_id, sum(hold_nano) as holds from requests
                   where state in ('in_flight', 'awaiting_cost', 'unresolved') group by user_id) o on o.user_id = u.id
      where u.held_nano <> coalesce(o.holds, 0)
      order by u.id limit $1::integer`,
    [limit],
  );
  return withCount(result.rows, (row) => ({ userId: row.id, heldNano: row.held, openHoldsNano: row.open_holds }));
}

async function controlsBreaches(db: Queryable, limit: number): Promise<Breaches<ControlsBreach>> {
  const result = await db.query<{ scope: 'user' | 'key'; id: string; open_calls: number; open_requests: number; held: string | null; open_holds: string | null; total: string }>(
    `with open as (select user_id, key_id, hold_nano from requests where state in ('in_flight', 'awaiting_cost', 'unresolved')),
     found as (
       select 'user' as scope, u.id, u.open_calls, coalesce(o.n, 0)::integer as open_requests, null::text as held, null::text as open_holds
         from users u left join (select user_id, count(*) as n from open group by user_id) o on o.user_id = u.id
        where u.open_calls <> coalesce(o.n, 0)
       union all
       select 'key', k.id, k.open_calls, coalesce(o.n, 0)::integer, k.held_nano::text, coalesce(o.holds, 0)::text
         from api_keys k left join (select key_id, count(*) as n, sum(hold_nano) as holds from open where key_id is not null group by key_id) o
           on o.key_id = k.id
        where k.open_calls <> coalesce(o.n, 0) or k.held_nano <> coalesce(o.holds, 0))
     select *, count(*) over ()::text as total from found order by scope, id limit $1::integer`,
    [limit],
  );
  return withCount(result.rows, (row) => ({
    scope: row.scope, id: row.id, openCalls: row.open_calls, openRequests: row.open_requests, heldNano: row.held, openHoldsNano: row.open_holds,
  }));
}

async function settledWithoutOneUsage(db: Queryable, limit: number): Promise<Breaches<SettledUsageBreach>> {
  const result = await db.query<{ id: string; user_id: string; entries: number; total: string }>(
    `select r.id, r.user_id, count(l.id)::integer as entries, count(*) over ()::text as total
       from requests r
       left join ledger_entries l on l.request_id = r.id and l.kind = 'usage'
      where r.state = 'settled'
      group by r.id, r.user_id
     having count(l.id) <> 1
      order by r.id limit $1::integer`,
    [limit],
  );
  return withCount(result.rows, (row) => ({ requestId: row.id, userId: row.user_id, usageEntries: row.entries }));
}

async function usageWithoutSettledRequest(db: Queryable, limit: number): Promise<Breaches<OrphanUsageBreach>> {
  const result = await db.query<{ id: string; request_id: string; state: string | null; total: string }>(
    `select l.id::text as id, l.request_id, r.state, count(*) over ()::text as total
       from ledger_entries l
       left join requests r on r.id = l.request_id
      where l.kind = 'usage' and (r.id is null or r.state <> 'settled')
      order by l.id limit $1::integer`,
    [limit],
  );
  return withCount(result.rows, (row) => ({ entryId: row.id, requestId: row.request_id, requestState: row.state }));
}

async function usageMismatch(db: Queryable, limit: number): Promise<Breaches<UsageMismatchBreach>> {
  const result = await db.query<{ id: string; r_user: string; l_user: string; cost: string | null; l_cost: string | null; total: string }>(
    `select r.id, r.user_id as r_user, l.user_id as l_user, r.cost_nano::text as cost,
            l.upstream_cost_nano::text as l_cost, count(*) over ()::text as total
       from requests r
       join ledger_entries l on l.request_id = r.id and l.kind = 'usage'
      where r.user_id <> l.user_id or r.cost_nano is distinct from l.upstream_cost_nano
      order by r.id limit $1::integer`,
    [limit],
  );
  return withCount(result.rows, (row) => ({
    requestId: row.id, requestUserId: row.r_user, entryUserId: row.l_user, costNano: row.cost, entryCostNano: row.l_cost,
  }));
}

async function staleInFlight(db: Queryable, options: VerifyOptions): Promise<Breaches<StaleInFlightBreach>> {
  const result = await db.query<{ id: string; replica_id: string; started_at: Date; silent_since: Date; total: string }>(
    `with owner as (
       select r.id, r.replica_id, r.started_at,
              -- Since when nobody live owns it: the last beat, the restart of its replica id,
              -- or (no replica row: a clean exit removed it) the request's last update.
              case when p.id is null then r.updated_at
                   when r.started_at < p.started_at then p.started_at
                   else p.heartbeat_at end as silent_since
         from requests r
         left join replicas p on p.id = r.replica_id
        where r.state = 'in_flight')
     select id, replica_id, started_at, silent_since, count(*) over ()::text as total
       from owner
      where silent_since < now() - $1::integer * interval '1 millisecond'
      order by started_at limit $2::integer`,
    [options.staleInFlightMs, options.sampleMax],
  );
  return withCount(result.rows, (row) => ({
    requestId: row.id, replicaId: row.replica_id, startedAt: row.started_at, silentSince: row.silent_since,
  }));
}

async function totals(db: Queryable): Promise<VerifyReport['totals']> {
  const counts = await db.query<{ users: string; entries: string }>(
    'select (select count(*) from users)::text as users, (select count(*) from ledger_entries)::text as entries',
  );
  const states = await db.query<{ state: string; n: string }>('select state, count(*)::text as n from requests group by state order by state');
  const reasons = await db.query<{ reason: string | null; n: string }>(
    `select reason, count(*)::text as n from requests where state = 'unresolved' group by reason order by reason`,
  );
  return {
    users: Number(counts.rows[0]!.users),
    ledgerEntries: Number(counts.rows[0]!.entries),
    requestsByState: Object.fromEntries(states.rows.map((row) => [row.state, Number(row.n)])),
    unresolvedByReason: Object.fromEntries(reasons.rows.map((row) => [row.reason ?? '(none)', Number(row.n)])),
  };
}
