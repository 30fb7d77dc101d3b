/**
 * Usage summaries: the planner that answers `GET /admin/usage` exactly from the rollups of
 * migrations 0003 and 0004 (written in the settle statement) and the ledger's partial hours.
 *
 * QUERY PLANS relied on — EXPLAIN ANALYZE on the `npm run seed:ledger` database (10M ledger
 * rows, 100k users, 365 days; Postgres 17, 2 cores), serial plans:
 *
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
 * Parallel query is off for summaries (serialPlans): with it the same 7-day ranking took 2x.
 */
import assert from 'node:assert/strict';
import type pg from 'pg';
import { parseNano } from '../../money.js';
import { ceilTo, floorTo, type Period as RollupPeriod } from '../periods.js';
import { Params } from '../params.js';
import type { Queryable } from '../queryable.js';
import { ROLLUP_MEASURES } from '../rollups.js';
import { inReadSnapshot } from '../snapshot.js';
import { boundedTopUsers, type Depth, type UsageSql } from '../top-users.js';

export type UsageGroup = 'user' | 'model' | 'day' | 'hour' | 'endpoint';

export interface UsageRow {
  /** User id, model ('' = none named), UTC day "YYYY-MM-DD", UTC hour "YYYY-MM-DDTHH:00:00Z" or endpoint. */
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

/** Every rollup's measure columns, read as they are. */
const ROLLUP_COLUMNS = ROLLUP_MEASURES.join(', ');

const LEDGER: Source = {
  table: 'ledger_entries', time: 'created_at', user: 'user_id', model: `coalesce(model, '')`, where: `kind = 'usage'`,
  keys: {
    user: 'user_id', model: `coalesce(model, '')`, day: `date_trunc('day', created_at, 'UTC')`, hour: `date_trunc('hour', created_at, 'UTC')`,
    // 0009: usage entries settled before it were all chat completions (the only metered endpoint then).
    endpoint: `coalesce(endpoint, 'chat')`,
  },
  measures: `1::bigint as requests, coalesce(prompt_tokens, 0)::bigint as prompt_tokens,
             coalesce(completion_tokens, 0)::bigint as completion_tokens,
             coalesce(upstream_cost_nano, -amount_nano) as upstream_cost_nano, -amount_nano as charged_nano`,
};
const USAGE_HOURLY: Source = {
  table: 'usage_hourly', time: 'bucket', user: 'user_id', model: 'model', measures: ROLLUP_COLUMNS,
  keys: { user: 'user_id', model: 'model', day: `date_trunc('day', bucket, 'UTC')`, hour: 'bucket' },
};
const USER_DAILY: Source = { table: 'usage_user_daily', time: 'bucket', user: 'user_id', measures: ROLLUP_COLUMNS, keys: { user: 'user_id', day: 'bucket' } };
const USER_WEEKLY: Source = { table: 'usage_user_weekly', time: 'bucket', user: 'user_id', measures: ROLLUP_COLUMNS, keys: { user: 'user_id' } };
const USER_MONTHLY: Source = { table: 'usage_user_monthly', time: 'bucket', user: 'user_id', measures: ROLLUP_COLUMNS, keys: { user: 'user_id' } };
const MODEL_HOURLY: Source = {
  table: 'usage_model_hourly', time: 'bucket', model: 'model', measures: ROLLUP_COLUMNS,
  keys: { model: 'model', day: `date_trunc('day', bucket, 'UTC')`, hour: 'bucket' },
};
const MODEL_DAILY: Source = { table: 'usage_model_daily', time: 'bucket', model: 'model', measures: ROLLUP_COLUMNS, keys: { model: 'model', day: 'bucket' } };

/**
 * The rollups that can answer a query, coarsest first. Per user or per model-of-user reads go
 * to the (hour, user, model) rollup; top users to the per-user month or week, then day
 * rollups; models, days and hours to the per-model rollups (a handful of rows per period).
 */
function levelsFor(q: UsageQuery): Array<[Level, Source]> {
  // No rollup keys by endpoint: read from the ledger (cost ∝ usage entries in the range).
  if (q.groupBy === 'endpoint') return [];
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
  return group === 'user' || group === 'model' || group === 'endpoint' ? 'k collate "C"' : 'k';
}

const KEY_TEXT: Record<UsageGroup, string> = {
  user: 'k',
  endpoint: 'k',
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
