/**
 * The top users of a range of several days that is not one whole day or month, exact, without
 * summing every user active in the range.
 *
 * Summing them all costs one rollup row per (user, day) in the range: at 10M ledger rows over
 * 100k users a 7-day range cutting days reads ~156k rows (p95 175 ms), 30 days ~700k (329 ms).
 * Instead, a threshold argument (after Fagin's algorithms) with bounds from a few covering
 * periods rather than from every day, in one statement:
 *   1. cover the range with ISO weeks or months of one rollup, whose (bucket, charged_nano
 *      desc, user_id) index lists each period's users by spend;
 *   2. read each period's list n deep. A user read is a candidate, bounded by the sum of
 *      their charge in each period (where they were not read: that list's n-th charge, or 0 if
 *      the list ended). A user read nowhere is bounded by the sum of the lists' n-th charges.
 *      The bounds hold because usage charges are never negative (the ledger's check on
 *      kind = 'usage'): a period's spend bounds the spend of any part of it;
 *   3. sum exactly, over the range, the 2 × limit candidates with the highest bounds; the
 *      limit-th of those sums is a floor τ for the answer's last charge;
 *   4. sum exactly every other candidate whose bound reaches τ (the rest cannot enter);
 *   5. the top of all sums is the answer if the unread users' bound is below its last charge
 *      (or every list ended: every user with usage in the cover was read). Otherwise read 4x
 *      deeper once more, then give up (null: the caller sums everyone).
 * Ties are ordered by user id, so a bound equal to a charge never excludes: every comparison
 * is strict (a test holds it). The statement sees one snapshot, so no settle can lift a user
 * past a bound between reading the lists and summing.
 * It pays off when spend is concentrated, as it is in practice and in the seeded benchmark
 * (heavy users dominate any range); when it is not, the bound does not close and the caller's
 * full sums answer.
 *
 * PLAN (EXPLAIN ANALYZE, `npm run seed:ledger` database: 10M rows, 100k users; limit 100,
 * warm cache), 7 days cutting days, 29 ms:
 *   lists      Index Only Scan using usage_user_weekly_top, 2 × 3,200 rows              1.5 ms
 *   floors, candidates (5,869 users, bounds)  HashAggregate over the lists             9 ms
 *   edges      Index Only Scan using usage_hourly_bucket (25,815 rows of 2 partial days)
 *              + Index Scan using ledger_entries_created_at (1,126 rows), kept for
 *              candidates only (hashed), HashAggregate 2,607 users                    10 ms
 *   first_sums Nested Loop: 200 × Index Only Scan using usage_user_daily_pkey          1 ms
 *   rest_sums  the same for the 340 whose bound reaches the 100th of those            2 ms
 *   winners    the same, every measure, 100 users                                      1 ms
 * 30 days (5 weekly lists, whole weeks from usage_user_weekly_pkey): 28 ms.
 * Tuning measured on the same data: lists 800 deep in all made the bounds loose (~1,000 sums,
 * p50 133 ms); 6,400 and 12,800 rows in all did equally well. Daily covers are noisy (one
 * large request lifts a light user): 1 day bounded p50 89 ms against ~20 ms summed in full, so
 * ranges under MIN_RANGE_MS are summed in full. End to end (`npm run bench:ledger`, README):
 * p95 warm / cold: 7 days 36 / 63 ms, 30 days 31 / 41 ms, 180 days 28 / 49 ms.
 */
import assert from 'node:assert/strict';
import { nextPeriod, periodsCovering, type Period } from './periods.js';
import { Params } from './params.js';
import type { Queryable } from './queryable.js';
import { ROLLUP_MEASURES } from './rollups.js';

/**
 * The caller's usage over the range, as SQL yielding (k, measures...) rows, any number per
 * user: `periods` for the users of the relation named `candidates` (one column, id), `edges`
 * (the rest of the range) for everyone. Each part of the range is in exactly one. Measures:
 * charged_nano only, or all of MEASURES in that order (`all`).
 */
export interface UsageSql {
  periods: (params: Params, candidates: string, all: boolean) => string;
  edges: (params: Params, all: boolean) => string;
}

/** Ranges shorter than this are summed in full (see above: daily covers do not pay). */
export const MIN_RANGE_MS = 6 * 86_400_000;

/**
 * Rollups with a per-period top index, and how many periods of each a cover may take. Up to 13
 * months, so any range within a year has a cover: 180 and 300-day ranges took ~24 ms bounded
 * against 616-720 ms summed in full (warm, median of 6 ranges each). Longer ranges are summed in full.
 */
const COVERS: ReadonlyArray<{ period: Period; table: string; periodsMax: number }> = [
  { period: 'week', table: 'usage_user_weekly', periodsMax: 8 },
  { period: 'month', table: 'usage_user_monthly', periodsMax: 13 },
];

export interface Depth {
  /** List rows read in all, first attempt (split between the lists). */
  rowsFirst: number;
  /** The second and last attempt reads 4x as many. */
  rowsLast: number;
  /** Candidates summed past the first 2 × limit, at most; more and the bound did not close. */
  sumsMax: number;
}

/** 6,400 rows: tight enough bounds for 1.5 ms of reading (the plan above). */
export const DEPTH: Depth = Object.freeze({ rowsFirst: 6_400, rowsLast: 25_600, sumsMax: 10_000 });
/** Larger limits go straight to the full sums (2 × limit candidates alone would be thousands). */
export const LIMIT_MAX = 1_000;

interface Cover { table: string; buckets: Date[] }

/**
 * The exact top `limit` users of [since, until), most charged first, ties by id in byte order;
 * or null when the range is too short or too long for a cover, or the bound did not close.
 */
export async function boundedTopUsers(
  db: Queryable, since: Date | null, until: Date | null, limit: number, usage: UsageSql, depth: Depth = DEPTH,
): Promise<TopUser[] | null> {
  assert(Number.isSafeInteger(limit) && limit > 0, 'limit must be a positive integer');
  assert(depth.rowsFirst > 0 && depth.rowsFirst <= depth.rowsLast && depth.sumsMax > 0, 'depths must be positive and ordered');
  if (limit > LIMIT_MAX) return null;
  const range = await closeRange(db, since, until);
  if (range === null) return [];
  if (range.until.getTime() - range.since.getTime() < MIN_RANGE_MS) return null;
  const cover = chooseCover(range.since, range.until);
  if (cover === null) return null;
  for (let rows = depth.rowsFirst; rows <= depth.rowsLast; rows *= 4) {
    const perList = Math.max(Math.ceil(rows / cover.buckets.length), 4 * limit);
    const attempt = await attemptTop(db, cover, perList, limit, depth.sumsMax, usage);
    if (attempt.restOverflow) return null;
    const last = attempt.top.at(-1);
    if (attempt.exhausted || (attempt.top.length === limit && attempt.unreadBoundNano < last!.chargedNano)) return attempt.top;
  }
  return null;
}

/**
 * The range clamped to the days that have usage (in this snapshot nothing was used outside
 * them), so an open end or a bound far in the past or future does not widen the cover. Null:
 * no usage in the range.
 */
async function closeRange(db: Queryable, since: Date | null, until: Date | null): Promise<{ since: Date; until: Date } | null> {
  const result = await db.query<{ first: Date | null; last: Date | null }>(
    'select min(bucket) as first, max(bucket) as last from usage_user_daily');
  const { first, last } = result.rows[0]!;
  if (first === null || last === null) return null;
  const end = nextPeriod('day', last);
  const closed = { since: since === null || since < first ? first : since, until: until === null || until > end ? end : until };
  return closed.since < closed.until ? closed : null;
}

/**
 * The cover expected to need the fewest sums: each list adds candidates and a looser cover
 * has looser bounds, so the score is √lists × days covered (7 days: 2 weeks, not 1-2 months;
 * 30 days: 5 weeks (√5 × 35 = 78) before 2 months (√2 × 61 = 86)).
 */
function chooseCover(since: Date, until: Date): Cover | null {
  let best: (Cover & { score: number }) | null = null;
  for (const { period, table, periodsMax } of COVERS) {
    const buckets = periodsCovering(period, since, until, periodsMax);
    assert(buckets.length > 0, 'a non-empty range touches a period');
    if (buckets.length > periodsMax) continue;
    const days = (nextPeriod(period, buckets.at(-1)!).getTime() - buckets[0]!.getTime()) / 86_400_000;
    const score = Math.sqrt(buckets.length) * days;
    if (best === null || score < best.score) best = { table, buckets, score };
  }
  return best === null ? null : { table: best.table, buckets: best.buckets };
}

/** A winner with every measure summed over the range. */
export interface TopUser {
  key: string;
  chargedNano: bigint;
  requests: number;
  promptTokens: number;
  completionTokens: number;
  upstreamCostNano: bigint;
}

interface Attempt {
  top: TopUser[];
  unreadBoundNano: bigint;
  exhausted: boolean;
  restOverflow: boolean;
}

const MEASURES = ROLLUP_MEASURES;
const SUMS = MEASURES.map((m) => `usage_sum(${m}) as ${m}`).join(', ');

/** Steps 2-4 in one statement, and the winners' every measure; the caller checks step 5. */
async function attemptTop(db: Queryable, cover: Cover, perList: number, limit: number, sumsMax: number, usage: UsageSql): Promise<Attempt> {
  const p = new Params();
  const result = await db.query<{ unread: string; exhausted: boolean; rest_overflow: boolean; top: string[][] | null }>(
    topSql(p, cover, perList, limit, sumsMax, usage), p.values);
  const row = result.rows[0]!;
  const top = (row.top ?? []).map(([key, requests, prompt, completion, upstream, charged]) => ({
    key: key!, requests: Number(requests), promptTokens: Number(prompt), completionTokens: Number(completion),
    upstreamCostNano: BigInt(upstream!), chargedNano: BigInt(charged!),
  }));
  return { top, unreadBoundNano: BigInt(row.unread), exhausted: row.exhausted, restOverflow: row.rest_overflow };
}

/**
 * The statement: lists, floors and bounds; the edges of the range read once as ranges and
 * summed for the candidates only (every user ever summed is one: aggregating all ~21k users of
 * a 7-day range's edges took 18 of the statement's 47 ms); exact charges of the first
 * candidates, then of the rest that can reach them; the top; and the top's every measure.
 */
function topSql(p: Params, cover: Cover, perList: number, limit: number, sumsMax: number, usage: UsageSql): string {
  const depth = p.add(perList, 'integer');
  const lim = p.add(limit, 'integer');
  const charges = (relation: string) => `
       select k, usage_sum(charged_nano) as charged
         from (select k, charged_nano from (${usage.periods(p, relation, false)}) s
               union all select e.k, e.charged_nano from edges e join ${relation} c on c.id = e.k) s
        group by k`;
  return `with cover as (select bucket, i from unnest(${p.add(cover.buckets, 'timestamptz[]')}) with ordinality c (bucket, i)),
     lists as materialized (
       select cover.i, t.user_id, t.charged_nano
         from cover cross join lateral (
           select p.user_id, p.charged_nano from ${cover.table} p
            where p.bucket = cover.bucket order by p.charged_nano desc, p.user_id limit ${depth}) t),
     floors as materialized (
       select cover.i, count(l.user_id) < ${depth} as ended,
              case when count(l.user_id) < ${depth} then 0 else min(l.charged_nano) end as floor
         from cover left join lists l using (i) group by cover.i),
     candidates as materialized (
       select l.user_id as id, (select sum(floor) from floors) + sum(l.charged_nano - f.floor) as bound
         from lists l join floors f using (i) group by l.user_id),
     first as materialized (select id from candidates order by bound desc, id limit 2 * ${lim}),
     edges as materialized (
       select k, ${SUMS} from (${usage.edges(p, true)}) e
        where k in (select id from candidates) group by k),
     first_sums as materialized (${charges('first')}),
     floor_charge as (select coalesce((select charged from first_sums order by charged desc, k collate "C" offset ${lim} - 1 limit 1), -1) as v),
     rest as materialized (
       select id from candidates
        where bound >= (select v from floor_charge) and id not in (select id from first)
        limit ${p.add(sumsMax, 'integer')} + 1),
     rest_sums as materialized (${charges('rest')}),
     top as materialized (
       select k as id, charged from (select * from first_sums union all select * from rest_sums) a
        order by charged desc, k collate "C" limit ${lim}),
     winners as (
       select k, ${SUMS}
         from (select * from (${usage.periods(p, 'top', true)}) s
               union all select e.k, ${MEASURES.map((m) => `e.${m}`).join(', ')} from edges e join top t on t.id = e.k) w
        group by k)
     select (select sum(floor) from floors)::text as unread, (select bool_and(ended) from floors) as exhausted,
            (select count(*) from rest) > ${p.add(sumsMax, 'integer')} as rest_overflow,
            (select json_agg(json_build_array(k, ${MEASURES.map((m) => `${m}::text`).join(', ')}) order by charged_nano desc, k collate "C")
               from winners) as top`;
}
