/**
 * Operator reports over the books: the ledger (filtered, keyset-paged, streamed), usage
 * summaries from the rollups of migration 0003 (exact: the rollups are written in the settle
 * statement), and the users and requests lists.
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
 * Usage by user, all time: Index Only Scan Backward using users_spend → Nested Loop →
 *   Index Scan using usage_user_totals_pkey (101 rows), incremental sort for id ties 0.30 ms
 * Usage by user, one whole UTC month or day ("this month", "today"): Index Scan using the
 *   (bucket, charged_nano desc, user_id) index of usage_user_monthly/daily, 100 rows     0.13 ms
 * Usage by user, a range under 6 days that is not one whole period (3 whole days, last 24 h):
 *   rank — HashAggregate over Append of Index Only Scan using usage_user_daily_top (whole
 *   days), usage_hourly_bucket (edge hours), Index Scan using ledger_entries_created_at
 *   (sub-hour fringes); then the winners' every measure, probed per user (probedPerUser).
 *   Cost ∝ users active in the range: 7 days this way was 76,263 users, 74 ms + 18 ms fill.
 * Usage by user, 6 days or more: top-users.ts, one statement (its plan is described there):
 *   7 days 29 ms, 30 days 28 ms.
 * Usage by user of one model, 7 days: HashAggregate over Index Only Scan using
 *   usage_hourly_model (41,580 rows) 17 ms; fill via Bitmap Index Scan on usage_hourly_pkey 4 ms
 * Usage by model, 30 days: HashAggregate over Bitmap Heap Scan on usage_model_daily
 *   (4,640 rows) + Index Scan using usage_model_hourly_pkey (2 edges, 3,649 rows) +
 *   ledger_entries_created_at (fringes, 1,128 rows)                                  5 ms
 * Users, balance below X: Index Scan using users_balance, Index Cond balance_nano < X 0.02 ms
 * Requests unsettled: Index Scan using requests_state (partial), state = ANY(3), sort 0.10 ms
 * Requests settled: Index Scan Backward using requests_started, Filter state          0.05 ms
 * Parallel query is off for summaries (serialPlans): with it the same 7-day ranking took 2x.
 */
import assert from 'node:assert/strict';
import type pg from 'pg';
import Cursor from 'pg-cursor';
import { parseNano } from '../money.js';
import { LEDGER_COLUMNS, toLedgerEntry, type LedgerEntry, type LedgerKind, type RawEntry } from './ledger.js';
import type { Queryable } from './queryable.js';
import type { RequestRow, RequestState } from './requests.js';
import type { UserRow } from './users.js';
import { ceilTo, floorTo, type Period as RollupPeriod } from './periods.js';
import { Params } from './params.js';
import { inReadSnapshot } from './snapshot.js';
import { boundedTopUsers, type Depth, type UsageSql } from './top-users.js';

export { ceilTo, floorTo } from './periods.js';

/** A cursor or argument a caller passed that this module cannot use (the API answers 400). */
export class ReportQueryError extends Error {
  constructor(readonly param: string, message: string) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------
// Ledger

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

// ---------------------------------------------------------------------------------------
// Usage summaries

export type UsageGroup = 'user' | 'model' | 'day' | 'hour';

export interface UsageRow {
  /** User id, model ('' = none named), UTC day "YYYY-MM-DD" or UTC hour "YYYY-MM-DDTHH:00:00Z". */
  key: string;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  upstreamCostNano: bigint;
  chargedNano: bigint;
}

export interface UsageQuery {
  groupBy: UsageGroup;
  since?: Date | null;
  until?: Date | null;
  userId?: string | null;
  model?: string | null;
  limit: number;
}

type Level = RollupPeriod;

/** Where usage can be read from: a rollup (by its bucket) or the ledger itself (by created_at). */
interface Source {
  table: string;
  time: string;
  /** Key expression per grouping; absent = this source cannot answer that grouping. */
  keys: Partial<Record<UsageGroup, string>>;
  user?: string;
  model?: string;
  measures: string;
  where?: string;
}

const ROLLUP_MEASURES = 'requests, prompt_tokens, completion_tokens, upstream_cost_nano, charged_nano';

const LEDGER: Source = {
  table: 'ledger_entries', time: 'created_at', user: 'user_id', model: `coalesce(model, '')`, where: `kind = 'usage'`,
  keys: { user: 'user_id', model: `coalesce(model, '')`, day: `date_trunc('day', created_at, 'UTC')`, hour: `date_trunc('hour', created_at, 'UTC')` },
  measures: `1::bigint as requests, coalesce(prompt_tokens, 0)::bigint as prompt_tokens,
             coalesce(completion_tokens, 0)::bigint as completion_tokens,
             coalesce(upstream_cost_nano, -amount_nano) as upstream_cost_nano, -amount_nano as charged_nano`,
};
const USAGE_HOURLY: Source = {
  table: 'usage_hourly', time: 'bucket', user: 'user_id', model: 'model', measures: ROLLUP_MEASURES,
  keys: { user: 'user_id', model: 'model', day: `date_trunc('day', bucket, 'UTC')`, hour: 'bucket' },
};
const USER_DAILY: Source = { table: 'usage_user_daily', time: 'bucket', user: 'user_id', measures: ROLLUP_MEASURES, keys: { user: 'user_id', day: 'bucket' } };
const USER_WEEKLY: Source = { table: 'usage_user_weekly', time: 'bucket', user: 'user_id', measures: ROLLUP_MEASURES, keys: { user: 'user_id' } };
const USER_MONTHLY: Source = { table: 'usage_user_monthly', time: 'bucket', user: 'user_id', measures: ROLLUP_MEASURES, keys: { user: 'user_id' } };
const MODEL_HOURLY: Source = {
  table: 'usage_model_hourly', time: 'bucket', model: 'model', measures: ROLLUP_MEASURES,
  keys: { model: 'model', day: `date_trunc('day', bucket, 'UTC')`, hour: 'bucket' },
};
const MODEL_DAILY: Source = { table: 'usage_model_daily', time: 'bucket', model: 'model', measures: ROLLUP_MEASURES, keys: { model: 'model', day: 'bucket' } };

/**
 * The rollups that can answer a query, coarsest first. Per user or per model-of-user reads go
 * to the (hour, user, model) rollup; top users to the per-user month or week, then day
 * rollups; models, days and hours to the per-model rollups (a handful of rows per period).
 */
function levelsFor(q: UsageQuery): Array<[Level, Source]> {
  if (q.userId != null) return [['hour', USAGE_HOURLY]];
  if (q.groupBy === 'user') return q.model != null ? [['hour', USAGE_HOURLY]] : userLevels(q.since ?? null, q.until ?? null);
  if (q.groupBy === 'hour') return [['hour', MODEL_HOURLY]];
  return [['day', MODEL_DAILY], ['hour', MODEL_HOURLY]];
}

/**
 * Months or ISO weeks, then days and hours: weeks do not nest in months, so a decomposition
 * takes one of the two, whichever leaves fewer periods to read (a 30-day range holds no whole
 * month but 3 or 4 whole weeks: per user ~4 weekly + ~12 daily rows instead of ~29 daily).
 */
function userLevels(since: Date | null, until: Date | null): Array<[Level, Source]> {
  const byMonth: Array<[Level, Source]> = [['month', USER_MONTHLY], ['day', USER_DAILY], ['hour', USAGE_HOURLY]];
  const byWeek: Array<[Level, Source]> = [['week', USER_WEEKLY], ['day', USER_DAILY], ['hour', USAGE_HOURLY]];
  if (since === null || until === null) return byMonth;
  return periodsRead(since, until, byWeek) < periodsRead(since, until, byMonth) ? byWeek : byMonth;
}

/** How many rollup periods a decomposition reads (per user, at most). */
function periodsRead(since: Date, until: Date, levels: Array<[Level, Source]>): number {
  const lengthMs: Record<Level, number> = { month: 30 * 86_400_000, week: 7 * 86_400_000, day: 86_400_000, hour: 3_600_000 };
  const level = new Map(levels.map(([name, source]) => [source, name]));
  return decompose(since, until, levels, LEDGER).reduce((sum, piece) => {
    const name = level.get(piece.source);
    return name === undefined ? sum : sum + Math.round((piece.to!.getTime() - piece.from!.getTime()) / lengthMs[name]);
  }, 0);
}

/** [from, to) with null = unbounded on that side. */
export interface Piece<S> { source: S; from: Date | null; to: Date | null }

/**
 * Splits [since, until) into whole months, days and hours read from rollups (coarsest that
 * fits) and the sub-hour fringes read from the ledger: exact for any range, and the number of
 * rows read stays near the number of periods instead of the number of requests.
 */
export function decompose<S>(since: Date | null, until: Date | null, levels: Array<[Level, S]>, ledger: S): Array<Piece<S>> {
  const pieces: Array<Piece<S>> = [];
  let inner: { from: Date | null; to: Date | null } | null = null;
  const cover = (source: S, from: Date | null, to: Date | null) => {
    if (inner === null) {
      pieces.push({ source, from, to });
      return;
    }
    if (from !== null && inner.from !== null && from < inner.from) pieces.push({ source, from, to: inner.from });
    if (to !== null && inner.to !== null && inner.to < to) pieces.push({ source, from: inner.to, to });
  };
  for (const [level, source] of levels) {
    const from = since === null ? null : ceilTo(level, since);
    const to = until === null ? null : floorTo(level, until);
    if (from !== null && to !== null && from >= to) continue;
    cover(source, from, to);
    inner = { from, to };
  }
  if (since === null || until === null || since < until) cover(ledger, since, until);
  return pieces;
}

/**
 * For a set of users, pieces of the per-user rollups (primary key (user_id, bucket...)) are
 * read by one index probe per user. Left to itself the planner reads such a piece over the
 * range through the (bucket, charged_nano desc, user_id) index and tests each row against the
 * set; measured at 10M rows, 6 days of usage_user_daily: 2,866 users 70 ms that way, 31 ms as
 * a hash join, 28 ms probing per user; 100 users 26 ms against 1 ms. Edge pieces (hours of
 * a partial day, the ledger's partial hours) are read as one range instead: probed per user
 * on a cold cache each probe is ~0.1-0.3 ms of random reads. A long hourly piece (a user's or
 * a model's summary reads only the hourly rollup) is probed per user like the others.
 */
function probedPerUser(piece: Piece<Source>): boolean {
  if ([USER_DAILY, USER_WEEKLY, USER_MONTHLY].includes(piece.source)) return true;
  // A whole range of hours (per-model-of-user summaries read only the hourly rollup): per user.
  const hours = piece.from === null || piece.to === null ? Infinity : (piece.to.getTime() - piece.from.getTime()) / 3_600_000;
  return piece.source === USAGE_HOURLY && hours > 24;
}

/** Only these users: given as an array of distinct ids, or as a relation of distinct ids (column id). */
type UserSet = string[] | { relation: string };

function piecesSql(q: UsageQuery, pieces: Array<Piece<Source>>, params: Params, userIn: UserSet | null = null, chargeOnly = false): string {
  assert(!Array.isArray(userIn) || new Set(userIn).size === userIn.length, 'a set of users has no duplicates (each would count twice)');
  assert(userIn === null || Array.isArray(userIn) || /^[a-z_]+$/.test(userIn.relation), 'a relation name is an identifier of ours');
  const users = userIn === null ? null : Array.isArray(userIn) ? `unnest(${params.add(userIn, 'text[]')}) candidate (id)` : `${userIn.relation} candidate`;
  return pieces.map((piece) => {
    const { source, from, to } = piece;
    const where = source.where === undefined ? [] : [source.where];
    if (from !== null) where.push(`${source.time} >= ${params.add(from, 'timestamptz')}`);
    if (to !== null) where.push(`${source.time} < ${params.add(to, 'timestamptz')}`);
    if (q.userId != null) where.push(`${source.user!} = ${params.add(q.userId, 'text')}`);
    if (q.model != null) where.push(`${source.model!} = ${params.add(q.model, 'text')}`);
    const key = source.keys[q.groupBy];
    assert(key !== undefined, `${source.table} cannot group by ${q.groupBy}`);
    const measures = chargeOnly ? (source === LEDGER ? '-amount_nano as charged_nano' : 'charged_nano') : source.measures;
    if (users !== null && probedPerUser(piece)) {
      // offset 0 keeps the subquery from being flattened into a join the planner may hash.
      where.push(`${source.user!} = candidate.id`);
      return `select s.* from ${users}
               cross join lateral (select ${key} as k, ${measures} from ${source.table} where ${where.join(' and ')} offset 0) s`;
    }
    // Other pieces are short (edge hours, sub-hour fringes): one range read, joined to the set
    // (as a join, not = any(set): planning = any over 400 ids took 6 ms, the query itself 8).
    const join = users === null ? '' : ` join ${users} on candidate.id = ${source.user!}`;
    return `select ${key} as k, ${measures} from ${source.table}${join}${where.length > 0 ? ` where ${where.join(' and ')}` : ''}`;
  }).join('\n union all ');
}

/**
 * Ties are ordered by key in the C collation (byte order), whatever the database's default:
 * the same order on every deployment and on every path (top-users.ts orders the same way), so
 * the bounded and the full answers agree. Day and hour keys are timestamps.
 */
function keyOrder(group: UsageGroup): string {
  return group === 'user' || group === 'model' ? 'k collate "C"' : 'k';
}

const KEY_TEXT: Record<UsageGroup, string> = {
  user: 'k',
  model: 'k',
  day: `to_char(k at time zone 'UTC', 'YYYY-MM-DD')`,
  hour: `to_char(k at time zone 'UTC', 'YYYY-MM-DD"T"HH24":00:00Z"')`,
};

interface RawUsage { key: string; requests: string; prompt_tokens: string; completion_tokens: string; upstream_cost_nano: string; charged_nano: string }

function toUsageRow(row: RawUsage): UsageRow {
  return {
    key: row.key, requests: Number(row.requests), promptTokens: Number(row.prompt_tokens),
    completionTokens: Number(row.completion_tokens), upstreamCostNano: parseNano(row.upstream_cost_nano),
    chargedNano: parseNano(row.charged_nano),
  };
}

/**
 * Usage grouped by user, model, UTC day or UTC hour over [since, until), most charged first
 * (ties by key), at most `limit` groups. Exact: rollups for whole periods, the ledger for the
 * partial hours at either end.
 */
export async function usageSummary(db: Queryable, q: UsageQuery): Promise<UsageRow[]> {
  assert(Number.isSafeInteger(q.limit) && q.limit > 0, 'limit must be a positive integer');
  const since = q.since ?? null;
  const until = q.until ?? null;
  if (since !== null && until !== null && since >= until) return [];
  if (q.groupBy === 'user' && q.model == null && q.userId == null) {
    if (since === null && until === null) return userTotals(db, null, q.limit);
    const period = await singlePeriod(db, since, until);
    if (period !== null) return periodTop(db, period, q.limit);
  }
  return serialPlans(db, async (client) => {
    if (q.groupBy !== 'user') return aggregate(client, q);
    // Top users of all models: bounded by the covering periods' lists (top-users.ts, one
    // statement). Otherwise rank on the charge alone, then sum every measure for the winners.
    const bounded = q.model == null && q.userId == null ? await boundedTopUsers(client, since, until, q.limit, usageSql(q)) : null;
    if (bounded !== null) return bounded;
    const winners = await rankUsers(client, q);
    return winners.length === 0 ? [] : aggregate(client, { ...q, limit: winners.length }, winners);
  });
}

/**
 * Runs the summary's statements with parallel query off. Measured at 10M rows on 2 cores:
 * Postgres cannot estimate the number of groups of a UNION ALL (it assumes 200), so it plans
 * a parallel sort-and-merge aggregation that is ~2x slower than one backend hashing. Needs a
 * connection of its own: given a pool it takes one and reads in one repeatable-read snapshot;
 * given a client it runs as it is (the caller owns the transaction).
 */
async function serialPlans<T>(db: Queryable, run: (client: Queryable) => Promise<T>): Promise<T> {
  if (!isPool(db)) return run(db);
  // One snapshot for every statement: the bounded top users reads lists, then sums (top-users.ts).
  return inReadSnapshot(db, async (client) => {
    await client.query(`set local max_parallel_workers_per_gather = 0`);
    return run(client);
  });
}

/** A pool (a client has connect() too, but no pool counters). */
function isPool(db: Queryable): db is pg.Pool {
  return 'totalCount' in db && 'idleCount' in db && typeof (db as pg.Pool).connect === 'function';
}

/** The `limit` most charged users of the range (charge only), ties by id. */
async function rankUsers(db: Queryable, q: UsageQuery): Promise<string[]> {
  const params = new Params();
  const union = piecesSql(q, decompose(q.since ?? null, q.until ?? null, levelsFor(q), LEDGER), params, null, true);
  const result = await db.query<{ k: string }>(
    `select k from (${union}) usage
      group by k order by usage_sum(charged_nano) desc, ${keyOrder('user')} limit ${params.add(q.limit, 'integer')}`,
    params.values,
  );
  return result.rows.map((row) => row.k);
}

/**
 * The bounded top users of a range (top-users.ts) on their own: null when the bound did not
 * decide. For tests and measurements; usageSummary falls back to the full sums by itself.
 */
export async function boundedTopUsersOf(db: Queryable, range: { since: Date | null; until: Date | null }, limit: number, depth?: Depth): Promise<UsageRow[] | null> {
  const q: UsageQuery = { groupBy: 'user', since: range.since, until: range.until, limit };
  return serialPlans(db, (client) => boundedTopUsers(client, q.since ?? null, q.until ?? null, limit, usageSql(q), depth));
}

/**
 * The range's charges for top-users.ts, as (k, charged_nano) rows: whole periods (months or
 * weeks, days) for the users of a relation, probed per user; the edges (partial days from the
 * hourly rollup, partial hours from the ledger) for every user, read as ranges once. Measured
 * on a cold cache (Postgres restarted, OS cache dropped), 7 days, ~600 candidates: probing the
 * edges per user took 200 of the statement's 260 ms (random reads into usage_hourly and the
 * ledger); one range read of the same edges, ~60 buffers.
 */
function usageSql(q: UsageQuery): UsageSql {
  const pieces = decompose(q.since ?? null, q.until ?? null, levelsFor(q), LEDGER);
  const edge = (piece: Piece<Source>) => piece.source === USAGE_HOURLY || piece.source === LEDGER;
  const orNone = (sql: string, all: boolean) => (sql !== '' ? sql
    : `select null::text as k, ${all ? '0::bigint as requests, 0::bigint as prompt_tokens, 0::bigint as completion_tokens, 0::bigint as upstream_cost_nano, ' : ''}0::bigint as charged_nano where false`);
  return {
    periods: (params, candidates, all) => orNone(piecesSql(q, pieces.filter((piece) => !edge(piece)), params, { relation: candidates }, !all), all),
    edges: (params, all) => orNone(piecesSql(q, pieces.filter(edge), params, null, !all), all),
  };
}

/** Sums every rollup piece of the range and keeps the `limit` most charged groups. */
async function aggregate(db: Queryable, q: UsageQuery, userIn: string[] | null = null): Promise<UsageRow[]> {
  const params = new Params();
  const union = piecesSql(q, decompose(q.since ?? null, q.until ?? null, levelsFor(q), LEDGER), params, userIn);
  const result = await db.query<RawUsage>(
    `select ${KEY_TEXT[q.groupBy]} as key, usage_sum(requests)::text as requests, usage_sum(prompt_tokens)::text as prompt_tokens,
            usage_sum(completion_tokens)::text as completion_tokens, usage_sum(upstream_cost_nano)::text as upstream_cost_nano,
            usage_sum(charged_nano)::text as charged_nano
       from (${union}) usage
      group by k
      order by usage_sum(charged_nano) desc, ${keyOrder(q.groupBy)}
      limit ${params.add(q.limit, 'integer')}`,
    params.values,
  );
  return result.rows.map(toUsageRow);
}

type Period = { table: 'usage_user_monthly' | 'usage_user_daily'; bucket: Date };

/**
 * The one whole UTC month or day that [since, until) is, if it is one — or that it runs to
 * the end of from its start when until is open and nothing was used after that period (so
 * "this month" and "today" qualify). Null otherwise.
 */
async function singlePeriod(db: Queryable, since: Date | null, until: Date | null): Promise<Period | null> {
  if (since === null) return null;
  for (const level of ['month', 'day'] as const) {
    if (floorTo(level, since).getTime() !== since.getTime()) continue;
    const end = ceilTo(level, new Date(since.getTime() + 1));
    const table = level === 'month' ? 'usage_user_monthly' : 'usage_user_daily';
    if (until !== null && until.getTime() === end.getTime()) return { table, bucket: since };
    if (until === null) {
      const last = await db.query<{ last: Date | null }>('select max(bucket) as last from usage_user_daily');
      const lastDay = last.rows[0]!.last;
      if (lastDay === null || lastDay < end) return { table, bucket: since };
    }
  }
  return null;
}

/** A period's top users straight off the (bucket, charged_nano desc, user_id) index: no aggregation. */
async function periodTop(db: Queryable, period: Period, limit: number): Promise<UsageRow[]> {
  const result = await db.query<RawUsage>(
    `select p.user_id as key, p.requests::text, p.prompt_tokens::text, p.completion_tokens::text,
            p.upstream_cost_nano::text, p.charged_nano::text
       from ${period.table} p
      where p.bucket = $1::timestamptz
      order by p.charged_nano desc, p.user_id collate "C"
      limit $2::integer`,
    [period.bucket, limit],
  );
  return result.rows.map(toUsageRow);
}

/**
 * All-time top users: users.usage_nano is each user's charged total (written in the same
 * settle statement as usage_user_totals), so the users_spend index yields the order and the
 * totals row is joined per user — no aggregation at all.
 */
async function userTotals(db: Queryable, userId: string | null, limit: number): Promise<UsageRow[]> {
  const params = new Params();
  const where = userId === null ? '' : `where u.id = ${params.add(userId, 'text')}`;
  const result = await db.query<RawUsage>(
    `select t.user_id as key, t.requests::text, t.prompt_tokens::text, t.completion_tokens::text,
            t.upstream_cost_nano::text, t.charged_nano::text
       from users u join usage_user_totals t on t.user_id = u.id
      ${where}
      order by u.usage_nano desc, u.id collate "C"
      limit ${params.add(limit, 'integer')}`,
    params.values,
  );
  return result.rows.map(toUsageRow);
}

// ---------------------------------------------------------------------------------------
// Users

export interface UserListRow extends UserRow {
  /** Total charged for usage, all time (= usageNano). */
  spendNano: bigint;
  /** The user's price multiplier override (ppm), null = the default. */
  multiplierPpm: bigint | null;
}

export interface UserListQuery {
  sort: 'balance' | 'spend' | 'id';
  order: 'asc' | 'desc';
  /** Only users whose balance is strictly below this. */
  balanceBelowNano?: bigint | null;
  limit: number;
  /** nextCursor of the previous page (same sort and order). */
  cursor?: string | null;
}

const USER_SORT_COLUMN = { balance: 'balance_nano', spend: 'usage_nano', id: null } as const;

interface RawUserRow { id: string; created_at: Date; balance_nano: string; credits_nano: string; usage_nano: string; held_nano: string; multiplier_ppm: string | null }

/** Cursor = base64url JSON [sort value, id]: keyset on (value, id), which the sort indexes hold. */
function encodeUserCursor(sort: UserListQuery['sort'], row: RawUserRow): string {
  const column = USER_SORT_COLUMN[sort];
  const value = column === null ? null : row[column];
  return Buffer.from(JSON.stringify([sort, value, row.id])).toString('base64url');
}

/** The users.id check constraint (migration 0001). */
const CURSOR_USER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/;

function decodeUserCursor(sort: UserListQuery['sort'], cursor: string): { value: string | null; id: string } {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    decoded = null;
  }
  if (!Array.isArray(decoded) || decoded.length !== 3) throw new ReportQueryError('cursor', 'cursor must be a next_cursor value from a previous page');
  const [cursorSort, value, id] = decoded as unknown[];
  const validValue = value === null || (typeof value === 'string' && /^-?\d{1,19}$/.test(value));
  // The id goes to Postgres as text: it must be a user id (no NUL, nothing a user id cannot be).
  if (typeof id !== 'string' || !CURSOR_USER_ID_RE.test(id) || !validValue) throw new ReportQueryError('cursor', 'cursor must be a next_cursor value from a previous page');
  if (cursorSort !== sort || (USER_SORT_COLUMN[sort] === null) !== (value === null)) {
    throw new ReportQueryError('cursor', `this cursor belongs to a listing sorted by ${String(cursorSort)}, not ${sort}`);
  }
  return { value: value as string | null, id };
}

export async function listUsers(db: Queryable, q: UserListQuery): Promise<{ users: UserListRow[]; nextCursor: string | null }> {
  assert(Number.isSafeInteger(q.limit) && q.limit > 0, 'limit must be a positive integer');
  const params = new Params();
  const column = USER_SORT_COLUMN[q.sort];
  const direction = q.order === 'asc' ? 'asc' : 'desc';
  const where: string[] = [];
  if (q.balanceBelowNano != null) where.push(`balance_nano < ${params.add(q.balanceBelowNano.toString(), 'bigint')}`);
  if (q.cursor != null) {
    const after = decodeUserCursor(q.sort, q.cursor);
    const op = direction === 'asc' ? '>' : '<';
    where.push(column === null ? `id ${op} ${params.add(after.id, 'text')}`
      : `(${column}, id) ${op} (${params.add(after.value, 'bigint')}, ${params.add(after.id, 'text')})`);
  }
  const order = column === null ? `id ${direction}` : `${column} ${direction}, id ${direction}`;
  const result = await db.query<RawUserRow>(
    `select id, created_at, balance_nano, credits_nano, usage_nano, held_nano, multiplier_ppm from users
      ${where.length > 0 ? `where ${where.join(' and ')}` : ''}
      order by ${order} limit ${params.add(q.limit + 1, 'integer')}`,
    params.values,
  );
  const rows = result.rows.slice(0, q.limit);
  const last = rows.at(-1);
  return {
    users: rows.map(toUserListRow),
    nextCursor: result.rows.length > q.limit && last !== undefined ? encodeUserCursor(q.sort, last) : null,
  };
}

function toUserListRow(row: RawUserRow): UserListRow {
  const usageNano = parseNano(row.usage_nano);
  return {
    id: row.id, createdAt: row.created_at, balanceNano: parseNano(row.balance_nano), creditsNano: parseNano(row.credits_nano), heldNano: parseNano(row.held_nano),
    usageNano, spendNano: usageNano, multiplierPpm: row.multiplier_ppm === null ? null : parseNano(row.multiplier_ppm),
  };
}

// ---------------------------------------------------------------------------------------
// Requests

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

// ---------------------------------------------------------------------------------------
// Rollup check

/** Each rollup's key, as computed from a ledger row (same as the settle statement's). */
const ROLLUP_KEYS: Record<string, Record<string, string>> = {
  usage_hourly: { bucket: `date_trunc('hour', created_at, 'UTC')`, user_id: 'user_id', model: `coalesce(model, '')` },
  usage_user_daily: { bucket: `date_trunc('day', created_at, 'UTC')`, user_id: 'user_id' },
  usage_user_weekly: { bucket: `date_trunc('week', created_at, 'UTC')`, user_id: 'user_id' },
  usage_user_monthly: { bucket: `date_trunc('month', created_at, 'UTC')`, user_id: 'user_id' },
  usage_user_totals: { user_id: 'user_id' },
  usage_model_hourly: { bucket: `date_trunc('hour', created_at, 'UTC')`, model: `coalesce(model, '')`, shard: '(hashtext(user_id) & 7)::smallint' },
  usage_model_daily: { bucket: `date_trunc('day', created_at, 'UTC')`, model: `coalesce(model, '')`, shard: '(hashtext(user_id) & 7)::smallint' },
};

/**
 * Rows where a rollup differs from the sums over the ledger's usage entries, per rollup table
 * (only tables with differences are listed). A full scan of the ledger: for `verify` and tests.
 */
export async function rollupMismatches(db: Queryable): Promise<Array<{ table: string; rows: number }>> {
  const found: Array<{ table: string; rows: number }> = [];
  for (const [table, keys] of Object.entries(ROLLUP_KEYS)) {
    const names = Object.keys(keys);
    const result = await db.query<{ n: string }>(
      `with expected as (
         select ${names.map((name) => `${keys[name]!} as ${name}`).join(', ')}, count(*)::bigint as requests,
                coalesce(sum(prompt_tokens), 0)::bigint as prompt_tokens,
                coalesce(sum(completion_tokens), 0)::bigint as completion_tokens,
                sum(coalesce(upstream_cost_nano, -amount_nano))::bigint as upstream_cost_nano,
                sum(-amount_nano)::bigint as charged_nano
           from ledger_entries where kind = 'usage'
          group by ${names.map((_, index) => index + 1).join(', ')})
       select count(*)::text as n
         from expected e full join ${table} r using (${names.join(', ')})
        where (e.requests, e.prompt_tokens, e.completion_tokens, e.upstream_cost_nano, e.charged_nano)
              is distinct from (r.requests, r.prompt_tokens, r.completion_tokens, r.upstream_cost_nano, r.charged_nano)`,
    );
    const rows = Number(result.rows[0]!.n);
    if (rows > 0) found.push({ table, rows });
  }
  return found;
}
